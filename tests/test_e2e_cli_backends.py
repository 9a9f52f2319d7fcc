"""`rlm run` through the CLI reaches the scripted server with each backend's real SDK,
the base URL coming from rlm.toml: openai/..., anthropic/... and a plain litellm model name."""

from __future__ import annotations

import json

import pytest

from rlm import cli
from rlm_testing.server import Reply


def write_config(tmp_path, base_url: str) -> None:
    (tmp_path / "rlm.toml").write_text(f'[rlm]\napi_base = "{base_url}"\nenvironment = "local"\n')


@pytest.mark.parametrize(
    ("model", "protocol", "package"),
    [
        ("openai/gpt-4o-mini", "openai", "rlm_backend_openai"),
        ("anthropic/claude-sonnet-4-6", "anthropic", "rlm_backend_anthropic"),
        ("gpt-4o-mini", "openai", "rlm_backend_litellm"),
    ],
)
def test_rlm_run_reaches_the_scripted_server(scripted_llm, tmp_path, capsys, model, protocol, package):
    pytest.importorskip(package)
    pytest.importorskip("rlm_env_local")
    write_config(tmp_path, scripted_llm.base_url(protocol))
    scripted_llm.script([Reply.tool_calls(("execute_code", {"code": "print(6 * 7)"})), Reply.text("42")])
    code = cli.main(["run", "What is six times seven?", "--model", model, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["response"] == "42" and result["total_calls"] == 2
    assert [r.protocol for r in scripted_llm.requests] == [protocol, protocol]
    # the tool result went back to the provider in its own format
    second = json.dumps(scripted_llm.requests[1].body)
    assert "42\\\\n" in second or "42\\n" in second
    assert (tmp_path / "logs" / f"{result['trajectory_id']}.jsonl").exists()


def test_missing_key_is_one_clean_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("rlm_backend_openai")
    monkeypatch.delenv("OPENAI_API_KEY")
    code = cli.main(["run", "hi", "--model", "openai/gpt-4o-mini", "--env", "local"])
    err = capsys.readouterr().err
    assert code == 4
    assert "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY" in err and "Traceback" not in err


def test_unknown_model_and_invalid_key_are_clean_errors(scripted_llm, tmp_path, capsys):
    pytest.importorskip("rlm_backend_openai")
    write_config(tmp_path, scripted_llm.openai_base_url)
    scripted_llm.script([Reply.model_not_found()])
    assert cli.main(["run", "hi", "--model", "openai/nope-model"]) == 4
    err = capsys.readouterr().err
    assert "nope-model" in err and "Traceback" not in err
    scripted_llm.script([Reply.invalid_api_key()])
    assert cli.main(["run", "hi", "--model", "openai/gpt-4o-mini"]) == 4
    err = capsys.readouterr().err
    assert "rlm: error:" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
