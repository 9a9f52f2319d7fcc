"""rlm.cache: request keys, the (de)serialisation of responses, cached_call with an in-memory fake cache
(hits, misses, a broken cache never failing the call), open_cache, the ``cache`` config key and kind,
and ``rlm cache stats|clear``."""

from __future__ import annotations

import asyncio
import json

import attrs
import pytest
from rlm import hookimpl
from rlm.backend import LLMRequest, LLMResponse, ToolSchema
from rlm.cache import (
    CacheEntryError,
    CacheStats,
    ResponseCache,
    cached_call,
    open_cache,
    request_key,
    response_from_json,
    response_to_json,
)
from rlm.config import RLMConfig, load_config, to_toml_comment_block
from rlm.errors import BackendError, ConfigError, PluginError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm.types import AudioPart, ImagePart, Message, TextPart, ToolCall, Usage
from structlog.testing import capture_logs


def _request(**changes):
    base = LLMRequest(
        model="gpt-4o-mini",
        messages=[Message.system("be brief"), Message.user("hi"),
                  Message.assistant("", tool_calls=(ToolCall(id="c1", name="f", arguments={"a": 1, "b": [1, 2]}),)),
                  Message.tool("c1", '{"ok": true}', name="f")],
        tools=[ToolSchema(name="f", description="a tool",
                          parameters={"type": "object", "properties": {"a": {"type": "integer"}}})],
        tool_choice="auto",
        response_format={"name": "answer", "schema": {"type": "object", "required": ["x"]}},
        max_tokens=100,
        temperature=0.0,
        seed=7,
        timeout=30.0,
    )
    return attrs.evolve(base, **changes)


RESPONSE = LLMResponse(
    message=Message.assistant("hello", tool_calls=(ToolCall(id="t1", name="f", arguments={"q": "x", "n": [1]}),)),
    usage=Usage(input_tokens=12, output_tokens=5, cost_usd=0.0012),
    finish_reason="tool_calls",
    model="gpt-4o-mini-2024",
)


# --- request_key -----------------------------------------------------------------------------------


def test_key_is_a_sha256_hex_and_stable():
    key = request_key(_request())
    assert len(key) == 64 and all(c in "0123456789abcdef" for c in key)
    assert request_key(_request()) == key


def test_timeout_does_not_change_the_key():
    assert request_key(_request(timeout=1.0)) == request_key(_request(timeout=None)) == request_key(_request())


@pytest.mark.parametrize("changes", [
    {"model": "gpt-4o"},
    {"temperature": 0.7},
    {"temperature": None},
    {"seed": 8},
    {"seed": None},
    {"max_tokens": 101},
    {"tool_choice": "required"},
    {"tools": ()},
    {"response_format": None},
    {"messages": [Message.user("hi")]},
    {"messages": [Message.user("hi"), Message.system("be brief")]},
])
def test_what_decides_the_answer_changes_the_key(changes):
    assert request_key(_request(**changes)) != request_key(_request())


def test_top_p_changes_the_key_when_the_request_has_it():
    if "top_p" not in attrs.fields_dict(LLMRequest):
        pytest.skip("LLMRequest has no top_p")
    assert request_key(_request(top_p=0.9)) != request_key(_request(top_p=None))
    assert request_key(_request(top_p=1)) == request_key(_request(top_p=1.0))


def test_message_details_change_the_key():
    def with_last(message):
        return request_key(_request(messages=[Message.user("hi"), message]))

    keys = {
        with_last(Message.tool("c1", "x", name="f")),
        with_last(Message.tool("c2", "x", name="f")),
        with_last(Message.tool("c1", "x", name="g")),
        with_last(Message.assistant("x")),
        with_last(Message.assistant("x", tool_calls=(ToolCall(id="c1", name="f", arguments={"a": 1}),))),
        with_last(Message.assistant("x", tool_calls=(ToolCall(id="c1", name="f", arguments={"a": 2}),))),
        with_last(Message.user([TextPart(text="x")])),
        with_last(Message.user([TextPart(text="x"), ImagePart(data=b"\x89PNG1")])),
        with_last(Message.user([TextPart(text="x"), ImagePart(data=b"\x89PNG2")])),
        with_last(Message.user([TextPart(text="x"), ImagePart(url="https://example.com/a.png")])),
        with_last(Message.user([TextPart(text="x"), AudioPart(data=b"RIFF")])),
    }
    assert len(keys) == 11


