"""The hosted Snipara API: MCP JSON-RPC ``tools/call`` over HTTPS, standard library only.

Each tool call is one ``POST {base_url}/mcp/{project_slug}`` with the key in
an ``x-api-key`` header and a JSON-RPC 2.0 body.  Answers may be JSON or a
server-sent event stream (MCP streamable HTTP, read by :mod:`rlm.sse`).  The key is checked for
shape before any request, never logged, and scrubbed from any text that
goes back to the model (server messages included).  HTTP failures become
:class:`rlm.errors.ToolError` naming the cause and the fix: 401/403
"Invalid API key", 404 "Project not found", 429, 5xx, timeouts.
"""

from __future__ import annotations

import itertools
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from rlm import sse
from rlm.errors import ToolError
from rlm.logging import get_logger

from rlm_snipara import __version__
from rlm_snipara.config import KEY_PREFIX, key_looks_valid

log = get_logger(__name__)

_ids = itertools.count(1)
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


def invalid_key_error(detail: str) -> ToolError:
    return ToolError(f"Invalid API key: {detail}",
                     fix=f"check the Snipara key starts with {KEY_PREFIX} and is current in the Snipara dashboard; "
                         "set SNIPARA_API_KEY (or [rlm] snipara_api_key)")


class SniparaClient:
    """Calls tools of one Snipara project.  ``call`` blocks: run it in a worker thread."""

    def __init__(self, *, api_key: str, project_slug: str, base_url: str, timeout: float = 30.0) -> None:
        self._key = api_key
        self.project_slug = project_slug
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:  # never the key
        return f"SniparaClient(project={self.project_slug!r}, base_url={self.base_url!r})"

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp/{urllib.parse.quote(self.project_slug, safe='')}"

    def redact(self, text: str) -> str:
        """``text`` with the key replaced by ``rlm_***``."""
        return text.replace(self._key, KEY_PREFIX + "***") if self._key else text

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Run the service's tool ``tool``; its result (parsed JSON when it is JSON, else text)."""
        if not key_looks_valid(self._key):
            raise invalid_key_error(f"the configured Snipara key does not start with {KEY_PREFIX} "
                                    "(or is too short); no request was sent")
        request_id = next(_ids)
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                           "params": {"name": tool, "arguments": arguments}}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "x-api-key": self._key,
            "user-agent": f"rlm-snipara/{__version__}",
        })
        log.debug("snipara_request", tool=tool, project=self.project_slug, base_url=self.base_url)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                content_type = response.headers.get("content-type", "")
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except TimeoutError:
            raise ToolError(f"Snipara did not answer within {self.timeout:g} s ({tool})",
                            fix="retry, or raise [plugins.snipara] timeout") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise ToolError(f"Snipara did not answer within {self.timeout:g} s ({tool})",
                                fix="retry, or raise [plugins.snipara] timeout") from None
            raise ToolError(f"cannot reach Snipara at {self.base_url}: {self.redact(str(reason))}",
                            fix="check the network, or [plugins.snipara] base_url") from None
        except OSError as exc:
            raise ToolError(f"the connection to Snipara at {self.base_url} failed: {self.redact(str(exc))}",
                            fix="retry later") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ToolError(f"Snipara's answer to {tool} is larger than {MAX_RESPONSE_BYTES} bytes",
                            fix="narrow the query or lower max_tokens")
        return self._result(tool, request_id, raw, content_type)

    def _http_error(self, exc: urllib.error.HTTPError) -> ToolError:
        status = exc.code
        try:
            detail = self.redact(exc.read(2000).decode("utf-8", "replace")).strip()
        except Exception:  # noqa: BLE001 - the body is only a hint
            detail = ""
        message = _error_message(detail)
        log.warning("snipara_http_error", status=status, project=self.project_slug)
        if status in (401, 403):
            return invalid_key_error(f"Snipara refused the key (HTTP {status}{': ' + message if message else ''})")
        if status == 404:
            return ToolError(f"Project not found: Snipara has no project {self.project_slug!r} for this key (HTTP 404)",
                             fix="verify the project slug in the Snipara dashboard; set SNIPARA_PROJECT_SLUG "
                                 "(or [rlm] snipara_project_slug)")
        if status == 429:
            return ToolError("Snipara rate limit reached (HTTP 429)", fix="wait and retry, or check your plan's limits")
        if status >= 500:
            return ToolError(f"Snipara service error (HTTP {status}{': ' + message if message else ''})",
                             fix="retry later; if it persists, check https://status.snipara.com or use "
                                 '[plugins.snipara] provider = "local"')
        return ToolError(f"Snipara rejected the request (HTTP {status}{': ' + message if message else ''})",
                         fix="check the tool arguments")

    def _result(self, tool: str, request_id: int, raw: bytes, content_type: str) -> Any:
        text = raw.decode("utf-8", "replace")
        if "text/event-stream" in content_type:
            try:
                events = sse.parse(raw, max_event=MAX_RESPONSE_BYTES)
            except sse.SSEError as exc:
                raise ToolError(f"Snipara answered {tool} with a broken event stream: {exc}",
                                fix="retry later; check [plugins.snipara] base_url points at the Snipara API") from None
            text = events[-1].data if events else text  # the response comes last, after any notifications
        try:
            envelope = json.loads(text)
        except json.JSONDecodeError:
            raise ToolError(f"Snipara answered {tool} with something that is not JSON-RPC",
                            fix="check [plugins.snipara] base_url points at the Snipara API") from None
        if not isinstance(envelope, dict):
            raise ToolError(f"Snipara answered {tool} with an unexpected JSON value", fix="retry later")
        if envelope.get("error"):
            error = envelope["error"]
            message = self.redact(str(error.get("message") if isinstance(error, dict) else error))
            raise ToolError(f"Snipara refused {tool}: {message}", fix="check the tool arguments")
        result = envelope.get("result")
        if isinstance(result, dict) and isinstance(result.get("content"), list):
            texts = [part.get("text", "") for part in result["content"]
                     if isinstance(part, dict) and part.get("type") == "text"]
            joined = self.redact("\n".join(texts))
            if result.get("isError"):
                raise ToolError(f"Snipara's {tool} failed: {joined[:2000]}", fix="check the tool arguments")
            if "structuredContent" in result:
                return result["structuredContent"]
            try:
                return json.loads(joined)
            except json.JSONDecodeError:
                return {"result": joined}
        return result


def _error_message(body: str) -> str:
    """The human part of an error body (JSON ``detail``/``message``/``error``), short."""
    if not body:
        return ""
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return body[:200]
    if isinstance(value, dict):
        for key in ("detail", "message", "error"):
            inner = value.get(key)
            if isinstance(inner, dict):
                inner = inner.get("message")
            if isinstance(inner, str):
                return inner[:200]
    return body[:200]
