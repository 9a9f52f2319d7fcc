"""The ``isolation`` field of ``run_start``: what the environment's isolation describer says, never a failure."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from rlm.trajectory import read_trajectory
from rlm.types import ToolCall

LAYERS = {"landlock": "active (ABI 7)", "seccomp": "active",
          "namespaces": "unavailable: user namespaces are disabled", "python-guards": "active"}


def _run_start(result, tmp_path):
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    assert [e for e in result.events if e["type"] == "run_start"] == [events[0]]
    return events[0]


@pytest.mark.parametrize("protocol", ["tools", "repl"])
def test_run_start_records_the_isolation_of_the_environment(make_rlm, tmp_path, protocol):
    seen = []

    def describe(config):
        seen.append(config)
        return LAYERS

    script = ["42"] if protocol == "tools" else ["```repl\nFINAL(42)\n```"]
    rlm, _ = make_rlm(script, isolation=describe, protocol=protocol)
    result = rlm.completion_sync("go")
    assert result.success, result.error
    start = _run_start(result, tmp_path)
    assert start["environment"] == "fake" and start["isolation"] == LAYERS
    assert len(seen) == 1 and seen[0].model == "fake-model"  # called once per run, with the run's config


def test_a_string_describer_is_imported_when_the_run_starts(make_rlm, tmp_path, monkeypatch):
    (tmp_path / "fake_isolation_mod.py").write_text(
        "def describe(config):\n    return {'seccomp': 'active', 'model': config.model}\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    rlm, _ = make_rlm(["ok"], isolation="fake_isolation_mod:describe")
    assert rlm.environment_isolation() == {"seccomp": "active", "model": "fake-model"}
    result = rlm.completion_sync("go")
    assert _run_start(result, tmp_path)["isolation"] == {"seccomp": "active", "model": "fake-model"}


def test_a_failing_describer_never_fails_the_run(make_rlm, tmp_path):
    def describe(config):
        raise RuntimeError("cannot probe landlock")

    rlm, _ = make_rlm([[ToolCall(id="", name="execute_code", arguments={"code": "print(1)"})], "done"],
                      isolation=describe)
    with capture_logs() as logs:
        result = rlm.completion_sync("go")
    assert result.success and result.response == "done"
    assert _run_start(result, tmp_path)["isolation"] == {
        "error": "isolation describer 'test_a_failing_describer_never_fails_the_run.<locals>.describe' failed: "
                 "RuntimeError: cannot probe landlock"}
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["isolation_describer_failed"]


def test_an_invalid_report_is_recorded_as_an_error(make_rlm, tmp_path):
    rlm, _ = make_rlm(["ok"], isolation=lambda config: {"seccomp": True})
    result = rlm.completion_sync("go")
    assert result.success
    assert "status of layer 'seccomp' is bool, not a string" in _run_start(result, tmp_path)["isolation"]["error"]


def test_an_environment_without_describer_records_none(make_rlm, tmp_path):
    rlm, _ = make_rlm(["ok"])
    result = rlm.completion_sync("go")
    start = _run_start(result, tmp_path)
    assert "isolation" in start and start["isolation"] is None


def test_a_run_without_an_environment_does_not_ask(make_rlm, tmp_path):
    calls = []
    rlm, backend = make_rlm(["ok"], isolation=lambda config: calls.append(config) or LAYERS, protocol="tools")
    rlm.pm.unregister(name="rlm.builtin.tools")  # no execute_code: the run needs no environment
    result = rlm.completion_sync("go")
    assert result.success
    assert "execute_code" not in {t.name for t in backend.requests[0].tools}
    assert _run_start(result, tmp_path)["isolation"] is None
    assert calls == []


def test_the_log_tree_shows_the_isolation_layers(make_rlm, tmp_path):
    from rlm.commands.logs import render_tree

    rlm, _ = make_rlm(["42"], isolation=lambda config: LAYERS)
    result = rlm.completion_sync("go")
    tree = render_tree(read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl")))
    assert "isolation: landlock: active (ABI 7); seccomp: active; namespaces: unavailable; " \
           "python-guards: active" in tree
