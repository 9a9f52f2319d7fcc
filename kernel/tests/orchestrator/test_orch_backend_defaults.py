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
