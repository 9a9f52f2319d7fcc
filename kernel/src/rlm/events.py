"""The trajectory event schema: one TypedDict per event type, and its JSON Schema.

Every event the kernel's :class:`rlm.trajectory.Recorder` writes (to the JSONL
sink, the ``rlm_trajectory_event`` hook and live listeners) is a flat JSON
object with the common fields of :class:`CommonFields` (``type``, ``v`` - the
schema version -, ``trajectory_id``, ``call_id``, ``parent_call_id``,
``sub_call_type``, ``depth``, ``timestamp``) plus the fields of its type below.
This module is the contract for trajectory sinks and readers (the dashboard,
MCP, ``rlm logs``): ``rlm logs --schema`` prints :func:`json_schema`.

Compatibility: a field may be added within a version (readers ignore fields they
do not know, and the schema allows them); removing or renaming a field, or
changing its type, bumps :data:`SCHEMA_VERSION`.  Trajectories written before
the schema existed have no ``v``.

Tool outputs are stored once (version 2): a tool message of an ``llm_call``
``prompt`` whose content is the output its tool call returned, already in that
call's ``tool_results`` event, is written as a reference,
``{"role": "tool", "tool_call_id": ID, "ref": "tool_results"}`` (no ``content``):
its content is the ``content`` of the result with ``call_id`` ID in the latest
``tool_results`` event of the same ``call_id`` (the conversation) before it.  A
tool message whose content differs (compaction cut it) stays inline.  Readers put
the content back with :class:`PromptResolver` (``rlm.trajectory.read_trajectory_file``
does it for every event it reads); version 1 trajectories (every content inline)
read the same through it.

Import-light on purpose (stdlib ``typing`` only): the CLI and every sink may
import it.
"""

# no ``from __future__ import annotations``: Python 3.11's TypedDict sees NotRequired only in real annotations
import types
from collections.abc import Mapping
from typing import (
    Any,
    Literal,
    NotRequired,
    TypedDict,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

#: The version of the event schema, written as ``v`` in every event.  2: tool outputs in ``llm_call``
#: prompts may be references (:data:`TOOL_OUTPUT_REF`).
SCHEMA_VERSION = 2

#: ``ref`` of a tool message of an ``llm_call`` prompt stored by reference (see the module's docstring)
TOOL_OUTPUT_REF = "tool_results"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# --- the shapes inside events --------------------------------------------------------------------


class TokenUsage(TypedDict):
    """Tokens of one LLM call (``llm_call``) or of the whole run (``run_end``)."""

    input: int
    output: int
    total: int


class ToolCallJSON(TypedDict):
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any]


class ToolResultJSON(TypedDict):
    """What a tool returned; ``content`` is the JSON text the model gets back."""

    call_id: str
    name: str
    content: str
    is_error: bool
    duration_ms: float


class FinalJSON(TypedDict):
    """A ``FINAL(answer)`` / ``FINAL_VAR(name)`` the REPL code called."""

    kind: str
    value: str
    variable: str | None


class MessageJSON(TypedDict):
    """A chat message; images and audio are summarised (size, url), never copied.  A tool message in an
    ``llm_call`` prompt may have ``ref`` (``"tool_results"``) instead of ``content``: its output is the
    one its tool call returned in the conversation's latest ``tool_results`` event (stored once)."""

    role: str
    #: absent when ``ref`` is set
    content: NotRequired[str | list[dict[str, Any]]]
    tool_calls: NotRequired[list[ToolCallJSON]]
    tool_call_id: NotRequired[str]
    ref: NotRequired[Literal["tool_results"]]


# --- the events ----------------------------------------------------------------------------------


class CommonFields(TypedDict):
    """The fields the Recorder adds to every event."""

    type: str
    #: the schema version (:data:`SCHEMA_VERSION`); absent in trajectories older than the schema
    v: int
    trajectory_id: str
    call_id: str | None
    parent_call_id: str | None
    #: None for the top-level call; ``rlm_sub_complete``, ``llm_query``... for a sub-call
    sub_call_type: str | None
    depth: int
    #: seconds since the epoch
    timestamp: float


class RunStart(CommonFields):
    """The run began: its prompt and settings (the first event)."""

    type: Literal["run_start"]  # type: ignore[misc]
    prompt: str
    system: str | None
    model: str
    requested_model: NotRequired[str]  # when the backend serves another model than the one named
    sub_model: NotRequired[str]  # the model of the sub-calls, when ``sub_model`` sends them to another
    backend: str | None
    environment: str | None
    protocol: str
    isolation: dict[str, Any] | None
    token_budget: int | None
    cost_limit: float | None
    max_depth: int
    tools: list[str]
    #: ``rlm`` (the recursive loop) or ``direct`` (one plain call: the input was under ``direct_below_tokens``)
    path: NotRequired[str]
    #: the batch this run answered an item of (``rlm batch``; absent outside a batch)
    batch_id: NotRequired[str]


