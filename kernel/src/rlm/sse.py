"""The one reader of server-sent events (``text/event-stream``) of the kernel and its plugins.

:class:`SSEParser` is fed the body as it arrives (bytes or text, cut anywhere) and hands back each
complete :class:`Event`: its ``data:`` lines joined by ``"\\n"``, its ``event:`` name and the last
``id:``.  Comments (``: ping``) and ``retry:`` are skipped; lines end with LF or CRLF.  One event holds at
most ``max_event`` bytes, so a server that never ends a line or an event cannot fill memory: it is an
:class:`SSEError`, as is a line that is not UTF-8.  An end marker in the data (OpenAI's ``[DONE]``) is the
caller's to stop at.

Why our own and not a library (httpx-sse, sseclient): it is ~60 lines with no dependency beyond the
kernel's, the backends that need it install with the kernel alone (the local backend speaks raw asyncio
HTTP, snipara urllib, neither httpx nor requests), and neither library bounds an event's size.
"""

from __future__ import annotations

from attrs import define

#: Largest event accepted by default (a token chunk is ~200 bytes; a whole tool result may be large).
MAX_EVENT = 1 << 20


class SSEError(ValueError):
    """The stream is no valid event stream (an event over the size bound, a line not UTF-8)."""


@define(frozen=True)
class Event:
    """One dispatched event: ``data`` (its ``data:`` lines joined), ``event`` (None: unnamed), ``id``."""

    data: str
    event: str | None = None
    id: str | None = None


class SSEParser:
    """Incremental: :meth:`feed` each piece of the body, then :meth:`finish` at its end."""

    def __init__(self, *, max_event: int = MAX_EVENT) -> None:
        self.max_event = max_event
        self._pending = bytearray()  # the start of a line not yet ended
        self._data: list[str] = []
        self._size = 0
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes | str) -> list[Event]:
        """The events completed by ``chunk``; SSEError when the stream breaks a rule."""
        self._pending += chunk.encode("utf-8") if isinstance(chunk, str) else chunk
        events: list[Event] = []
        start = 0
        while (end := self._pending.find(b"\n", start)) >= 0:
            event = self._line(bytes(self._pending[start:end]))
            start = end + 1
            if event is not None:
                events.append(event)
        del self._pending[:start]
        self._check(len(self._pending))
        return events

    def finish(self) -> list[Event]:
        """The event the stream ended in without its blank line (servers do that; the caller checks its
        own end marker to tell a complete answer from a cut one)."""
        events = self.feed(b"\n") if self._pending else []
        last = self._dispatch()
        return events + [last] if last is not None else events

    def _check(self, extra: int = 0) -> None:
        if self._size + extra > self.max_event:
            raise SSEError(f"a server-sent event is larger than {self.max_event} bytes (the limit of one event); "
                           "the server is not sending a valid event stream")

    def _line(self, raw: bytes) -> Event | None:
        try:
            line = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SSEError(f"a server-sent event line is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not line:
            return self._dispatch()
        name, _, value = line.partition(":")
        if not name:
            return None  # a comment
        self._size += len(raw) + 1
        self._check()
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None  # retry: or an unknown field

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event
        self._data, self._size, self._event = [], 0, None
        return Event(data="\n".join(data), event=event, id=self._id) if data else None


def parse(body: bytes | str, *, max_event: int = MAX_EVENT) -> list[Event]:
    """Every event of a whole ``body``."""
    parser = SSEParser(max_event=max_event)
    return parser.feed(body) + parser.finish()
