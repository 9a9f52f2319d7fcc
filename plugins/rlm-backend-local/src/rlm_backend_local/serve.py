"""The embedded model's server process: llama.cpp's own HTTP server, through xllamacpp.

Run as a script (``python .../serve.py --model=M --port=P ...``) by
:mod:`rlm_backend_local.server`, in the Python that has ``xllamacpp``
installed (which need not have rlm): it imports nothing but the standard
library and xllamacpp.  xllamacpp ships llama.cpp (its C++ OpenAI-compatible
server included) as prebuilt wheels, so nothing is compiled on install, and
the C++ server keeps each conversation's prompt in its KV cache: a growing
REPL conversation costs only its new tokens per turn.

What is switched off, because only rlm talks to this server: the web UI,
the slots/metrics/props endpoints, CORS and any download.  Requests need
the API key given in ``$RLM_LOCAL_SERVER_KEY`` (or ``--api-key``).  The process runs until SIGTERM.

Exit codes: 0 stopped, 2 bad arguments, 3 xllamacpp missing, 4 the model
did not load.
"""

from __future__ import annotations

import os
import sys

# Run by path, Python puts this directory first on sys.path, where the package's http.py would shadow the
# standard library's http (imported by whatever imports http.client or http.server): take it off.
if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]

import argparse
import signal
import threading
from typing import Any

#: What the server needs; ``rlm_backend_local.server`` checks for it without importing it.
MODULE = "xllamacpp"
#: Where the key comes from when ``--api-key`` is not given (rlm_backend_local.server sets it).
API_KEY_ENV = "RLM_LOCAL_SERVER_KEY"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rlm-local-serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--alias", required=True, help="model name the server answers to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default=None,
                        help=f"the key requests must carry (default: ${API_KEY_ENV}, which keeps it out of ps)")
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--n-threads", type=int, default=0, help="0: all cores")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any other llama.cpp server parameter (xllamacpp CommonParams attribute)")
    return parser.parse_args(argv)


def _coerce(current: Any, raw: str) -> Any:
    """``raw`` as the type of the parameter's current value (bool, int, float, str, list of str)."""
    if isinstance(current, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, list):
        return [part for part in raw.split(",") if part]
    if isinstance(current, str):
        return raw
    raise ValueError(f"parameters of type {type(current).__name__} cannot be set from the command line")


def build_params(args: argparse.Namespace, xlc: Any) -> Any:
    params = xlc.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.api_keys = [args.api_key]
    params.n_ctx = args.n_ctx
    params.n_parallel = 1  # one conversation at a time keeps the whole window for it
    if args.n_threads > 0:
        params.cpuparams.n_threads = args.n_threads
        params.cpuparams_batch.n_threads = args.n_threads
    params.use_jinja = True  # the model's own chat template
    params.ui = False
    params.endpoint_slots = False
    params.endpoint_metrics = False
    params.endpoint_props = False
    params.cors_origins = ""
    params.offline = True
    params.cache_ram_mib = 512
    params.verbosity = 1
    for item in args.set:
        name, sep, raw = item.partition("=")
        if not sep or not name or name.startswith("_") or not hasattr(params, name):
            raise ValueError(f"unknown server parameter {name!r} (in --set {item!r})")
        try:
            setattr(params, name, _coerce(getattr(params, name), raw))
        except (TypeError, ValueError) as exc:  # TypeError: the C++ side refused the value (a list of numbers)
            raise ValueError(f"bad value for server parameter {name!r} (in --set {item!r}): {exc}") from None
    return params


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.api_key is None:
        args.api_key = os.environ.pop(API_KEY_ENV, "")
    if not args.api_key:
        print(f"rlm-local-serve: no API key: set ${API_KEY_ENV} (or pass --api-key)", file=sys.stderr)
        return 2
    try:
        import xllamacpp as xlc
    except ImportError as exc:
        print(f"rlm-local-serve: No module named {MODULE!r} ({exc}); install it: "
              f"{sys.executable} -m pip install xllamacpp", file=sys.stderr)
        return 3
    try:
        params = build_params(args, xlc)
    except ValueError as exc:
        print(f"rlm-local-serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server = xlc.Server(params)
    except Exception as exc:  # noqa: BLE001 - reported to the parent through the log
        print(f"rlm-local-serve: failed to load model {args.model}: {exc}", file=sys.stderr)
        return 4
    print(f"rlm-local-serve: listening on {server.listening_address}", file=sys.stderr, flush=True)
    while not stop.wait(3600):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
