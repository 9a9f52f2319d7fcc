"""The tools the server offers: names, descriptions written for a model, JSON Schemas, hints.

Plain data (no ``mcp`` import): :mod:`rlm_mcp.server` turns each
:class:`ToolDef` into an ``mcp.types.Tool``.  :data:`ALIASES` are the
rlm-runtime 2.x names a 2.x client may call (``destroy_session``): they are
answered by the tool they name but not listed in ``tools/list``, so a model
sees one name per tool.  :data:`RETIRED` are 2.x tools with no counterpart
here: a call gets an error naming the replacement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import define, field

_SESSION = {
    "type": "string",
    "description": "Name of the REPL session (1-64 letters, digits, _ - . :). Sessions are independent "
                   "Python namespaces; leave it out to use the shared session 'default'. Only execute_python "
                   "starts a session; the other tools need one that is open.",
    "pattern": r"^[A-Za-z0-9_.:-]{1,64}$",
}


@define(frozen=True, kw_only=True)
class ToolDef:
    """One tool: ``annotations`` are MCP's hints (read_only, destructive, idempotent, open_world)."""

    name: str
    title: str
    description: str
    input_schema: Mapping[str, Any]
    annotations: Mapping[str, bool] = field(factory=dict)


def _schema(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties), "required": list(required),
            "additionalProperties": False}


