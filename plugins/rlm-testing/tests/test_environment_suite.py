"""Validates the environment conformance suite by running it against the local environment.

Skipped when rlm-env-local is not installed.  Also checks the suite's own
helpers (FakeHostCallbacks, run) and that an environment that does not work
actually fails the suite.
"""

from __future__ import annotations

import asyncio

import pytest

from rlm.environment import EnvironmentSettings
from rlm.types import REPLResult
from rlm_testing.environment_suite import EnvironmentConformance, FakeHostCallbacks, run

try:
    from rlm_env_local.session import LocalEnvironment
except ImportError:  # pragma: no cover - depends on what is installed
    LocalEnvironment = None


@pytest.mark.skipif(LocalEnvironment is None, reason="rlm-env-local is not installed")
class TestLocalEnvironmentConforms(EnvironmentConformance):
    def make_environment(self, settings, callbacks):
        return LocalEnvironment(settings=settings, callbacks=callbacks)


def test_fake_callbacks_record_and_answer():
    callbacks = FakeHostCallbacks(lambda p: p[::-1])
    assert run(callbacks.llm_query("abc")) == "cba"
    assert run(callbacks.llm_query_batched(["ab", "cd"])) == ["ba", "dc"]
    assert callbacks.prompts == ["abc"]
    assert callbacks.batches == [["ab", "cd"]]


def test_run_drives_a_coroutine():
    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    assert run(add(2, 3)) == 5


class _Broken:
    """An environment that forgets everything: the suite must catch it."""

    name = "broken"

    def __init__(self, settings, callbacks):
        self.settings = settings

    async def start(self):
        pass

    async def execute(self, code, *, timeout=None):
        return REPLResult(output="", value=None)

    async def get_context(self):
        return {}

    async def get_variable(self, name):
        raise KeyError(name)

    async def set_context(self, name, value):
        pass

    async def clear_context(self):
        pass

    async def reset(self):
        pass

    async def close(self):
        pass


class _BrokenSuite(EnvironmentConformance):
    def make_environment(self, settings, callbacks):
        return _Broken(settings, callbacks)


@pytest.mark.parametrize("test_name", [
    "test_state_persists_across_executions", "test_trailing_expression_value_is_shown",
    "test_final_and_final_var", "test_llm_query_reaches_the_host", "test_output_flood_is_truncated",
])
def test_suite_rejects_a_broken_environment(test_name, tmp_path):
    with pytest.raises(AssertionError):
        getattr(_BrokenSuite(), test_name)(tmp_path)


def test_make_settings_uses_the_temporary_directory(tmp_path):
    settings = _BrokenSuite().make_settings(tmp_path, output_limit=5)
    assert isinstance(settings, EnvironmentSettings)
    assert settings.workdir == str(tmp_path)
    assert settings.allowed_paths == (str(tmp_path),)
    assert settings.output_limit == 5
