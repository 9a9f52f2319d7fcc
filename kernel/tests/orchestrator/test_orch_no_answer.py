"""A forced last reply is an answer only when it is one: code, an empty reply or a give-up is no answer.

Issue 19: after ``max_turns`` a small model's forced reply was a raw code block, and the run exited 0.
Here the forced reply (and the fallback when the forced turn could not be made) is judged; a run
without an answer ends with the no-answer error (BudgetExceeded, exit 6, when a limit forced it).
"""

from __future__ import annotations

import json

import pytest

from rlm import cli
from rlm.errors import BudgetExceeded
from rlm.orchestrator import answer_problem
from rlm.trajectory import read_trajectory
from rlm.types import ToolCall

FAKE = ["--model", "fake-model", "--backend", "fake", "--env", "fake"]


def tc(name, **arguments):
    return ToolCall(id="", name=name, arguments=arguments)


def forced(request) -> bool:
    """The forced last turn (both protocols' instructions say so)."""
    return "answer now" in request.messages[-1].text


def repl_script(last_reply):
    """A repl-protocol model that keeps running code, and says ``last_reply`` when forced."""
    def script(request):
        if forced(request):
            return last_reply
        return f"```repl\nprint({len(request.messages)})\n```"
    return script


def tools_script(last_reply):
    def script(request):
        if request.tool_choice == "none":
            return last_reply
        return [tc("execute_code", code="print(1)")]
    return script


# --- the judgment ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "  \n", "```repl\nprint(sum(x))\n```", "```python\nx = 1\nprint(x)\n```", "```\nx = 1\n```",
    "Here is the code:\n```python\nprint(len(context))\n```", "```python\nwords = context.split(\n",  # cut short
    "```bash\nwc -w notes.txt\n```",
])
def test_code_or_nothing_is_no_answer(text):
    assert answer_problem(text) is not None


@pytest.mark.parametrize("text", [
    "I cannot determine the answer from the data.", "I'm unable to compute that.", "I don't know.",
    "Sorry, I could not finish the task.", "I can’t find the file.", "Unfortunately, I ran out of turns.",
])
def test_a_short_give_up_is_no_answer(text):
    assert answer_problem(text).startswith("the model gave up")
    assert answer_problem(text, give_up=False) is None


@pytest.mark.parametrize("text", [
    "42", "The answer is 42.", "I cannot be sure, but it is 42.", '```json\n{"total": 42}\n```',
    "The total is 42:\n```python\nprint(sum(x))\n```\nwhich the code above computed.",
    "I don't know " + "x" * 300,  # long replies are never taken for a give-up
])
def test_prose_is_an_answer(text):
    assert answer_problem(text) is None


def test_in_the_repl_protocol_a_reply_with_code_was_work():
    assert answer_problem("Let me look:\n```repl\nprint(1)\n```\nThen I answer.", code_is_work=True)


# --- the repl protocol ----------------------------------------------------------------------------


