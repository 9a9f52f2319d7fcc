"""A stand-in for ``python -m llama_cpp.server`` in tests (stdlib only).

    python fake_llama_server.py --port P --api_key K [--mode ok|crash|hang|slow_start] [--record FILE]

``ok`` serves ``/v1/models`` and ``/v1/chat/completions`` (the answer says
how many messages it got and echoes the last one; with ``stream: true`` it
streams word by word like llama.cpp, without usage) and rejects what the
real server chokes on (``content: null``, unknown roles) with a 500;
``crash`` prints a llama.cpp-like load error and exits 1; ``hang`` never
listens; ``slow_start`` listens after 0.5 s.  ``--record`` appends each
request body as a JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
    if args.mode == "slow_start":
        time.sleep(0.5)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {args.api_key}":
                self._json(401, {"detail": "Invalid API key"})
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
            if not self._authorized():
                return
            if self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "me",
                                                             "permissions": []}]})
            else:
                self._json(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if args.record:
                with open(args.record, "a") as fh:
                    fh.write(json.dumps(body) + "\n")
            for m in body.get("messages", []):
                if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
                    self._json(500, {"error": {"message": f"bad message {m}", "type": "internal_server_error"}})
                    return
            last = body["messages"][-1]["content"]
            text = f"got {len(body['messages'])} messages; last: {last}"
            if not body.get("stream"):
                self._json(200, {
                    "id": "cmpl-1", "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                })
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            words = text.split(" ")

            def send(data: str) -> None:
                raw = f"data: {data}\r\n\r\n".encode()
                self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                self.wfile.flush()

            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                send(json.dumps({"id": "c", "model": body.get("model"),
                                 "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}))
            send(json.dumps({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            send("[DONE]")
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
