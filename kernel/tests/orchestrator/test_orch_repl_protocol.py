"""The paper-style protocol: context in the REPL, ```repl blocks, llm_query, FINAL/FINAL_VAR in text."""

from __future__ import annotations

from rlm.trajectory import read_trajectory


def test_context_lives_in_the_repl_and_final_ends(make_rlm):
    script = ["Let me look.\n```repl\nn = len(context.splitlines())\nprint(n)\n```", "FINAL(3 lines)"]
    rlm, backend = make_rlm(script, protocol="repl")
    result = rlm.completion_sync("a\nb\nc")
    assert result.response == "3 lines" and result.success
    feedback = backend.requests[1].messages[-1].text
    assert feedback.startswith("REPL output:") and "3" in feedback
    # a short task is shown whole, so the prompt does not point at `context` (the variable still holds it)
    assert "`context`" not in backend.requests[0].messages[0].text
    assert backend.requests[0].messages[1].text == "Task:\na\nb\nc"
    assert not backend.requests[0].tools  # no native tools in this protocol


def test_a_long_task_or_given_context_is_pointed_at(make_rlm):
    long_task = "word " * 2000
    rlm, backend = make_rlm(["```repl\nprint(len(context))\n```", "FINAL(done)"], protocol="repl")
    assert rlm.completion_sync(long_task).response == "done"
    first = backend.requests[0]
    assert "`context` holds the input (the task's whole text, 10000 characters)" in first.messages[0].text
    assert first.messages[1].text.endswith("[... the full text is in `context`]")
    assert "10000" in backend.requests[1].messages[-1].text  # the variable holds all of it
    rlm, backend = make_rlm(["FINAL(ok)"], protocol="repl")
    assert rlm.completion_sync("summarize", context=["a", "b"]).response == "ok"
    assert "`context` holds the input (list, 2 items/characters)" in backend.requests[0].messages[0].text


def test_a_given_context_gets_the_search_example_and_the_task_says_where_the_input_is(make_rlm):
    # a small model copies whichever example it is shown and answers "with the value only" at once
    # unless the end of the message says the input is not in it
    rlm, backend = make_rlm(["FINAL(ok)"], protocol="repl")
    assert rlm.completion_sync("What colour? Answer with the colour only.", context="long text").response == "ok"
    system, user = (m.text for m in backend.requests[0].messages)
    assert "re.finditer" in system and "orders.csv" not in system
    assert user.startswith("Task: What colour? Answer with the colour only.\n\n")
    assert "The input is in the REPL variable `context` (str, 9 items/characters)" in user
    assert user.endswith("distinctive words).")
    rlm, backend = make_rlm(["FINAL(ok)"], protocol="repl")
    rlm.completion_sync("sum the amounts in orders.csv")  # no context: the file examples
    assert "orders.csv" in backend.requests[0].messages[0].text
    assert "re.finditer" not in backend.requests[0].messages[0].text


def test_a_short_plain_reply_after_code_is_quoted_back_as_the_likely_answer(make_rlm):
    script = ["```repl\nprint(context[-5:])\n```", "juniper", "FINAL(juniper)"]
    rlm, backend = make_rlm(script, protocol="repl")
    result = rlm.completion_sync("the magic word?", context="... is: juniper")
    assert result.response == "juniper" and result.answer_source == "final"
    nudge = backend.requests[2].messages[-1].text
    assert "If 'juniper' is your answer, reply with FINAL(juniper)" in nudge
    # before any code ran, or for a long or multi-line reply, the plain nudge
    rlm, backend = make_rlm(["juniper", "FINAL(juniper)"], protocol="repl")
    rlm.completion_sync("the magic word?", context="... is: juniper")
    assert "FINAL(answer)" in backend.requests[1].messages[-1].text
    rlm, backend = make_rlm(["```repl\nprint(1)\n```", "it is\nsomething", "FINAL(x)"], protocol="repl")
    rlm.completion_sync("q", context="c")
    assert "is your answer" not in backend.requests[2].messages[-1].text


def test_final_in_any_case_with_a_full_stop_is_the_answer(make_rlm):
    rlm, _ = make_rlm(["```repl\nx = 1\n```", "Final(6420d739-aa77)."], protocol="repl")
    assert rlm.completion_sync("q", context="c").response == "6420d739-aa77"


def test_a_last_line_final_answer_label_is_a_final(make_rlm):
    rlm, _ = make_rlm(["```repl\nx = 1\n```", "I found it.\n**Final answer:** 2727875"], protocol="repl")
    result = rlm.completion_sync("q", context="c")
    assert result.response == "2727875" and result.answer_source == "final"