class RunEnd(CommonFields):
    """The run ended (the last event), also when it failed or was cancelled."""

    type: Literal["run_end"]  # type: ignore[misc]
    response: str | None
    error: str | None
    error_type: NotRequired[str | None]
    limit_hit: NotRequired[str | None]
    answer_source: str | None
    total_calls: int
    total_tool_calls: NotRequired[int]
    token_usage: TokenUsage
    cost: float | None
    duration_ms: float


class LlmCall(CommonFields):
    """One model call and its reply."""

    type: Literal["llm_call"]  # type: ignore[misc]
    model: str
    #: the messages new since the call's previous model call; a tool output already in a ``tool_results``
    #: event is a reference (``ref``, see :class:`MessageJSON`), put back by :class:`PromptResolver`
    prompt: list[MessageJSON]
    response: str
    tool_calls: list[ToolCallJSON]
    token_usage: TokenUsage
    cost: float | None
    duration_ms: float
    finish_reason: str | None
    #: the forced last turn after a limit
    forced: bool
    temperature: NotRequired[float]  # only when the call sampled above the default (repeated code)
    seed: NotRequired[int | None]
    #: True when the response cache answered (no provider call; usage and cost are 0)
    cached: NotRequired[bool]


class Error(CommonFields):
    """A backend error (``where``: ``llm_call``)."""

    type: Literal["error"]  # type: ignore[misc]
    error: str
    error_type: str
    where: str


class ContextCompacted(CommonFields):
    """Older tool outputs were cut to fit the context window."""

    type: Literal["context_compacted"]  # type: ignore[misc]
    removed_chars: int
    window: int
    estimated_tokens: int


class LimitHit(CommonFields):
    """A limit (turns, tokens, cost, depth, sub-calls, timeout) stopped the call."""

    type: Literal["limit_hit"]  # type: ignore[misc]
    limit: str
    message: str


class NoAnswer(CommonFields):
    """The call ended without an answer; ``reason`` says why."""

    type: Literal["no_answer"]  # type: ignore[misc]
    limit: str | None
    reason: str


class ToolStart(CommonFields):
    """Tools are about to run (concurrently)."""

    type: Literal["tool_start"]  # type: ignore[misc]
    tool_calls: list[ToolCallJSON]


class ToolResults(CommonFields):
    """The results of the tools of one ``tool_start``."""

    type: Literal["tool_results"]  # type: ignore[misc]
    tool_results: list[ToolResultJSON]


class CallStart(CommonFields):
    """A sub-call began (``sub_call_type``: ``rlm_sub_complete``, ``llm_query``...)."""

    type: Literal["call_start"]  # type: ignore[misc]
    prompt: str
    system: NotRequired[str | None]
    token_limit: int | None


class CallEnd(CommonFields):
    """A sub-call ended: ``response``, or ``error``/``error_type`` when it failed."""

    type: Literal["call_end"]  # type: ignore[misc]
    response: NotRequired[str]
    limit: NotRequired[str | None]
    error: NotRequired[str]
    error_type: NotRequired[str]
    duration_ms: float
    tokens_spent: int
    cost: float


class RepeatedCode(CommonFields):
    """The model ran code it already ran, with the same failure or output; sampling gets hotter."""

    type: Literal["repeated_code"]  # type: ignore[misc]
    code: str
    runs: int
    error: str | None
    temperature: float
    seed: int


class ReplExecution(CommonFields):
    """One code execution in the REPL (both protocols: repl blocks and the ``execute_code`` tool)."""

    type: Literal["repl_execution"]  # type: ignore[misc]
    code: str
    output: str
    value: str | None
    error: str | None
    truncated: bool
    #: the time the environment measured for the code itself
    execution_time_ms: float
    #: wall time of the execution as the host saw it (sandbox round trip included)
    duration_ms: float
    final: FinalJSON | None
    #: what happened to the session before this execution (e.g. restarted, variables gone)
    notice: str | None


