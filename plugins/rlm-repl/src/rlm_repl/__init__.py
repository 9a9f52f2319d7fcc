"""The shared guest REPL: one Python session driven over JSON lines.

Sandboxes that run a real CPython somewhere the host cannot call into
directly (a Docker container, a WebAssembly instance) run
:mod:`rlm_repl.repl_server` inside it -- a stdlib-only, single-threaded
script -- and drive it from the host with :class:`rlm_repl.client.GuestClient`
over whatever carries lines (attached stdin/stdout, a FIFO, a socket).

:func:`server_source` returns the server's source text, to copy into the guest
or pass as ``python3 -c <source>``.  The wire protocol is documented in
:mod:`rlm_repl.repl_server`.

Where the guest is a whole container, :func:`supervised_command` runs
:mod:`rlm_repl.supervisor` as its PID 1 instead: it starts the server as a
child, relays its lines, and ends every process and thread a cell leaves
behind (see that module for what it guarantees).
"""

from __future__ import annotations

import os

# os.path, not pathlib: the local worker imports this package before every session (pathlib costs ~15 ms)
SERVER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "repl_server.py")
SUPERVISOR_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor.py")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def server_source() -> str:
    """The text of :mod:`rlm_repl.repl_server` (runs as a script: ``python3 -c <text>``)."""
    return _read(SERVER_PATH)


def supervisor_source() -> str:
    """The text of :mod:`rlm_repl.supervisor` (runs as ``python3 -c <text> <server source>``)."""
    return _read(SUPERVISOR_PATH)


def supervised_command(python: str) -> tuple[str, ...]:
    """The command of a container whose PID 1 is the supervisor running the REPL server.

    ``python`` is the interpreter in the image (e.g. ``"python3"``); the host then speaks the
    protocol of :mod:`rlm_repl.repl_server` over the container's stdin/stdout as before.
    """
    return (python, "-I", "-B", "-u", "-c", supervisor_source(), server_source())
