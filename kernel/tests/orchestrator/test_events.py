"""The trajectory event schema (``rlm.events``): every event a real run writes matches it.

Runs with the scripted fake backend cover both protocols, sub-calls (``llm_query`` from the REPL,
``rlm_sub_complete`` from a tool), limits, a forced turn without an answer, a repetition, context
compaction and a backend error; every event written is validated against ``json_schema()``, and an
event type or field without a declaration in ``rlm.events`` fails here.
"""

from __future__ import annotations

import json

import pytest
from rlm import cli, hookimpl
from rlm.errors import BackendError
from rlm.events import (
    COMMON_FIELDS,
    EVENT_TYPES,
    SCHEMA_VERSION,
    describe,
    fields_of,
    json_schema,
    llm_action,
    repl_execution_fields,
)
from rlm.progress import ProgressPrinter
from rlm.trajectory import read_trajectory
from rlm.types import REPLResult, ToolCall

try:
    import jsonschema
except ImportError:  # the kernel is adopting it; without it the shape checks below still run
    jsonschema = None

FAILING = "```repl\nimport no_such_module_here\n```"


def tc(name, **arguments):
    return ToolCall(id="", name=name, arguments=arguments)


def forced(request) -> bool:
    return "answer now" in request.messages[-1].text


def repl_script():
    """Top call: an llm_query sub-call, the same failing code twice (repeated_code), then code until
    max_turns; the forced last turn is only code again (no_answer).  Sub-calls answer in words."""
    top = ["```repl\nprint(llm_query('sub question'))\n```", FAILING, FAILING]
    turns = iter(range(100))

    def script(request):
        if "sub question" in request.messages[-1].text:
            return "sub answer"
        if forced(request):
            return "```repl\nprint('still working')\n```"
        turn = next(turns)
        return top[turn] if turn < len(top) else f"```repl\nprint({turn})\n```"

    return script


def tools_script(request):
    """Top call: execute_code, then a sub-call (which runs code and answers), then a tool call past the
    depth limit (refused), then a long output that makes the next turn compact the context, then text."""
    tool_msgs = [m for m in request.messages if m.role == "tool"]
    if request.messages[1].text.startswith("child task"):
        return "child done" if tool_msgs else [tc("execute_code", code="x = 2\nprint(x)")]
    step = len(tool_msgs)
    if step == 0:
        return [tc("execute_code", code="print('hello')")]
    if step == 1:
        return [tc("rlm_sub_complete", query="child task", system="be brief")]
    if step == 2:
        return [tc("execute_code", code="print('y' * 5000)")]
    if step == 3:
        return [tc("execute_code", code="print('z' * 5000)")]
    if step == 4:
        return [tc("execute_code", code="print('w' * 5000)")]
    return "the answer"


def all_events(tmp_path) -> list[dict]:
    events = []
    for path in sorted((tmp_path / "logs").glob("*.jsonl")):
        events.extend(read_trajectory(str(path)))
    return events


@pytest.fixture
def trajectories(make_rlm, tmp_path):
    """The events of several runs that between them write every kind of event the kernel has."""
    # repl protocol: llm_query, repeated_code, max_turns -> limit_hit, forced turn only code -> no_answer
    rlm, _ = make_rlm(repl_script(), protocol="repl", max_turns=5)
    result = rlm.completion_sync("count the things")
    assert not result.success and result.limit_hit == "max_turns"
    # tools protocol: execute_code, rlm_sub_complete (call_start/call_end), context_compacted
    rlm, _ = make_rlm(tools_script, protocol="tools", context_window=3000, token_budget=200_000)
    result = rlm.completion_sync("do the task")
    assert result.success, result.error
    # a sub-call refused by the depth limit (limit_hit at the parent)
    rlm, _ = make_rlm([[tc("rlm_sub_complete", query="deeper")], "answered myself"], max_depth=0)
    assert rlm.completion_sync("x").success
    # a backend error: an error event and a failed run_end
    rlm, _ = make_rlm([BackendError("provider down")])
    assert not rlm.completion_sync("x").success
    # rlm_sub_complete(context_query=...) with a context provider: context_injected
    rlm, _ = make_rlm([[tc("rlm_sub_complete", query="look it up", context_query="docs")], "sub answer", "done"])
    rlm.pm.register(_DocsProvider(), name="docs-provider")
    assert rlm.completion_sync("x").success
    return all_events(tmp_path)