class ContextInjected(CommonFields):
    """A context provider's text was injected: into a sub-call's context (``rlm_sub_complete`` with
    ``context_query``; the event is the calling call's, before the sub-call's ``call_start``) or into
    the run's system prompt (``AgentRunner(auto_context=True)``; right after ``run_start``)."""

    type: Literal["context_injected"]  # type: ignore[misc]
    #: what the provider was asked
    query: str
    #: the provider's registered name
    provider: str
    #: size of the injected text (0: the provider found nothing relevant)
    chars: int
    #: its tokens by rlm.tokens' estimate
    tokens: int
    #: why nothing was injected when the provider failed (auto_context goes on without it)
    error: NotRequired[str]


#: event type -> its TypedDict
EVENT_TYPES: dict[str, type] = {
    get_args(get_type_hints(cls)["type"])[0]: cls
    for cls in (RunStart, RunEnd, LlmCall, Error, ContextCompacted, LimitHit, NoAnswer, ToolStart, ToolResults,
                CallStart, CallEnd, RepeatedCode, ReplExecution, ContextInjected)
}

#: the fields of every event
COMMON_FIELDS: tuple[str, ...] = tuple(CommonFields.__annotations__)


def fields_of(event_type: str) -> dict[str, Any]:
    """The declared fields of ``event_type`` (common fields included) -> their types."""
    return get_type_hints(EVENT_TYPES[event_type])


# --- JSON Schema ---------------------------------------------------------------------------------