def test_dict_order_and_number_forms_do_not_change_the_key():
    a = _request(
        messages=[Message.assistant("", tool_calls=(ToolCall(id="c", name="f", arguments={"a": 1, "b": {"x": 1, "y": 2}}),))],
        tools=[ToolSchema(name="f", description="d", parameters={"type": "object", "properties": {"a": {}, "b": {}}})],
        response_format={"name": "n", "schema": {"type": "object", "required": ["x"]}},
        temperature=1,
    )
    b = _request(
        messages=[Message.assistant("", tool_calls=(ToolCall(id="c", name="f", arguments={"b": {"y": 2, "x": 1}, "a": 1}),))],
        tools=[ToolSchema(name="f", description="d", parameters={"properties": {"b": {}, "a": {}}, "type": "object"})],
        response_format={"schema": {"required": ["x"], "type": "object"}, "name": "n"},
        temperature=1.0,
    )
    assert request_key(a) == request_key(b)


def test_the_scope_changes_the_key():
    assert request_key(_request(), scope="") == request_key(_request())
    assert request_key(_request(), scope="openai|https://api.openai.com/v1") != request_key(_request())
    assert request_key(_request(), scope="local|") != request_key(_request(), scope="openai|")


def test_cached_call_keys_by_scope():
    cache, send = FakeCache(), Sender()
    assert asyncio.run(cached_call(cache, _request(), send, scope="a"))[1] is False
    assert asyncio.run(cached_call(cache, _request(), send, scope="b"))[1] is False
    assert asyncio.run(cached_call(cache, _request(), send, scope="a"))[1] is True
    assert set(cache.data) == {request_key(_request(), scope="a"), request_key(_request(), scope="b")}


def test_a_field_added_to_llmrequest_counts_only_when_set():
    @attrs.define(frozen=True, kw_only=True)
    class Grown(LLMRequest):
        stop: tuple[str, ...] = ()
        reasoning: str | None = None

    plain = _request()
    grown = Grown(**{f.name: getattr(plain, f.name) for f in attrs.fields(LLMRequest)})
    assert request_key(grown) == request_key(plain)
    assert request_key(attrs.evolve(grown, stop=("END",))) != request_key(plain)
    assert request_key(attrs.evolve(grown, reasoning="high")) != request_key(attrs.evolve(grown, reasoning="low"))


def test_a_value_without_a_json_form_is_a_type_error():
    with pytest.raises(TypeError):
        request_key(_request(response_format={"name": "n", "schema": {"x": {1, 2}}}))
    with pytest.raises(TypeError):
        request_key(_request(temperature=float("nan")))


# --- (de)serialisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("response", [
    RESPONSE,
    LLMResponse(message=Message.assistant("plain")),
    LLMResponse(message=Message.assistant("é ✓ \u2028"), usage=Usage(cost_usd=None), finish_reason=None, model=""),
    LLMResponse(message=Message(role="assistant", content=(TextPart(text="a"), ImagePart(data=b"\x00\x01"),
                                                             ImagePart(url="https://x/y.png"),
                                                             AudioPart(data=b"ab", format="mp3")))),
])
def test_responses_round_trip(response):
    assert response_from_json(response_to_json(response)) == response


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"\xff\xfe", b"[]", b"null", b'{"v": 1}', b'{"v": 99}',
    json.dumps({**json.loads(response_to_json(RESPONSE)), "v": 2}).encode(),
    json.dumps({**json.loads(response_to_json(RESPONSE)), "model": 3}).encode(),
    json.dumps({**json.loads(response_to_json(RESPONSE)), "usage": {"input_tokens": "1", "output_tokens": 1,
                                                                     "cost_usd": None}}).encode(),
    json.dumps({**json.loads(response_to_json(RESPONSE)), "usage": {"input_tokens": True, "output_tokens": 1,
                                                                     "cost_usd": None}}).encode(),
    response_to_json(RESPONSE).replace(b'"assistant"', b'"wizard"'),
    response_to_json(RESPONSE)[:-5],
    response_to_json(LLMResponse(message=Message(role="assistant", content=(ImagePart(data=b"x"),))))
    .replace(b'"$bytes":"eA=="', b'"$bytes":"!!"'),
])
def test_what_does_not_read_back_is_a_cache_entry_error(raw):
    with pytest.raises(CacheEntryError):
        response_from_json(raw)


