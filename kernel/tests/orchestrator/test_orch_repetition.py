"""Repetition control in the repl protocol: the same failing code twice is pointed out, and sampling varies.

Issue 19: at temperature 0 a small model wrote the same failing code again and again until a limit.
The second run of the same code (failing again, or printing the same output) gets a note in its
feedback, the call's next requests ask for a higher temperature and a new seed, and a
``repeated_code`` event records it.
"""

from __future__ import annotations

from rlm.orchestrator import REPEAT_TEMPERATURE
from rlm.trajectory import read_trajectory

FAILING = "```repl\nimport no_such_module_here\nprint(no_such_module_here.load(context))\n```"


def feedback(request) -> str:
    return request.messages[-1].text


def test_the_same_failing_code_twice_gets_a_note_and_a_higher_temperature(make_rlm, tmp_path):
    replies = [FAILING, FAILING.replace("\n```", "   \n\n```"), "```repl\nprint(len(context))\n```", "FINAL(1)"]
    rlm, backend = make_rlm(replies, protocol="repl")
    result = rlm.completion_sync("x")
    assert result.success and result.response == "1"
    first, second, third, fourth = backend.requests
    assert "same code as before" not in feedback(second)  # the first failure is just reported
    note = feedback(third)
    assert note.startswith("REPL output:")
    assert "Note: this is the same code as before, and it failed again with: ModuleNotFoundError: " \
           "No module named 'no_such_module_here'" in note
    assert "Do not run it again" in note and "inspect the data first" in note
    assert first.temperature is None and second.temperature is None and first.seed is None
    assert third.temperature == REPEAT_TEMPERATURE and third.seed is not None
    assert fourth.temperature == REPEAT_TEMPERATURE  # every later turn of that call
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    repeated = [e for e in events if e["type"] == "repeated_code"]
    assert len(repeated) == 1
    assert repeated[0]["runs"] == 2 and repeated[0]["temperature"] == REPEAT_TEMPERATURE
    assert repeated[0]["error"].startswith("ModuleNotFoundError")
    calls = [e for e in events if e["type"] == "llm_call"]
    assert "temperature" not in calls[0] and calls[2]["temperature"] == REPEAT_TEMPERATURE


def test_each_repetition_draws_a_new_seed(make_rlm):
    rlm, backend = make_rlm([FAILING, FAILING, FAILING, "FINAL(done)"], protocol="repl")
    assert rlm.completion_sync("x").response == "done"
    seeds = [r.seed for r in backend.requests]
    assert seeds[:2] == [None, None] and None not in seeds[2:]
    assert feedback(backend.requests[3]).count("same code as before") == 1


def test_the_same_output_again_is_pointed_out(make_rlm):
    code = "```repl\nprint(len(context))\n```"
    rlm, backend = make_rlm([code, code, "FINAL(1)"], protocol="repl")
    assert rlm.completion_sync("abc").response == "1"
    assert "printed the same output again" in feedback(backend.requests[2])
    assert backend.requests[2].temperature == REPEAT_TEMPERATURE


def test_different_code_or_code_that_now_works_is_no_repetition(make_rlm):
    replies = [FAILING, "```repl\nx = 1\nprint(x)\n```",  # different code
               "```repl\nprint(y)\n```", "```repl\ny = 2\n```", "```repl\nprint(y)\n```",  # failed, then works
               "FINAL(ok)"]
    rlm, backend = make_rlm(replies, protocol="repl")
    assert rlm.completion_sync("x").response == "ok"
    assert all("same code as before" not in feedback(r) for r in backend.requests[1:])
    assert all(r.temperature is None for r in backend.requests)


def test_the_raised_temperature_stays_in_its_call(make_rlm):
    # an llm_query sub-call made after the repetition is a new conversation: its own sampling
    replies = iter([FAILING, FAILING, "```repl\nprint(llm_query('hi'))\n```", "FINAL(done)"])

    def script(request):
        if request.messages[0].text.startswith("Answer the request"):
            return "hello"
        return next(replies)

    rlm, backend = make_rlm(script, protocol="repl")
    assert rlm.completion_sync("x").response == "done"
    sub = [r for r in backend.requests if r.messages[0].text.startswith("Answer the request")]
    assert len(sub) == 1 and sub[0].temperature is None
    assert backend.requests[-1].temperature == REPEAT_TEMPERATURE


def test_a_repeated_turn_is_dropped_from_the_conversation(make_rlm):
    # each copy of the failing code in its context makes a small model surer of it
    rlm, backend = make_rlm([FAILING, FAILING, "FINAL(done)"], protocol="repl")
    assert rlm.completion_sync("x").response == "done"
    third = backend.requests[2]
    assert sum(m.text.count("import no_such_module_here") for m in third.messages if m.role == "assistant") == 1
    assert [m.role for m in third.messages[-2:]] == ["assistant", "user"]
    assert "same code as before" in third.messages[-1].text


def test_the_same_code_again_and_again_ends_without_an_answer(make_rlm, tmp_path):
    from rlm.orchestrator import MAX_REPEATS

    rlm, backend = make_rlm([FAILING] * (MAX_REPEATS + 1) + ["FINAL(never)"], protocol="repl")
    result = rlm.completion_sync("x")
    assert not result.success and result.response == ""
    assert "kept writing the same code" in result.error
    assert len(backend.requests) == MAX_REPEATS + 1  # no further turn is spent
    temperatures = [r.temperature for r in backend.requests]
    assert temperatures[2] == REPEAT_TEMPERATURE and temperatures[3] > REPEAT_TEMPERATURE  # hotter each time