_SIMPLE = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}
    if is_typeddict(tp):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # reserved first: a shape may refer to itself
            defs[tp.__name__] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin is Union or origin is types.UnionType:
        members = [_schema_of(a, defs) for a in args]
        if any(m == {} for m in members):
            return {}
        if all(set(m) == {"type"} and isinstance(m["type"], str) for m in members):
            return {"type": [m["type"] for m in members]}
        return {"anyOf": members}
    if tp is list or origin is list or tp is tuple or origin is tuple:
        item = args[0] if origin is list and args else Any
        items = _schema_of(item, defs)
        return {"type": "array", "items": items} if items else {"type": "array"}
    if tp is dict or origin is dict or origin is Mapping:
        value = args[1] if len(args) == 2 else Any
        values = _schema_of(value, defs)
        return {"type": "object", "additionalProperties": values} if values else {"type": "object"}
    return {}  # Any, or a type JSON has no word for


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = get_type_hints(cls)
    schema: dict[str, Any] = {"type": "object", "description": _doc(cls),
                              "properties": {name: _schema_of(tp, defs) for name, tp in hints.items()},
                              "required": [name for name in hints if name in cls.__required_keys__]}
    return schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one trajectory event: ``oneOf`` the event types, told apart by
    the ``type`` const.  Fields not listed are allowed (a sink must ignore what it does not know)."""
    defs: dict[str, Any] = {}
    branches = [_schema_of(cls, defs) for cls in EVENT_TYPES.values()]
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "rlm trajectory event",
        "description": (f"One line of a JSONL trajectory (schema version {SCHEMA_VERSION}, the `v` field). "
                        "Common fields: " + ", ".join(COMMON_FIELDS) + "."),
        "type": "object",
        "required": ["type"],
        "oneOf": branches,
        "$defs": defs,
    }


# --- shared helpers for emitters and readers -----------------------------------------------------


def repl_execution_fields(code: str, result: Any, duration_ms: float) -> dict[str, Any]:
    """The fields of a ``repl_execution`` event for ``code`` and its REPLResult; every emitter uses this,
    so both protocols record the same fields (``duration_ms``: the host's wall time, in ms)."""
    return {"code": code, "output": result.output, "value": result.value, "error": result.error,
            "truncated": result.truncated, "execution_time_ms": result.execution_time_ms,
            "duration_ms": round(duration_ms, 3), "final": result.final, "notice": result.notice}


def llm_action(event: Mapping[str, Any]) -> str:
    """What an ``llm_call`` asked for: its tools' names, or ``answer`` (a reply without tool calls)."""
    calls = event.get("tool_calls") or []
    names = [str(c.get("name")) for c in calls if isinstance(c, Mapping)]
    return ", ".join(names) if names else "answer"


class PromptResolver:
    """Puts back inline the tool outputs that ``llm_call`` prompts reference (:data:`TOOL_OUTPUT_REF`).

    Give it a trajectory's events in order (:meth:`resolve`, one at a time: a live or incremental reader
    keeps one resolver per trajectory); it returns each event as a version 1 reader knows it: an
    ``llm_call`` whose prompt has references comes back as a copy with every referenced message's
    ``content`` in place (the event given is never changed), any other event as it is.  A reference
    whose ``tool_results`` is missing (a torn or cut file) gets a content that says so, and keeps its
    ``ref``.  Events without references (version 1 trajectories) come back unchanged.

    It holds only the outputs recorded and not yet referenced (the writer references each at most once,
    :func:`rlm.trajectory.stored_prompt`), and forgets a conversation's at its ``call_end``.
    """

    __slots__ = ("_outputs",)

    def __init__(self) -> None:
        #: call_id -> tool call id -> the output recorded by the call's latest ``tool_results``
        self._outputs: dict[Any, dict[Any, Any]] = {}

    def resolve(self, event: Mapping[str, Any]) -> Any:
        kind = event.get("type")
        if kind == "tool_results":
            results = event.get("tool_results")
            if isinstance(results, list):
                outputs = self._outputs.setdefault(event.get("call_id"), {})
                for r in results:
                    if isinstance(r, Mapping) and "content" in r:
                        outputs[r.get("call_id")] = r["content"]
        elif kind == "llm_call":
            prompt = event.get("prompt")
            if isinstance(prompt, list) and any(isinstance(m, Mapping) and "ref" in m for m in prompt):
                outputs = self._outputs.get(event.get("call_id"), {})
                return {**event, "prompt": [self._message(m, outputs) for m in prompt]}
        elif kind == "call_end":  # the conversation is over: nothing can refer to its outputs any more
            self._outputs.pop(event.get("call_id"), None)
        return event

    @staticmethod
    def _message(message: Any, outputs: dict[Any, Any]) -> Any:
        if not isinstance(message, Mapping) or message.get("ref") != TOOL_OUTPUT_REF:
            return message
        call_id = message.get("tool_call_id")
        if call_id in outputs:  # each recorded output is referenced once (the writer forgets it then too)
            out = {k: v for k, v in message.items() if k != "ref"}
            return {"role": out.pop("role", "tool"), "content": outputs.pop(call_id), **out}
        return {**message, "content": f"[the output of tool call {call_id} is not in this trajectory]"}

    def resolve_all(self, events: Any) -> list[Any]:
        """:meth:`resolve` of every event of an iterable, in order."""
        return [self.resolve(e) for e in events]


def _first_line(value: Any, width: int) -> str:
    lines = str(value or "").strip().splitlines()
    return lines[0][:width] if lines else ""


def describe(event: Mapping[str, Any], *, width: int = 80, number: int | None = None) -> str | None:
    """One line telling a person what ``event`` means (progress displays, an agent's ``last_action``),
    or None for the events not worth a line.  ``number`` numbers an ``llm_call`` ("model call 3: ...").

    Never raises for a field of an unexpected shape (events may come from older or foreign files)."""
    kind = event.get("type")
    try:
        if kind == "llm_call":
            usage = event.get("token_usage")
            total = usage.get("total", 0) if isinstance(usage, Mapping) else 0
            label = "model call" if number is None else f"model call {number}"
            return f"{label}: {llm_action(event)} ({total} tokens)"
        if kind == "repl_execution":
            error = " -> error" if event.get("error") else ""
            return f"ran code: {_first_line(event.get('code'), width)}{error}"
        if kind == "call_start":
            return f"sub-call ({event.get('sub_call_type')}): {str(event.get('prompt'))[:width]}"
        if kind == "tool_start" and not event.get("depth"):
            names = ", ".join(str(c.get("name")) for c in event.get("tool_calls") or [] if isinstance(c, Mapping))
            return f"running {names}"
        if kind == "limit_hit":
            return f"limit: {event.get('message')}"
        if kind == "context_injected":
            return (f"context from {event.get('provider')}: {event.get('tokens')} tokens for "
                    f"{str(event.get('query'))[:width]!r}")
        if kind == "no_answer":
            return f"no answer: {event.get('reason')}"
    except (TypeError, ValueError, AttributeError):
        return f"{kind} event"
    return None


__all__ = [
    "COMMON_FIELDS", "EVENT_TYPES", "SCHEMA_VERSION", "CallEnd", "CallStart", "CommonFields", "ContextCompacted",
    "ContextInjected",
    "Error", "FinalJSON", "LimitHit", "LlmCall", "MessageJSON", "NoAnswer", "PromptResolver", "RepeatedCode",
    "ReplExecution", "RunEnd", "RunStart", "TOOL_OUTPUT_REF", "TokenUsage", "ToolCallJSON", "ToolResultJSON",
    "ToolResults", "ToolStart",
    "describe", "fields_of", "json_schema", "llm_action", "repl_execution_fields",
]
