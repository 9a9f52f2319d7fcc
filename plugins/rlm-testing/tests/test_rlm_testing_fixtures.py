"""The pytest plugin of rlm-testing: fixtures ``scripted_llm``, ``scripted_llm_factory`` and ``rlm_pm``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable

import pytest
from rlm_testing.server import Reply, ScriptedLLMServer

pytest_plugins = ["pytester"]


def test_scripted_llm_is_started_and_empty(scripted_llm: ScriptedLLMServer) -> None:
    assert scripted_llm.running and scripted_llm.requests == [] and scripted_llm.remaining == 0
    scripted_llm.script([Reply.text("fixture works")])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with urllib.request.urlopen(
        urllib.request.Request(scripted_llm.openai_base_url + "/chat/completions", data=body)
    ) as r:
        assert json.loads(r.read())["choices"][0]["message"]["content"] == "fixture works"


def test_factory_makes_independent_servers(scripted_llm_factory: Callable[..., ScriptedLLMServer]) -> None:
    a = scripted_llm_factory([Reply.text("a")])
    b = scripted_llm_factory(latency=0.01)
    assert a.port != b.port and a.running and b.running
    assert a.remaining == 1 and b.remaining == 0 and b.latency == 0.01


def test_rlm_pm_is_a_fresh_plugin_manager(rlm_pm: object) -> None:
    from rlm.plugins import create_plugin_manager

    assert hasattr(rlm_pm, "hook") and hasattr(rlm_pm.hook, "rlm_register_backends")
    assert all(r.status == "builtin" for r in rlm_pm.records), "no entry-point plugins are loaded"
    assert rlm_pm is not create_plugin_manager(entry_points=False)


def test_servers_are_stopped_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import urllib.request, pytest
        ports = []

        def test_one(scripted_llm, scripted_llm_factory):
            ports.extend([scripted_llm.port, scripted_llm_factory().port])

        def test_two():
            assert len(ports) == 2
            for port in ports:
                with pytest.raises(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=2)


def test_plugin_is_registered_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="pytest11") if e.name == "rlm_testing"]
    assert ep.value == "rlm_testing.pytest_plugin"


def test_plugin_module_is_cheap_to_import() -> None:
    code = (
        "import sys, rlm_testing.pytest_plugin as p; "
        "heavy = [m for m in ('rlm_testing.server', 'rlm.plugins', 'openai', 'anthropic') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
