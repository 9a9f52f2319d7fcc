"""pytest fixtures of rlm-testing (loaded in every pytest run through the ``pytest11`` entry point).

- ``scripted_llm``: a started :class:`rlm_testing.server.ScriptedLLMServer`
  with an empty script, stopped after the test;
- ``scripted_llm_factory``: call it to start more servers (each stopped after
  the test), e.g. one per protocol or with ``latency=``;
- ``rlm_pm``: a fresh plugin manager with the kernel's default plugins and no
  entry-point discovery.

This module stays cheap to import: the server and the kernel are imported
inside the fixtures.  It also registers the conformance suites for pytest's
assertion rewriting, so their failures show the compared values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rlm_testing.server import ScriptedLLMServer

# The conformance suites use plain asserts: have pytest explain them when they fail.
pytest.register_assert_rewrite("rlm_testing.backend_suite", "rlm_testing.environment_suite")


@pytest.fixture
def scripted_llm_factory() -> Iterator[Callable[..., ScriptedLLMServer]]:
    """A function ``(script=None, **options) -> started ScriptedLLMServer``; all stop after the test."""
    from rlm_testing.server import ScriptedLLMServer

    started: list[ScriptedLLMServer] = []

    def make(script: Any = None, **options: Any) -> ScriptedLLMServer:
        server = ScriptedLLMServer(script, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def scripted_llm(scripted_llm_factory: Callable[..., ScriptedLLMServer]) -> ScriptedLLMServer:
    """A started scripted LLM server; give it steps with ``scripted_llm.script([...])``."""
    return scripted_llm_factory()


@pytest.fixture
def rlm_pm() -> Any:
    """A fresh rlm plugin manager (default plugins, no entry points); register test plugins on it."""
    from rlm.plugins import create_plugin_manager

    return create_plugin_manager(entry_points=False)