def test_an_unquoted_final_in_code_gets_a_note_and_an_echoed_error_is_no_answer(make_rlm):
    script = ["```repl\nprint(1)\n```", "b3e81621", "```repl\nFINAL(b3e81621-4fa8)\n```", "ignored"]

    def model(request):
        text = request.messages[-1].text
        if "FINAL takes a Python value" in text:  # the note is there: echo the error line, as the 0.5B model did
            return next(line for line in text.splitlines() if line.startswith("SyntaxError"))
        return script[len(request.messages) // 2 - 1]

    rlm, backend = make_rlm(model, protocol="repl")
    result = rlm.completion_sync("q", context="c")
    assert not result.success and result.response in ("", None)
    assert "only repeated the REPL's error" in (result.error or "")
    # the note quotes the model's own value back (an example value of ours would be copied as the answer)
    assert 'write FINAL("b3e81621-4fa8"), with quotes, or reply with FINAL(b3e81621-4fa8)' in \
        backend.requests[3].messages[-1].text


def test_final_var_reads_the_real_variable(make_rlm):
    rlm, _ = make_rlm(["```repl\nanswer = 6 * 7\n```", "FINAL_VAR(answer)"], protocol="repl")
    assert rlm.completion_sync("compute").response == "42"


def test_final_var_of_missing_variable_is_explained_and_the_loop_continues(make_rlm):
    rlm, backend = make_rlm(["FINAL_VAR(nothing)", "FINAL(ok)"], protocol="repl")
    result = rlm.completion_sync("x")
    assert result.response == "ok"
    assert "no variable named 'nothing'" in backend.requests[1].messages[-1].text


def test_llm_query_from_inside_the_repl_is_a_sub_call(make_rlm, tmp_path):
    def script(request):
        system = request.messages[0].text
        if system.startswith("Answer the request"):
            return "SUB:" + request.messages[-1].text
        if len(request.messages) == 2:
            return "```repl\nr = llm_query('hello')\nrs = llm_query_batched(['a', 'b'])\nprint(r, rs)\n```"
        return "FINAL_VAR(rs)"

    rlm, backend = make_rlm(script, protocol="repl")
    result = rlm.completion_sync("q")
    assert result.response == '["SUB:a", "SUB:b"]'
    assert "SUB:hello ['SUB:a', 'SUB:b']" in backend.requests[4].messages[-1].text
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    subs = [e for e in events if e["type"] == "call_start"]
    assert len(subs) == 3 and {e["sub_call_type"] for e in subs} == {"llm_query"}
    assert {e["depth"] for e in subs} == {1}
    assert result.total_calls == 5


def test_final_called_in_code_ends_the_run(make_rlm):
    rlm, _ = make_rlm(["```python\nFINAL('from code')\n```"], protocol="repl")
    assert rlm.completion_sync("x").response == "from code"


def test_plain_answers_get_one_nudge_then_count(make_rlm):
    rlm, backend = make_rlm(["I think it is 5", "It is 5"], protocol="repl")
    result = rlm.completion_sync("x")
    assert result.response == "It is 5" and "FINAL(answer)" in backend.requests[1].messages[-1].text


def test_turn_limit_in_repl_protocol_forces_final(make_rlm):
    def script(request):
        if "Do not write code" in request.messages[-1].text:
            return "FINAL(best guess)"
        return "```repl\nprint(1)\n```"

    rlm, _ = make_rlm(script, protocol="repl", max_turns=2)
    result = rlm.completion_sync("x")
    assert result.response == "best guess" and result.limit_hit == "max_turns"


def test_auto_protocol_follows_the_backend(make_rlm):
    rlm, backend = make_rlm(["FINAL(x)"], backend_kwargs={"native_tools": False})
    assert rlm.completion_sync("q").response == "x"
    assert not backend.requests[0].tools


def test_a_final_guessed_in_the_same_turn_as_code_is_not_taken(make_rlm):
    # the model wrote FINAL before seeing the code's output: the output decides, not the guess
    rlm, backend = make_rlm(["```repl\nn = 3\nprint(n)\n```\nFINAL(1234)", "FINAL(3)"], protocol="repl")
    result = rlm.completion_sync("x")
    assert result.response == "3" and len(backend.requests) == 2


def test_a_backend_declared_price_beats_the_shared_price_map(make_rlm):
    from rlm.backend import BackendCapabilities

    rlm, backend = make_rlm(["free"], model="gpt-4o-mini")
    backend.capabilities = lambda model: BackendCapabilities(pricing_per_mtok=(0.0, 0.0))
    assert rlm.completion_sync("go").total_cost_usd == 0.0
