"""The contract between the kernel and execution-environment plugins.

An environment plugin registers a factory through ``rlm_register_environments``.
The kernel calls ``factory(settings=EnvironmentSettings(...), callbacks=...)``
and gets an object satisfying :class:`Environment`: one stateful REPL session.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from attrs import define, field

from rlm.types import REPLResult

#: Names the REPL defines for the code it runs, whatever the environment.
REPL_HOST_FUNCTIONS = ("llm_query", "llm_query_batched", "FINAL", "FINAL_VAR")


@runtime_checkable
class HostCallbacks(Protocol):
    """What code inside a REPL may ask of the host (the orchestrator).

    Environments expose these inside the REPL as ``llm_query(prompt)`` and
    ``llm_query_batched(prompts)``; each call is a sub-LLM call made by the
    orchestrator, under its budgets, recorded in the trajectory.
    """

    async def llm_query(self, prompt: str) -> str:
        """Answer one prompt with a fresh sub-LLM call; returns its text."""
        ...

    async def llm_query_batched(self, prompts: Sequence[str]) -> list[str]:
        """Answer several prompts concurrently; returns the texts in order."""
        ...


def _paths(value: Any) -> tuple[str, ...]:
    return tuple(os.path.abspath(os.fspath(p)) for p in (value or ()))


def _positive(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: a finite number above 0 (bools, nan and inf refused)."""
    name = attribute.name
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"EnvironmentSettings.{name}: expected a number, got {value!r}; "
                         f"give a positive number (default {attribute.default!r})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"EnvironmentSettings.{name}: must be a finite number above 0, got {value!r}; "
                         f"give a positive number (default {attribute.default!r})")


def _positive_int(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an int of 1 or more (bools and fractions refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"EnvironmentSettings.{attribute.name}: expected a whole number, got {value!r}; "
                         f"give an integer of 1 or more (default {attribute.default!r})")
    if value < 1:
        raise ValueError(f"EnvironmentSettings.{attribute.name}: must be at least 1, got {value!r}; "
                         f"give an integer of 1 or more (default {attribute.default!r})")


@define(frozen=True, kw_only=True)
class EnvironmentSettings:
    """Limits and paths every environment honours.

    ``timeout`` is the wall-clock limit of one execution (seconds), the time its
    ``llm_query`` calls wait for the host included;
    ``memory_limit_mb`` the address-space/memory cap; ``cpu_limit_s`` the CPU
    time of one execution (None: same as ``timeout``); ``output_limit`` the
    characters of output kept per execution (more is cut, ``truncated`` set).
    ``allowed_paths`` may be read by code (``open``); ``writable_paths`` may also
    be written. ``workdir`` is the session's working directory. ``options`` is
    the plugin's own config section (an attrs instance) or None.  ``config``
    is the run's whole :class:`rlm.config.RLMConfig` (None outside a run), for
    product-level keys such as ``docker_image``, ``docker_cpus`` and
    ``docker_memory`` that live in ``[rlm]``.
    ``write_quota_mb`` is what one session may add under ``writable_paths``
    (MiB: new files plus growth of existing ones); ``write_quota_files`` the
    files (and directories) one session may create there.  Both are finite
    and above 0 (checked when the settings are built).
    """

    timeout: float = 30.0
    memory_limit_mb: int = 512
    cpu_limit_s: float | None = None
    output_limit: int = 100_000
    max_open_files: int = 64
    allowed_paths: tuple[str, ...] = field(factory=lambda: (os.getcwd(),), converter=_paths)
    writable_paths: tuple[str, ...] = field(default=(), converter=_paths)
    workdir: str = field(factory=os.getcwd)
    write_quota_mb: float = field(default=100, validator=_positive)
    write_quota_files: int = field(default=1000, validator=_positive_int)
    options: Any = None
    config: Any = field(default=None, repr=False)


def settings_from_config(config: Any, **extra: Any) -> EnvironmentSettings:
    """The :class:`EnvironmentSettings` a run's :class:`rlm.config.RLMConfig` asks for.

    Every field a user can set comes from an ``[rlm]`` key: ``timeout`` <- ``env_timeout``,
    ``memory_limit_mb`` <- ``env_memory_mb``, ``cpu_limit_s`` <- ``env_cpu_limit_s``,
    ``allowed_paths`` <- ``allowed_paths``, ``writable_paths`` <- ``env_writable_paths``,
    ``workdir`` <- ``env_workdir`` (unset: the current directory), ``write_quota_mb`` /
    ``write_quota_files`` <- ``env_write_quota_mb`` / ``env_write_quota_files``, ``options`` <-
    ``[plugins.env-<environment>]``.  ``output_limit`` and ``max_open_files`` keep their defaults.
    ``extra`` overrides any of them.
    """
    values: dict[str, Any] = {
        "timeout": config.env_timeout,
        "memory_limit_mb": config.env_memory_mb,
        "cpu_limit_s": config.env_cpu_limit_s,
        "allowed_paths": config.allowed_paths,
        "writable_paths": config.env_writable_paths,
        "write_quota_mb": config.env_write_quota_mb,
        "write_quota_files": config.env_write_quota_files,
        "options": config.plugin(f"env-{config.environment}"),
        "config": config,
    }
    if config.env_workdir is not None:
        values["workdir"] = os.path.abspath(os.path.expanduser(config.env_workdir))
    values.update(extra)
    return EnvironmentSettings(**values)


@runtime_checkable
class Environment(Protocol):
    """One REPL session.  State (variables, functions, imports) persists across
    :meth:`execute` calls until :meth:`reset` or :meth:`close`.

    Errors in the user's code are never raised: they come back in
    ``REPLResult.error``.  Methods raise :class:`rlm.errors.EnvironmentError`
    only when the environment itself cannot work (engine missing, ...).
    """

    name: str

    async def start(self) -> None:
        """Start the session (process, container, instance).  Idempotent."""
        ...

    async def execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        """Run ``code``; ``timeout`` overrides ``settings.timeout`` for this call.

        On timeout the execution is killed, the session restarted (state is
        lost) and ``error`` says so.
        """
        ...

    async def get_context(self) -> dict[str, str]:
        """The user's variables: name -> short repr (host functions and modules left out)."""
        ...

    async def get_variable(self, name: str) -> Any:
        """The value of one variable: the value itself when JSON-serialisable,
        else its ``repr``.  Raises ``KeyError`` naming the variable when absent."""
        ...

    async def set_context(self, name: str, value: Any) -> None:
        """Bind ``name`` to a JSON-serialisable ``value`` in the session."""
        ...

    async def clear_context(self) -> None:
        """Delete every user variable; the session stays up."""
        ...

    async def reset(self) -> None:
        """Throw the session away and start a fresh one."""
        ...

    async def close(self) -> None:
        """Release everything (process, container...).  Idempotent."""
        ...
