"""End to end: ``rlm_sub_complete(context_query=...)`` injects rlm-snipara's offline-index context into a
sub-call, through the installed plugins (entry points), the OpenAI backend (real SDK) and the scripted LLM
server over real HTTP; and ``AgentRunner(auto_context=True)`` puts it in the system prompt."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("rlm_backend_openai")
pytest.importorskip("rlm_snipara")

from rlm import RLM
from rlm.trajectory import read_trajectory
from rlm_testing.server import Reply

MODEL = "openai/gpt-4o-mini"

AUTH_MD = """# Authentication

## Tokens

Access tokens are JWTs signed with RS256. They expire after 15 minutes; refresh tokens last 30 days.

## Passwords

Passwords are hashed with argon2id.
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """tmp/docs/auth.md and an rlm.toml (in the working directory) pointing rlm-snipara's offline index at it."""
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "auth.md").write_text(AUTH_MD)
    (tmp_path / "rlm.toml").write_text('[rlm]\ncontext_provider = "snipara"\n'
                                       '[plugins.snipara]\ndocs = ["docs/"]\n')
    return tmp_path


def user_text(request) -> str:
    return next(m["content"] for m in request.body["messages"] if m["role"] == "user")


def test_context_query_injects_offline_docs_into_the_sub_call(scripted_llm, project):
    def answer(request):
        user = user_text(request)
        if user.startswith("How long"):  # the sub-call: it answers only from what it was given
            return Reply.text("15 minutes" if "expire after 15 minutes" in user else "not in my context")
        tools = [m for m in request.body["messages"] if m["role"] == "tool"]
        if tools:
            return Reply.text(f"Access tokens last {json.loads(tools[-1]['content'])}.")
        return Reply.tool_calls(("rlm_sub_complete", {"query": "How long does an access token last?",
                                                      "context_query": "access token expiry"}))

    scripted_llm.script(answer)
    rlm = RLM(model=MODEL, api_base=scripted_llm.openai_base_url, environment="local", protocol="tools")
    result = rlm.completion_sync("What is the access token lifetime?")
    assert result.success, result.error
    assert result.response == "Access tokens last 15 minutes."
    sub = next(r for r in scripted_llm.requests if user_text(r).startswith("How long"))
    assert "Context:\n## docs/auth.md — Authentication > Tokens" in user_text(sub)
    assert "argon2id" not in user_text(sub)  # only what matched the query
    events = read_trajectory(str(project / "logs" / f"{result.trajectory_id}.jsonl"))
    [injected] = [e for e in events if e["type"] == "context_injected"]
    assert injected["provider"] == "snipara" and injected["query"] == "access token expiry"
    assert injected["tokens"] > 0 and injected["depth"] == 0


def test_agent_auto_context_puts_offline_docs_in_the_system_prompt(scripted_llm, project):
    from rlm.agent import AgentRunner

    scripted_llm.script([Reply.tool_calls(("FINAL", {"answer": "argon2id"}))])
    runner = AgentRunner(model=MODEL, api_base=scripted_llm.openai_base_url, environment="local",
                         protocol="tools", auto_context=True, context_budget=500)
    result = asyncio.run(runner.run("Which password hashing do we use?"))
    assert result.success and result.answer == "argon2id"
    system = scripted_llm.requests[0].body["messages"][0]
    assert system["role"] == "system" and "Passwords are hashed with argon2id." in system["content"]