class _DocsProvider:
    """A context provider plugin answering every query with one line."""

    @hookimpl
    def rlm_register_context_providers(self, register):
        class Provider:
            async def context(self, query, *, max_tokens):
                return f"docs on {query}"

        register("docs", lambda config: Provider())


def test_every_event_written_matches_the_schema(trajectories):
    kinds = {e["type"] for e in trajectories}
    # the runs above really cover the kernel's events (a new kind should be added to them too)
    assert kinds == set(EVENT_TYPES), (kinds ^ set(EVENT_TYPES))
    validator = None
    if jsonschema is not None:
        schema = json_schema()
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
    for event in trajectories:
        assert event["type"] in EVENT_TYPES, f"event type {event['type']!r} has no TypedDict in rlm.events"
        assert event["v"] == SCHEMA_VERSION
        declared = fields_of(event["type"])
        undeclared = set(event) - set(declared)
        assert not undeclared, f"{event['type']}: fields {sorted(undeclared)} are not declared in rlm.events"
        missing = EVENT_TYPES[event["type"]].__required_keys__ - set(event)
        assert not missing, f"{event['type']}: required fields {sorted(missing)} are missing"
        if validator is not None:
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(event)]
            assert not errors, (event["type"], errors)


def test_both_protocols_record_the_same_repl_execution_fields(trajectories):
    runs = [e for e in trajectories if e["type"] == "repl_execution"]
    by_protocol = {}
    starts = {e["trajectory_id"]: e["protocol"] for e in trajectories if e["type"] == "run_start"}
    for e in runs:
        by_protocol.setdefault(starts[e["trajectory_id"]], []).append(e)
    assert set(by_protocol) == {"repl", "tools"}
    keys = {frozenset(e) for e in runs}
    assert len(keys) == 1  # one shape, from one helper
    assert all(isinstance(e["duration_ms"], float) and e["duration_ms"] > 0 for e in runs)
    assert set(fields_of("repl_execution")) == set(next(iter(keys)))


def test_repl_execution_fields_of_a_result():
    result = REPLResult(output="hi\n", execution_time_ms=1.5)
    fields = repl_execution_fields("print('hi')", result, 2.34567)
    assert fields == {"code": "print('hi')", "output": "hi\n", "value": None, "error": None, "truncated": False,
                      "execution_time_ms": 1.5, "duration_ms": 2.346, "final": None, "notice": None}


def test_the_schema_is_one_of_the_event_types():
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert len(schema["oneOf"]) == len(EVENT_TYPES)
    consts = []
    for branch in schema["oneOf"]:
        body = schema["$defs"][branch["$ref"].split("/")[-1]]
        consts.append(body["properties"]["type"]["const"])
        assert set(COMMON_FIELDS) <= set(body["properties"])
        assert "v" in body["required"]
    assert consts == list(EVENT_TYPES)
    run_end = schema["$defs"]["RunEnd"]
    assert run_end["properties"]["token_usage"] == {"$ref": "#/$defs/TokenUsage"}
    assert run_end["properties"]["cost"] == {"type": ["number", "null"]}
    assert "error_type" not in run_end["required"] and "response" in run_end["required"]
    json.dumps(schema)  # plain JSON


@pytest.mark.skipif(jsonschema is None, reason="jsonschema is not installed")
def test_the_schema_rejects_a_wrong_event():
    validator = jsonschema.Draft202012Validator(json_schema())
    good = {"type": "limit_hit", "v": 1, "trajectory_id": "t", "call_id": "c", "parent_call_id": None,
            "sub_call_type": None, "depth": 0, "timestamp": 1.0, "limit": "max_turns", "message": "m"}
    assert validator.is_valid(good)
    assert validator.is_valid({**good, "extra": "fields a newer kernel adds are allowed"})
    assert not validator.is_valid({**good, "depth": "0"})
    assert not validator.is_valid({k: v for k, v in good.items() if k != "message"})
    assert not validator.is_valid({**good, "type": "no_such_event"})