TOOLS: tuple[ToolDef, ...] = (
    ToolDef(
        name="execute_python",
        title="Run Python in a sandboxed REPL",
        description=(
            "Run Python code in a persistent, sandboxed REPL and get back what it printed, the value of a "
            "trailing expression (as a notebook shows it) and any error with its traceback. Variables, "
            "functions and imports persist between calls in the same session, so build on earlier results "
            "instead of recomputing them. Use print() to see values. The sandbox has resource limits and "
            "restricted file/network access; if the code runs past the timeout it is stopped and the "
            "session restarts empty. The first call with a new session_id starts that session. Long "
            "output, values and tracebacks are cut (truncated: true, truncated_fields says which). No API "
            "key is needed."),
        input_schema=_schema({
            "code": {"type": "string", "description": "Python source to run (statements; a trailing "
                                                      "expression is shown as the value).", "minLength": 1},
            "session_id": _SESSION,
            "timeout": {"type": "number", "exclusiveMinimum": 0,
                        "description": "Seconds this execution may take (default: the server's env_timeout, "
                                       "30 s unless configured; capped by the server)."},
        }, ("code",)),
        annotations={"read_only_hint": False, "destructive_hint": False, "idempotent_hint": False,
                     "open_world_hint": False},
    ),
    ToolDef(
        name="get_repl_context",
        title="List REPL variables",
        description=(
            "List the variables defined in a REPL session, each with a short repr of its value "
            "(imported modules and built-in helpers are left out). Use it to recall what earlier "
            "execute_python calls left behind. The session must be open (execute_python starts it)."),
        input_schema=_schema({"session_id": _SESSION}),
        annotations={"read_only_hint": True, "idempotent_hint": True, "open_world_hint": False},
    ),
    ToolDef(
        name="set_repl_context",
        title="Set a REPL variable",
        description=(
            "Bind a variable in a REPL session to a JSON value (string, number, boolean, null, list or "
            "object; objects become dicts). Handy for passing data into the REPL without writing it as "
            "Python source. The session must be open (execute_python starts it)."),
        input_schema=_schema({
            "key": {"type": "string", "description": "Variable name (a Python identifier).",
                    "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "value": {"description": "The JSON value to bind."},
            "session_id": _SESSION,
        }, ("key", "value")),
        annotations={"read_only_hint": False, "destructive_hint": False, "idempotent_hint": True,
                     "open_world_hint": False},
    ),
    ToolDef(
        name="clear_repl_context",
        title="Clear REPL variables",
        description=("Delete every user variable of a REPL session (the session stays open). Use it to start "
                     "over without leftovers from earlier code. The session must be open."),
        input_schema=_schema({"session_id": _SESSION}),
        annotations={"read_only_hint": False, "destructive_hint": True, "idempotent_hint": True,
                     "open_world_hint": False},
    ),
    ToolDef(
        name="list_sessions",
        title="List REPL sessions",
        description=("List the open REPL sessions (sessions) and the open RLM sessions of rlm_complete "
                     "(rlm_sessions), with how long each has been idle. Idle sessions expire."),
        input_schema=_schema({}),
        annotations={"read_only_hint": True, "idempotent_hint": True, "open_world_hint": False},
    ),
    ToolDef(
        name="close_session",
        title="Close a session",
        description=("Close the open REPL session and/or the RLM session (rlm_complete) of this id and free "
                     "their sandboxes; their variables and conversation are lost. The two kinds have separate "
                     "namespaces, so one id may name both: both are closed. An id that names neither is an "
                     "error. A later rlm_complete with a closed id starts a fresh RLM session."),
        input_schema=_schema({"session_id": _SESSION}),
        annotations={"read_only_hint": False, "destructive_hint": True, "idempotent_hint": True,
                     "open_world_hint": False},
    ),
    ToolDef(
        name="rlm_complete",
        title="Ask rlm (one completion, or continue an RLM session)",
        description=(
            "Answer a prompt with the recursive language model configured for the server (it may run code "
            "in its own sandbox and delegate to sub-LLM calls); waits for the answer. Without session_id "
            "the call is a one-shot completion that shares nothing with any other call. With a session_id "
            "it continues that RLM session (started on first use): its REPL variables and its "
            "conversation persist between calls, and in the repl protocol earlier inputs and answers are "
            "the REPL variables context_0, context_1... and answer_0, answer_1... RLM sessions are "
            "separate from execute_python's REPL sessions even under the same id; close_session closes "
            "both, idle ones expire, and the server allows a limited number at once. Returns answer, "
            "trajectory_id, total_tokens, total_cost_usd and, in a session, its completions so far. "
            "A failed completion is a tool error with the cause and fix. It spends money: set "
            "cost_limit or token_budget to bound one call."),
        input_schema=_schema({
            "prompt": {"type": "string", "minLength": 1, "description": "The question or task."},
            "session_id": {**_SESSION, "description": (
                "Name of the RLM session to continue or start (1-64 letters, digits, _ - . :); leave it out "
                "for a one-shot completion. Separate from execute_python's REPL sessions.")},
            "max_turns": {"type": "integer", "minimum": 1, "maximum": 50,
                          "description": "Model turns of this completion (default 10, at most 50)."},
            "cost_limit": {"type": "number", "exclusiveMinimum": 0, "maximum": 10,
                           "description": "US dollars this completion may spend (default: the configured "
                                          "cost_limit, else 2.0 when the model's price is known; at most 10)."},
            "token_budget": {"type": "integer", "minimum": 1,
                             "description": "Tokens this completion may spend (default 50000)."},
        }, ("prompt",)),
        annotations={"read_only_hint": False, "destructive_hint": False, "idempotent_hint": False,
                     "open_world_hint": True},
    ),
    ToolDef(
        name="rlm_agent_run",
        title="Start an autonomous rlm agent",
        description=(
            "Start an autonomous agent that works on a task on its own (it runs code in its own sandbox, "
            "delegates sub-problems to sub-LLM calls and iterates until it has an answer). Returns a run_id "
            "at once; the run continues in the background. Poll rlm_agent_status(run_id) until its state "
            "is completed, failed or cancelled, and read the answer there. It uses the model configured "
            "for the server (rlm.toml / RLM_MODEL) and that provider's API key, and it spends money: "
            "set cost_limit or token_budget to bound it."),
        input_schema=_schema({
            "task": {"type": "string", "minLength": 1,
                     "description": "The task, self-contained: say what to produce and from which data."},
            "max_iterations": {"type": "integer", "minimum": 1, "maximum": 50,
                               "description": "Observe-think-act cycles (default 10, at most 50)."},
            "cost_limit": {"type": "number", "exclusiveMinimum": 0, "maximum": 10,
                           "description": "US dollars the run may spend (default 2.0 when the model's price "
                                          "is known, at most 10)."},
            "token_budget": {"type": "integer", "minimum": 1,
                             "description": "Tokens the run may spend (default 50000)."},
        }, ("task",)),
        annotations={"read_only_hint": False, "destructive_hint": False, "idempotent_hint": False,
                     "open_world_hint": True},
    ),
    ToolDef(
        name="rlm_agent_status",
        title="Check an agent run",
        description=(
            "Report an agent run's state: running (with the iteration, tokens and cost so far and what it "
            "is doing), completed (with the answer, tokens and cost), failed (with the error) or "
            "cancelled."),
        input_schema=_schema({"run_id": {"type": "string", "description": "The id rlm_agent_run returned."}},
                             ("run_id",)),
        annotations={"read_only_hint": True, "idempotent_hint": True, "open_world_hint": False},
    ),
    ToolDef(
        name="rlm_agent_cancel",
        title="Cancel an agent run",
        description=("Stop a running agent run as soon as possible; its state becomes cancelled. Cancelling "
                     "a run that already ended changes nothing and reports its final state."),
        input_schema=_schema({"run_id": {"type": "string", "description": "The id rlm_agent_run returned."}},
                             ("run_id",)),
        annotations={"read_only_hint": False, "destructive_hint": True, "idempotent_hint": True,
                     "open_world_hint": False},
    ),
)

TOOLS_BY_NAME: Mapping[str, ToolDef] = {t.name: t for t in TOOLS}


@define(frozen=True, kw_only=True)
class ToolAlias:
    """A name from rlm-runtime 2.x answered by ``target``; ``difference``: how ours behaves otherwise."""

    name: str
    target: str
    difference: str


ALIASES: Mapping[str, ToolAlias] = {a.name: a for a in (
    ToolAlias(name="destroy_session", target="close_session",
              difference="the session 'default' is closed like any other (execute_python starts it again); 2.x "
                         "reset it and never failed for it. An id with no open session is an error, as in 2.x, "
                         "and RLM sessions (rlm_complete) of that id are closed too"),
)}
"""rlm-runtime 2.x tool name -> the alias (not listed in tools/list; called by name it works)."""

#: Arguments of rlm-runtime 2.x that ours lack, accepted by name and mapped (tool -> argument -> meaning).
#: ``execute_python(profile=...)``: 2.x's timeout presets, in seconds (``timeout`` given too wins).
EXECUTION_PROFILES: Mapping[str, float | None] = {"quick": 5.0, "default": None, "analysis": 120.0,
                                                  "extended": 300.0}

RETIRED: Mapping[str, str] = {
    "run_completion": "run_completion (rlm-runtime 2.x) is not offered: call rlm_complete(prompt, session_id?, "
                      "max_turns?, token_budget?, cost_limit?) instead; it answers with the model configured for "
                      "the server ([rlm] model in rlm.toml, RLM_MODEL or rlm mcp-serve --model), so 2.x's "
                      "model, system and max_depth arguments have no counterpart",
}
"""rlm-runtime 2.x tools with no counterpart here -> the fix a call to one of them gets."""
