"""The response cache end to end: `rlm run` in two processes with `[rlm] cache = "sqlite"`, the real openai SDK
against the scripted server.  The second process's identical request is answered from the cache (no
request reaches the server), costs 0 and is marked in its trajectory; `rlm cache stats|clear` see it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_testing.server import Reply


def _rlm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env.update({"OPENAI_API_KEY": "sk-test", "HOME": str(tmp_path)})
    return subprocess.run([sys.executable, "-m", "rlm", *args], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120)


def _events(tmp_path: Path, trajectory_id: str) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "logs" / f"{trajectory_id}.jsonl").read_text().splitlines()]


def test_a_repeated_request_is_answered_from_the_cache_in_another_process(scripted_llm, tmp_path):
    pytest.importorskip("rlm_backend_openai")
    pytest.importorskip("rlm_cache_sqlite")
    db = tmp_path / "responses.sqlite3"
    (tmp_path / "rlm.toml").write_text(
        f'[rlm]\napi_base = "{scripted_llm.base_url("openai")}"\nenvironment = "local"\nprotocol = "tools"\n'
        'cache = "sqlite"\n[plugins.cache-sqlite]\n'
        f'path = "{db}"\n[pricing."gpt-4o-mini"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n')
    scripted_llm.script([Reply.text("Paris", input_tokens=500, output_tokens=5)])
    args = ("run", "What is the capital of France?", "--model", "openai/gpt-4o-mini", "--json")

    first = _rlm(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert len(scripted_llm.requests) == 1
    one = json.loads(first.stdout)
    assert one["response"] == "Paris" and one["total_cost_usd"] == pytest.approx((500 * 1.0 + 5 * 2.0) / 1e6)

    second = _rlm(tmp_path, *args)  # another process, the same request: the file answers it
    assert second.returncode == 0, second.stderr
    assert len(scripted_llm.requests) == 1  # nothing more reached the provider
    two = json.loads(second.stdout)
    assert two["response"] == "Paris" and two["total_cost_usd"] == 0 and two["total_tokens"] == 0
    (call,) = [e for e in _events(tmp_path, two["trajectory_id"]) if e["type"] == "llm_call"]
    assert call["cached"] is True and call["cost"] == 0
    assert "cached" not in [e for e in _events(tmp_path, one["trajectory_id"]) if e["type"] == "llm_call"][0]

    stats = _rlm(tmp_path, "cache", "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    numbers = json.loads(stats.stdout)
    assert numbers["entries"] == 1 and numbers["hits"] == 1
    cleared = _rlm(tmp_path, "cache", "clear")
    assert cleared.returncode == 0 and "removed 1" in cleared.stdout

    before = len(scripted_llm.requests)
    scripted_llm.script([Reply.text("Paris again")])
    third = _rlm(tmp_path, *args)  # the cache is empty again: the provider answers
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["response"] == "Paris again" and len(scripted_llm.requests) == before + 1


def test_a_different_temperature_is_a_different_request(scripted_llm, tmp_path):
    pytest.importorskip("rlm_backend_openai")
    pytest.importorskip("rlm_cache_sqlite")
    (tmp_path / "rlm.toml").write_text(
        f'[rlm]\napi_base = "{scripted_llm.base_url("openai")}"\nenvironment = "local"\nprotocol = "tools"\n'
        f'cache = "sqlite"\n[plugins.cache-sqlite]\npath = "{tmp_path / "c.sqlite3"}"\n')
    scripted_llm.script([Reply.text("one"), Reply.text("two")])
    base = ("run", "Say a word", "--model", "openai/gpt-4o-mini")
    assert _rlm(tmp_path, *base, "--temperature", "0").returncode == 0
    assert _rlm(tmp_path, *base, "--temperature", "1").returncode == 0
    assert len(scripted_llm.requests) == 2  # not answered from the first one's entry
