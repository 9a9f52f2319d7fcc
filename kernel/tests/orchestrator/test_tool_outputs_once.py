"""Tool outputs are stored once in a trajectory (schema version 2) and every reader puts them back.

An ``llm_call`` prompt refers to a tool output already in the conversation's ``tool_results`` event
(``{"role": "tool", "tool_call_id": ID, "ref": "tool_results"}``) instead of copying it; a tool message
whose content is not that output (compaction cut it first) stays inline.  ``read_trajectory`` and
``rlm logs --json`` show the prompts as version 1 wrote them, and version 1 files read as before.
"""

from __future__ import annotations

import json

from rlm import tool
from rlm.commands.logs import show
from rlm.events import TOOL_OUTPUT_REF, PromptResolver
from rlm.trajectory import message_json, read_trajectory
from rlm.types import ToolCall


@tool
async def fetch(n: int) -> str:
    """A long, recognisable output."""
    return f"OUTPUT-{n}-" + "z" * 1200


def script(request):
    """Three turns of two parallel calls each, then the answer."""
    done = sum(1 for m in request.messages if m.role == "tool")
    if done < 6:
        return [ToolCall(id=f"t{done}", name="fetch", arguments={"n": done}),
                ToolCall(id=f"t{done + 1}", name="fetch", arguments={"n": done + 1})]
    return "all fetched"


def raw_events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def the_file(tmp_path, result):
    return tmp_path / "logs" / f"{result.trajectory_id}.jsonl"


def test_each_tool_output_is_written_once_and_read_back_whole(make_rlm, tmp_path, capsys):
    rlm, backend = make_rlm(script, protocol="tools", tools=[fetch], token_budget=10**7)
    result = rlm.completion_sync("fetch six things")
    assert result.success, result.error
    path = the_file(tmp_path, result)
    text = path.read_text(encoding="utf-8")
    for n in range(6):
        assert text.count(f"OUTPUT-{n}-") == 1  # in its tool_results event only

    raw = raw_events(path)
    tool_msgs = [m for e in raw if e["type"] == "llm_call" for m in e["prompt"] if m["role"] == "tool"]
    assert len(tool_msgs) == 6
    assert all(m == {"role": "tool", "tool_call_id": m["tool_call_id"], "ref": TOOL_OUTPUT_REF} for m in tool_msgs)

    # the readers give every prompt as the model got it: the new messages of each request, inline
    events = read_trajectory(str(path))
    prompts = [e["prompt"] for e in events if e["type"] == "llm_call"]
    sent = [request.messages for request in backend.requests]
    for prompt, messages in zip(prompts, sent):
        assert prompt == [message_json(m) for m in messages[len(messages) - len(prompt):]]
    assert sum(1 for p in prompts for m in p if m["role"] == "tool" and m["content"].startswith('"OUTPUT-')) == 6

    assert show(result.trajectory_id, log_dir=str(tmp_path / "logs"), json_output=True) == 0
    assert json.loads(capsys.readouterr().out) == events

    # the in-memory events are the file's (references included), and resolve to the same
    assert [dict(e) for e in result.events] == raw
    assert PromptResolver().resolve_all(result.events) == events


