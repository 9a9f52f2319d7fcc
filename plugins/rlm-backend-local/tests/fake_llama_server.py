"""A stand-in for llama.cpp's OpenAI-compatible server in tests (stdlib only).

    python fake_llama_server.py --port P --api_key K [--mode ok|crash|hang|slow_start] [--record FILE]

or, in-process (the stand-in ``xllamacpp`` of test_serve.py does this):
``make_server(port, api_key, mode="ok", record=None)`` returns the
``ThreadingHTTPServer`` to run (``ok`` and ``slow_start`` only).

Like llama.cpp's server: ``/health`` is public and every other path needs
``Authorization: Bearer <key>`` (401 otherwise); ``/v1/models`` answers
``{"models": [...], "object": "list", "data": [{"id": ...}]}``; answers
carry ``usage`` and ``timings``; a stream sends the text word by word, a
chunk with the ``finish_reason``, then (when ``stream_options.include_usage``
asks for it) a chunk with no choices and the ``usage``.

``ok`` answers ``/v1/chat/completions`` by saying how many messages it got
and echoing the last one, and rejects what the backend never sends (a role
other than system/user/assistant, content that is not a string) with a
500, so the tests notice when convert.py's conservative conversions are
not applied; ``crash`` prints a llama.cpp-like load error and exits 1;
``hang`` never listens; ``slow_start`` listens after 0.5 s.  ``--record``
appends each request body as a JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROMPT_TOKENS = 11
TIMINGS = {"cache_n": 0, "prompt_n": PROMPT_TOKENS, "prompt_ms": 5.0, "predicted_n": 1, "predicted_ms": 5.0}


def make_server(port: int, api_key: str, *, mode: str = "ok", record: str | None = None,
                alias: str = "fake") -> ThreadingHTTPServer:
    """The HTTP server (not yet serving) for ``mode`` ``ok`` or ``slow_start``."""
    if mode == "slow_start":
        time.sleep(0.5)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {api_key}":
                self._json(401, {"error": {"message": "Invalid API Key", "type": "authentication_error",
                                           "code": 401}})
                return False
            return True

        def _json(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(200, {"status": "ok"})
                return
            if not self._authorized():
                return
            if self.path in ("/v1/models", "/models"):
                self._json(200, {"models": [{"name": alias, "model": alias, "type": "model"}], "object": "list",
                                 "data": [{"id": alias, "aliases": [alias], "object": "model",
                                           "owned_by": "llamacpp"}]})
            else:
                self._json(404, {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if record:
                with open(record, "a") as fh:
                    fh.write(json.dumps(body) + "\n")
            for m in body.get("messages", []):
                if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
                    self._json(500, {"error": {"message": f"bad message {m}", "type": "server_error", "code": 500}})
                    return
            last = body["messages"][-1]["content"]
            text = f"got {len(body['messages'])} messages; last: {last}"
            words = text.split(" ")
            usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(words),
                     "total_tokens": PROMPT_TOKENS + len(words)}
            if not body.get("stream"):
                self._json(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {**usage, "completion_tokens": 7, "total_tokens": PROMPT_TOKENS + 7},
                    "timings": TIMINGS,
                })
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def send(data: str) -> None:
                raw = f"data: {data}\n\n".encode()
                self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                self.wfile.flush()

            def chunk(choices: list[dict[str, object]], **extra: object) -> str:
                return json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body.get("model"),
                                   "choices": choices, **extra})

            send(chunk([{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]))
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                send(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
            send(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], timings=TIMINGS))
            if (body.get("stream_options") or {}).get("include_usage"):
                send(chunk([], usage=usage, timings=TIMINGS))
            send("[DONE]")
            self.wfile.write(b"0\r\n\r\n")

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api_key", required=True)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--record")
    args, _ = parser.parse_known_args()
    print(f"fake llama server: mode {args.mode}", file=sys.stderr, flush=True)
    if args.mode == "crash":
        print("llama_model_load: error loading model: invalid magic characters 'XXXX'", file=sys.stderr)
        print("ValueError: Failed to load model from file: /tmp/model.gguf", file=sys.stderr, flush=True)
        sys.exit(1)
    if args.mode == "hang":
        while True:
            time.sleep(1)
    make_server(args.port, args.api_key, mode=args.mode, record=args.record).serve_forever()


if __name__ == "__main__":
    main()
