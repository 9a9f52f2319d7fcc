"""The orchestrator hands the environment the settings rlm.toml asks for."""

from __future__ import annotations

from rlm.types import ToolCall

from .conftest import FakeEnvironment


def test_rlm_toml_env_keys_reach_the_environment(make_rlm, tmp_path, monkeypatch):
    (tmp_path / "scratch").mkdir()
    (tmp_path / "rlm.toml").write_text(
        '[rlm]\nenv_writable_paths = ["scratch"]\nenv_cpu_limit_s = 4\nenv_workdir = "scratch"\n',
        encoding="utf-8")
    monkeypatch.setenv("RLM_CONFIG", str(tmp_path / "rlm.toml"))
    rlm, _ = make_rlm([[ToolCall(id="", name="execute_code", arguments={"code": "print(1)"})], "done"])
    assert rlm.completion_sync("go").response == "done"
    settings = FakeEnvironment.instances[0].settings
    scratch = str(tmp_path / "scratch")
    assert (settings.writable_paths, settings.cpu_limit_s, settings.workdir) == ((scratch,), 4.0, scratch)