def test_logs_schema_prints_the_json_schema(capsys):
    assert cli.main(["logs", "--schema"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == json_schema()
    assert out.startswith('{\n  "$schema"')  # indent=2


def test_logs_reads_a_trajectory_written_before_the_schema_version(cli_with_fake, capsys, tmp_path):
    (tmp_path / "logs").mkdir()
    common = {"trajectory_id": "20250101-000000-aaaaaaaa", "call_id": "c1", "parent_call_id": None,
              "sub_call_type": None, "depth": 0}
    old = [{"type": "run_start", **common, "timestamp": 1.0, "prompt": "old run", "model": "m"},
           {"type": "repl_execution", **common, "timestamp": 1.5, "code": "print(1)", "output": "1\n",
            "error": None, "execution_time_ms": 2.0},
           {"type": "run_end", **common, "timestamp": 2.0, "response": "1", "error": None, "total_calls": 1,
            "token_usage": {"input": 1, "output": 1, "total": 2}, "cost": 0.0, "duration_ms": 1000.0}]
    (tmp_path / "logs" / "20250101-000000-aaaaaaaa.jsonl").write_text("".join(json.dumps(e) + "\n" for e in old))
    cli_with_fake([])
    assert cli.main(["logs"]) == 0
    assert "old run" in capsys.readouterr().out
    assert cli.main(["logs", "last"]) == 0
    out = capsys.readouterr().out
    assert "repl (ok, 2.0ms): print(1)" in out and "answer: 1" in out


# --- descriptions: one function for the progress line and the agent's last action ----------------


def event(kind, **fields):
    return {"type": kind, "depth": fields.pop("depth", 0), **fields}


@pytest.mark.parametrize(("ev", "line"), [
    (event("llm_call", tool_calls=[{"name": "execute_code"}], token_usage={"total": 12}),
     "model call: execute_code (12 tokens)"),
    (event("llm_call", tool_calls=[], token_usage={"total": 3}), "model call: answer (3 tokens)"),
    (event("repl_execution", code="\n x = 1\ny = 2", error=None), "ran code: x = 1"),
    (event("repl_execution", code="boom()", error="NameError"), "ran code: boom() -> error"),
    (event("call_start", sub_call_type="llm_query", prompt="sub question"), "sub-call (llm_query): sub question"),
    (event("tool_start", tool_calls=[{"name": "a"}, {"name": "b"}]), "running a, b"),
    (event("tool_start", depth=1, tool_calls=[{"name": "a"}]), None),
    (event("limit_hit", message="max_turns: 5 turns"), "limit: max_turns: 5 turns"),
    (event("no_answer", reason="only code"), "no answer: only code"),
    (event("run_start"), None),
    (event("tool_results", tool_results=[]), None),
    (event("call_start", prompt="p" * 200), "sub-call (None): " + "p" * 80),
    (event("tool_start", tool_calls=5), "tool_start event"),  # a foreign file: never raises
])
def test_describe(ev, line):
    assert describe(ev) == line


def test_describe_numbers_model_calls_and_llm_action():
    ev = event("llm_call", tool_calls=[{"name": "FINAL"}], token_usage={"total": 1})
    assert describe(ev, number=3) == "model call 3: FINAL (1 tokens)"
    assert llm_action(ev) == "FINAL" and llm_action(event("llm_call")) == "answer"


def test_progress_and_agent_describe_alike(make_agent, tmp_path):
    import io

    stream = io.StringIO()
    printer = ProgressPrinter(stream=stream, verbose=True)
    events = [event("llm_call", tool_calls=[{"name": "execute_code"}], token_usage={"total": 5}),
              event("tool_start", tool_calls=[{"name": "execute_code"}]),
              event("repl_execution", depth=1, code="print(1)"),
              event("limit_hit", message="cost")]
    for ev in events:
        printer.rlm_trajectory_event(event=ev)
    assert stream.getvalue().splitlines() == ["model call 1: execute_code (5 tokens)", "running execute_code",
                                              "  ran code: print(1)", "limit: cost"]
    runner, _ = make_agent(["x"])
    for ev in events[1:]:
        runner._observe(ev)
        assert runner.status.last_action == describe(ev)
    runner._observe(events[0])
    assert runner.status.last_action == "execute_code"  # the model's action (also the iteration summary)


def test_recorder_writes_the_version_first_after_the_type(make_rlm, tmp_path):
    rlm, _ = make_rlm(["hi"])
    result = rlm.completion_sync("x")
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    assert all(list(e)[:2] == ["type", "v"] and e["v"] == SCHEMA_VERSION for e in events)
    assert all(e["v"] == SCHEMA_VERSION for e in result.events)
