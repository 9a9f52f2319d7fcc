"""Sub-LLM calls: nesting, inherited budgets, batches sharing a budget, one trajectory tree."""

from __future__ import annotations

import json

from rlm.trajectory import read_trajectory
from rlm.types import ToolCall


def tc(name, **arguments):
    return ToolCall(id="", name=name, arguments=arguments)


def last_user(request):
    return [m for m in request.messages if m.role in ("user",)][-1].text


def test_nested_sub_calls_three_deep_form_one_tree(make_rlm, tmp_path):
    def script(request):
        user = request.messages[1].text
        has_results = any(m.role == "tool" for m in request.messages)
        level = {"top": 0, "L1": 1, "L2": 2, "L3": 3}[user.split()[0]]
        if level < 3 and not has_results:
            return [tc("rlm_sub_complete", query=f"L{level + 1} please")]
        if level == 3:
            return "leaf"
        inner = [m for m in request.messages if m.role == "tool"][-1].content
        return f"L{level}({json.loads(inner)})"

    rlm, backend = make_rlm(script, token_budget=100_000, max_depth=3)
    result = rlm.completion_sync("top task")
    assert result.success, result.error
    assert result.response == "L0(L1(L2(leaf)))"
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    starts = {e["call_id"]: e for e in events if e["type"] == "call_start"}
    assert sorted(e["depth"] for e in starts.values()) == [1, 2, 3]
    top_id = next(e["call_id"] for e in events if e["type"] == "run_start")
    # walk the tree from the deepest call back to the top
    deepest = max(starts.values(), key=lambda e: e["depth"])
    chain, node = [], deepest
    while node is not None:
        chain.append(node["depth"])
        node = starts.get(node["parent_call_id"])
    assert chain == [3, 2, 1]
    assert starts[[c for c, e in starts.items() if e["depth"] == 1][0]]["parent_call_id"] == top_id
    assert all(e["sub_call_type"] == "rlm_sub_complete" for e in starts.values())
    # budgets: each child got at most half of what its parent had left
    limits = sorted((e["depth"], e["token_limit"]) for e in starts.values())
    assert limits[0][1] <= 50_000 and limits[1][1] <= limits[0][1] // 2 + 1 and limits[2][1] <= limits[1][1] // 2 + 1


def test_depth_limit_is_reported_to_the_model_not_thrown(make_rlm):
    rlm, backend = make_rlm([[tc("rlm_sub_complete", query="deeper")], "answered myself"], max_depth=0)
    result = rlm.completion_sync("go")
    assert result.success and result.response == "answered myself"
    error = json.loads(backend.requests[1].messages[-1].content)["error"]
    assert "Recursion depth exceeded" in error and "max_depth" in error


def test_max_subcalls_per_turn(make_rlm):
    rlm, backend = make_rlm(
        [[tc("rlm_batch_complete", queries=["a", "b", "c"])], "fine"], max_subcalls=2)
    result = rlm.completion_sync("go")
    error = json.loads(backend.requests[1].messages[-1].content)["error"]
    assert "Sub-call limit" in error and result.response == "fine"


def test_no_sub_calls_removes_the_tools(make_rlm):
    rlm, backend = make_rlm(["ok"], sub_calls=False)
    rlm.completion_sync("go")
    names = {t.name for t in backend.requests[0].tools}
    assert "rlm_sub_complete" not in names and "execute_code" in names


def test_batch_shares_one_budget_and_child_spend_is_charged_to_ancestors(make_rlm):
    def script(request):
        user = request.messages[1].text
        if user.startswith("q"):
            return f"answer {user}"
        if any(m.role == "tool" for m in request.messages):
            return "combined"
        return [tc("rlm_batch_complete", queries=[f"q{i}" for i in range(5)])]

    rlm, backend = make_rlm(script, token_budget=20_000, backend_kwargs={"usage": (100, 50)})
    result = rlm.completion_sync("go")
    assert result.response == "combined"
    answers = json.loads([m for m in backend.requests[-1].messages if m.role == "tool"][-1].content)
    assert answers == [f"answer q{i}" for i in range(5)]
    assert result.total_calls == 7 and result.total_tokens == 7 * 150  # children charged to the run
    starts = [e for e in result.events if e["type"] == "call_start"]
    assert len(starts) == 5
    # the batch got half of what was left, split evenly between its calls
    assert sum(e["token_limit"] for e in starts) <= 10_000
    assert len({e["token_limit"] for e in starts}) == 1


def test_batch_cannot_oversubscribe_shared_budget(make_rlm):
    def script(request):
        user = request.messages[1].text
        if user.startswith("q"):
            return "x"
        if any(m.role == "tool" for m in request.messages):
            return "done"
        return [tc("rlm_batch_complete", queries=[f"q{i}" for i in range(8)])]

    rlm, backend = make_rlm(script, token_budget=20_000, backend_kwargs={"usage": (50, 10)})
    result = rlm.completion_sync("go")
    starts = [e for e in result.events if e["type"] == "call_start"]
    assert sum(e["token_limit"] for e in starts) <= 10_000  # half of the run's budget, shared by 8
    child_requests = [r for r in backend.requests if r.messages[1].text.startswith("q")]
    for r in child_requests:  # each child asked for no more output than its share leaves
        assert r.max_tokens is not None and r.max_tokens <= starts[0]["token_limit"]
    assert result.response == "done"
