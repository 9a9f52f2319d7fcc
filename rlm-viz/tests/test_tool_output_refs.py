"""The dashboard shows an ``llm_call`` prompt whose tool outputs are stored by reference (schema v2) as it
shows the same prompt written inline (v1), also when the file is read a few lines at a time."""

from __future__ import annotations

import json

import pytest
from rlm_viz.reader import TrajectoryLoader

OUTPUT = json.dumps("row " * 300)


def events(*, by_reference: bool) -> list[dict]:
    common = {"trajectory_id": "t", "parent_call_id": None, "sub_call_type": None, "depth": 0, "timestamp": 1.0}
    tool_msg = ({"role": "tool", "tool_call_id": "t0", "ref": "tool_results"} if by_reference
                else {"role": "tool", "content": OUTPUT, "tool_call_id": "t0"})
    return [
        {"type": "run_start", "call_id": "c0", **common, "prompt": "go", "model": "m"},
        {"type": "llm_call", "call_id": "c0", **common, "model": "m", "prompt": [{"role": "user", "content": "go"}],
         "response": "", "tool_calls": [{"id": "t0", "name": "read", "arguments": {}}],
         "token_usage": {"input": 1, "output": 1, "total": 2}, "cost": 0.0, "duration_ms": 1.0},
        {"type": "tool_results", "call_id": "c0", **common,
         "tool_results": [{"call_id": "t0", "name": "read", "content": OUTPUT, "is_error": False, "duration_ms": 1.0}]},
        {"type": "llm_call", "call_id": "c0", **common, "model": "m", "prompt": [tool_msg], "response": "done",
         "tool_calls": [], "token_usage": {"input": 1, "output": 1, "total": 2}, "cost": 0.0, "duration_ms": 1.0},
        {"type": "run_end", "call_id": "c0", **common, "response": "done", "error": None},
    ]


def prompts(path, max_bytes: int | None) -> list[str]:
    loader = TrajectoryLoader(str(path))
    while loader.update(max_bytes):
        pass
    return [s.text("prompt") for c in loader.snapshot().walk() for s in c.steps if s.type == "llm_call"]


@pytest.mark.parametrize("max_bytes", [None, 64])
def test_a_referenced_tool_output_shows_as_the_inline_one(tmp_path, max_bytes):
    v1, v2 = tmp_path / "v1.jsonl", tmp_path / "v2.jsonl"
    v1.write_text("".join(json.dumps(e) + "\n" for e in events(by_reference=False)), encoding="utf-8")
    v2.write_text("".join(json.dumps(e) + "\n" for e in events(by_reference=True)), encoding="utf-8")
    shown = prompts(v2, max_bytes)
    assert shown == prompts(v1, max_bytes)
    assert "row row" in shown[1]
