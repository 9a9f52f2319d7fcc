"""Local agent memory: remember/recall ranking, types, TTL expiry, persistence, budgets."""

from __future__ import annotations

import pytest
from rlm.errors import ToolError
from rlm_snipara.memory import DAY, MemoryStore
from rlm_snipara.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(tmp_path, clock) -> MemoryStore:
    return MemoryStore(Store(tmp_path / "mem.sqlite3"), clock=clock)


def test_recall_ranks_by_relevance(memory, clock):
    memory.remember("We decided to cache sessions in Redis for caching speed; caching is per user", type="decision")
    clock.now += 10
    memory.remember("The API uses JSON everywhere", type="fact")
    clock.now += 10
    memory.remember("Caching of images is done by the CDN", type="learning")
    out = memory.recall("what did we decide about caching?")
    contents = [m["content"] for m in out["memories"]]
    assert len(contents) == 2
    assert contents[0].startswith("We decided to cache sessions")
    assert out["memories"][0]["type"] == "decision"


def test_recall_filters_by_type_and_limit(memory):
    for i in range(6):
        memory.remember(f"deploy note {i}", type="todo" if i % 2 else "fact")
    out = memory.recall("deploy", type="todo", limit=2)
    assert len(out["memories"]) == 2 and {m["type"] for m in out["memories"]} == {"todo"}


def test_ttl_expiry(memory, clock):
    memory.remember("temporary feature flag beta-login is on", ttl_days=1)
    memory.remember("permanent rule: feature flags live in flags.py")
    assert len(memory.recall("feature flag")["memories"]) == 2
    clock.now += 2 * DAY
    remaining = memory.recall("feature flag")["memories"]
    assert [m["content"] for m in remaining] == ["permanent rule: feature flags live in flags.py"]
    with memory.store.connect() as conn:  # purged, not just hidden
        assert conn.execute("SELECT count(*) FROM memories").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM memories_fts").fetchone()[0] == 1


def test_memories_persist_across_store_instances(tmp_path, clock):
    MemoryStore(Store(tmp_path / "p.sqlite3"), clock=clock).remember("the staging db is pg-staging-2")
    again = MemoryStore(Store(tmp_path / "p.sqlite3"), clock=clock)
    assert again.recall("staging db")["memories"][0]["content"] == "the staging db is pg-staging-2"


def test_query_without_words_returns_newest(memory, clock):
    memory.remember("older")
    clock.now += 5
    memory.remember("newer")
    assert [m["content"] for m in memory.recall("?")["memories"]] == ["newer", "older"]


def test_bad_input_is_a_clear_tool_error(memory):
    with pytest.raises(ToolError, match="unknown memory type 'gossip'"):
        memory.remember("x", type="gossip")
    with pytest.raises(ToolError, match="empty"):
        memory.remember("   ")
    with pytest.raises(ToolError, match="ttl_days must be positive"):
        memory.remember("x", ttl_days=0)
    with pytest.raises(ToolError, match="unknown memory type"):
        memory.recall("x", type="gossip")


def test_recall_respects_its_token_budget(memory):
    for i in range(20):
        memory.remember(f"caching fact {i} " + "detail " * 200)
    out = memory.recall("caching", limit=20, max_tokens=600)
    assert out["tokens"] <= 600 and out["truncated"]


def test_memory_tools_end_to_end_with_the_local_provider(local_config, h):
    tools = h.tools_for(local_config(memory_enabled=True))
    stored = h.run(tools["rlm_remember"].handler(content="We chose argon2 for passwords", type="decision"))
    assert stored["stored"] is True
    recalled = h.run(tools["rlm_recall"].handler(query="password hashing choice"))
    assert recalled["memories"][0]["content"] == "We chose argon2 for passwords"
