"""rlm_backend_kit.sdk_backend: the shared part of the SDK backends, driven by a fake SDK (no network, no SDK import)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import attrs
import pytest
from rlm.backend import BackendSettings, LLMRequest, LLMResponse, StreamEnd, TextDelta
from rlm.errors import NoProvidersConfigured, PluginError, ProviderUnavailableError
from rlm_backend_kit.sdk_backend import RetryingBackend, SDKBackend, SDKCall
from rlm.types import Message


@attrs.define(frozen=True, kw_only=True)
class FakeOptions:
    retry_base_delay: float = 0.001
    retry_max_delay: float = 0.002
    read_timeout: float | None = None


class FakeHeaders(dict):
    pass


class FakeResponse:
    def __init__(self, content_type: str = "text/event-stream", raw: bytes = b"") -> None:
        self.headers = FakeHeaders({"content-type": content_type})
        self.raw = raw

    async def aread(self) -> bytes:
        return self.raw


class FakeStream:
    """An SDK stream: chunks (an exception among them is raised), a response, close()."""

    def __init__(self, chunks: list[Any], response: FakeResponse | None = None) -> None:
        self.chunks = chunks
        self.response = response or FakeResponse()
        self.closed = False

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        for chunk in self.chunks:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk

    async def close(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.sent: list[dict[str, Any]] = []
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


class Assembler:
    """Chunks are strings (text) or "END" (the end marker)."""

    def __init__(self, model: str) -> None:
        self.model, self.text, self.ended = model, "", False

    def feed(self, chunk: str) -> list[Any]:
        if chunk == "END":
            self.ended = True
            return []
        self.text += chunk
        return [TextDelta(text=chunk)]

    def finish(self) -> list[Any]:
        return [StreamEnd(response=LLMResponse(message=Message.assistant(self.text), finish_reason="stop",
                                               model=self.model))]


class FakeBackend(SDKBackend):
    name = "fake"
    section = "backend-fake"
    options_type = FakeOptions
    provider = "Fake"
    sdk_module = "json"  # any installed module: the client comes from make_client
    install_hint = "pip install fake-sdk"
    key_env = "FAKE_API_KEY"
    base_url_env = "FAKE_BASE_URL"
    placeholder_key = "fake-no-key"
    no_key_fix = "export FAKE_API_KEY=..."
    body_noun = "reply"
    end_marker = "END"
    empty_stream_detail = "no text chunk"

    answers: ClassVar[list[Any]] = []

    def make_client(self, sdk: Any) -> FakeClient:
        assert sdk is json
        return FakeClient(list(self.answers))

    def prepare(self, request: LLMRequest, *, stream: bool) -> SDKCall:
        return SDKCall({"model": request.model.removeprefix("fake/"), "timeout": self.timeout, "stream": stream},
                       context="ctx")

    async def create(self, client: FakeClient, call: SDKCall) -> Any:
        client.sent.append(call.params)
        answer = client.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def to_response(self, body: Any, call: SDKCall) -> LLMResponse:
        assert call.context == "ctx"
        return LLMResponse(message=Message.assistant(body["text"]), finish_reason="stop", model=call.model)

    def body_detail(self, body: Any) -> str:
        return f"text: {body['text']!r}"

    def assembler(self, call: SDKCall) -> Assembler:
        return Assembler(call.model)

    def stream_ended(self, assembler: Assembler) -> bool:
        return assembler.ended


REQUEST = LLMRequest(model="fake/m", messages=[Message.user("hi")])


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("FAKE_API_KEY", raising=False)
    monkeypatch.delenv("FAKE_BASE_URL", raising=False)


def _backend(answers: list[Any], **settings: Any) -> FakeBackend:
    backend = FakeBackend(settings=BackendSettings(**{"api_key": "k", "max_retries": 2, **settings}))
    backend.answers = answers
    return backend


def _run(backend: FakeBackend, *, stream: bool = False) -> Any:
    async def go():
        try:
            if stream:
                return [e async for e in backend.stream(REQUEST)]
            return await backend.complete(REQUEST)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_settings_options_policy_and_read_timeout():
    backend = FakeBackend(settings=BackendSettings(max_retries=-1, timeout=7.0))
    assert backend.options == FakeOptions()
    assert backend.policy.max_retries == 0 and backend.policy.base_delay == 0.001
    assert (backend.timeout, backend.timeout_fix) == (7.0, "the run's timeout (--timeout)")
    other = FakeBackend(settings=BackendSettings(options=FakeOptions(read_timeout=3.0)))
    assert (other.timeout, other.timeout_fix) == (3.0, "[plugins.backend-fake] read_timeout")
    assert isinstance(other, RetryingBackend)


def test_a_missing_sdk_names_the_install_hint(monkeypatch):
    monkeypatch.setattr(FakeBackend, "sdk_module", "no_such_sdk_for_rlm_tests")
    with pytest.raises(PluginError, match="the fake backend needs the no_such_sdk_for_rlm_tests SDK") as info:
        FakeBackend()
    assert info.value.fix == "pip install fake-sdk"


def test_the_key_comes_from_settings_then_environment_then_a_placeholder(monkeypatch):
    assert FakeBackend(settings=BackendSettings(api_key="given")).api_key() == "given"
    monkeypatch.setenv("FAKE_API_KEY", "from-env")
    assert FakeBackend().api_key() == "from-env"
    monkeypatch.delenv("FAKE_API_KEY")
    monkeypatch.setenv("FAKE_BASE_URL", "http://local/v1")
    backend = FakeBackend()
    assert backend.base_url == "http://local/v1" and backend.api_key() == "fake-no-key"
    monkeypatch.delenv("FAKE_BASE_URL")
    with pytest.raises(NoProvidersConfigured) as info:
        FakeBackend().api_key()
    assert info.value.fix == "export FAKE_API_KEY=..."


def test_complete_reads_the_body():
    response = _run(_backend([{"text": "hello"}]))
    assert response.message.text == "hello" and response.model == "m"


def test_an_empty_answer_is_retried_then_given_up():
    backend = _backend([{"text": ""}, {"text": "second"}])
    assert _run(backend).message.text == "second"
    with pytest.raises(ProviderUnavailableError, match=r"no content \(text: ''.*gave up after 3 attempts"):
        _run(_backend([{"text": ""}] * 3))


def test_a_text_body_is_not_an_api_response_and_not_retried():
    with pytest.raises(ProviderUnavailableError, match="Fake sent an HTML page .'Login'. instead of an API"):
        _run(_backend(["<html><title>Login</title></html>", {"text": "never"}]))


def test_an_unreadable_body_names_the_body():
    with pytest.raises(ProviderUnavailableError, match="Fake sent a reply that could not be read") as info:
        _run(_backend([None]))  # None["text"]: TypeError
    assert "Fake-compatible server" in info.value.fix


def test_sdk_exceptions_are_classified_and_retried():
    class APIConnectionError(Exception):
        pass

    backend = _backend([APIConnectionError("refused"), {"text": "reached"}])
    assert _run(backend).message.text == "reached"
    with pytest.raises(ProviderUnavailableError, match="cannot reach Fake: refused"):
        _run(_backend([APIConnectionError("refused")] * 3))


def test_stream_yields_the_events_and_closes_the_stream():
    stream = FakeStream(["he", "llo", "END"])
    events = _run(_backend([stream]), stream=True)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["he", "llo"]
    assert isinstance(events[-1], StreamEnd) and events[-1].response.message.text == "hello"
    assert stream.closed


def test_a_stream_without_its_end_marker_is_retried():
    events = _run(_backend([FakeStream([]), FakeStream(["again", "END"])]), stream=True)
    assert events[-1].response.message.text == "again"
    with pytest.raises(ProviderUnavailableError, match=r"ended the stream before the answer was complete \(no END\)"):
        _run(_backend([FakeStream([]) for _ in range(3)]), stream=True)


def test_an_empty_stream_is_an_empty_answer():
    with pytest.raises(ProviderUnavailableError, match=r"no content \(no text chunk"):
        _run(_backend([FakeStream(["END"]) for _ in range(3)]), stream=True)


def test_a_stream_event_that_is_not_json_is_malformed():
    broken = json.JSONDecodeError("Expecting value", "{", 1)
    with pytest.raises(ProviderUnavailableError, match="sent a stream event that is not valid JSON"):
        _run(_backend([FakeStream([broken]) for _ in range(3)]), stream=True)


def test_an_html_page_instead_of_events_is_not_retried():
    page = FakeStream(["x"], FakeResponse("text/html; charset=utf-8", b"<title>Proxy</title>"))
    with pytest.raises(ProviderUnavailableError, match="an HTML page .'Proxy'."):
        _run(_backend([page, FakeStream(["never", "END"])]), stream=True)
    assert page.closed


def test_the_client_is_made_once_per_event_loop_and_closed_once():
    backend = _backend([{"text": "a"}, {"text": "b"}])

    async def complete() -> tuple[str, FakeClient]:
        return (await backend.complete(REQUEST)).message.text, backend.client()

    first, client = asyncio.run(complete())
    backend.answers = [{"text": "c"}]
    second, other = asyncio.run(complete())
    assert (first, second) == ("a", "c") and other is not client, "a client of another loop is replaced"
    asyncio.run(backend.aclose())
    asyncio.run(backend.aclose())
    assert other.closed == 1 and backend._client is None


def test_the_request_timeout_bounds_the_call():
    class Slow(FakeBackend):
        async def create(self, client: FakeClient, call: SDKCall) -> Any:
            await asyncio.sleep(5)

    backend = Slow(settings=BackendSettings(api_key="k"))
    request = LLMRequest(model="m", messages=[Message.user("x")], timeout=0.05)
    with pytest.raises(ProviderUnavailableError, match="did not answer within the 0.05s timeout"):
        asyncio.run(backend.complete(request))


def test_an_sdk_import_freezes_the_gc_only_where_the_cli_asked(tmp_path):
    """import_sdk freezes the collector after a first import when ``rlm.cli`` turned freezing on (``rlm run``
    & co.), never otherwise (a fresh interpreter: frozen objects are never collected)."""
    import subprocess
    import sys

    for name in ("sdk_a", "sdk_b", "sdk_c"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    code = f"""
import gc, json, sys
sys.path.insert(0, {str(tmp_path)!r})
from rlm_backend_kit.sdk_backend import import_sdk
import_sdk("sdk_a", "fix"); counts = [gc.get_freeze_count()]      # rlm.cli not imported: a library
from rlm import cli
import_sdk("sdk_b", "fix"); counts.append(gc.get_freeze_count())  # imported, not turned on
cli._gc_freeze_on = True
import_sdk("sdk_b", "fix"); counts.append(gc.get_freeze_count())  # already imported: nothing new
import_sdk("sdk_c", "fix"); counts.append(gc.get_freeze_count())  # a first import: frozen
print(json.dumps(counts))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts[:3] == [0, 0, 0] and counts[3] > 0
