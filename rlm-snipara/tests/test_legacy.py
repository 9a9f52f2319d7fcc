"""The rlm-runtime 2.x tool names (``[plugins.snipara] legacy_tool_names = true``): registration, routing, arguments."""

from __future__ import annotations

import json
from pathlib import Path

from rlm_snipara import doctor
from rlm_snipara.legacy import LEGACY_TOOLS
from rlm_snipara.tools import CONTEXT_TOOLS, MEMORY_TOOLS

def _tool_results(log_dir: Path) -> list[dict]:
    events = [json.loads(line) for f in sorted(log_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert events, f"no trajectory in {log_dir}"
    return [r for e in events if e["type"] == "tool_results" for r in e["tool_results"]]


LEGACY = "legacy_tool_names = true\n"
LOCAL_2X = {"rlm_context_query", "rlm_search", "rlm_sections", "rlm_shared_context", "decompose", "multi_query"}


def test_the_2x_names_are_off_by_default(local_config, h):
    names = set(h.tools_for(local_config(memory_enabled=True)))
    assert names == set(CONTEXT_TOOLS) | set(MEMORY_TOOLS)
    assert not names & {"rlm_context_query", "rlm_search", "rlm_sections", "rlm_shared_context"}


def test_local_2x_names_replace_ours_one_name_per_tool(local_config, h):
    assert set(h.tools_for(local_config(LEGACY))) == LOCAL_2X
    # the memory tools keep their (2.x) names; rlm_read / rlm_memories / rlm_forget need the hosted service
    assert set(h.tools_for(local_config(LEGACY, memory_enabled=True))) == LOCAL_2X | {"rlm_remember", "rlm_recall"}


def test_hosted_2x_names_include_the_hosted_only_tools(hosted_config, h):
    assert set(h.tools_for(hosted_config(extra=LEGACY))) == LOCAL_2X | {"rlm_read"}
    assert set(h.tools_for(hosted_config(extra=LEGACY, memory_enabled=True))) == (
        LOCAL_2X | {"rlm_read", "rlm_remember", "rlm_recall", "rlm_memories", "rlm_forget"})


def test_hosted_forwards_every_2x_argument_to_the_service_tool_of_that_name(standin, hosted_config, h):
    tools = h.tools_for(hosted_config(extra=LEGACY, memory_enabled=True))
    h.run(tools["rlm_context_query"].handler(query="auth", search_mode="semantic", prefer_summaries=True,
                                             max_tokens=100_000))
    h.run(tools["rlm_sections"].handler(filter="Auth", offset=10))
    h.run(tools["rlm_read"].handler(start_line=3, end_line=9))
    h.run(tools["rlm_remember"].handler(content="use argon2", scope="team", category="security", related_to=None))
    h.run(tools["rlm_forget"].handler(older_than_days=30))
    sent = [(r["body"]["params"]["name"], r["body"]["params"]["arguments"]) for r in standin.requests]
    assert sent == [
        ("rlm_context_query", {"query": "auth", "search_mode": "semantic", "prefer_summaries": True,
                               "max_tokens": 20_000}),  # clamped as ours is
        ("rlm_sections", {"filter": "Auth", "offset": 10, "limit": 50}),  # 2.x's default limit
        ("rlm_read", {"start_line": 3, "end_line": 9}),
        ("rlm_remember", {"content": "use argon2", "scope": "team", "category": "security"}),  # None left out
        ("rlm_forget", {"older_than_days": 30}),
    ]


def test_local_context_query_answers_and_lists_the_arguments_it_ignored(local_config, h):
    tools = h.tools_for(local_config(LEGACY))
    out = h.run(tools["rlm_context_query"].handler(query="authentication tokens", search_mode="semantic"))
    assert out["results"][0]["section"] == "Authentication > Tokens"
    assert out["ignored_arguments"]["arguments"] == {"search_mode": "semantic"}
    assert "local provider" in out["ignored_arguments"]["why"]
    plain = h.run(tools["rlm_context_query"].handler(query="authentication tokens"))
    assert "ignored_arguments" not in plain


def test_local_sections_pages_with_offset(local_config, h):
    tools = h.tools_for(local_config(LEGACY))
    every = h.run(tools["rlm_sections"].handler(limit=100))["sections"]
    assert len(every) > 3
    page = h.run(tools["rlm_sections"].handler(limit=2, offset=1))
    assert page["sections"] == every[1:3] and page["offset"] == 1 and page["shown"] == 2
    assert page["total"] == len(every)


def test_local_shared_context_turns_categories_into_the_query(local_config, h):
    tools = h.tools_for(local_config(LEGACY + 'shared = ["docs/team/"]\n'))
    out = h.run(tools["rlm_shared_context"].handler(categories=["BEST_PRACTICES"], include_content=False))
    assert out["query"] == "best practices"
    assert out["source"].startswith("shared docs")
    assert out["ignored_arguments"]["arguments"] == {"include_content": False}


def test_local_memory_keeps_content_and_reports_the_2x_fields_it_cannot_store(local_config, h):
    tools = h.tools_for(local_config(LEGACY, memory_enabled=True))
    stored = h.run(tools["rlm_remember"].handler(content="We cache sessions in Redis", type="decision",
                                                 scope="team", category="infra", ttl_days=7))
    assert stored["stored"] is True and stored["type"] == "decision"
    assert stored["ignored_arguments"]["arguments"] == {"scope": "team", "category": "infra"}
    recalled = h.run(tools["rlm_recall"].handler(query="Redis sessions", min_relevance=0.9))
    assert [m["content"] for m in recalled["memories"]] == ["We cache sessions in Redis"]
    assert recalled["ignored_arguments"]["arguments"] == {"min_relevance": 0.9}


def test_a_model_calling_a_2x_name_with_2x_arguments_gets_an_answer(make_rlm, local_config, h, tmp_path):
    script = [[h.call("rlm_context_query", query="password hashing", max_tokens=500, include_metadata=False)],
              "argon2"]
    rlm, backend = make_rlm(script, local_config(LEGACY))
    result = h.run(rlm.completion("How are passwords stored?"))
    assert result.response == "argon2"
    shown = {t.name for t in backend.requests[0].tools}
    assert "rlm_context_query" in shown and "context_query" not in shown
    [tool_result] = _tool_results(tmp_path / "logs")
    payload = json.loads(tool_result["content"])
    assert not tool_result.get("is_error")
    assert payload["results"][0]["section"] == "Authentication > Passwords"
    assert payload["ignored_arguments"]["arguments"] == {"include_metadata": False}


def test_without_the_option_a_2x_name_is_an_error_naming_the_available_tools(make_rlm, local_config, h, tmp_path):
    script = [[h.call("rlm_context_query", query="password hashing")], "gave up"]
    rlm, _ = make_rlm(script, local_config())
    h.run(rlm.completion("How are passwords stored?"))
    [tool_result] = _tool_results(tmp_path / "logs")
    assert tool_result["is_error"] is True
    assert "unknown tool 'rlm_context_query'" in tool_result["content"] and "context_query" in tool_result["content"]


def test_every_2x_tool_documents_its_difference_and_doctor_mentions_the_option(local_config):
    assert all(t.difference for t in LEGACY_TOOLS)
    [check] = doctor.check(local_config(LEGACY))
    assert "rlm-runtime 2.x names" in check.summary