def test_a_tool_output_cut_before_it_was_sent_stays_inline(make_rlm, tmp_path):
    """Four parallel outputs in a small context window: compaction cuts the older new ones before the call
    that sends them, so their prompt messages differ from tool_results and are written inline."""

    @tool
    async def fetch_long(n: int) -> str:
        """A longer output."""
        return f"LONG-{n}-" + "z" * 6000

    def four(request):
        if any(m.role == "tool" for m in request.messages):
            return "done"
        return [ToolCall(id=f"t{i}", name="fetch_long", arguments={"n": i}) for i in range(4)]

    rlm, backend = make_rlm(four, protocol="tools", tools=[fetch_long], context_window=4000, token_budget=10**7)
    result = rlm.completion_sync("fetch four things")
    assert result.success, result.error
    assert any(e["type"] == "context_compacted" for e in result.events)
    raw = raw_events(the_file(tmp_path, result))
    (last,) = [e for e in raw if e["type"] == "llm_call"][-1:]
    inline = [m for m in last["prompt"] if "content" in m]
    refs = [m for m in last["prompt"] if m.get("ref") == TOOL_OUTPUT_REF]
    assert inline and refs
    assert all("removed to fit the context window" in m["content"] for m in inline)

    events = read_trajectory(str(the_file(tmp_path, result)))
    prompt = [e for e in events if e["type"] == "llm_call"][-1]["prompt"]
    messages = backend.requests[-1].messages
    assert prompt == [message_json(m) for m in messages[len(messages) - len(prompt):]]


def v1_trajectory() -> list[dict]:
    common = {"v": 1, "trajectory_id": "old", "parent_call_id": None, "sub_call_type": None, "depth": 0,
              "timestamp": 1.0}
    return [
        {"type": "run_start", "call_id": "c0", **common, "prompt": "go", "model": "m"},
        {"type": "llm_call", "call_id": "c0", **common, "model": "m", "prompt": [{"role": "user", "content": "go"}],
         "response": "", "tool_calls": [{"id": "t0", "name": "fetch", "arguments": {}}]},
        {"type": "tool_results", "call_id": "c0", **common,
         "tool_results": [{"call_id": "t0", "name": "fetch", "content": "\"out\"", "is_error": False}]},
        {"type": "llm_call", "call_id": "c0", **common, "model": "m",
         "prompt": [{"role": "tool", "content": "\"out\"", "tool_call_id": "t0"}], "response": "done"},
        {"type": "run_end", "call_id": "c0", **common, "response": "done"},
    ]


def test_a_version_1_trajectory_reads_as_before(tmp_path):
    events = v1_trajectory()
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    assert read_trajectory(str(path)) == events
    resolver = PromptResolver()
    assert all(resolver.resolve(e) is e for e in events)


def test_a_version_2_trajectory_reads_as_its_version_1_twin(tmp_path):
    v1 = v1_trajectory()
    v2 = json.loads(json.dumps(v1))
    v2[3]["prompt"] = [{"role": "tool", "tool_call_id": "t0", "ref": "tool_results"}]
    path = tmp_path / "new.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in v2), encoding="utf-8")
    assert read_trajectory(str(path)) == v1
    assert v2[3]["prompt"][0].get("ref") == "tool_results"  # the reader copied, never changed, the event


def test_a_reference_without_its_tool_results_says_so():
    ref = {"role": "tool", "tool_call_id": "t9", "ref": "tool_results"}
    (message,) = PromptResolver().resolve({"type": "llm_call", "call_id": "c0", "prompt": [ref]})["prompt"]
    assert message["ref"] == "tool_results"
    assert "t9" in message["content"] and "not in this trajectory" in message["content"]


def test_references_are_per_conversation():
    """Two conversations (a call and its sub-call) may use the same tool call id."""
    events = [
        {"type": "tool_results", "call_id": "a", "tool_results": [{"call_id": "t0", "content": "A"}]},
        {"type": "tool_results", "call_id": "b", "tool_results": [{"call_id": "t0", "content": "B"}]},
        {"type": "llm_call", "call_id": "b", "prompt": [{"role": "tool", "tool_call_id": "t0", "ref": "tool_results"}]},
        {"type": "llm_call", "call_id": "a", "prompt": [{"role": "tool", "tool_call_id": "t0", "ref": "tool_results"}]},
    ]
    resolved = PromptResolver().resolve_all(events)
    assert resolved[2]["prompt"] == [{"role": "tool", "content": "B", "tool_call_id": "t0"}]
    assert resolved[3]["prompt"] == [{"role": "tool", "content": "A", "tool_call_id": "t0"}]
