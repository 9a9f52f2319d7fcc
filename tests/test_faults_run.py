"""Fault injection, run level: budgets that hold whatever the provider counts, no answer never exits 0,
one failed sub-call does not end the run, Ctrl-C ends cleanly -- through the real CLI, each backend's
real SDK and the scripted server over HTTP.

Every test asserts the exit code, the one stderr line and a trajectory whose lines all parse and whose
last event is ``run_end``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rlm import cli
from rlm_testing.server import Reply

ROUTES = [
    pytest.param("openai/gpt-4o-mini", "openai", "rlm_backend_openai", id="openai"),
    pytest.param("anthropic/claude-sonnet-4-6", "anthropic", "rlm_backend_anthropic", id="anthropic"),
    pytest.param("gpt-4o-mini", "openai", "rlm_backend_litellm", id="litellm"),
]


def _config(tmp_path: Path, base_url: str, extra: str = "") -> None:
    (tmp_path / "rlm.toml").write_text(f'[rlm]\napi_base = "{base_url}"\nenvironment = "local"\n'
                                       f'protocol = "tools"\n{extra}')


def _trajectory(tmp_path: Path) -> list[dict[str, Any]]:
    files = sorted((tmp_path / "logs").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    assert files, "no trajectory was written"
    events = [json.loads(line) for line in files[-1].read_text(encoding="utf-8").splitlines() if line.strip()]
    assert events and events[-1]["type"] == "run_end", [e["type"] for e in events][-5:]
    return events


def _text_chars(value: Any) -> int:
    """Characters of every string in a request's messages: a provider counting one token per character."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    return 0


def _per_char_usage(request: Any) -> int:
    body = request.body or {}
    return _text_chars(body.get("messages", [])) + _text_chars(body.get("system", "")) + 4 * len(
        body.get("messages", []))


def _first_user_text(body: dict[str, Any]) -> str:
    for message in body.get("messages", []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content)
    return ""


def _skip_without(package: str) -> None:
    pytest.importorskip(package)
    pytest.importorskip("rlm_env_local")


@pytest.mark.parametrize(("model", "protocol", "package"), ROUTES)
def test_a_budget_too_small_for_one_turn_is_no_answer_exit_6(scripted_llm, tmp_path, capsys, model, protocol,
                                                              package):
    _skip_without(package)
    _config(tmp_path, scripted_llm.base_url(protocol))
    scripted_llm.script([Reply.text("should never be asked")])
    code = cli.main(["run", "hi", "--model", model, "--token-budget", "10"])
    err = capsys.readouterr().err
    assert code == 6, err
    assert "rlm: error: no answer: Token budget exhausted" in err and "Traceback" not in err
    assert scripted_llm.requests == []  # nothing was spent
    end = _trajectory(tmp_path)[-1]
    assert end["error_type"] == "BudgetExceeded" and end["token_usage"]["total"] == 0


@pytest.mark.parametrize(("model", "protocol", "package"), ROUTES)
def test_a_provider_counting_a_token_per_character_stays_within_the_token_budget(
        scripted_llm, tmp_path, capsys, model, protocol, package):
    """CJK-like counting (one token per character, ~4x the usual) while the model keeps working."""
    _skip_without(package)
    _config(tmp_path, scripted_llm.base_url(protocol))
    budget = 30_000

    def script(request: Any) -> Reply:
        tokens = _per_char_usage(request)
        cap = (request.body or {}).get("max_tokens") or (request.body or {}).get("max_completion_tokens") or 50
        if "answer now" in json.dumps(request.body).lower() or len(scripted_llm.requests) > 40:
            return Reply.text("数据分析结果: 42", input_tokens=tokens, output_tokens=min(cap, 20))
        return Reply.tool_calls(("execute_code", {"code": "print('数据' * 200)"}), input_tokens=tokens,
                                output_tokens=min(cap, 30))

    scripted_llm.script(script)
    code = cli.main(["run", "分析数据 " * 50, "--model", model, "--token-budget", str(budget), "--json"])
    captured = capsys.readouterr()
    assert code in (0, 6), captured.err
    result = json.loads(captured.out)
    assert result["total_tokens"] <= budget, result["total_tokens"]
    assert "Traceback" not in captured.err
    end = _trajectory(tmp_path)[-1]
    assert end["token_usage"]["total"] == result["total_tokens"]
    if code == 0:
        assert result["response"].strip() and result["limit_hit"] == "token_budget"
    else:
        assert "rlm: error: no answer" in captured.err


