"""The host's reading of what a guest says: every field checked, every text capped on our side.

A guest runs user code, so whatever it sends may be forged (code that found
the protocol stream, a patched library, a broken interpreter): nothing it
claims is trusted.  :func:`exec_result` turns an ``exec`` reply into a
:class:`rlm.types.REPLResult` with output, value, error and final answer cut at
``output_limit`` (``truncated`` then says so); the callback, context and get
readers check their shapes.  A reply of the wrong shape raises
:class:`ProtocolError`; environments turn it into a result or a
:class:`rlm.errors.SandboxError` that says the session was restarted.
Used by every environment (local, docker, wasm).
"""

from __future__ import annotations

import json
from typing import Any

from rlm.types import FinalSignal, REPLResult

#: Largest single message the host reads from a guest; a longer line breaks the protocol.
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_ERROR_CHARS = 20_000
MAX_CONTEXT_NAMES = 1_000
MAX_CONTEXT_REPR = 200
MAX_BATCH_PROMPTS = 1_000
#: Longest reason a guest may give for a restart it made itself (``session_lost``).
MAX_LOST_REASON_CHARS = 500
#: What every environment says when a session's state was lost (a restart, a dead sandbox).
SESSION_LOST = "the session was restarted: variables, functions and imports defined before are gone"


class ProtocolError(Exception):
    """The guest sent something that is not a valid message of this session."""


def _text(reply: dict[str, Any], key: str, *, optional: bool) -> str | None:
    value = reply.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"field {key!r} of the reply is {type(value).__name__}, not a string")
    return value


def _number(reply: dict[str, Any], key: str) -> float | None:
    value = reply.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ProtocolError(f"field {key!r} of the reply is not a non-negative number")
    return value


def _cap(text: str | None, limit: int) -> tuple[str | None, bool]:
    if text is None or len(text) <= limit:
        return text, False
    return text[:limit], True


def exec_result(reply: dict[str, Any], *, output_limit: int, execution_time_ms: float,
                notice: str | None = None) -> REPLResult:
    """The checked, capped result of an ``exec`` reply.

    A ``session_lost`` text in the reply (a guest supervisor restarted the REPL after the cell, see
    :mod:`rlm_repl.supervisor`) becomes the result's notice, after ``notice`` when both are given.
    """
    output, cut_output = _cap(_text(reply, "output", optional=False), output_limit)
    value, cut_value = _cap(_text(reply, "value", optional=True), output_limit)
    error, cut_error = _cap(_text(reply, "error", optional=True), max(output_limit, MAX_ERROR_CHARS))
    if not isinstance(reply.get("truncated", False), bool):
        raise ProtocolError("field 'truncated' of the reply is not a boolean")
    final = reply.get("final")
    signal = None
    cut_final = False
    if final is not None:
        if not isinstance(final, dict) or final.get("kind") not in ("final", "final_var"):
            raise ProtocolError("field 'final' of the reply is not a final answer")
        answer, cut_final = _cap(_text(final, "value", optional=False), output_limit)
        variable = _text(final, "variable", optional=True)
        if final["kind"] == "final_var" and (variable is None or not variable.isidentifier()):
            raise ProtocolError("a FINAL_VAR answer without a valid variable name")
        signal = FinalSignal(kind=final["kind"], value=answer or "", variable=variable)
    peak = _number(reply, "memory_peak_bytes")
    lost = _text(reply, "session_lost", optional=True)
    if lost is not None:
        lost = f"{lost[:MAX_LOST_REASON_CHARS].rstrip('; ') or 'the sandbox restarted its REPL'}; {SESSION_LOST}"
        notice = f"{notice}; {lost}" if notice else lost
    return REPLResult(
        output=output or "", error=error, value=value, execution_time_ms=execution_time_ms,
        truncated=bool(reply.get("truncated")) or cut_output or cut_value or cut_error or cut_final,
        memory_peak_bytes=int(peak) if peak is not None else None,
        cpu_time_ms=_number(reply, "cpu_time_ms"), final=signal, notice=notice,
    )


def callback_request(op: str, message: dict[str, Any]) -> str | list[str]:
    """The prompt (``llm_query``) or prompts (``llm_query_batched``) of a callback message."""
    if op == "llm_query":
        return _text(message, "prompt", optional=False) or ""
    prompts = message.get("prompts")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise ProtocolError("llm_query_batched without a list of string prompts")
    if len(prompts) > MAX_BATCH_PROMPTS:
        raise ProtocolError(f"llm_query_batched with {len(prompts)} prompts (at most {MAX_BATCH_PROMPTS})")
    return prompts


def context_reply(reply: dict[str, Any]) -> dict[str, str]:
    """The ``context`` reply: at most 1000 names, each repr capped."""
    context = reply.get("context")
    if not isinstance(context, dict):
        raise ProtocolError("the context reply holds no mapping")
    out: dict[str, str] = {}
    for name, text in list(context.items())[:MAX_CONTEXT_NAMES]:
        if not isinstance(name, str) or not name.isidentifier() or not isinstance(text, str):
            raise ProtocolError("the context reply holds a name or repr that is not a string")
        out[name] = text[:MAX_CONTEXT_REPR]
    return out


def variable_reply(name: str, reply: dict[str, Any]) -> Any:
    """The ``get`` reply: the value decoded from JSON, or its repr text; KeyError naming it when absent."""
    if not reply.get("found"):
        raise KeyError(f"no variable named {name!r} in the REPL")
    if "json" in reply:
        text = _text(reply, "json", optional=False) or ""
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise ProtocolError(f"the JSON text of {name!r} does not parse (or is nested too deeply)") from None
    return _text(reply, "repr", optional=True)
