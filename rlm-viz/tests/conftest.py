"""Fixtures of rlm-viz: hand-written trajectories (nested calls, an error, a live run)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

TASK = "Summarise the quarterly sales report"
FAILED_TASK = "Parse the broken CSV file"


def ev(type_, call_id, *, parent=None, depth=0, sub=None, ts=None, tid="t", **fields):
    return {"type": type_, "trajectory_id": tid, "call_id": call_id, "parent_call_id": parent,
            "sub_call_type": sub, "depth": depth, "timestamp": ts or time.time(), **fields}


def llm(call_id, inp, out, cost, *, model="openai/gpt-4o-mini", tool_calls=(), response="", **kw):
    return ev("llm_call", call_id, model=model, prompt=[{"role": "user", "content": "..."}], response=response,
              tool_calls=list(tool_calls), token_usage={"input": inp, "output": out, "total": inp + out},
              cost=cost, duration_ms=120.0, **kw)


def ok_run(tid: str, ts: float) -> list[dict]:
    c = {"tid": tid}
    return [
        ev("run_start", "c0", ts=ts, prompt=TASK, model="openai/gpt-4o-mini", environment="local",
           protocol="tools", **c),
        llm("c0", 100, 20, 0.001, tool_calls=[{"id": "x1", "name": "execute_code", "arguments": {"code": "1+1"}}],
            ts=ts + 1, **c),
        ev("tool_start", "c0", ts=ts + 1, tool_calls=[], **c),
        ev("repl_execution", "c0", ts=ts + 1.5, code="print(sum([1, 2]))", output="3\n", value=None, error=None,
           execution_time_ms=3.0, duration_ms=5.0, **c),
        ev("tool_results", "c0", ts=ts + 2, tool_results=[
            {"call_id": "x1", "name": "execute_code", "content": "3", "is_error": False, "duration_ms": 6.0}], **c),
        ev("call_start", "c1", parent="c0", depth=1, sub="sub_complete", ts=ts + 2.1, prompt="Find the Q3 total", **c),
        llm("c1", 50, 10, 0.002, model="anthropic/claude-3-haiku", response="Q3 total is 42", parent="c0",
            depth=1, sub="sub_complete", ts=ts + 2.5, **c),
        ev("call_start", "c2", parent="c1", depth=2, sub="llm_query", ts=ts + 2.6, prompt="deep question", **c),
        llm("c2", 30, 5, 0.0005, response="deep answer", parent="c1", depth=2, sub="llm_query", ts=ts + 2.7, **c),
        ev("call_end", "c2", parent="c1", depth=2, sub="llm_query", ts=ts + 2.8, response="deep answer",
           duration_ms=200.0, **c),
        ev("call_end", "c1", parent="c0", depth=1, sub="sub_complete", ts=ts + 3, response="Q3 total is 42",
           duration_ms=900.0, **c),
        ev("tool_results", "c0", ts=ts + 3, tool_results=[
            {"call_id": "x2", "name": "rlm_sub_complete", "content": "Q3 total is 42", "is_error": False,
             "duration_ms": 900.0}], **c),
        llm("c0", 200, 30, 0.003, response="Sales grew 12%.", ts=ts + 4, **c),
        ev("run_end", "c0", ts=ts + 4, response="Sales grew 12%.", error=None, limit_hit=None,
           answer_source="text", token_usage={"input": 380, "output": 65, "total": 445}, cost=0.0065,
           duration_ms=4000.0, **c),
    ]


def failed_run(tid: str, ts: float) -> list[dict]:
    c = {"tid": tid}
    return [
        ev("run_start", "f0", ts=ts, prompt=FAILED_TASK, model="openai/gpt-4o", environment="local",
           protocol="repl", **c),
        llm("f0", 80, 10, 0.01, model="openai/gpt-4o", ts=ts + 1, **c),
        ev("repl_execution", "f0", ts=ts + 2, code="import csv\ncsv.reader(open('x'))", output="",
           value=None, error="FileNotFoundError: [Errno 2] No such file or directory: 'x'",
           execution_time_ms=1.0, duration_ms=2.0, **c),
        ev("error", "f0", ts=ts + 3, error="HTTP 500 from provider", error_type="BackendError", where="llm_call", **c),
        ev("run_end", "f0", ts=ts + 3, response="", error="HTTP 500 from provider", error_type="BackendError",
           limit_hit=None, answer_source="error", token_usage={"input": 80, "output": 10, "total": 90}, cost=0.01,
           duration_ms=3000.0, **c),
    ]


def many_calls_run(tid: str, calls: int = 1000, *, ts: float | None = None, turns: int = 20,
                   live: bool = False) -> list[dict]:
    """A realistic large run of the tools protocol: the top call works through ``turns`` turns, each
    an ``execute_code`` whose code fans out ``llm_query_batched`` sub-calls (``calls`` calls in all,
    the top call included), then answers.  Every 97th sub-call fails, one hits a limit, turn 7's code
    raises, and the last turn answers (``run_end``; none when ``live``)."""
    ts0 = ts if ts is not None else time.time() - 3600
    clock = [ts0]

    def tick(dt: float = 0.05) -> float:
        clock[0] += dt
        return clock[0]

    c = {"tid": tid}
    events = [ev("run_start", "c0", ts=tick(), prompt="Classify the 1,000 support tickets in `context` and list the "
                 "top complaints with counts", model="openai/gpt-4o-mini", environment="local", protocol="tools", **c)]
    per_turn = max(-(-(calls - 1) // turns), 1)
    made = 1
    for turn in range(1, turns + 1):
        k = min(per_turn, calls - made)
        code = (f"tickets = context.split('\\n')[{(turn - 1) * per_turn}:{turn * per_turn}]\n"
                "labels = llm_query_batched([f'Classify this ticket: {t}' for t in tickets])\nprint(len(labels))")
        events.append(llm("c0", 2000 + 150 * turn, 180, 0.0004, response=f"Batch {turn}: classifying the next "
                          f"{k} tickets.", tool_calls=[{"id": f"x{turn}", "name": "execute_code",
                                                        "arguments": {"code": code}}], ts=tick(), **c))
        events.append(ev("tool_start", "c0", ts=tick(0.01), tool_calls=[{"id": f"x{turn}", "name": "execute_code"}],
                         **c))
        for _ in range(k):
            made += 1
            cid, sub = f"q{made}", {"parent": "c0", "depth": 1, "sub": "llm_query", **c}
            events.append(ev("call_start", cid, ts=tick(0.002), prompt=f"Classify this ticket: #{made} the app "
                             f"crashes when I upload a photo (ticket {made})", **sub))
            events.append(llm(cid, 200 + (made * 7919) % 3000, 12, 0.00005, response=f"category {made % 7}",
                              ts=tick(0.01), **sub))
            if made == 500:
                events.append(ev("limit_hit", cid, ts=tick(0.002), limit="tokens", message="token budget spent",
                                 **sub))
            ms = 8.0 + (made * 31) % 400
            if made % 97 == 0:
                events.append(ev("call_end", cid, ts=tick(0.002), error="HTTP 429: rate limited",
                                 error_type="RateLimitError", duration_ms=ms, tokens_spent=0, cost=0.0, **sub))
            else:
                events.append(ev("call_end", cid, ts=tick(0.002), response=f"category {made % 7}", duration_ms=ms,
                                 tokens_spent=312, cost=0.00005, **sub))
        error = "ValueError: ticket 137 is not text" if turn == 7 else None
        events.append(ev("repl_execution", "c0", ts=tick(), code=code, output="" if error else f"{k}\n", value=None,
                         error=error, execution_time_ms=40.0, duration_ms=45.0, final=None, **c))
        events.append(ev("tool_results", "c0", ts=tick(0.01), tool_results=[
            {"call_id": f"x{turn}", "name": "execute_code", "content": error or f"{k}", "is_error": bool(error),
             "duration_ms": 50.0}], **c))
    if live:
        return events
    answer = "Top complaints: crashes on upload (412), login loops (233), slow sync (190)."
    events.append(llm("c0", 6000, 90, 0.001, response=answer, ts=tick(), **c))
    events.append(ev("run_end", "c0", ts=tick(), response=answer, error=None, limit_hit=None, answer_source="text",
                     total_calls=calls, token_usage={"input": 400_000, "output": 20_000, "total": 420_000}, cost=0.07,
                     duration_ms=(clock[0] - ts0) * 1000, **c))
    return events


def write(path: Path, events: list[dict], *, torn: str = "") -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + torn, encoding="utf-8")
    return path


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    now = time.time()
    write(d / "20250101-000000-aaaaaaaa.jsonl", ok_run("20250101-000000-aaaaaaaa", now - 7200))
    write(d / "20250101-010000-bbbbbbbb.jsonl", failed_run("20250101-010000-bbbbbbbb", now - 3600))
    return d


@pytest.fixture
def traj():
    """The trajectory builders of this file (tests cannot import conftest under --import-mode=importlib)."""
    import types

    return types.SimpleNamespace(TASK=TASK, FAILED_TASK=FAILED_TASK, ok_run=ok_run, failed_run=failed_run,
                                 write=write, ev=ev, many_calls_run=many_calls_run)
