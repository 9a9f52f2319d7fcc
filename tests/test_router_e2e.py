"""The direct-answer router through the real openai SDK and the scripted server: an input under
``direct_below_tokens`` gets one plain model call (no tools, no REPL), a longer one the RLM path; the
result and the trajectory say which."""

from __future__ import annotations

import json

import pytest

from rlm import cli
from rlm_testing.server import Reply


def run_json(capsys, *args: str) -> dict:
    code = cli.main(["run", *args, "--model", "openai/gpt-4o-mini", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def trajectory(tmp_path, result) -> list[dict]:
    path = tmp_path / "logs" / f"{result['trajectory_id']}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def configured(scripted_llm, tmp_path):
    pytest.importorskip("rlm_backend_openai")
    (tmp_path / "rlm.toml").write_text(f'[rlm]\napi_base = "{scripted_llm.base_url("openai")}"\n'
                                       'environment = "local"\nprotocol = "tools"\ndirect_below_tokens = 200\n')
    return scripted_llm


def test_a_short_input_takes_the_direct_path(configured, tmp_path, capsys):
    configured.script([Reply.text("Paris")])
    result = run_json(capsys, "What is the capital of France?")
    assert result["response"] == "Paris" and result["path"] == "direct" and result["total_calls"] == 1
    (request,) = configured.requests
    assert "tools" not in request.body  # one plain call: no tools, no REPL
    events = trajectory(tmp_path, result)
    assert events[0]["type"] == "run_start" and events[0]["path"] == "direct"
    assert not any(e["type"] == "repl_execution" for e in events)


def test_a_long_input_takes_the_rlm_path(configured, tmp_path, capsys):
    configured.script([Reply.tool_calls(("execute_code", {"code": "print(1 + 1)"})), Reply.text("2")])
    result = run_json(capsys, "Add these up: " + "1 + " * 400 + "1")  # ~1,600 characters: over 200 tokens
    assert result["response"] == "2" and result["path"] == "rlm" and result["total_calls"] == 2
    assert "tools" in configured.requests[0].body
    assert trajectory(tmp_path, result)[0]["path"] == "rlm"


def test_zero_never_takes_the_direct_path(configured, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RLM_DIRECT_BELOW_TOKENS", "0")
    configured.script([Reply.text("Paris")])
    result = run_json(capsys, "What is the capital of France?")
    assert result["path"] == "rlm" and "tools" in configured.requests[0].body


def test_the_direct_path_is_priced_and_budgeted_like_any_call(configured, tmp_path, capsys):
    (tmp_path / "rlm.toml").write_text((tmp_path / "rlm.toml").read_text() + "token_budget = 20\n")
    configured.script([Reply.text("Paris")])
    code = cli.main(["run", "What is the capital of France?", "--model", "openai/gpt-4o-mini", "--json"])
    captured = capsys.readouterr()
    assert code == 6 and configured.requests == []  # the call did not fit the budget: not made, exit 6
    assert json.loads(captured.out)["path"] == "direct"


def test_a_direct_input_far_larger_than_the_window_is_refused_unsent_never_cut(scripted_llm, tmp_path, capsys):
    pytest.importorskip("rlm_backend_openai")
    (tmp_path / "rlm.toml").write_text(f'[rlm]\napi_base = "{scripted_llm.base_url("openai")}"\n'
                                       'environment = "local"\nprotocol = "tools"\ndirect_below_tokens = 100000\n'
                                       'context_window = 2000\n')
    scripted_llm.script([Reply.text("never asked")])
    code = cli.main(["run", "Summarise: " + "word " * 5000, "--model", "openai/gpt-4o-mini", "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 6 and scripted_llm.requests == []  # a limit stopped it; nothing was sent
    assert result["path"] == "direct" and result["limit_hit"] == "context_window"
    assert "does not fit the model's context window" in result["error"]