def test_the_cost_limit_holds_and_the_forced_turn_stays_inside_it(scripted_llm, tmp_path, capsys):
    _skip_without("rlm_backend_openai")
    model = "openai/gpt-4o-mini"
    _config(tmp_path, scripted_llm.openai_base_url,
            f'[pricing."{model}"]\ninput_per_mtok = 100.0\noutput_per_mtok = 200.0\n')
    limit = 0.05

    def script(request: Any) -> Reply:
        tokens = 2 * _per_char_usage(request)  # twice what a character count gives
        if "answer now" in json.dumps(request.body).lower():
            return Reply.text("best so far", input_tokens=tokens, output_tokens=10)
        return Reply.tool_calls(("execute_code", {"code": "print(1)"}), input_tokens=tokens, output_tokens=10)

    scripted_llm.script(script)
    code = cli.main(["run", "loop", "--model", model, "--cost-limit", str(limit), "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code in (0, 6), captured.err
    assert result["total_cost_usd"] is not None and result["total_cost_usd"] <= limit, result["total_cost_usd"]
    assert result["limit_hit"] == "cost_limit"
    _trajectory(tmp_path)


@pytest.mark.parametrize(("model", "protocol", "package"), ROUTES)
def test_one_failing_query_of_a_batch_comes_back_as_its_error(scripted_llm, tmp_path, capsys, model, protocol,
                                                              package):
    _skip_without(package)
    _config(tmp_path, scripted_llm.base_url(protocol))

    def script(request: Any) -> Reply:
        asked = _first_user_text(request.body or {})
        if asked == "query-2":  # the sub-call of query 2
            return Reply.error(400, "this request was rejected (test)", code="invalid_request_error")
        if asked.startswith("query-"):
            return Reply.text("sub answer")
        text = json.dumps(request.body)
        if '"role": "tool"' in text or "tool_result" in text:
            return Reply.text("done: three answers and one error")
        return Reply.tool_calls(("rlm_batch_complete", {"queries": [f"query-{i}" for i in range(4)]}))

    scripted_llm.script(script)
    code = cli.main(["run", "fan out", "--model", model, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["response"] == "done: three answers and one error"
    events = _trajectory(tmp_path)
    results = [e for e in events if e["type"] == "tool_results"]
    content = json.loads(results[-1]["tool_results"][0]["content"])
    assert content.count("sub answer") == 3 and sum(1 for c in content if str(c).startswith("error:")) == 1
    failed = [e for e in events if e["type"] == "call_end" and e.get("error")]
    assert len(failed) == 1 and failed[0]["depth"] == 1


# --- Ctrl-C --------------------------------------------------------------------------------------


def _spawn(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env.update({"OPENAI_API_KEY": "sk-test", "PYTHONUNBUFFERED": "1"})
    return subprocess.Popen([sys.executable, "-m", "rlm", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_request(server: Any, count: int = 1, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while len(server.requests) < count:
        assert time.monotonic() < end, "the run never reached the server"
        time.sleep(0.05)


@pytest.mark.parametrize("presses", [1, 2], ids=["one-ctrl-c", "two-ctrl-c"])
@pytest.mark.parametrize("command", ["run", "agent"])
def test_ctrl_c_ends_with_one_line_run_end_and_exit_130(scripted_llm, tmp_path, command, presses):
    _skip_without("rlm_backend_openai")
    _config(tmp_path, scripted_llm.openai_base_url)
    scripted_llm.script(lambda request: Reply.slow(60, Reply.text("too late")))
    proc = _spawn(tmp_path, command, "take your time", "--model", "openai/gpt-4o-mini")
    try:
        _wait_for_request(scripted_llm)
        time.sleep(0.3)
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and ("rlm: cancelled" in err or "rlm: interrupted" in err), err
    end = _trajectory(tmp_path)[-1]
    assert end["answer_source"] == "cancelled" and end["error"], end


@pytest.mark.parametrize(("model", "protocol", "package"), ROUTES)
def test_a_hung_server_under_a_short_run_timeout_is_no_answer_exit_6(scripted_llm, tmp_path, capsys, model,
                                                                      protocol, package):
    """The run's deadline bounds every request (the read timeout never outlasts it): a server that never
    answers ends the run at its timeout with no answer (exit 6), not an empty answer with exit 0."""
    _skip_without(package)
    _config(tmp_path, scripted_llm.base_url(protocol))
    scripted_llm.script(lambda request: Reply.hang())
    started = time.monotonic()
    code = cli.main(["run", "hi", "--model", model, "--timeout", "4"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 6, err
    assert "rlm: error: no answer: Run timeout reached" in err and "Traceback" not in err
    assert elapsed < 12, f"the run took {elapsed:.1f}s past its 4s timeout"
    end = _trajectory(tmp_path)[-1]
    assert end["error_type"] == "BudgetExceeded" and end["limit_hit"] == "timeout"