# --- cached_call with a fake cache ---------------------------------------------------------------


class FakeCache:
    """An in-memory ResponseCache storing the JSON form, as a real one does."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.closed = False

    async def get(self, key):
        raw = self.data.get(key)
        if raw is None:
            return None
        try:
            return response_from_json(raw)
        except CacheEntryError:
            return None

    async def put(self, key, response):
        self.data[key] = response_to_json(response)

    def stats(self):
        return CacheStats(entries=len(self.data), bytes=sum(map(len, self.data.values())), location="memory")

    def clear(self):
        n = len(self.data)
        self.data.clear()
        return n

    def close(self):
        self.closed = True


class Sender:
    def __init__(self, response=RESPONSE, error=None):
        self.calls = 0
        self.response, self.error = response, error

    async def __call__(self, request):
        self.calls += 1
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.response


def test_the_fake_is_a_response_cache():
    assert isinstance(FakeCache(), ResponseCache)
    assert not isinstance(object(), ResponseCache)


def test_a_miss_calls_and_stores_then_a_hit_does_not_call():
    cache, send = FakeCache(), Sender()
    assert asyncio.run(cached_call(cache, _request(), send)) == (RESPONSE, False)
    assert send.calls == 1 and list(cache.data) == [request_key(_request())]
    assert asyncio.run(cached_call(cache, _request(timeout=5.0), send)) == (RESPONSE, True)
    assert send.calls == 1
    assert asyncio.run(cached_call(cache, _request(temperature=0.5), send)) == (RESPONSE, False)
    assert send.calls == 2 and len(cache.data) == 2


def test_no_cache_just_sends():
    send = Sender()
    assert asyncio.run(cached_call(None, _request(), send)) == (RESPONSE, False)
    assert asyncio.run(cached_call(None, _request(), send)) == (RESPONSE, False)
    assert send.calls == 2


def test_an_error_of_the_call_is_raised_and_not_stored():
    cache, send = FakeCache(), Sender(error=BackendError("provider down"))
    with pytest.raises(BackendError, match="provider down"):
        asyncio.run(cached_call(cache, _request(), send))
    assert cache.data == {}


def test_a_corrupt_entry_is_a_miss():
    cache, send = FakeCache(), Sender()
    cache.data[request_key(_request())] = b'{"v": 1, "message": '
    assert asyncio.run(cached_call(cache, _request(), send)) == (RESPONSE, False)
    assert send.calls == 1
    assert response_from_json(cache.data[request_key(_request())]) == RESPONSE


class Broken(FakeCache):
    def __init__(self, *, get=None, put=None, returns=None):
        super().__init__()
        self.get_error, self.put_error, self.returns = get, put, returns

    async def get(self, key):
        if self.get_error:
            raise self.get_error
        if self.returns is not None:
            return self.returns
        return await super().get(key)

    async def put(self, key, response):
        if self.put_error:
            raise self.put_error
        await super().put(key, response)


@pytest.mark.parametrize(("cache", "operation"), [
    (Broken(get=OSError(28, "No space left on device")), "get"),
    (Broken(get=RuntimeError("database is locked")), "get"),
    (Broken(put=OSError(28, "No space left on device")), "put"),
    (Broken(get=ValueError("bad"), put=ValueError("bad")), "get"),
    (Broken(returns={"not": "a response"}), "get"),
])
def test_a_broken_cache_never_fails_the_call(cache, operation):
    send = Sender()
    with capture_logs() as logs:
        assert asyncio.run(cached_call(cache, _request(), send)) == (RESPONSE, False)
    assert send.calls == 1
    failures = [e for e in logs if e["event"] == "cache_failed"]
    assert failures and failures[0]["operation"] == operation and failures[0]["log_level"] == "warning"
    assert failures[0]["cache"] == "Broken" and failures[0]["error"]


def test_a_request_without_a_key_is_sent_uncached():
    cache, send = FakeCache(), Sender()
    with capture_logs() as logs:
        result = asyncio.run(cached_call(cache, _request(response_format={"schema": {1, 2}}), send))
    assert result == (RESPONSE, False) and cache.data == {}
    assert [(e["event"], e["operation"]) for e in logs] == [("cache_failed", "key")]


def test_cancellation_is_not_swallowed():
    class Slow(FakeCache):
        async def get(self, key):
            await asyncio.sleep(10)

    async def go():
        task = asyncio.create_task(cached_call(Slow(), _request(), Sender()))
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())


def test_concurrent_calls_share_the_cache():
    cache, send = FakeCache(), Sender()

    async def go():
        first = await cached_call(cache, _request(), send)
        rest = await asyncio.gather(*(cached_call(cache, _request(), send) for _ in range(20)))
        return first, rest

    first, rest = asyncio.run(go())
    assert first == (RESPONSE, False) and all(r == (RESPONSE, True) for r in rest) and send.calls == 1


# --- the config key, the kind, open_cache --------------------------------------------------------


def _pm(**plugins):
    pm = create_plugin_manager(entry_points=False, default_plugins=False)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


def _cache_plugin(name="fake", factory=None):
    made = []

    def default_factory(*, config):
        cache = FakeCache()
        made.append((cache, config))
        return cache

    class Plugin:
        made_caches = made

        @hookimpl
        def rlm_register_caches(self, register):
            register(name, factory or default_factory, description="a fake cache")

    return Plugin()


def test_the_cache_key_of_the_config():
    assert RLMConfig().cache is None
    assert load_config(use_file=False, env={"RLM_CACHE": "sqlite"}).cache == "sqlite"
    assert load_config(use_file=False, env={}, cache="fake").cache == "fake"
    assert "# cache = \n" in to_toml_comment_block()
    with pytest.raises(ConfigError, match="cache"):
        load_config(use_file=False, env={}, cache=3)


def test_caches_are_a_kind_of_the_registry():
    found = collect(_pm(one=_cache_plugin()), "cache")
    assert list(found) == ["fake"] and found["fake"].plugin == "one" and found["fake"].description == "a fake cache"
    with pytest.raises(PluginError, match="cache 'fake' is registered by both plugin 'one' and plugin 'two'"):
        collect(_pm(one=_cache_plugin(), two=_cache_plugin()), "cache")


@pytest.mark.parametrize("name", [None, "", "  "])
def test_no_cache_configured_opens_none(name):
    plugin = _cache_plugin()
    assert open_cache(_pm(one=plugin), RLMConfig(cache=name)) is None
    assert plugin.made_caches == []


def test_open_cache_calls_the_factory_with_the_config():
    plugin = _cache_plugin()
    config = RLMConfig(cache=" fake ")
    cache = open_cache(_pm(one=plugin), config)
    assert isinstance(cache, FakeCache) and plugin.made_caches == [(cache, config)]


def test_an_unknown_cache_names_the_installed_ones():
    with pytest.raises(ConfigError) as info:
        open_cache(_pm(one=_cache_plugin("fake"), two=_cache_plugin("other")), RLMConfig(cache="sqlite"))
    assert "[rlm] cache 'sqlite': no installed plugin registers this cache (installed: fake, other)" in str(info.value)
    with pytest.raises(ConfigError, match=r"\(installed: none\)"):
        open_cache(_pm(), RLMConfig(cache="sqlite"))


def test_a_failing_or_odd_factory_is_a_plugin_error():
    def boom(*, config):
        raise RuntimeError("no disk")

    with pytest.raises(PluginError, match="cache 'fake' from plugin 'one' failed to start: RuntimeError: no disk"):
        open_cache(_pm(one=_cache_plugin(factory=boom)), RLMConfig(cache="fake"))
    with pytest.raises(PluginError, match="made a dict, not a ResponseCache"):
        open_cache(_pm(one=_cache_plugin(factory=lambda *, config: {})), RLMConfig(cache="fake"))

    def config_error(*, config):
        raise ConfigError("bad path")

    with pytest.raises(ConfigError, match="bad path"):
        open_cache(_pm(one=_cache_plugin(factory=config_error)), RLMConfig(cache="fake"))


# --- rlm cache stats|clear -----------------------------------------------------------------------

CLI_PLUGIN = """
    from rlm import hookimpl
    from rlm.cache import CacheStats

    class Cache:
        def __init__(self, fail):
            self.fail = fail
        async def get(self, key):
            return None
        async def put(self, key, response):
            pass
        def stats(self):
            if self.fail:
                raise OSError("file is not a database")
            return CacheStats(entries=3, bytes=3 * 1024 * 1024, location="/tmp/x.db", hits=6, misses=2)
        def clear(self):
            return 3
        def close(self):
            pass

    @hookimpl
    def rlm_register_caches(register):
        register("mem", lambda *, config: Cache(False))
        register("broken", lambda *, config: Cache(True))
