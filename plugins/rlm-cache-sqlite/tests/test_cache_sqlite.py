"""The SQLite cache: round trips, keys, concurrency (many tasks, two processes), corrupt entries and
files, LRU eviction, size caps, clear and stats."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap

import attrs
import pytest
from rlm.backend import LLMRequest, LLMResponse, ToolSchema
from rlm.cache import ResponseCache, cached_call, request_key, response_to_json
from rlm.types import ImagePart, Message, TextPart, ToolCall, Usage
from rlm_cache_sqlite.cache import SCHEMA_VERSION, SqliteCache
from structlog.testing import capture_logs


def _response(text="hello", **kw):
    return LLMResponse(message=Message.assistant(text, tool_calls=kw.pop("tool_calls", ())),
                       usage=Usage(input_tokens=10, output_tokens=3, cost_usd=kw.pop("cost", 0.001)),
                       finish_reason=kw.pop("finish_reason", "stop"), model=kw.pop("model", "m-1"))


def _request(**changes):
    base = LLMRequest(model="m", messages=[Message.user("hi")],
                      tools=[ToolSchema(name="f", description="d", parameters={"type": "object", "properties": {}})],
                      temperature=0.0, timeout=30.0)
    return attrs.evolve(base, **changes)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "cache" / "responses.sqlite3"


@pytest.fixture
def cache(path):
    c = SqliteCache(path)
    yield c
    c.close()


def run(coro):
    return asyncio.run(coro)


def test_is_a_response_cache(cache):
    assert isinstance(cache, ResponseCache)


def test_round_trip(cache, path):
    response = LLMResponse(
        message=Message(role="assistant", content=(TextPart(text="a ✓"), ImagePart(data=b"\x00\xff")),
                        tool_calls=(ToolCall(id="1", name="f", arguments={"x": [1, {"y": None}]}),)),
        usage=Usage(input_tokens=1, output_tokens=2, cost_usd=None), finish_reason=None, model="")
    assert run(cache.get("k")) is None
    run(cache.put("k", response))
    assert run(cache.get("k")) == response
    run(cache.put("k", _response("replaced")))
    assert run(cache.get("k")) == _response("replaced")
    cache.close()
    assert run(SqliteCache(path).get("k")) == _response("replaced"), "persists across cache objects"


def test_the_file_is_private(cache, path):
    run(cache.put("k", _response()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_nothing_is_created_until_used(path):
    cache = SqliteCache(path)
    assert cache.stats().entries == 0 and cache.clear() == 0
    assert not path.exists() and not path.parent.exists()


def test_wal_mode(cache, path):
    run(cache.put("k", _response()))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# --- keys, through cached_call --------------------------------------------------------------------


class Sender:
    def __init__(self):
        self.calls = 0

    async def __call__(self, request):
        self.calls += 1
        return _response(f"answer {self.calls}")


def test_same_request_with_another_timeout_is_a_hit(cache):
    send = Sender()
    assert run(cached_call(cache, _request(timeout=1.0), send)) == (_response("answer 1"), False)
    assert run(cached_call(cache, _request(timeout=99.0), send)) == (_response("answer 1"), True)
    assert run(cached_call(cache, _request(timeout=None), send)) == (_response("answer 1"), True)
    assert send.calls == 1


def test_another_temperature_is_a_miss(cache):
    send = Sender()
    run(cached_call(cache, _request(temperature=0.0), send))
    assert run(cached_call(cache, _request(temperature=0.7), send)) == (_response("answer 2"), False)
    assert run(cached_call(cache, _request(temperature=0.7), send)) == (_response("answer 2"), True)
    assert send.calls == 2


def test_dict_order_is_irrelevant(cache):
    send = Sender()
    a = _request(tools=[ToolSchema(name="f", description="d", parameters={"type": "object", "properties": {"a": {}}})],
                 response_format={"name": "n", "schema": {"type": "object", "required": ["a"]}})
    b = _request(tools=[ToolSchema(name="f", description="d", parameters={"properties": {"a": {}}, "type": "object"})],
                 response_format={"schema": {"required": ["a"], "type": "object"}, "name": "n"})
    assert request_key(a) == request_key(b)
    run(cached_call(cache, a, send))
    assert run(cached_call(cache, b, send))[1] is True


def test_hits_and_misses_are_counted_in_the_file(cache, path):
    send = Sender()
    for _ in range(3):
        run(cached_call(cache, _request(), send))
    run(cached_call(cache, _request(seed=1), send))
    stats = SqliteCache(path).stats()
    assert (stats.entries, stats.hits, stats.misses) == (2, 2, 2)
    assert stats.location == str(path)
    assert stats.bytes == len(response_to_json(_response("answer 1"))) + len(response_to_json(_response("answer 2")))


# --- concurrency ----------------------------------------------------------------------------------


def test_many_concurrent_tasks(path):
    caches = [SqliteCache(path), SqliteCache(path)]  # two connections of one process, too

    async def go():
        async def one(i):
            cache = caches[i % 2]
            key = f"k{i % 50}"
            await cache.put(key, _response(key))
            got = await cache.get(key)
            assert got is not None and got.message.content == key

        await asyncio.gather(*(one(i) for i in range(300)))

    run(go())
    stats = caches[0].stats()
    assert stats.entries == 50 and stats.hits == 300 and stats.misses == 0
    for c in caches:
        c.close()


def test_concurrent_cached_calls_store_one_entry_per_request(cache):
    send = Sender()

    async def go():
        return await asyncio.gather(*(cached_call(cache, _request(seed=i % 5), send) for i in range(100)))

    results = run(go())
    assert len(results) == 100 and cache.stats().entries == 5
    assert all(r.message.content.startswith("answer ") for r, _ in results)


WORKER = textwrap.dedent("""
    import asyncio, os, sys, time
    from rlm.backend import LLMResponse
    from rlm.types import Message
    from rlm_cache_sqlite.cache import SqliteCache

    path, me, go = sys.argv[1], sys.argv[2], sys.argv[3]
    while not os.path.exists(go):
        time.sleep(0.005)
    cache = SqliteCache(path, busy_timeout=30)
    async def main():
        errors = 0
        for i in range(150):
            shared = f"shared{i % 30}"
            await cache.put(shared, LLMResponse(message=Message.assistant(shared)))
            await cache.put(f"{me}-{i}", LLMResponse(message=Message.assistant(f"{me}-{i}")))
            got = await cache.get(shared)
            mine = await cache.get(f"{me}-{i}")
            if got is None or got.message.content != shared or mine is None or mine.message.content != f"{me}-{i}":
                errors += 1
        return errors
    print(asyncio.run(main()))
    cache.close()
