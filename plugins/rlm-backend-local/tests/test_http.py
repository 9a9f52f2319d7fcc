"""The HTTP client over https, and the kernel's retry policy and error mapping in the local backend."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import ssl
import subprocess
import threading

import pytest
from rlm.backend import BackendSettings, LLMRequest
from rlm.errors import AuthenticationError, ProviderUnavailableError
from rlm_backend_kit.provider_errors import from_status
from rlm_backend_kit.retry import RetryPolicy
from rlm.types import Message
from rlm_backend_local import http
from rlm_backend_local.backend import EXTERNAL_SERVER, KEY_HINT, LocalBackend
from rlm_backend_local.settings import LocalSettings


def _load_fake_server():
    """tests/fake_llama_server.py as a module (the tests folder is not on sys.path)."""
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("fake_llama_server", Path(__file__).with_name("fake_llama_server.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_server = _load_fake_server().make_server
REQUEST = LLMRequest(model="fake", messages=[Message.user("hi")])


def _backend(base_url: str, api_key: str = "right", **settings) -> LocalBackend:
    values = {"timeout": 10.0, "max_retries": 2, **settings}
    return LocalBackend(settings=BackendSettings(base_url=base_url, api_key=api_key, options=LocalSettings(),
                                                 **values))


@pytest.fixture
def fake_server():
    """``fake_server(tls=None)``: tests/fake_llama_server.py in a thread (key ``right``); returns its base URL."""
    servers = []

    def start(tls: ssl.SSLContext | None = None) -> str:
        server = make_server(0, "right")
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        scheme = "https" if tls else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- https ---------------------------------------------------------------------------------------


def test_https_connects_with_the_default_context_and_checks_certificates(monkeypatch):
    seen = {}

    async def open_connection(host, port, **kwargs):
        seen.update(host=host, port=port, **kwargs)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(http.asyncio, "open_connection", open_connection)
    with pytest.raises(http.HTTPFailure, match="cannot connect to llama.example:443") as info:
        asyncio.run(http.request("GET", "https://llama.example/v1/models"))
    assert not info.value.permanent
    context = seen["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert (seen["host"], seen["port"], seen["server_hostname"]) == ("llama.example", 443, "llama.example")

    seen.clear()
    with pytest.raises(http.HTTPFailure):
        asyncio.run(http.request("GET", "http://127.0.0.1:8080/v1/models"))
    assert (seen["port"], seen.get("ssl")) == (8080, None)  # plain http stays plain


def test_other_schemes_are_a_permanent_failure():
    with pytest.raises(http.HTTPFailure, match="only http:// and https://") as info:
        asyncio.run(http.request("GET", "ftp://example.com/v1/models"))
    assert info.value.permanent


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: ``(cert file, key file)``."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def _server_context(certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def test_a_self_signed_certificate_is_refused_and_not_retried(fake_server, certificate):
    http.tls_context.cache_clear()
    base = fake_server(_server_context(certificate))
    with pytest.raises(ProviderUnavailableError) as info:
        asyncio.run(_backend(base).complete(REQUEST))
    assert "certificate" in str(info.value) and "was refused" in str(info.value)
    assert "SSL_CERT_FILE" in info.value.fix
    assert "gave up after" not in str(info.value)  # one attempt: a retry cannot help


def test_a_trusted_certificate_works_over_https(fake_server, certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # read by ssl.create_default_context()
    http.tls_context.cache_clear()
    try:
        base = fake_server(_server_context(certificate))

        async def go():
            backend = _backend(base)
            answer = await backend.complete(REQUEST)
            events = [e async for e in backend.stream(REQUEST)]
            return answer, events

        answer, events = asyncio.run(go())
    finally:
        http.tls_context.cache_clear()
    assert answer.message.text == "got 1 messages; last: hi"
    assert events[-1].response.message.text == "got 1 messages; last: hi"


# --- the kernel's classification and retry policy --------------------------------------------------


def test_a_401_is_the_kernels_authentication_error(fake_server):
    base = fake_server()
    with pytest.raises(AuthenticationError) as info:
        asyncio.run(_backend(base, api_key="wrong").complete(REQUEST))
    expected = from_status(401, "Invalid API Key", "401", model="fake", provider=EXTERNAL_SERVER, key_env=KEY_HINT,
                           where=f" at {base}", retry_after=None).error
    assert str(info.value) == str(expected)
    assert info.value.message == f"the model server at {base} rejected the API key (401): Invalid API Key"
    assert info.value.fix == expected.fix


def test_a_503_is_retried_by_the_kernels_policy(scripted_llm):
    from rlm_testing.script import Reply

    scripted_llm.script([Reply.overloaded(status=503)] * 2 + [Reply.text("at last")])
    backend = _backend(scripted_llm.openai_base_url, max_retries=3)
    assert backend.policy == RetryPolicy(max_retries=3)  # the kernel's defaults: attempts, backoff
    backend.policy = RetryPolicy(max_retries=3, base_delay=0.2, jitter=lambda: 1.0)  # 0.2 s, then 0.4 s
    answer = asyncio.run(backend.complete(LLMRequest(model="m", messages=[Message.user("hi")])))
    assert answer.message.text == "at last"
    first, second, third = (r.time for r in scripted_llm.requests)
    assert second - first >= 0.2 - 0.005 and third - second >= 0.4 - 0.005


def test_503s_give_up_with_the_kernels_message(scripted_llm):
    from rlm_testing.script import Reply

    scripted_llm.script([Reply.overloaded(status=503)] * 2)
    backend = _backend(scripted_llm.openai_base_url, max_retries=1)
    backend.policy = RetryPolicy(max_retries=1, base_delay=0.01)
    with pytest.raises(ProviderUnavailableError) as info:
        asyncio.run(backend.complete(LLMRequest(model="m", messages=[Message.user("hi")])))
    assert str(info.value).startswith(f"the model server at {scripted_llm.openai_base_url} answered 503")
    assert "(gave up after 2 attempts)" in str(info.value)
    assert len(scripted_llm.requests) == 2


def test_an_event_stream_that_breaks_the_rules_is_a_clear_error():
    """An event over :data:`rlm.sse.MAX_EVENT` (a server that never ends one) is an error, not a memory hog."""
    from rlm import sse

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        await reader.readexactly(int(head.split(b"content-length:")[1].split(b"\r\n")[0]))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: " + b"x" * (sse.MAX_EVENT + 1))
        await writer.drain()
        writer.close()

    async def go() -> list:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            backend = _backend(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", max_retries=0)
            return [e async for e in backend.stream(REQUEST)]

    with pytest.raises(ProviderUnavailableError, match="sent a broken event stream: a server-sent event is larger"):
        asyncio.run(go())
