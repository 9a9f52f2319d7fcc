"""A backend error met inside a sub-call (README, "Budgets are guarantees", last paragraph):

- an error that would fail every call (a bad key, no provider, an unknown model) ends the whole run
  with that error: the top call is not asked again, whichever way the sub-call was made;
- an ordinary failure (a rejected request, a prompt too long for the model, an outage that outlasted
  the retries, rate limits) comes back to the parent as that sub-call's error, and the parent goes on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rlm import cli
from rlm.errors import (
    AuthenticationError,
    BackendError,
    ContextTooLongError,
    ModelNotFoundError,
    NoProvidersConfigured,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm.trajectory import read_trajectory
from rlm.types import ToolCall

FAKE = ["--model", "fake-model", "--backend", "fake", "--env", "fake"]

FATAL = [
    pytest.param(lambda: AuthenticationError("Invalid API key (test)", fix="check OPENAI_API_KEY"), id="bad-key"),
    pytest.param(lambda: ModelNotFoundError("model 'fake-model' does not exist (test)"), id="unknown-model"),
    pytest.param(lambda: NoProvidersConfigured("No providers configured (test)"), id="no-provider"),
]
ORDINARY = [
    pytest.param(lambda: BackendError("the request was rejected (test)"), id="rejected"),
    pytest.param(lambda: ContextTooLongError("the prompt is too long for the model (test)"), id="too-long"),
    pytest.param(lambda: ProviderUnavailableError("the provider is down (test)"), id="outage"),
    pytest.param(lambda: RateLimitError("rate limited (test)"), id="rate-limit"),
]


def tc(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id="", name=name, arguments=arguments)


def is_sub(request) -> bool:
    return request.messages[1].text.startswith("SUB")


def top_requests(backend) -> list[Any]:
    return [r for r in backend.requests if not is_sub(r)]


def tool_errors(request) -> list[Any]:
    return [json.loads(m.content) for m in request.messages if m.role == "tool"]


def events_of(tmp_path, result) -> list[dict[str, Any]]:
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    assert events[-1]["type"] == "run_end"
    return events


# --- fatal: the run ends -------------------------------------------------------------------------------


@pytest.mark.parametrize("make_error", FATAL)
def test_a_fatal_error_in_rlm_sub_complete_ends_the_run(make_rlm, tmp_path, make_error):
    error = make_error()

    def script(request):
        if is_sub(request):
            return error
        if any(m.role == "tool" for m in request.messages):
            return "the top call went on"
        return [tc("rlm_sub_complete", query="SUB count the words")]

    rlm, backend = make_rlm(script, max_depth=2)
    result = rlm.completion_sync("go")
    assert not result.success and result.response == ""
    assert result.error_type == type(error).__name__ and result.answer_source == "error"
    assert len(top_requests(backend)) == 1  # the top call was not asked again
    assert len(backend.requests) == 2
    events = events_of(tmp_path, result)
    errors = [e for e in events if e["type"] == "error"]
    assert [(e["depth"], e["error_type"]) for e in errors] == [(1, type(error).__name__)]
    assert events[-1]["error_type"] == type(error).__name__
    assert not [e for e in events if e["type"] == "tool_results"]  # no error result went back to the model


@pytest.mark.parametrize("make_error", FATAL[:1])
def test_a_fatal_error_two_levels_down_ends_the_run(make_rlm, tmp_path, make_error):
    def script(request):
        text = request.messages[1].text
        if text.startswith("SUB2"):
            return make_error()
        if any(m.role == "tool" for m in request.messages):
            return "went on"
        if text.startswith("SUB1"):
            return [tc("rlm_sub_complete", query="SUB2 deeper")]
        return [tc("rlm_sub_complete", query="SUB1 part")]

    rlm, backend = make_rlm(script, max_depth=3)
    result = rlm.completion_sync("go")
    assert not result.success and result.error_type == "AuthenticationError"
    assert [r.messages[1].text.split()[0] for r in backend.requests] == ["go", "SUB1", "SUB2"]


@pytest.mark.parametrize("make_error", FATAL[:2])
def test_a_fatal_error_in_one_query_of_a_batch_ends_the_run(make_rlm, make_error):
    def script(request):
        text = request.messages[1].text
        if text == "SUB 2":
            return make_error()
        if is_sub(request):
            return f"answer to {text}"
        if any(m.role == "tool" for m in request.messages):
            return "the top call went on"
        return [tc("rlm_batch_complete", queries=[f"SUB {i}" for i in range(4)])]

    rlm, backend = make_rlm(script, max_depth=2, max_parallel=1)
    result = rlm.completion_sync("go")
    assert not result.success and result.error_type == type(make_error()).__name__
    assert len(top_requests(backend)) == 1


def test_a_fatal_error_in_a_sub_call_exits_4_through_the_cli(cli_with_fake, capsys, tmp_path):
    def script(request):
        if is_sub(request):
            return AuthenticationError("Invalid API key (test)", fix="check OPENAI_API_KEY")
        if any(m.role == "tool" for m in request.messages):
            return "the top call went on"
        return [tc("rlm_sub_complete", query="SUB count")]

    backend = cli_with_fake(script)
    code = cli.main(["run", "go", *FAKE, "--json"])
    out, err = capsys.readouterr()
    assert code == 4, err
    data = json.loads(out)
    assert data["success"] is False and data["error_type"] == "AuthenticationError" and data["response"] == ""
    assert len(top_requests(backend)) == 1


# In the repl protocol the error reaches the REPL code as an exception it could catch (here it does not);
# the run still ends with it once the code returns (Run.execute).


@pytest.mark.parametrize("code", ["print(llm_query('SUB what is it?'))",
                                  "print(llm_query_batched(['SUB a', 'SUB b']))",
                                  "try:\n    x = llm_query('SUB what?')\nexcept Exception:\n    FINAL('swallowed')"],
                         ids=["llm_query", "batched", "caught-by-the-code"])
def test_a_fatal_error_in_llm_query_from_repl_code_ends_the_run(make_rlm, code):
    def script(request):
        if is_sub(request):
            return AuthenticationError("Invalid API key (test)", fix="check OPENAI_API_KEY")
        if len(request.messages) > 2:
            return "FINAL(the top call went on)"
        return f"```repl\n{code}\n```"

    rlm, backend = make_rlm(script, protocol="repl", max_depth=2)
    result = rlm.completion_sync("go")
    assert not result.success and result.error_type == "AuthenticationError"
    assert len(top_requests(backend)) == 1


# --- ordinary: the parent gets the sub-call's error -------------------------------------------------------------


@pytest.mark.parametrize("make_error", ORDINARY)
def test_an_ordinary_failure_in_rlm_sub_complete_is_that_sub_calls_error(make_rlm, tmp_path, make_error):
    error = make_error()

    def script(request):
        if is_sub(request):
            return error
        results = tool_errors(request)
        if results:
            return "the sub-call failed: " + results[-1]["error"]
        return [tc("rlm_sub_complete", query="SUB count the words")]

    rlm, backend = make_rlm(script, max_depth=2)
    result = rlm.completion_sync("go")
    assert result.success and result.error is None, result.error
    assert result.response == f"the sub-call failed: {error}"
    assert len(top_requests(backend)) == 2  # the parent went on with the error
    events = events_of(tmp_path, result)
    ends = [e for e in events if e["type"] == "call_end"]
    assert [(e["depth"], e["error_type"]) for e in ends] == [(1, type(error).__name__)]
    results = [e for e in events if e["type"] == "tool_results"]
    assert results[0]["tool_results"][0]["is_error"] is True
    assert events[-1]["error"] is None and events[-1]["answer_source"] == "text"


@pytest.mark.parametrize("make_error", ORDINARY[:1] + ORDINARY[2:3])
def test_an_ordinary_failure_in_llm_query_comes_back_to_the_repl_code(make_rlm, tmp_path, make_error):
    error = make_error()
    code = ("try:\n    llm_query('SUB what is it?')\nexcept Exception as exc:\n"
            "    print('sub-call error:', type(exc).__name__, exc)")

    def script(request):
        if is_sub(request):
            return error
        if len(request.messages) > 2:
            return "FINAL(recovered)"
        return f"```repl\n{code}\n```"

    rlm, backend = make_rlm(script, protocol="repl", max_depth=2)
    result = rlm.completion_sync("go")
    assert result.success and result.response == "recovered", result.error
    assert len(top_requests(backend)) == 2
    feedback = top_requests(backend)[1].messages[-1].text
    assert f"sub-call error: {type(error).__name__} {error}" in feedback
    events = events_of(tmp_path, result)
    ends = [e for e in events if e["type"] == "call_end"]
    assert [(e["depth"], e["sub_call_type"], e["error_type"]) for e in ends] == \
        [(1, "llm_query", type(error).__name__)]