""")


def test_two_processes_share_one_file(path, tmp_path):
    SqliteCache(path).clear()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), name, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert out.strip() == "0", err
    stats = SqliteCache(path).stats()
    assert stats.entries == 30 + 2 * 150
    assert stats.hits == 2 * 2 * 150 and stats.misses == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*), sum(size) FROM entries").fetchone() == (stats.entries, stats.bytes)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_opens_its_own_connection(cache, path):
    import multiprocessing

    run(cache.put("k", _response("parent")))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child():
        got = asyncio.run(cache.get("k"))
        asyncio.run(cache.put("c", _response("child")))
        queue.put(got.message.content)

    proc = ctx.Process(target=child)
    proc.start()
    assert queue.get(timeout=60) == "parent"
    proc.join(60)
    assert proc.exitcode == 0
    assert run(cache.get("c")) == _response("child")


# --- corruption -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"not json", b'{"v": 1}', b'{"v": 42, "message": {}}', b"\xff\xfe", b"", 17])
def test_a_corrupt_entry_is_a_miss_and_is_deleted(cache, path, value):
    run(cache.put("k", _response()))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET value = ? WHERE key = 'k'", (value,))
    with capture_logs() as logs:
        assert run(cache.get("k")) is None
    assert [e["event"] for e in logs] == ["cache_entry_corrupt"]
    stats = cache.stats()
    assert stats.entries == 0 and stats.misses == 1 and stats.hits == 0


def test_a_corrupt_entry_through_cached_call_is_sent_and_replaced(cache, path):
    send = Sender()
    run(cached_call(cache, _request(), send))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET value = x'00ff'")
    assert run(cached_call(cache, _request(), send)) == (_response("answer 2"), False)
    assert run(cached_call(cache, _request(), send)) == (_response("answer 2"), True)


def test_a_corrupt_file_never_fails_the_call(path):
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage, not a database " * 200)
    cache = SqliteCache(path)
    send = Sender()
    with capture_logs() as logs:
        assert run(cached_call(cache, _request(), send)) == (_response("answer 1"), False)
    assert [e["operation"] for e in logs if e["event"] == "cache_failed"] == ["get", "put"]
    with pytest.raises(sqlite3.DatabaseError):
        cache.stats()


def test_a_locked_database_never_fails_the_call(path):
    cache = SqliteCache(path, busy_timeout=0.2)
    run(cache.put("warm", _response()))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        send = Sender()
        with capture_logs() as logs:
            assert run(cached_call(cache, _request(), send)) == (_response("answer 1"), False)
        assert {e["operation"] for e in logs if e["event"] == "cache_failed"} == {"get", "put"}
        assert all("locked" in e["error"] for e in logs if e["event"] == "cache_failed")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run(cached_call(cache, _request(), send))[1] is False  # it works again
    assert run(cached_call(cache, _request(), send))[1] is True
    cache.close()


def test_a_file_of_a_newer_schema_is_refused(path):
    cache = SqliteCache(path)
    run(cache.put("k", _response()))
    cache.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(sqlite3.DatabaseError, match="newer rlm-cache-sqlite"):
        run(SqliteCache(path).get("k"))


# --- bounds ---------------------------------------------------------------------------------------


def test_max_entries_evicts_the_least_recently_used(path):
    cache = SqliteCache(path, max_entries=3)
    for key in ("a", "b", "c"):
        run(cache.put(key, _response(key)))
    assert run(cache.get("a")) is not None  # a is now more recent than b
    run(cache.put("d", _response("d")))
    assert run(cache.get("b")) is None
    assert [run(cache.get(k)) is not None for k in ("a", "c", "d")] == [True, True, True]
    assert cache.stats().entries == 3
    for i in range(20):
        run(cache.put(f"x{i}", _response()))
    assert cache.stats().entries == 3
    cache.close()


def test_max_bytes_evicts_the_least_recently_used(path):
    one = len(response_to_json(_response("x" * 100)))
    cache = SqliteCache(path, max_bytes=one * 3 + 10)
    for key in "abcd":
        run(cache.put(key, _response("x" * 100)))
    stats = cache.stats()
    assert stats.entries == 3 and stats.bytes == 3 * one <= cache.max_bytes
    assert run(cache.get("a")) is None and run(cache.get("d")) is not None
    run(cache.put("big", _response("y" * 250)))  # ~2.5 entries' worth: evicts the two oldest
    stats = cache.stats()
    assert stats.bytes <= cache.max_bytes and run(cache.get("big")) is not None
    assert run(cache.get("b")) is None
    cache.close()


class _Log:
    """Stands for the module's logger: records event names whatever level logging is configured at."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.events.append(event)


