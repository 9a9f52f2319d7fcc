"""Trajectories: the events of a run, fanned out to sinks as they happen.

A :class:`Recorder` belongs to one top-level run.  Every event is a flat JSON
mapping with ``type``, ``v`` (the schema version), ``trajectory_id``, ``call_id``,
``parent_call_id``, ``sub_call_type``, ``depth`` and ``timestamp`` plus fields of its
type (the schema: :mod:`rlm.events`, ``rlm logs --schema``); it is
written to every configured sink at once (the JSONL sink flushes each line,
so a crash loses nothing already done) and offered to the
``rlm_trajectory_event`` hook.  :class:`JsonlSink` is the kernel's default
sink, registered by ``rlm.builtin.trajectory``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any

import attrs

from rlm.events import SCHEMA_VERSION, TOOL_OUTPUT_REF, PromptResolver
from rlm.logging import get_logger
from rlm.types import AudioPart, ImagePart, Message, TextPart

log = get_logger(__name__)


def new_id(prefix: str = "") -> str:
    """A short random id (``prefix`` + 12 hex digits)."""
    return prefix + uuid.uuid4().hex[:12]


def new_trajectory_id() -> str:
    """Sortable by time: ``YYYYmmdd-HHMMSS-<8 hex>``."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


_SURROGATE = re.compile("[\ud800-\udfff]")
_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    # U+DC80..U+DCFF: an undecodable byte kept by surrogateescape (file names, argv): show the byte
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def escape_surrogates(text: str) -> str:
    """``text`` with every lone surrogate written as an escape, so it encodes as UTF-8.

    An undecodable byte that Python kept as U+DC80..U+DCFF (``os.listdir``,
    ``sys.argv``) becomes ``\\xNN`` (the byte), any other surrogate ``\\udNNN``;
    valid text is returned unchanged (the same object).
    """
    if text.isascii():
        return text
    if _SURROGATE.search(text) is None:
        return text
    # a surrogate *pair* (UTF-16 data taken apart) is one character: join it, escape the rest
    text = _PAIR.sub(lambda m: m.group().encode("utf-16-le", "surrogatepass").decode("utf-16-le"), text)
    return _SURROGATE.sub(_escape_char, text)


def escape_surrogates_deep(value: Any) -> Any:
    """``value`` with :func:`escape_surrogates` applied to every string in it (dict keys too)
    inside dicts, lists and tuples; other objects, and values without surrogates, are returned as they are."""
    return _escape_all(value) if _has_surrogates(value) else value


def _escape_all(value: Any) -> Any:
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, Mapping):
        return {escape_surrogates(k) if isinstance(k, str) else k: _escape_all(v) for k, v in value.items()}
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_escape_all(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_escape_all(v) for v in value]
    return value


def _has_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isascii() and _SURROGATE.search(value) is not None
    if isinstance(value, Mapping):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_surrogates(v) for v in value)
    return False


#: leaves :func:`jsonable` returns as they are, by exact type (checked first: most of an event's values)
_PLAIN_LEAVES = frozenset({int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """``value`` made JSON-ready: attrs instances as dicts, bytes summarised, lone surrogates escaped
    (the result always encodes as UTF-8)."""
    kind = type(value)
    # exact built-in types first, without the attrs and ABC checks below (no attrs class is one of these)
    if kind in _PLAIN_LEAVES:
        return value
    if kind is dict:
        return {escape_surrogates(str(k)): jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [jsonable(v) for v in value]
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, Message):
        return message_json(value)
    if attrs.has(type(value)):
        return {f.name: jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))
                if f.name not in ("handler",)}
    if isinstance(value, Mapping):
        return {escape_surrogates(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return escape_surrogates(repr(value))


def stored_prompt(messages: Iterable[Message], recorded: MutableMapping[str, str]) -> list[Any]:
    """The ``prompt`` of an ``llm_call`` event: ``messages``, each tool message whose text is the output
    its call recorded in a ``tool_results`` event (``recorded``: tool call id -> that output) written as
    a reference instead (``{"role": "tool", "tool_call_id": ID, "ref": "tool_results"}``, see
    :mod:`rlm.events`), so that a trajectory stores each tool output once.  A referenced output leaves
    ``recorded`` (a later prompt that has the same message again stores it inline)."""
    out: list[Any] = []
    for m in messages:
        call_id = m.tool_call_id
        if m.role == "tool" and call_id and isinstance(m.content, str) and recorded.get(call_id) == m.content:
            del recorded[call_id]
            out.append({"role": "tool", "tool_call_id": escape_surrogates(call_id), "ref": TOOL_OUTPUT_REF})
        else:
            out.append(m)
    return out


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
    return escape_surrogates_deep(out)


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
            "v": SCHEMA_VERSION,
            "trajectory_id": self.trajectory_id,
            "call_id": call_id,
            "parent_call_id": parent_call_id,
            "sub_call_type": sub_call_type,
            "depth": depth,
            "timestamp": time.time(),
        }
        event.update(jsonable(fields))
        return self.dispatch(event)

    def dispatch(self, event: dict[str, Any]) -> dict[str, Any]:
        """Hand a finished event to the sinks, the hook and the listeners (:meth:`emit` makes them; a batch
        executor replays a remote run's with it)."""
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
        self._fh.write(json_line(event) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def json_line(event: Mapping[str, Any]) -> str:
    """``event`` as one line of JSON that always encodes as UTF-8 (lone surrogates escaped)."""
    line = json.dumps(event, ensure_ascii=False, default=str)
    if line.isascii() or _SURROGATE.search(line) is None:
        return line
    # a sink or plugin handed a raw string (or an object whose str() has one): escape, never raise
    return json.dumps(escape_surrogates_deep(jsonable(event)), ensure_ascii=False, default=str)


@attrs.define(frozen=True)
class TrajectoryFile:
    """The events read from a JSONL trajectory and how many lines could not be read."""

    events: list[dict[str, Any]]
    #: lines that are torn (a crash mid-write), not UTF-8 or not a JSON event
    skipped: int = 0


def read_trajectory_file(path: str) -> TrajectoryFile:
    """Read a JSONL trajectory, skipping (and counting) every line that is torn, not UTF-8
    or not a JSON object with a ``type``; never raises for the content of the file.

    The tool outputs that ``llm_call`` prompts store by reference are put back inline
    (:class:`rlm.events.PromptResolver`): the events read are those of any schema version as
    version 1 wrote them."""
    events: list[dict[str, Any]] = []
    skipped = 0
    resolver = PromptResolver()
    with open(path, "rb") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                event = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                skipped += 1
                continue
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                skipped += 1
                continue
            if b"\\u" in raw:  # a JSON escape may have made a lone surrogate: keep the events printable
                event = escape_surrogates_deep(event)
            events.append(resolver.resolve(event))
    return TrajectoryFile(events=events, skipped=skipped)


def read_trajectory(path: str) -> list[dict[str, Any]]:
    """The events of a JSONL trajectory; torn, undecodable or non-event lines are skipped
    (:func:`read_trajectory_file` also counts them)."""
    return read_trajectory_file(path).events
