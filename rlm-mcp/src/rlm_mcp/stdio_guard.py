"""Keep everything but JSON-RPC off the protocol stream of the stdio transport.

:func:`claim_stdio` takes the process's real stdin/stdout for the transport
(private duplicates of fds 0 and 1), then points fd 1 at stderr and fd 0 at
the null device, and makes ``sys.stdout`` write to stderr.  After it, a
``print`` in the server, a warning, a log line, a C extension or a child
process writing to fd 1 all land on stderr; only the transport writes to the
wire, and nothing else can read the client's messages.
"""

from __future__ import annotations

import io
import os
import sys
from typing import BinaryIO

#: True once :func:`claim_stdio` ran (tests wait for it before making noise).
installed = False


def claim_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Return (wire_in, wire_out) binary files and divert fds 0/1 away from the wire."""
    global installed
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    wire_in_fd = os.dup(0)  # os.dup: not inherited by child processes
    wire_out_fd = os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
    finally:
        os.close(null)
    sys.stdout = sys.stderr
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "rb", closefd=False)))
    installed = True
    return os.fdopen(wire_in_fd, "rb"), os.fdopen(wire_out_fd, "wb")
