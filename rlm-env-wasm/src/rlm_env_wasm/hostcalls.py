"""A host replacement for WASI's ``poll_oneoff``, so that a sleeping guest still stops on time.

wasmtime's own ``poll_oneoff`` blocks the thread for the whole sleep, where
epoch interruption cannot reach it: ``time.sleep(3600)`` would outlive any
timeout.  Ours waits on a :class:`threading.Event` instead; when the host
stops the guest it sets the event, the call returns at once, and the epoch
trap (the engine's epoch was incremented too) stops the guest at its next
loop or call.

A shadowing host function cannot call the original import (wasmtime refuses:
"missing required memory export"), so this is a complete implementation of
the preview-1 function, reading and writing guest memory through the
``Caller``.  It never raises (a Python exception in a host function becomes a
trap through wasmtime-py's process-global ``LAST_EXCEPTION``, which other
sessions' threads could pick up); bad pointers give ``EFAULT``.

``clock_time_get`` stays wasmtime's (a Python host function costs about
100 µs a call, and ``time.process_time()`` runs on every execution).  Its
``REALTIME`` clock is the host's; its ``MONOTONIC`` clock counts from the
creation of the ``WasiConfig`` (wasmtime 50), so the instance records that
moment (``monotonic_origin_ns``) and absolute deadlines the guest computes are
read against it.  (Were that ever off, sleeps would be off, never the
timeout: every wait ends when the host stops the guest.)
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Any

WASI_MODULE = "wasi_snapshot_preview1"

# errno values of WASI preview 1
ESUCCESS, EFAULT, EINVAL = 0, 21, 28

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME, CLOCK_THREAD_CPUTIME = 0, 1, 2, 3
EVENTTYPE_CLOCK, EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE = 0, 1, 2
SUBCLOCKFLAG_ABSTIME = 1

# subscription: userdata u64, tag u8 @8, union @16 (clock: id u32, timeout u64 @24, precision @32, flags u16 @40)
SUBSCRIPTION_SIZE = 48
EVENT_SIZE = 32  # userdata u64, error u16 @8, type u8 @10, fd_readwrite {nbytes u64 @16, flags u16 @24}

_U32 = 0xFFFFFFFF  # wasm i32 arguments arrive signed; pointers and counts are unsigned

#: The longest single wait on the stop event (a longer sleep waits again).
MAX_WAIT_S = 3600.0


class HostCalls:
    """``poll_oneoff`` for one guest; ``stop`` ends its sleeps.

    ``monotonic_origin_ns`` is the host's ``time.monotonic_ns()`` when the guest's
    monotonic clock read zero.
    """

    def __init__(self, stop: threading.Event, *, monotonic_origin_ns: int) -> None:
        self.stop = stop
        self.monotonic_origin_ns = monotonic_origin_ns

    def now_ns(self, clock_id: int) -> int | None:
        """The guest's reading of a WASI clock, in nanoseconds (None for an unknown clock)."""
        if clock_id == CLOCK_REALTIME:
            return time.time_ns()
        if clock_id in (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME, CLOCK_THREAD_CPUTIME):
            # CPU-time clocks: only their rate matters for a sleep; the guest is single-threaded
            return time.monotonic_ns() - self.monotonic_origin_ns
        return None

    def define(self, wasmtime: Any, linker: Any) -> None:
        """Shadow the import in ``linker`` (after ``define_wasi``)."""
        i32 = wasmtime.ValType.i32()
        linker.allow_shadowing = True
        linker.define_func(WASI_MODULE, "poll_oneoff", wasmtime.FuncType([i32, i32, i32, i32], [i32]),
                           self.poll_oneoff, access_caller=True)
        linker.allow_shadowing = False

    # --- the import --------------------------------------------------------------------------

    def poll_oneoff(self, caller: Any, subs_ptr: int, events_ptr: int, count: int, nevents_ptr: int) -> int:
        try:
            return self._poll(caller, subs_ptr & _U32, events_ptr & _U32, count & _U32, nevents_ptr & _U32)
        except Exception:  # noqa: BLE001
            return EFAULT

    # --- poll_oneoff -------------------------------------------------------------------------

    def _poll(self, caller: Any, subs_ptr: int, events_ptr: int, count: int, nevents_ptr: int) -> int:
        if count == 0:
            return EINVAL
        raw = _read(caller, subs_ptr, SUBSCRIPTION_SIZE * count)
        if raw is None:
            return EFAULT
        ready: list[tuple[int, int, int]] = []  # (userdata, error, type)
        timers: list[tuple[int, int]] = []  # (monotonic deadline ns, userdata)
        for index in range(count):
            base = index * SUBSCRIPTION_SIZE
            userdata, tag = struct.unpack_from("<QB", raw, base)
            if tag == EVENTTYPE_CLOCK:
                clock_id, timeout, _precision, flags = struct.unpack_from("<I4xQQH", raw, base + 16)
                current = self.now_ns(clock_id)
                if current is None:
                    ready.append((userdata, EINVAL, EVENTTYPE_CLOCK))
                    continue
                remaining = timeout - current if flags & SUBCLOCKFLAG_ABSTIME else timeout
                timers.append((time.monotonic_ns() + max(0, remaining), userdata))
            elif tag in (EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE):
                # Readiness of the guest's descriptors is not visible from here: report them
                # ready; a read that then blocks is still bounded by the execution's timeout.
                ready.append((userdata, ESUCCESS, tag))
            else:
                ready.append((userdata, EINVAL, tag))
        if not ready and timers:
            first = min(deadline for deadline, _ in timers)
            while not self.stop.is_set():
                wait_s = (first - time.monotonic_ns()) / 1e9
                if wait_s <= 0:
                    break
                self.stop.wait(min(wait_s, MAX_WAIT_S))
            current = time.monotonic_ns()
            fired = [userdata for deadline, userdata in timers if deadline <= current]
            if not fired:  # stopped early: the earliest timer "fires" (the epoch trap follows)
                fired = [min(timers)[1]]
            ready = [(userdata, ESUCCESS, EVENTTYPE_CLOCK) for userdata in fired]
        out = bytearray(EVENT_SIZE * len(ready))
        for index, (userdata, error, kind) in enumerate(ready):
            struct.pack_into("<QHB", out, index * EVENT_SIZE, userdata, error, kind)
        if not _write(caller, events_ptr, bytes(out)):
            return EFAULT
        return ESUCCESS if _write(caller, nevents_ptr, struct.pack("<I", len(ready))) else EFAULT


def _memory(caller: Any) -> Any:
    return caller.get("memory")


def _read(caller: Any, pointer: int, size: int) -> bytes | None:
    memory = _memory(caller)
    if memory is None or pointer < 0 or pointer + size > memory.data_len(caller):
        return None
    return bytes(memory.read(caller, pointer, pointer + size))


def _write(caller: Any, pointer: int, data: bytes) -> bool:
    memory = _memory(caller)
    if memory is None or pointer < 0 or pointer + len(data) > memory.data_len(caller):
        return False
    memory.write(caller, data, pointer)
    return True
