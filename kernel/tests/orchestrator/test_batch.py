"""RLM.batch in Python: results keyed by id, appended as they end, a re-run skips what is done."""

from __future__ import annotations

import asyncio
import json


def test_rlm_batch_answers_each_item_and_resumes(make_rlm, tmp_path):
    rlm, backend = make_rlm(lambda request: "answer: " + request.messages[-1].text)
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "x", "prompt": "one"}\n{"prompt": "two"}\n')
    out = tmp_path / "out.jsonl"
    summary = asyncio.run(rlm.batch(source, out, concurrency=2))
    assert (summary.ok, summary.failed, summary.skipped, summary.interrupted) == (2, 0, 0, False)
    lines = {line["id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert lines["x"]["response"] == "answer: one" and lines["2"]["response"] == "answer: two"
    asked = len(backend.requests)
    again = asyncio.run(rlm.batch(source, out))
    assert (again.ok, again.skipped) == (0, 2) and len(backend.requests) == asked  # nothing asked twice


def test_a_bad_per_item_limit_fails_that_item_alone(make_rlm, tmp_path):
    rlm, _backend = make_rlm(lambda request: "fine")
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "bad", "prompt": "a", "max_turns": 0}\n{"id": "good", "prompt": "b"}\n')
    out = tmp_path / "out.jsonl"
    summary = asyncio.run(rlm.batch(source, out))
    lines = {line["id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert (summary.ok, summary.failed) == (1, 1)
    assert lines["bad"]["status"] == "failed" and "max_turns" in lines["bad"]["error"]
    assert lines["good"]["status"] == "ok"
