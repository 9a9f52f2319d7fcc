"""The shared guest REPL: one Python session driven over JSON lines.

Sandboxes that run a real CPython somewhere the host cannot call into
directly (a Docker container, a WebAssembly instance) run
:mod:`rlm_repl.repl_server` inside it -- a stdlib-only, single-threaded
script -- and drive it from the host with :class:`rlm_repl.client.GuestClient`
over whatever carries lines (attached stdin/stdout, a FIFO, a socket).

:func:`server_source` returns the server's source text, to copy into the guest
or pass as ``python3 -c <source>``.  The wire protocol is documented in
:mod:`rlm_repl.repl_server`.
"""

from __future__ import annotations

from pathlib import Path

SERVER_PATH = Path(__file__).with_name("repl_server.py")


def server_source() -> str:
    """The text of :mod:`rlm_repl.repl_server` (runs as a script: ``python3 -c <text>``)."""
    return SERVER_PATH.read_text(encoding="utf-8")
