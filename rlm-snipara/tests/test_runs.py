"""Whole runs through the kernel with a fake LLM: decompose/multi_query via sub-calls, and the key's secrecy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rlm_snipara.providers import heuristic_split, parse_query_list


def _trajectory_text(log_dir: Path) -> str:
    files = sorted(log_dir.glob("*.jsonl"))
    assert files, f"no trajectory in {log_dir}"
    return "\n".join(f.read_text() for f in files)


def _tool_results(log_dir: Path) -> list[dict]:
    out = []
    for line in _trajectory_text(log_dir).splitlines():
        event = json.loads(line)
        if event["type"] == "tool_results":
            out.extend(event["tool_results"])
    return out


def test_decompose_asks_the_run_llm_through_a_sub_call(make_rlm, local_config, h, tmp_path):
    script = [[h.call("decompose", query="How do login and password storage work?")],
              '```json\n["authentication tokens", "password hashing"]\n```',
              "done"]
    rlm, backend = make_rlm(script, local_config())
    result = h.run(rlm.completion("plan it"))
    assert result.response == "done"
    [tool_result] = _tool_results(tmp_path / "logs")
    payload = json.loads(tool_result["content"])
    assert payload["source"] == "llm"
    assert [s["query"] for s in payload["sub_queries"]] == ["authentication tokens", "password hashing"]
    assert payload["sub_queries"][0]["sections"][0]["section"] == "Authentication > Tokens"
    assert payload["sub_queries"][1]["sections"][0]["section"] == "Authentication > Passwords"
    sub_request = backend.requests[1]
    assert "Split the question below" in "\n".join(m.text for m in sub_request.messages)


def test_decompose_falls_back_when_the_llm_answer_is_unusable(make_rlm, local_config, h, tmp_path):
    script = [[h.call("decompose", query="auth tokens and database caching")], "no idea, sorry", "done"]
    rlm, _ = make_rlm(script, local_config())
    h.run(rlm.completion("plan it"))
    payload = json.loads(_tool_results(tmp_path / "logs")[0]["content"])
    assert payload["source"] == "heuristic"
    assert [s["query"] for s in payload["sub_queries"]] == ["auth tokens", "database caching"]


def test_multi_query_shares_one_budget_and_removes_duplicates(local_config, h):
    tools = h.tools_for(local_config())
    out = h.run(tools["multi_query"].handler(queries=["authentication", "authentication tokens", "redis"],
                                              max_tokens=900, ctx=None))
    assert out["tokens"] <= 900
    seen = [(r["file"], r["line"]) for q in out["queries"] for r in q["results"]]
    assert len(seen) == len(set(seen))
    sections = [r["section"] for q in out["queries"] for r in q["results"]]
    assert sections.count("Database > Caching") == 1  # found by "authentication" first, not repeated for "redis"
    assert sum(q["duplicates_removed"] for q in out["queries"]) >= 1


def test_multi_query_answers_each_query_with_sub_calls(make_rlm, local_config, h, tmp_path):
    def script(request):
        text = "\n".join(m.text for m in request.messages)
        if "Question: " in text and "documentation excerpts" in text:
            return "JWT, one hour" if "tokens" in text.split("Question: ")[1].splitlines()[0] else "argon2"
        if any(m.role == "tool" for m in request.messages):
            return "done"
        return [h.call("multi_query", queries=["authentication tokens", "password hashing"], answer=True)]

    rlm, _ = make_rlm(script, local_config())
    assert h.run(rlm.completion("q")).response == "done"
    payload = json.loads(_tool_results(tmp_path / "logs")[0]["content"])
    assert [q["answer"] for q in payload["queries"]] == ["JWT, one hour", "argon2"]
    assert payload["queries"][0]["context"]["results"]


def test_parse_query_list_and_heuristic_split():
    assert parse_query_list('Sure: ["a", "b", "a"] ok') == ["a", "b"]
    assert parse_query_list("nothing") == []
    assert heuristic_split("auth; database, and caching?") == ["auth", "database", "caching"]


@pytest.fixture
def captured_logs():
    import structlog
    from rlm import logging as rlm_logging

    stream = io.StringIO()
    rlm_logging.configure(level="debug", stream=stream)
    yield stream
    structlog.reset_defaults()


def test_key_never_reaches_trajectories_or_logs(make_rlm, hosted_config, standin, h, tmp_path, captured_logs,
                                                capfd, monkeypatch):
    monkeypatch.setenv("RLM_LOG_LEVEL", "debug")
    standin.responder = standin.ok({"results": [{"content": "auth uses JWT"}]})
    config = hosted_config(memory_enabled=True)
    script = [[h.call("context_query", query="auth"), h.call("rlm_remember", content="note")], "done"]
    rlm, _ = make_rlm(script, config)
    assert h.run(rlm.completion("how does auth work?")).response == "done"
    # then the service refuses the key (its error body echoes the key back)
    standin.responder = standin.status(401, {"detail": f"key {h.KEY} revoked"})
    rlm, _ = make_rlm([[h.call("search", pattern="TODO")], "done"], config)
    assert h.run(rlm.completion("find todos")).response == "done"

    assert len(standin.requests) == 3 and all(r["headers"]["x-api-key"] == h.KEY for r in standin.requests)
    trajectory = _trajectory_text(tmp_path / "logs")
    assert "auth uses JWT" in trajectory and "Invalid API key" in trajectory
    assert h.KEY not in trajectory
    logs = captured_logs.getvalue()
    assert "snipara_request" in logs and "snipara_http_error" in logs
    assert h.KEY not in logs
    out, err = capfd.readouterr()
    assert h.KEY not in out + err
    assert h.KEY not in repr(config)