def test_an_entry_larger_than_the_cap_is_refused_and_ignored(path, monkeypatch):
    cache = SqliteCache(path, max_entry_bytes=500)
    run(cache.put("small", _response("s")))
    run(cache.put("large", _response("L" * 1000)))
    assert run(cache.get("large")) is None and cache.stats().entries == 1
    cache.close()
    # stored by a cache with a larger cap: a miss for this one, never read into memory
    SqliteCache(path, max_entry_bytes=10_000).put_sync("large", _response("L" * 1000))
    cache = SqliteCache(path, max_entry_bytes=500)
    logs = _Log()  # capture_logs would miss an info line where another test set the level to warning
    monkeypatch.setattr("rlm_cache_sqlite.cache.log", logs)
    assert run(cache.get("large")) is None
    assert logs.events == ["cache_entry_too_large"]
    assert run(cache.get("small")) == _response("s")
    cache.close()


def test_the_totals_match_the_table_after_replacements_and_evictions(path):
    cache = SqliteCache(path, max_entries=7, max_bytes=5_000)
    for i in range(60):
        run(cache.put(f"k{i % 11}", _response("z" * (i * 7 % 300))))
    stats = cache.stats()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone() == (stats.entries,
                                                                                                 stats.bytes)
    assert stats.entries <= 7 and stats.bytes <= 5_000
    cache.close()


# --- clear and stats ------------------------------------------------------------------------------


def test_clear_and_stats(cache, path):
    for i in range(5):
        run(cache.put(f"k{i}", _response(str(i))))
    run(cache.get("k0"))
    run(cache.get("missing"))
    stats = cache.stats()
    assert (stats.entries, stats.hits, stats.misses) == (5, 1, 1) and stats.bytes > 0
    assert cache.clear() == 5
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.hits, stats.misses) == (0, 0, 0, 0)
    assert run(cache.get("k1")) is None
    assert cache.clear() == 0
    run(cache.put("again", _response()))
    assert cache.stats().entries == 1


def test_close_is_idempotent_and_the_cache_reopens(cache):
    run(cache.put("k", _response()))
    cache.close()
    cache.close()
    assert run(cache.get("k")) == _response()


def test_stats_json_ready(cache):
    run(cache.put("k", _response()))
    assert json.dumps(attrs.asdict(cache.stats()))
