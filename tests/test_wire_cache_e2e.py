"""Over HTTP, the wire forms cached per message give the same request bodies as converting every
message anew (and, on the OpenAI route, as the SDK serializing the whole body), turn after turn and
after compaction cut old tool outputs (each provider route against rlm-testing's scripted server: the
OpenAI SDK, the Anthropic SDK, litellm)."""

from __future__ import annotations

import pytest
from rlm import RLM, tool
from rlm_testing.server import Reply

pytest.importorskip("rlm_env_local")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

ROUTES = [
    pytest.param(("openai/gpt-4o-mini", "openai", "rlm_backend_openai"), id="openai"),
    pytest.param(("anthropic/claude-sonnet-4-6", "anthropic", "rlm_backend_anthropic"), id="anthropic"),
    pytest.param(("gpt-4o-mini", "openai", "rlm_backend_litellm"), id="litellm"),
]
TURNS = 6


@tool
async def fetch(n: int) -> str:
    """A long output (compaction cuts the older ones)."""
    return f"OUTPUT-{n}-" + "q" * 3000


def run(server, model: str, protocol: str, tmp_path) -> list:
    """The request bodies (parsed) of a run of TURNS tool turns whose context gets compacted."""
    server.reset()
    server.script([Reply.tool_calls(("fetch", {"n": i}, f"call_{i}")) for i in range(TURNS)] + [Reply.text("done")])
    rlm = RLM(model=model, api_base=server.base_url(protocol), tools=[fetch], log_dir=str(tmp_path / "logs"),
              environment="local", protocol="tools", context_window=6000, token_budget=10**7)
    result = rlm.completion_sync("fetch them")
    assert result.success, result.error
    assert any(e["type"] == "context_compacted" for e in result.events)
    return [r.body for r in server.requests]


def uncached(monkeypatch) -> None:
    """Every message converted anew for each request (the memos bypassed)."""
    from rlm_backend_kit import openai_format

    class Fresh:
        def __call__(self, message):
            return openai_format.to_openai_message(message)

        def many(self, messages):
            return [openai_format.to_openai_message(m) for m in messages]

    monkeypatch.setattr(openai_format, "wire_message", Fresh())
    try:
        from rlm_backend_openai import backend
    except ImportError:
        pass
    else:  # the SDK serializes the whole body (not rlm_backend_kit.openai_format.json_body)
        monkeypatch.setattr(backend, "_takes_content", lambda client: False)
    try:
        from rlm_backend_anthropic import convert
    except ImportError:
        return
    monkeypatch.setattr(convert, "wire_blocks", convert.message_blocks)


@pytest.mark.parametrize("route", ROUTES)
def test_cached_wire_forms_send_the_same_bodies_as_fresh_ones(route, scripted_llm, tmp_path, monkeypatch):
    model, protocol, package = route
    pytest.importorskip(package)
    cached = run(scripted_llm, model, protocol, tmp_path)
    if package == "rlm_backend_openai":  # the body was spliced from each message's cached JSON
        assert all(r.raw_body.startswith(b'{"messages":[') for r in scripted_llm.requests)
    with monkeypatch.context() as m:
        uncached(m)
        fresh = run(scripted_llm, model, protocol, tmp_path)
    assert len(cached) == TURNS + 1
    assert cached == fresh
    last = str(cached[-1]["messages"])
    assert "removed to fit the context window" in last  # compacted messages were sent, cut
    assert f"OUTPUT-{TURNS - 1}-" in last
