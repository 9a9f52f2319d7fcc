"""What a backend's capabilities change in a run: the turns a slow model gets unless the user set
max_turns, and the model the trajectory names (the one that answered, not only the one asked for)."""

from __future__ import annotations

from rlm.backend import BackendCapabilities


def keep_running(request):
    if "answer now" in request.messages[-1].text:
        return "FINAL(done)"
    return f"```repl\nprint({len(request.messages)})\n```"


def with_caps(backend, **caps):
    backend.capabilities = lambda model: BackendCapabilities(native_tools=False, preferred_protocol="repl", **caps)


def test_a_suggested_max_turns_applies_when_the_user_set_none(make_rlm):
    rlm, backend = make_rlm(keep_running)
    with_caps(backend, suggested_max_turns=3)
    result = rlm.completion_sync("go")
    assert result.limit_hit == "max_turns" and result.response == "done"
    assert len(backend.requests) == 4  # three turns and the forced one


def test_the_users_max_turns_wins_over_the_suggestion(make_rlm):
    rlm, backend = make_rlm(keep_running, max_turns=5)
    with_caps(backend, suggested_max_turns=2)
    result = rlm.completion_sync("go")
    assert result.limit_hit == "max_turns" and len(backend.requests) == 6


def test_the_suggestion_never_raises_the_configured_turns(make_rlm):
    rlm, backend = make_rlm(keep_running)
    with_caps(backend, suggested_max_turns=50)
    result = rlm.completion_sync("go")
    assert len(backend.requests) == rlm.config.max_turns + 1


def test_run_start_names_the_model_that_served_and_the_one_asked_for(make_rlm):
    rlm, backend = make_rlm(lambda request: "FINAL(42)", model="gpt-4o-mini")
    with_caps(backend, served_model="local/qwen-tiny")
    result = rlm.completion_sync("go")
    start = next(e for e in result.events if e["type"] == "run_start")
    assert start["model"] == "local/qwen-tiny" and start["requested_model"] == "gpt-4o-mini"


def test_run_start_names_the_model_alone_when_it_is_the_one_asked_for(make_rlm):
    rlm, backend = make_rlm(lambda request: "FINAL(42)")
    result = rlm.completion_sync("go")
    start = next(e for e in result.events if e["type"] == "run_start")
    assert start["model"] == "fake-model" and "requested_model" not in start


def test_a_backend_can_turn_sub_calls_off_unless_the_user_asked_for_them(make_rlm):
    rlm, backend = make_rlm(["```repl\nprint(llm_query('hi'))\n```", "FINAL(done)"], protocol="repl")
    with_caps(backend, suggested_sub_calls=False)
    result = rlm.completion_sync("go")
    system = backend.requests[0].messages[0].text
    assert "llm_query" not in system  # the prompt offers only what works
    assert "Sub-calls are disabled" in backend.requests[1].messages[-1].text
    assert len(backend.requests) == 2 and result.response == "done"  # no sub-call was made


def test_the_users_sub_calls_win_over_the_suggestion(make_rlm):
    def script(request):
        if request.messages[0].text.startswith("Answer the request"):
            return "hello"
        return "FINAL(done)" if len(request.messages) > 2 else "```repl\nprint(llm_query('hi'))\n```"

    rlm, backend = make_rlm(script, protocol="repl", sub_calls=True)
    with_caps(backend, suggested_sub_calls=False)
    assert rlm.completion_sync("go").response == "done"
    assert "llm_query" in backend.requests[0].messages[0].text
    assert any(r.messages[0].text.startswith("Answer the request") for r in backend.requests)


def test_an_invalid_response_format_schema_is_an_input_error_before_any_call(make_rlm):
    import pytest

    from rlm.errors import InputError

    rlm, backend = make_rlm(["{}"])
    with pytest.raises(InputError, match="response_format: invalid schema"):
        rlm.completion_sync("go", response_format={"name": "x", "schema": {"type": "no-such-type"}})
    assert backend.requests == []
