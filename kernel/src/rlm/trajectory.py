"""Trajectories: the events of a run, fanned out to sinks as they happen.

A :class:`Recorder` belongs to one top-level run.  Every event is a flat JSON
mapping with ``type``, ``trajectory_id``, ``call_id``, ``parent_call_id``,
``sub_call_type``, ``depth`` and ``timestamp`` plus fields of its type; it is
written to every configured sink at once (the JSONL sink flushes each line,
so a crash loses nothing already done) and offered to the
``rlm_trajectory_event`` hook.  :class:`JsonlSink` is the kernel's default
sink, registered by ``rlm.builtin.trajectory``.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

from rlm.logging import get_logger
from rlm.types import AudioPart, ImagePart, Message, TextPart

log = get_logger(__name__)


def new_id(prefix: str = "") -> str:
    """A short random id (``prefix`` + 12 hex digits)."""
    return prefix + uuid.uuid4().hex[:12]


def new_trajectory_id() -> str:
    """Sortable by time: ``YYYYmmdd-HHMMSS-<8 hex>``."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def jsonable(value: Any) -> Any:
    """``value`` made JSON-ready: attrs instances as dicts, bytes summarised."""
    if isinstance(value, Message):
        return message_json(value)
    if attrs.has(type(value)):
        return {f.name: jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))
                if f.name not in ("handler",)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def message_json(message: Message) -> dict[str, Any]:
    """A message as JSON; image and audio bytes are summarised, not copied."""
    if isinstance(message.content, str):
        content: Any = message.content
    else:
        content = []
        for part in message.content:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                url = part.url if part.url and not part.url.startswith("data:") else None
                size = len(part.data) if part.data else len(base64.b64decode(part.as_base64() or ""))
                content.append({"type": "image", "url": url, "bytes": None if url else size})
            elif isinstance(part, AudioPart):
                content.append({"type": "audio", "format": part.format, "bytes": len(part.data)})
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


class Recorder:
    """Collects the events of one run and writes each to the sinks at once."""

    def __init__(self, *, trajectory_id: str, sinks: list[Any], hook: Any = None, keep: bool = True) -> None:
        self.trajectory_id = trajectory_id
        self.sinks = sinks
        self.hook = hook
        self.keep = keep
        self.events: list[dict[str, Any]] = []
        #: callables given each event after the sinks (live status displays)
        self.listeners: list[Any] = []
        self._broken: set[int] = set()

    def emit(self, type: str, *, call_id: str | None = None, parent_call_id: str | None = None,
             depth: int = 0, sub_call_type: str | None = None, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": type,
            "trajectory_id": self.trajectory_id,
            "call_id": call_id,
            "parent_call_id": parent_call_id,
            "sub_call_type": sub_call_type,
            "depth": depth,
            "timestamp": time.time(),
        }
        event.update(jsonable(fields))
        for index, sink in enumerate(self.sinks):
            if index in self._broken:
                continue
            try:
                sink.write(event)
            except Exception as exc:  # noqa: BLE001 - a broken sink must not end the run
                self._broken.add(index)
                log.error("trajectory_sink_failed", sink=type_name(sink), error=str(exc))
        if self.hook is not None:
            try:
                self.hook.rlm_trajectory_event(event=event)
            except Exception as exc:  # noqa: BLE001 - observers must not end the run
                log.warning("trajectory_observer_failed", error=str(exc))
        for listener in self.listeners:
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - a display must not end the run
                log.warning("trajectory_listener_failed", error=str(exc))
        if self.keep:
            self.events.append(event)
        return event

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("trajectory_sink_close_failed", sink=type_name(sink), error=str(exc))


def type_name(obj: Any) -> str:
    return type(obj).__name__


class JsonlSink:
    """Appends each event as one JSON line to ``{log_dir}/{trajectory_id}.jsonl``.

    The directory and file are created on the first event, not before; every
    line is flushed as written.
    """

    def __init__(self, *, log_dir: str) -> None:
        self.log_dir = log_dir
        self._fh: Any = None
        self.path: str | None = None

    def write(self, event: Mapping[str, Any]) -> None:
        if self._fh is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self.path = os.path.join(self.log_dir, f"{event['trajectory_id']}.jsonl")
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self._fh.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_trajectory(path: str) -> list[dict[str, Any]]:
    """The events of a JSONL trajectory; a torn last line (crash mid-write) is skipped."""
    events = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events
