"""Persistent sessions: several completions that share one REPL and one conversation.

``async with rlm.session() as s: await s.completion(...)`` (or ``with rlm.session_sync() as s:
s.completion(...)``): each completion is its own run (its own budgets, limits and trajectory), but the
top-level call's REPL stays up between them, with its variables, and the conversation goes on from
where the last completion ended.  In the repl protocol the inputs are ``context_0``, ``context_1``...
(``context`` is the latest) and the answers ``answer_0``, ``answer_1``...  Closing the session closes
its REPL.  A session keeps the protocol of its first completion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlm.environment import Environment
from rlm.errors import ConfigError
from rlm.types import Message

if TYPE_CHECKING:
    from rlm.core import RLM
    from rlm.types import CompletionResult


class _Callbacks:
    """The session REPL's host callbacks: they follow the run in progress (each completion is a run)."""

    def __init__(self) -> None:
        self.target: Any = None

    async def llm_query(self, prompt: str) -> str:
        return await self._current().llm_query(prompt)

    async def llm_query_batched(self, prompts: Sequence[str]) -> list[str]:
        return await self._current().llm_query_batched(prompts)

    def _current(self) -> Any:
        if self.target is None:
            raise RuntimeError("llm_query() outside a completion of this session")
        return self.target


class Session:
    """Completions that share a REPL and a conversation (see the module docstring)."""

    def __init__(self, rlm: RLM) -> None:
        self.rlm = rlm
        #: the top-level call's REPL, started by the first completion that needs it
        self.environment: Environment | None = None
        self.callbacks = _Callbacks()
        #: the conversation so far (None before the first completion)
        self.messages: list[Message] | None = None
        self.protocol: str | None = None
        #: completions that ended, with or without an answer
        self.completions = 0
        self.closed = False

    async def completion(self, prompt: Any, **kwargs: Any) -> CompletionResult:
        """:meth:`rlm.RLM.completion`, continuing this session (same keyword arguments)."""
        if self.closed:
            raise ConfigError("this session is closed", fix="start a new one with rlm.session()")
        return await self.rlm._complete(prompt, session=self, **kwargs)

    def check_protocol(self, protocol: str) -> None:
        """A session keeps the protocol of its first completion."""
        if self.protocol is None:
            self.protocol = protocol
        elif protocol != self.protocol:
            raise ConfigError(f"this session uses the {self.protocol} protocol; a completion cannot switch to "
                              f"{protocol}", fix="start another session for the other protocol")

    async def environment_for(self, factory: Any, settings: Any, run_callbacks: Any) -> Environment:
        """The session's REPL, started on first use; its callbacks now serve ``run_callbacks``' run."""
        self.callbacks.target = run_callbacks
        if self.environment is None:
            env = factory(settings=settings, callbacks=self.callbacks)
            try:
                await env.start()
            except BaseException:  # failed or cancelled (a run that ended first): nothing may outlive it
                await env.close()
                raise
            self.environment = env
        return self.environment

    async def aclose(self) -> None:
        """Close the session's REPL (its variables are gone)."""
        self.closed = True
        env, self.environment = self.environment, None
        if env is not None:
            await env.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class SyncSession:
    """:class:`Session` for scripts without an event loop: its completions run on one loop of its own, which
    the REPL's pipes and the backend's connections belong to."""

    def __init__(self, rlm: RLM) -> None:
        self._runner = asyncio.Runner()
        self.session = Session(rlm)

    def completion(self, prompt: Any, **kwargs: Any) -> CompletionResult:
        return self._runner.run(self.session.completion(prompt, **kwargs))

    def close(self) -> None:
        try:
            self._runner.run(self.session.aclose())
            self._runner.run(self.session.rlm.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