"""


@pytest.fixture
def cache_site(subprocess_site):
    subprocess_site.add("rlm-fake-cache", {"fakecache": "fake_cache_mod"}, {"fake_cache_mod": CLI_PLUGIN})
    return subprocess_site.root


def test_cli_without_a_cache_says_so_and_exits_2(rlm_cli, cache_site):
    for command in ("stats", "clear"):
        result = rlm_cli("cache", command, plugin_dirs=[cache_site])
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        assert result.stderr.strip().splitlines() == [(
            'rlm: error: no response cache is configured (caches: broken, mem): set [rlm] cache = "sqlite" in '
            "rlm.toml or RLM_CACHE=sqlite (pip install rlm-cache-sqlite for it)")]


def test_cli_stats_and_clear(rlm_cli, cache_site):
    result = rlm_cli("cache", "stats", env={"RLM_CACHE": "mem"}, plugin_dirs=[cache_site])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["cache:    mem", "location: /tmp/x.db", "entries:  3", "size:     3.0 MiB",
                                          "hits:     6, misses: 2 (75% hits)"]
    result = rlm_cli("cache", "stats", "--json", env={"RLM_CACHE": "mem"}, plugin_dirs=[cache_site])
    assert json.loads(result.stdout) == {"cache": "mem", "location": "/tmp/x.db", "entries": 3,
                                         "bytes": 3 * 1024 * 1024, "hits": 6, "misses": 2}
    result = rlm_cli("cache", "clear", env={"RLM_CACHE": "mem"}, plugin_dirs=[cache_site])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "removed 3 entries from cache 'mem' (/tmp/x.db)\n"


def test_cli_unknown_or_broken_cache_is_one_line(rlm_cli, cache_site):
    result = rlm_cli("cache", "stats", env={"RLM_CACHE": "nope"}, plugin_dirs=[cache_site])
    assert result.returncode == 2 and "cache 'nope': no installed plugin registers this cache (installed: broken, mem)" \
        in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = rlm_cli("cache", "stats", env={"RLM_CACHE": "broken"}, plugin_dirs=[cache_site])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [(
        "rlm: error: cannot read cache 'broken': OSError: file is not a database: check the file's permissions, "
        "or delete the cache file to start afresh")]
