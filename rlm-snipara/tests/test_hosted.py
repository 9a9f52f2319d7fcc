"""The hosted provider against a local stand-in of the Snipara API: request shape and errors."""

from __future__ import annotations

import pytest
from rlm.errors import ToolError
from rlm_snipara.tools import CONTEXT_TOOLS, MEMORY_TOOLS


def test_request_shape(standin, hosted_config, h):
    tools = h.tools_for(hosted_config())
    standin.responder = standin.ok({"sections": [{"title": "Auth"}]})
    out = h.run(tools["context_query"].handler(query="How does auth work?", max_tokens=3000))
    assert out == {"sections": [{"title": "Auth"}]}
    [request] = standin.requests
    assert request["path"] == "/mcp/my-app"
    assert request["headers"]["x-api-key"] == h.KEY
    assert request["headers"]["content-type"] == "application/json"
    body = request["body"]
    assert body["jsonrpc"] == "2.0" and body["method"] == "tools/call" and isinstance(body["id"], int)
    assert body["params"] == {"name": "rlm_context_query",
                              "arguments": {"query": "How does auth work?", "max_tokens": 3000}}


def test_every_tool_maps_to_the_service_tool(standin, hosted_config, h):
    tools = h.tools_for(hosted_config(memory_enabled=True))
    assert set(tools) == set(CONTEXT_TOOLS) | set(MEMORY_TOOLS)
    calls = {
        "context_query": {"query": "q"}, "sections": {}, "search": {"pattern": "TODO"},
        "shared_context": {"query": "errors"}, "decompose": {"query": "plan", "ctx": None},
        "multi_query": {"queries": ["a", "b"], "ctx": None}, "rlm_remember": {"content": "c", "type": "decision"},
        "rlm_recall": {"query": "q"},
    }
    for name, args in calls.items():
        h.run(tools[name].handler(**args))
    names = [r["body"]["params"]["name"] for r in standin.requests]
    assert names == ["rlm_context_query", "rlm_sections", "rlm_search", "rlm_shared_context", "rlm_decompose",
                     "rlm_multi_query", "rlm_remember", "rlm_recall"]
    assert standin.requests[5]["body"]["params"]["arguments"] == {"queries": ["a", "b"], "max_tokens": 5000}
    assert standin.requests[6]["body"]["params"]["arguments"] == {"content": "c", "type": "decision"}


def test_event_stream_answers_are_understood(standin, hosted_config, h):
    standin.responder = standin.ok({"ok": True}, sse=True)
    assert h.run(h.tools_for(hosted_config())["sections"].handler()) == {"ok": True}


def test_the_last_event_of_a_stream_is_the_answer_and_a_broken_stream_is_a_clear_error(standin, hosted_config, h):
    answer = standin.ok({"ok": True}, sse=True)

    def notified_first(request):
        status, headers, body = answer(request)
        return status, headers, b": ping\r\nevent: message\r\ndata: {\"jsonrpc\": \"2.0\",\r\ndata: \"method\": \"n\"}\r\n\r\n" + body

    standin.responder = notified_first
    assert h.run(h.tools_for(hosted_config())["sections"].handler()) == {"ok": True}
    standin.responder = lambda request: (200, {"content-type": "text/event-stream"}, b"data: \xff\n\n")
    with pytest.raises(ToolError, match="broken event stream: a server-sent event line is not UTF-8"):
        h.run(h.tools_for(hosted_config())["sections"].handler())


def test_slug_is_url_quoted(standin, hosted_config, h):
    h.run(h.tools_for(hosted_config(slug="team/app x"))["sections"].handler())
    assert standin.requests[0]["path"] == "/mcp/team%2Fapp%20x"


def test_malformed_key_is_refused_before_any_request(standin, hosted_config, h):
    tools = h.tools_for(hosted_config(key="sk-not-a-snipara-key"))
    with pytest.raises(ToolError, match="Invalid API key") as info:
        h.run(tools["context_query"].handler(query="q"))
    assert "rlm_" in str(info.value) and "sk-not-a-snipara-key" not in str(info.value)
    assert standin.requests == []


@pytest.mark.parametrize(("status", "message", "fix"), [
    (401, "Invalid API key", "starts with rlm_"),
    (403, "Invalid API key", "starts with rlm_"),
    (404, "Project not found", "Verify the project slug in the Snipara dashboard"),
    (429, "rate limit", "wait and retry"),
    (500, "Snipara service error (HTTP 500", "retry later"),
    (400, "rejected the request (HTTP 400", "arguments"),
])
def test_http_errors_name_cause_and_fix(standin, hosted_config, h, status, message, fix):
    standin.responder = standin.status(status, {"detail": f"echo {h.KEY}"})
    with pytest.raises(ToolError) as info:
        h.run(h.tools_for(hosted_config())["context_query"].handler(query="q"))
    text = str(info.value)
    assert message in text and fix.lower() in text.lower()
    assert h.KEY not in text


def test_jsonrpc_and_tool_errors(standin, hosted_config, h):
    tools = h.tools_for(hosted_config())
    standin.responder = lambda r: (200, {"content-type": "application/json"},
                                   b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad args"}}')
    with pytest.raises(ToolError, match="Snipara refused rlm_search: bad args"):
        h.run(tools["search"].handler(pattern="x"))
    failed = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"boom"}],"isError":true}}'
    standin.responder = lambda r: (200, {"content-type": "application/json"}, failed)
    with pytest.raises(ToolError, match="failed: boom"):
        h.run(tools["search"].handler(pattern="x"))
    standin.responder = lambda r: (200, {"content-type": "text/html"}, b"<html>")
    with pytest.raises(ToolError, match="not JSON-RPC"):
        h.run(tools["search"].handler(pattern="x"))
    standin.responder = lambda r: (200, {"content-type": "application/json"},
                                   b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"plain"}]}}')
    assert h.run(tools["search"].handler(pattern="x")) == {"result": "plain"}


def test_timeout(standin, hosted_config, h):
    standin.responder = standin.status(200, {}, delay=1.5)
    from rlm_snipara.hosted import SniparaClient

    client = SniparaClient(api_key=h.KEY, project_slug="p", base_url=standin.base_url, timeout=0.3)
    with pytest.raises(ToolError, match="did not answer within 0.3 s") as info:
        client.call("rlm_sections", {})
    assert "[plugins.snipara] timeout" in str(info.value)


def test_unreachable_service(h):
    from rlm_snipara.hosted import SniparaClient

    client = SniparaClient(api_key=h.KEY, project_slug="p", base_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(ToolError, match="cannot reach Snipara|connection to Snipara") as info:
        client.call("rlm_sections", {})
    assert h.KEY not in str(info.value) and "SniparaClient" not in str(info.value)
    assert h.KEY not in repr(client)