def test_forced_code_block_is_no_answer_exit_6_via_the_cli(cli_with_fake, capsys, tmp_path):
    backend = cli_with_fake(repl_script("```repl\nprint(sum(range(10)))\n```"))
    code = cli.main(["run", "sum it", *FAKE, "--protocol", "repl", "--max-turns", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 6, err
    data = json.loads(out)
    assert data["success"] is False and data["response"] == "" and data["limit_hit"] == "max_turns"
    assert data["error_type"] == "BudgetExceeded" and data["answer_source"] == "error"
    lines = [line for line in err.splitlines() if line.startswith("rlm: error:")]
    assert lines == [("rlm: error: no answer: Turn limit reached before the model answered "
                      "(the model's last reply was only code): increase max_turns or simplify the task")]
    assert len(backend.requests) == 3  # two turns and the forced one
    events = read_trajectory(str(next((tmp_path / "logs").glob("*.jsonl"))))
    assert [e["reason"] for e in events if e["type"] == "no_answer"] == ["the model's last reply was only code"]
    assert events[-1]["type"] == "run_end" and events[-1]["error_type"] == "BudgetExceeded"


def test_forced_code_block_without_json_prints_nothing_on_stdout(cli_with_fake, capsys):
    cli_with_fake(repl_script("```python\nprint(1)\n```"))
    code = cli.main(["run", "x", *FAKE, "--protocol", "repl", "--max-turns", "1"])
    out, err = capsys.readouterr()
    assert (code, out) == (6, "")
    assert "the model's last reply was only code" in err and "Traceback" not in err


@pytest.mark.parametrize(("reply", "why"), [
    ("", "the model's last reply was empty"),
    ("   ", "the model's last reply was empty"),
    ("I cannot determine the answer from the data.", "the model gave up: 'I cannot determine the answer"),
    ("Sorry, I don't know.", "the model gave up"),
    ("FINAL_VAR(missing)", "its FINAL_VAR(missing) names no REPL variable"),
])
def test_forced_empty_give_up_or_broken_final_is_no_answer(make_rlm, reply, why):
    rlm, _ = make_rlm(repl_script(reply), protocol="repl", max_turns=2)
    result = rlm.completion_sync("x")
    assert not result.success and result.response == "" and result.limit_hit == "max_turns"
    assert result.error_type == "BudgetExceeded"
    assert result.error.startswith(f"no answer: Turn limit reached before the model answered ({why}")
    assert "\n" not in result.error


def test_forced_final_is_an_answer_exit_0(cli_with_fake, capsys):
    cli_with_fake(repl_script("FINAL(42)"))
    code = cli.main(["run", "x", *FAKE, "--protocol", "repl", "--max-turns", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["success"] is True and data["response"] == "42" and data["limit_hit"] == "max_turns"
    assert data["answer_source"] == "forced"


def test_forced_final_var_resolves(make_rlm):
    def script(request):
        if forced(request):
            return "The total is computed.\nFINAL_VAR(total)"
        return "```repl\ntotal = 6 * 7\n```"

    rlm, _ = make_rlm(script, protocol="repl", max_turns=1)
    result = rlm.completion_sync("x")
    assert result.success and result.response == "42"


def test_a_final_alone_in_a_code_block_is_run_as_the_answer(make_rlm):
    # the system prompt's example puts FINAL in a ```repl block: a forced reply that is only that is an answer
    def script(request):
        if forced(request):
            return "```repl\nFINAL_VAR(total)\n```"
        return "```repl\ntotal = 6 * 7\n```"

    rlm, _ = make_rlm(script, protocol="repl", max_turns=1)
    result = rlm.completion_sync("x")
    assert result.success and result.response == "42" and result.limit_hit == "max_turns", result.error


def test_forced_prose_is_an_answer(make_rlm):
    rlm, _ = make_rlm(repl_script("The sum is 45."), protocol="repl", max_turns=2)
    result = rlm.completion_sync("x")
    assert result.success and result.response == "The sum is 45." and result.limit_hit == "max_turns"


def test_no_forced_turn_and_a_last_reply_with_code_is_no_answer(make_rlm):
    # the budget leaves no room for the forced turn: the fallback is the last reply, which was code
    rlm, backend = make_rlm(repl_script("never asked"), protocol="repl", token_budget=9_000,
                            backend_kwargs={"usage": (8_000, 100)})
    result = rlm.completion_sync("x")
    assert not result.success and result.response == "" and result.limit_hit == "token_budget"
    assert "```" not in result.error and "(the model's last reply was code)" in result.error
    assert all(not forced(r) for r in backend.requests)


def test_a_give_up_after_the_nudge_is_no_answer_exit_1(make_rlm):
    rlm, _ = make_rlm(["I think I need more data.", "I cannot determine the answer."], protocol="repl")
    result = rlm.completion_sync("x")
    assert not result.success and result.limit_hit is None and result.error_type == "RLMError"
    assert result.error.startswith("no answer: the model gave up: 'I cannot determine the answer.'")


def test_plain_prose_after_the_nudge_is_still_an_answer(make_rlm):
    rlm, _ = make_rlm(["I think it is 5", "It is 5"], protocol="repl")
    assert rlm.completion_sync("x").response == "It is 5"


def test_structured_output_is_not_repaired_when_there_is_no_answer(make_rlm):
    rlm, backend = make_rlm(repl_script("```repl\nprint(1)\n```"), protocol="repl", max_turns=1)
    result = rlm.completion_sync("x", response_format={"type": "object"})
    assert not result.success and result.error_type == "BudgetExceeded"
    assert len(backend.requests) == 2  # no JSON repair turn after the limit


# --- the tools protocol ---------------------------------------------------------------------------


@pytest.mark.parametrize("reply", ["", "```python\nprint(sum(range(10)))\n```"])
def test_tools_forced_empty_or_code_is_no_answer(make_rlm, reply):
    rlm, _ = make_rlm(tools_script(reply), max_turns=2)
    result = rlm.completion_sync("x")
    assert not result.success and result.response == "" and result.error_type == "BudgetExceeded"
    assert result.limit_hit == "max_turns" and "before the model answered (the model's last reply was" in result.error


def test_tools_forced_prose_is_an_answer_exit_0(cli_with_fake, capsys):
    cli_with_fake(tools_script("The sum is 45."))
    code = cli.main(["run", "x", *FAKE, "--protocol", "tools", "--max-turns", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["success"] is True and data["response"] == "The sum is 45." and data["limit_hit"] == "max_turns"


def test_tools_forced_empty_falls_back_to_what_the_model_said_before(make_rlm):
    def script(request):
        if request.tool_choice == "none":
            return ""
        return [tc("execute_code", code="print(1)")]

    rlm, backend = make_rlm(script, max_turns=2)
    original = backend.complete

    async def complete(request):  # the tool-call turns also say something
        response = await original(request)
        if response.message.tool_calls:
            from rlm.backend import LLMResponse
            from rlm.types import Message
            response = LLMResponse(message=Message.assistant("It is 45, checking.", tool_calls=response.message.tool_calls),
                                   usage=response.usage, finish_reason="tool_calls", model=response.model)
        return response

    backend.complete = complete
    result = rlm.completion_sync("x")
    assert result.success and result.response == "It is 45, checking."


# --- sub-calls ------------------------------------------------------------------------------------


def test_a_sub_call_whose_forced_reply_is_code_gives_its_parent_an_error(make_rlm, tmp_path):
    def script(request):
        sub = request.messages[0].text.startswith("You are a sub-call")
        if sub:
            if request.tool_choice == "none":
                return "```python\nprint('still working')\n```"
            return [tc("execute_code", code="print(1)")]
        results = [m for m in request.messages if m.role == "tool"]
        if not results:
            return [tc("rlm_sub_complete", query="count the words")]
        return "the sub-call said: " + json.loads(results[-1].content)["error"]

    rlm, _ = make_rlm(script, max_turns=2, max_depth=2)
    result = rlm.completion_sync("go")
    assert result.success, result.error
    assert result.response.startswith("the sub-call said: no answer: Turn limit reached before the sub-call "
                                      "answered (the model's last reply was only code)")
    assert "still working" not in result.response
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    ends = [e for e in events if e["type"] == "call_end"]
    assert len(ends) == 1 and ends[0]["error_type"] == "BudgetExceeded" and ends[0]["depth"] == 1


def test_a_sub_call_with_no_answer_raises_budget_exceeded(make_rlm):
    # the same through the Python API of a run: the sub-call's error is a BudgetExceeded, not a text
    import asyncio

    def script(request):
        if request.tool_choice == "none":
            return ""
        return [tc("execute_code", code="print(1)")]

    rlm, _ = make_rlm(script, max_turns=1, max_depth=2)

    async def go():
        run = rlm.prepare_run()
        top = run.top = run.new_call(parent=None, budget=run.budget, sub_call_type=None)
        try:
            with pytest.raises(BudgetExceeded, match="before the sub-call answered"):
                await run.sub_complete(top, "q")
        finally:
            await run.close()

    asyncio.run(go())


@pytest.mark.parametrize(("reply", "answer"), [
    ("```repl\nFINAL(total + 1)\n```", "43"),
    ("```python\nFINAL('forty-two')\n```", "forty-two"),
    ("```repl\nFINAL(The total is 42)\n```", "The total is 42"),  # words, not Python
])
def test_a_final_expression_alone_in_a_code_block_is_evaluated(make_rlm, reply, answer):
    def script(request):
        if forced(request):
            return reply
        return "```repl\ntotal = 6 * 7\n```"

    rlm, _ = make_rlm(script, protocol="repl", max_turns=1)
    result = rlm.completion_sync("x")
    assert result.success and result.response == answer, result.error


def test_a_final_that_fails_in_a_code_block_is_no_answer(make_rlm):
    def script(request):
        if forced(request):
            return "```repl\nFINAL(undefined_name)\n```"
        return "```repl\ntotal = 6 * 7\n```"

    rlm, _ = make_rlm(script, protocol="repl", max_turns=1)
    result = rlm.completion_sync("x")
    assert not result.success and "(its FINAL failed: NameError" in result.error


def test_a_code_block_without_its_fences_is_code_too():
    from rlm.repl_protocol import code_blocks

    text = "repl\nimport csv\nrows = list(csv.reader(open('a.csv')))\nprint(len(rows))"
    if not code_blocks(text):  # the REPL protocol does not read unfenced blocks: nothing to align with
        pytest.skip("this kernel's repl protocol does not take unfenced code blocks")
    assert answer_problem(text) == "the model's last reply was only code"
