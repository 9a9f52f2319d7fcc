"""The lean transport's connection pool under a fan-out: nothing caps the connections open at once (N concurrent
calls are N requests on the wire), and the idle ones are kept (up to MAX_IDLE) for the next fan-out.  The test
server answers only once every request of a round has arrived, so a cap on open connections would deadlock
(the fail-safe limit then fails the test); no timing is asserted."""

from __future__ import annotations

import asyncio

import pytest
from rlm_backend_kit import http_transport

BODY = b'{"ok":true}'


async def _gated_server(expected: int):
    """A server answering each request once ``expected[0]`` requests of the round have arrived."""
    state = {"arrived": 0, "gate": asyncio.Event(), "connections": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                state["arrived"] += 1
                if state["arrived"] >= expected[0]:
                    state["gate"].set()
                await state["gate"].wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(BODY), BODY))
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    return server, state


@pytest.mark.parametrize("fan_out", [50, 200])
def test_a_fan_out_opens_one_connection_per_call_and_the_next_one_reuses_them(fan_out: int) -> None:
    httpx = http_transport.httpx_module()

    async def go():
        expected = [fan_out]
        server, state = await _gated_server(expected)
        port = server.sockets[0].getsockname()[1]
        transport = http_transport.lean_transport_type(httpx)()
        async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}") as client:
            async with asyncio.timeout(120):  # fail-safe: a capped pool never lets the gate open
                first = await asyncio.gather(*(client.post("/v1/x", content=b"{}") for _ in range(fan_out)))
                opened_first = transport.opened
                idle_after_first = sum(len(conns) for conns in transport._pool().values())
                state["arrived"], state["gate"] = 0, asyncio.Event()
                second = await asyncio.gather(*(client.post("/v1/x", content=b"{}") for _ in range(fan_out)))
            closed = transport.close_loop()
        server.close()
        await server.wait_closed()
        return first + second, opened_first, idle_after_first, transport.opened, closed

    responses, opened_first, idle_after_first, opened_total, closed = asyncio.run(go())
    assert [r.status_code for r in responses] == [200] * (2 * fan_out)
    assert opened_first == fan_out  # every call of the fan-out on the wire at once
    assert http_transport.MAX_IDLE >= 200
    assert idle_after_first == min(fan_out, http_transport.MAX_IDLE)  # kept for the next fan-out ...
    assert opened_total == fan_out + max(0, fan_out - http_transport.MAX_IDLE)  # ... which reused them
    assert closed == min(fan_out, http_transport.MAX_IDLE)  # and closed with the loop


def test_a_fan_out_to_a_host_name_looks_it_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 concurrent connections to ``localhost`` share one getaddrinfo (asyncio alone makes one per connection,
    queued on a few executor threads); a refused address makes the next connection look the name up again."""
    httpx = http_transport.httpx_module()
    cache = http_transport.AddressCache()
    monkeypatch.setattr(http_transport, "addresses", cache)

    async def go():
        expected = [100]
        server, _state = await _gated_server(expected)
        port = server.sockets[0].getsockname()[1]
        transport = http_transport.lean_transport_type(httpx)()
        async with httpx.AsyncClient(transport=transport, base_url=f"http://localhost:{port}") as client:
            async with asyncio.timeout(120):
                responses = await asyncio.gather(*(client.post("/v1/x", content=b"{}") for _ in range(100)))
            lookups_after_fan_out = cache.lookups
            transport.close_loop()
            server.close()
            await server.wait_closed()
            with pytest.raises(httpx.ConnectError):  # nothing listens there now
                await client.post("/v1/x", content=b"{}")
            failed_lookups = cache.lookups
            # an IP literal is never looked up
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://127.0.0.1:{port}/v1/x", content=b"{}")
        return responses, lookups_after_fan_out, failed_lookups, cache.lookups, cache._found

    responses, after_fan_out, after_refused, after_literal, found = asyncio.run(go())
    assert [r.status_code for r in responses] == [200] * 100
    assert after_fan_out == 1
    assert after_refused == 1 and found == {}  # the cached addresses served it, then were forgotten
    assert after_literal == 1


@pytest.fixture(scope="module")
def localhost_certificate(tmp_path_factory):
    """A self-signed certificate for the name ``localhost`` only: ``(cert file, key file)``."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_https_to_a_host_name_checks_the_name_not_the_address_connected_to(localhost_certificate) -> None:
    """The connection goes to a cached address, but TLS still sends and verifies the host name."""
    import ssl

    httpx = http_transport.httpx_module()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*localhost_certificate)
    client_context = ssl.create_default_context(cafile=str(localhost_certificate[0]))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()
        writer.close()

    async def go():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        transport = http_transport.lean_transport_type(httpx)(client_context)
        try:
            async with httpx.AsyncClient(transport=transport) as client:
                ok = await client.get(f"https://localhost:{port}/v1/models")
                with pytest.raises(httpx.ConnectError, match="certificate|match|IP address"):
                    await client.get(f"https://127.0.0.1:{port}/v1/models")  # the certificate names localhost
                return ok
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(go()).content == BODY
