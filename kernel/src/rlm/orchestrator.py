"""The recursive loop: one :class:`Run` per top-level completion.

A run owns the call tree.  Each :class:`CallNode` is one LLM conversation
(the top-level call, an ``rlm_sub_complete`` sub-call, an ``llm_query`` from
the REPL...) with its own budget node, REPL session (started on first use)
and turn counter.  Two protocols drive a call:

* ``tools``: native tool calling; tools run concurrently (bounded by
  ``max_parallel``) and their results go back as JSON tool messages.
* ``repl``: the paper-style protocol; the input lives in the REPL variable
  ``context``, the model writes ```repl blocks and ends with FINAL/FINAL_VAR.

Reaching a limit never throws the work away: the call gets one last turn,
told to answer with what it has, and the result names the limit.  What that
turn says counts as an answer only when it is one (:func:`answer_problem`):
a reply that is only code, empty or a short "I cannot..." leaves the call
with no answer, and the run ends with the no-answer error.

The same code failing twice in a call (or printing the same output again) is
pointed out to the model in that turn's feedback, and the call's next turns
are sampled at a higher temperature with a new seed (:meth:`Run.note_repetition`).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import textwrap
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import define, field

from rlm import prompts
from rlm.backend import SAMPLING_OPTIONS, Backend, BackendCapabilities, LLMRequest, LLMResponse, StreamEnd, TextDelta, ToolSchema
from rlm.budget import LIMIT_MESSAGES, BudgetNode, Refusal, SpendRequest
from rlm.cache import cached_call
from rlm.config import ModelPricing, RLMConfig
from rlm.context import ToolContext
from rlm.environment import Environment, settings_from_config
from rlm.errors import (
    AuthenticationError,
    BackendError,
    BudgetExceeded,
    ModelNotFoundError,
    NoProvidersConfigured,
    RLMError,
    SandboxError,
    ToolError,
)
from rlm.events import repl_execution_fields
from rlm.logging import get_logger
from rlm.pricing import cost_of
from rlm.repl_protocol import code_blocks, find_final, looks_like_code
from rlm.schema import SchemaError, validate
from rlm.sizing import (  # noqa: F401 - estimate_tokens, prompt_size re-exported
    PromptMeter,
    estimate_tokens,
    prompt_size,
    tools_size,
)
from rlm.trajectory import Recorder, new_id, stored_prompt
from rlm.types import FinalSignal, Message, ToolCall, ToolResult, ToolSpec, Usage

log = get_logger(__name__)

#: Output tokens reserved for one LLM call when the request gives no max_tokens.
DEFAULT_MAX_OUTPUT = 4096
#: A call that cannot reserve at least this many output tokens is not made.
MIN_OUTPUT = 32
#: Output tokens of a forced last turn (told to answer now, in a few sentences).
FORCED_OUTPUT = 256
#: Input tokens the forced last turn's own instruction adds to the conversation.
FORCED_PROMPT_TOKENS = 64
#: Input reservations (:meth:`Run.input_reservation`): never more than one token per UTF-8 byte of
#: the prompt plus this, which no tokenizer exceeds (byte-level BPE: every token holds a byte) ...
BYTE_BOUND_SLACK = 8
#: ... a conversation that grew from a prompt the provider counted: that count, plus a token per
#: byte added, plus this ...
CALIBRATION_SLACK = 64
#: ... a conversation's first prompt: the highest tokens-per-byte ratio the provider reported in
#: this run, times this margin, plus the slack.
CALIBRATION_MARGIN = 1.5
#: Characters of one REPL output shown back to the model in the repl protocol.
REPL_FEEDBACK_CHARS = 20_000
#: A plain reply (no code, no FINAL) up to this long, on one line, after code ran, is quoted back in the
#: nudge as the answer it probably is (:data:`rlm.prompts.REPL_NUDGE_REPLY`).
NUDGE_REPLY_CHARS = 200
#: Context window assumed when neither config, backend nor litellm's map knows it.
DEFAULT_CONTEXT_WINDOW = 32_000
#: Replies at least this long are never taken for a give-up (:func:`answer_problem`).
GIVE_UP_CHARS = 300
#: The temperature a call's turns use once its model repeated failing code (at temperature 0 it
#: would write the same code again until a limit).
REPEAT_TEMPERATURE = 0.7
#: A call whose model wrote the same code this many times over ends without an answer (it will not
#: write anything else, and on a CPU each turn costs seconds).
MAX_REPEATS = 3
#: Older tool outputs are cut once the prompt passes this share of the window ...
COMPACT_AT = 0.75
#: ... down to this many characters each.
COMPACT_KEEP_CHARS = 500


def to_json_text(value: Any) -> str:
    """A tool's return value as JSON text (never Python repr for JSON-able data); lone surrogates
    (undecodable file names, broken text) are escaped so that it encodes as UTF-8 for any provider."""
    from rlm.trajectory import escape_surrogates_deep, jsonable

    value = escape_surrogates_deep(value)
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(escape_surrogates_deep(jsonable(value)), ensure_ascii=False, default=str)


#: Runs whose run_end is not written yet (a second Ctrl-C ends them: :func:`end_open_runs`).
_OPEN_RUNS: weakref.WeakSet[Run] = weakref.WeakSet()


def end_open_runs() -> None:
    """Write ``run_end`` (cancelled) for every run still open in this process; never raises."""
    for run in list(_OPEN_RUNS):
        try:
            run.end_cancelled(run.started)
        except Exception as exc:  # noqa: BLE001 - the process is quitting: do what can be done
            log.warning("run_end_not_written", trajectory_id=run.trajectory_id, error=str(exc))


def fatal_everywhere(error: BackendError) -> bool:
    """Whether a backend error would fail every call of the run (a bad key, no provider, an unknown
    model) rather than just the call that met it (a rejected request, a prompt too long, an outage
    that outlasted the retries)."""
    return isinstance(error, (AuthenticationError, NoProvidersConfigured, ModelNotFoundError))


class LimitReached(Exception):
    """Internal: a limit stops the turn loop; the call then gets its forced last turn."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


class FatalRunError(Exception):
    """Internal: the run cannot go on (permanent backend error, sandbox down)."""

    def __init__(self, error: RLMError) -> None:
        super().__init__(str(error))
        self.error = error


@define(frozen=True, kw_only=True)
class Route:
    """Where a call's model requests go: the backend, the model it is asked for, its price (None: unknown)
    and what the backend said of it.  A run has one for its top-level call and, with ``sub_model``, one
    for its sub-calls."""

    backend: Backend
    model: str
    pricing: ModelPricing | None = None
    capabilities: BackendCapabilities | None = None
    #: the config's context_window, which wins over what the backend or litellm's map say
    context_window: int | None = None
    #: what decides an answer besides the request (the backend and its server): the response cache's scope
    scope: str = ""

    @property
    def window(self) -> int:
        """The model's context window in tokens (config, backend, litellm's map, else the default)."""
        window = self.context_window
        if window is None and self.capabilities is not None:
            window = self.capabilities.context_window
        if window is None:
            from rlm.pricing import litellm_cost_map

            entry = litellm_cost_map().get(self.model) or litellm_cost_map().get(self.model.split("/")[-1])
            window = entry.get("max_input_tokens") if isinstance(entry, dict) else None
        return int(window or DEFAULT_CONTEXT_WINDOW)


@define(kw_only=True, eq=False)
class CallNode:
    """One LLM conversation in the call tree."""

    call_id: str
    depth: int
    budget: BudgetNode
    parent: CallNode | None = None
    sub_call_type: str | None = None
    subcalls_this_turn: int = 0
    turns: int = 0
    final: FinalSignal | None = None
    environment: Environment | None = field(default=None, repr=False)
    #: (UTF-8 bytes, input tokens the provider reported) of this conversation's last prompt
    seen_input: tuple[int, int] | None = None
    #: sampling of this conversation's next turns (None: the backend's default); set once the model
    #: repeated failing code (:meth:`Run.note_repetition`)
    temperature: float | None = None
    seed: int | None = None
    #: times the model repeated code (failing again, or printing the same) in this conversation
    repeats: int = 0
    #: the running size of this conversation's prompt (:class:`rlm.sizing.PromptMeter`)
    meter: PromptMeter = field(factory=PromptMeter, repr=False)
    #: tool call id -> its output, recorded in a ``tool_results`` event and not yet referenced by an
    #: ``llm_call`` prompt (:func:`rlm.trajectory.stored_prompt`: each output is stored once)
    tool_outputs: dict[str, str] = field(factory=dict, repr=False)

    @property
    def parent_call_id(self) -> str | None:
        return self.parent.call_id if self.parent else None


@define(frozen=True, kw_only=True)
class CallOutcome:
    """How a call ended: its answer, the limit that forced it (if any).

    ``no_answer`` says why a call that ended has no answer (``text`` is then empty), e.g. "the
    model's last reply was only code"; the run's error quotes it."""

    text: str
    limit: str | None = None
    forced: bool = False
    source: str = "text"  # text | final | final_var | forced
    no_answer: str | None = None


class Run:
    """One top-level completion: call tree, budgets, environments, trajectory."""

    def __init__(
        self,
        *,
        config: RLMConfig,
        backend: Backend,
        model: str,
        tools: Mapping[str, ToolSpec],
        environment_factory: Any,
        policies: Sequence[Any],
        recorder: Recorder,
        session_budget: BudgetNode,
        pricing: ModelPricing | None,
        protocol: str,
        stream_queue: asyncio.Queue[Any] | None = None,
        capabilities: BackendCapabilities | None = None,
        sub_route: Route | None = None,
        main_scope: str = "",
        cache: Any = None,
    ) -> None:
        self.config = config
        #: the top-level call's route (``capabilities``: what the backend said of the model when the run was
        #: prepared, None when it could not say), and the sub-calls' (``sub_model``; None: the same)
        self.main_route = Route(backend=backend, model=model, pricing=pricing, capabilities=capabilities,
                                context_window=config.context_window, scope=main_scope)
        #: the response cache (``[rlm] cache``; None: off), :func:`rlm.cache.cached_call`
        self.cache = cache
        self.sub_route = sub_route
        self.tools = dict(tools)
        #: (the tool specs, their schemas): :meth:`tool_schemas`
        self._schemas: tuple[tuple[ToolSpec, ...], tuple[ToolSchema, ...], int] | None = None
        self.environment_factory = environment_factory
        self.policies = list(policies)
        self.recorder = recorder
        self.protocol = protocol
        self.stream_queue = stream_queue
        self.trajectory_id = recorder.trajectory_id
        self.started = time.monotonic()
        self.deadline = self.started + config.timeout
        #: the work stops here so that a forced last turn still fits before the deadline
        self.soft_deadline = self.deadline - min(15.0, 0.2 * config.timeout)
        self.budget = session_budget.child(
            new_id("run-"), tokens=config.token_budget, cost=config.cost_limit, share=1.0
        )
        if config.cost_limit is not None:
            self.budget.cost_limit_name = "cost_limit"
        priced = pricing is not None and (sub_route is None or sub_route.pricing is not None)
        self.usage = Usage(input_tokens=0, output_tokens=0, cost_usd=0.0 if priced else None)
        self.llm_calls = 0
        self.tool_calls: list[ToolCall] = []
        self.limits_hit: list[str] = []
        self._environments: list[Environment] = []
        #: call id -> the start of its environment under way (:meth:`start_environment`)
        self._env_starts: dict[str, asyncio.Task[Environment]] = {}
        self.top: CallNode | None = None
        self._windows: dict[int, int] = {}
        #: True once run_end was written (by the run's end, or by :meth:`end_cancelled`)
        self.ended = False
        _OPEN_RUNS.add(self)
        #: model -> the highest input tokens per prompt byte its provider reported in this run
        self._tokens_per_byte: dict[str, float] = {}
        #: a run-ending error met inside REPL code (an ``llm_query``): raised once the code returns
        self.fatal: FatalRunError | None = None
        #: the :class:`rlm.session.Session` this run continues (None: a run of its own)
        self.session: Any = None
        #: the plugin manager of the RLM that prepared the run (context providers are looked up in it)
        self.plugin_manager: Any = None
        #: the batch this run answers an item of (``rlm batch``), written in its ``run_start``
        self.batch_id: str | None = None

    # --- bookkeeping ------------------------------------------------------------------------

    def emit(self, call: CallNode, type: str, **fields: Any) -> dict[str, Any]:
        return self.recorder.emit(
            type,
            call_id=call.call_id,
            parent_call_id=call.parent_call_id,
            depth=call.depth,
            sub_call_type=call.sub_call_type,
            **fields,
        )

    def closed(self) -> None:
        """The run's end was written: a second Ctrl-C has nothing to do for it."""
        _OPEN_RUNS.discard(self)

    def end_cancelled(self, started: float) -> None:
        """Write the ``run_end`` of a run stopped from outside (Ctrl-C, a cancelled task); once."""
        _OPEN_RUNS.discard(self)
        if self.ended or self.top is None:
            return
        self.ended = True
        self.emit(self.top, "run_end", response=None, error="cancelled", error_type="Cancelled",
                  limit_hit=self.limits_hit[0] if self.limits_hit else None, answer_source="cancelled",
                  total_calls=self.llm_calls,
                  token_usage={"input": self.usage.input_tokens, "output": self.usage.output_tokens,
                               "total": self.usage.total_tokens},
                  cost=self.usage.cost_usd, duration_ms=round((time.monotonic() - started) * 1000, 3),
                  total_tool_calls=len(self.tool_calls))
        self.recorder.close()

    def route(self, call: CallNode) -> Route:
        """Where ``call``'s model requests go: sub-calls to the sub-model's route when there is one."""
        return self.sub_route if call.parent is not None and self.sub_route is not None else self.main_route

    def context_window(self, route: Route) -> int:
        """``route``'s context window (looked up once per run)."""
        if id(route) not in self._windows:
            self._windows[id(route)] = route.window
        return self._windows[id(route)]

    def remaining_time(self, *, soft: bool = True) -> float:
        return (self.soft_deadline if soft else self.deadline) - time.monotonic()

    def input_reservation(self, call: CallNode, size: int, model: str) -> int:
        """The input tokens to reserve for ``call``'s next prompt of ``size`` UTF-8 bytes.

        Never more than one token per byte (which no tokenizer exceeds).  When the conversation
        grew from a prompt the provider counted: that count plus a token per byte added -- an
        upper bound too.  A conversation's first prompt, once the provider has reported a usage
        in this run: the highest tokens-per-byte ratio it reported, with a margin (an estimate:
        a prompt in a denser script than any seen so far can count more)."""
        bound = size + BYTE_BOUND_SLACK
        seen = call.seen_input
        if seen is not None and size >= seen[0]:
            return min(bound, seen[1] + (size - seen[0]) + CALIBRATION_SLACK)
        ratio = self._tokens_per_byte.get(model)
        if ratio is None:
            return bound
        return min(bound, math.ceil(size * ratio * CALIBRATION_MARGIN) + CALIBRATION_SLACK)

    def calibrate(self, call: CallNode, size: int, input_tokens: int, reserved: int,
                  model: str) -> None:
        """Learn from a provider's reported input usage (the next reservations follow it)."""
        if size <= 0 or input_tokens <= 0:
            return
        call.seen_input = (size, input_tokens)
        self._tokens_per_byte[model] = max(self._tokens_per_byte.get(model, 0.0), input_tokens / size)
        if input_tokens > reserved:
            log.warning("budget_reservation_exceeded", model=model, reserved=reserved, reported=input_tokens)

    def room(self, call: CallNode, est_input: int, *, forced: bool,
             pricing: ModelPricing | None = None) -> tuple[float, float]:
        """(tokens, USD) ``call`` may still reserve for a turn whose input is ``est_input`` tokens.

        An ordinary turn leaves what a forced last turn on the same conversation would need
        (its input, the instruction to answer, :data:`FORCED_OUTPUT`), so that the call can still
        be told to answer when a limit stops it."""
        tokens, cost = call.budget.remaining_tokens(), call.budget.remaining_cost()
        if not forced:
            held_input = est_input + FORCED_PROMPT_TOKENS
            tokens -= held_input + FORCED_OUTPUT
            cost -= cost_of(pricing, held_input, FORCED_OUTPUT) or 0.0
        return tokens, cost

    def check(self, request: SpendRequest) -> Refusal | None:
        for policy in self.policies:
            refusal = policy.check(request)
            if refusal is not None:
                return refusal
        return None

    def new_call(self, *, parent: CallNode | None, budget: BudgetNode, sub_call_type: str | None) -> CallNode:
        return CallNode(
            call_id=new_id("call-"),
            depth=0 if parent is None else parent.depth + 1,
            budget=budget,
            parent=parent,
            sub_call_type=sub_call_type,
        )

    def start_environment(self, call: CallNode, contexts: Mapping[str, Any] | None = None) -> None:
        """Begin starting ``call``'s REPL session (and binding ``contexts`` in it) in the background, so
        that the start overlaps the call's first model turn; :meth:`environment_for` awaits it.

        A start that fails is raised by the first use of the environment, as if it had started
        then; a run that never uses it ends as it would have without it.  :meth:`close` stops a
        start still under way."""
        if self.environment_factory is None or call.environment is not None or call.call_id in self._env_starts:
            return
        self._env_starts[call.call_id] = asyncio.ensure_future(self._start_environment(call, dict(contexts or {})))

    async def _start_environment(self, call: CallNode, contexts: dict[str, Any]) -> Environment:
        env = await self._open_environment(call)
        for name, value in contexts.items():
            await env.set_context(name, value)
        return env

    async def environment_for(self, call: CallNode) -> Environment:
        """The REPL session of ``call``, started on first use (the top call of a session's run: the
        session's, which stays open after the run); a start under way (:meth:`start_environment`)
        is awaited, its error raised."""
        starting = self._env_starts.get(call.call_id)
        if starting is not None:
            try:
                return await asyncio.shield(starting)  # one waiter cancelled does not stop it for the others
            finally:
                if starting.done() and self._env_starts.get(call.call_id) is starting:
                    del self._env_starts[call.call_id]
        return await self._open_environment(call)

    async def _turn_while_starting(self, call: CallNode, messages: list[Message]) -> tuple[LLMResponse, Environment]:
        """``call``'s first model turn, made while its environment starts; (the reply, the environment).

        The environment's failure counts first, as when it started before the turn: a start that
        fails at once fails before the turn is sent, one that fails later cancels the turn still
        under way, and one that fails after the turn raised (a limit, a backend error) wins over
        that error."""
        starting = self._env_starts.get(call.call_id)
        if starting is not None:
            await asyncio.sleep(0)  # the start's first step runs now: a start that fails at once is done
        if starting is None or starting.done():
            env = await self.environment_for(call)
            return await self.llm(call, messages), env
        turn = asyncio.ensure_future(self.llm(call, messages))
        try:
            await asyncio.wait((starting, turn), return_when=asyncio.FIRST_EXCEPTION)
            env = await self.environment_for(call)
            return await turn, env
        finally:
            if not turn.done():
                turn.cancel()
                await asyncio.wait((turn,))
            if not turn.cancelled():
                turn.exception()  # retrieved: the start's error (or a cancellation) was raised instead

    async def _open_environment(self, call: CallNode) -> Environment:
        if call.environment is None and call is self.top and self.session is not None:
            call.environment = await self.session.environment_for(
                self.environment_factory, settings_from_config(self.config), _HostCallbacks(self, call))
        if call.environment is None:
            settings = settings_from_config(self.config)
            env = self.environment_factory(settings=settings, callbacks=_HostCallbacks(self, call))
            self._environments.append(env)
            call.environment = env
            await env.start()
        return call.environment

    async def close(self) -> None:
        await self._end_environment_starts()
        cancelled: BaseException | None = None
        for env in self._environments:
            try:
                await env.close()
            except (asyncio.CancelledError, KeyboardInterrupt) as exc:  # close the others, then stop
                cancelled = exc
            except Exception as exc:  # noqa: BLE001 - closing must not hide the answer
                log.warning("environment_close_failed", error=str(exc))
        if cancelled is not None:
            raise cancelled

    async def _end_environment_starts(self) -> None:
        """Stop the environment starts the run never waited for (:meth:`close` then closes what they
        opened); a failed one is only logged: nothing used that environment."""
        starts, self._env_starts = list(self._env_starts.values()), {}
        for task in starts:
            task.cancel()
        if not starts:
            return
        await asyncio.wait(starts)
        for task in starts:
            if not task.cancelled() and task.exception() is not None:
                log.info("environment_start_unused", error=str(task.exception())[:300])

    # --- one LLM call -----------------------------------------------------------------------

    async def llm(
        self,
        call: CallNode,
        messages: list[Message],
        *,
        tools: Sequence[ToolSchema] = (),
        tool_choice: str | None = None,
        response_format: Mapping[str, Any] | None = None,
        forced: bool = False,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        """One model call under the budgets; raises LimitReached when it may not be made.

        The call reserves an upper bound of its tokens and cost (:meth:`input_reservation` plus its
        ``max_tokens``) and is made only when that fits: a run never spends more than its budgets
        as long as the provider counts no more than the reservation.  Ordinary turns leave room
        for a ``forced`` last turn (:meth:`room`), which is itself refused (the answer is then
        what the call said so far, without another LLM call) when even that does not fit."""
        route = self.route(call)
        pricing = route.pricing
        self.compact(call, messages, route)
        timeout = self.remaining_time(soft=not forced)
        if timeout <= 0:
            raise LimitReached(Refusal.of("timeout", f"{self.config.timeout:g} s"))
        _chars, size = call.meter.measure(messages)
        if tools:  # the same sum as measure(messages, tools), the run's own schemas sized once
            size += self._tools_bytes(tools)
        est_input = self.input_reservation(call, size, route.model)
        tokens_room, cost_room = self.room(call, est_input, forced=forced, pricing=pricing)
        room = tokens_room - est_input
        wanted = max_tokens or (FORCED_OUTPUT if forced else self.config.max_output_tokens or DEFAULT_MAX_OUTPUT)
        output_cap = wanted if math.isinf(room) else int(min(wanted, room))
        if output_cap < MIN_OUTPUT:
            raise LimitReached(Refusal.of("token_budget", f"{max(0, int(room))} tokens left for the output of "
                                                          f"a turn whose prompt may count {est_input} tokens"))
        per_output_token = cost_of(pricing, 0, 1) or 0.0
        if per_output_token > 0 and not math.isinf(cost_room):  # ask for no more output than the money left buys
            affordable = (cost_room - (cost_of(pricing, est_input, 0) or 0.0)) / per_output_token
            output_cap = int(min(output_cap, max(0.0, affordable)))
        reserve_tokens = est_input + output_cap
        reserve_cost = cost_of(pricing, est_input, output_cap) or 0.0
        if output_cap < MIN_OUTPUT or reserve_cost > cost_room:
            limit = call.budget.binding_cost_limit()
            needed = cost_of(pricing, est_input, MIN_OUTPUT) or 0.0
            raise LimitReached(Refusal.of(limit, f"${max(0.0, cost_room):.4f} left, ${needed:.4f} needed"))
        refusal = self.check(SpendRequest(kind="llm_call", node=call.budget, depth=call.depth,
                                          tokens=reserve_tokens, cost_usd=reserve_cost))
        if refusal is not None:
            raise LimitReached(refusal)
        limited = max_tokens or self.config.max_output_tokens or not math.isinf(room) or not math.isinf(cost_room)
        request = LLMRequest(
            model=route.model,
            messages=tuple(messages),
            tools=tuple(tools),
            tool_choice=tool_choice,
            response_format=response_format,
            # the reservation covers this output only: tell the provider (unless nothing limits the run)
            max_tokens=output_cap if limited else None,
            **self.sampling(call, route),
            timeout=max(1.0, timeout),
        )
        reservation = call.budget.reserve(reserve_tokens, reserve_cost)
        started = time.monotonic()
        settled = False
        try:
            sending = cached_call(self.cache, request, lambda r: self._send(call, r, route.backend), scope=route.scope)
            if call.depth > 0:  # a sub-call: no task of its own (a fan-out of N pays N fewer tasks on the one loop)
                async with asyncio.timeout(max(0.001, timeout)):
                    response, hit = await sending
            else:  # the top call keeps wait_for's task: a background environment start gets its first step
                response, hit = await asyncio.wait_for(sending, timeout=max(0.001, timeout))
            usage = response.usage
            cost = cost_of(pricing, usage.input_tokens, usage.output_tokens)
            if cost is None:
                cost = usage.cost_usd
            if hit:  # answered by the cache: no provider call, nothing spent
                usage, cost = Usage(input_tokens=0, output_tokens=0, cost_usd=0.0), 0.0
                if self.stream_queue is not None and call.depth == 0 and response.message.text:
                    await self.stream_queue.put(response.message.text)
            call.budget.settle(reservation, tokens=usage.total_tokens, cost=cost or 0.0)
            settled = True
            if not hit:
                self.calibrate(call, size, usage.input_tokens, est_input, route.model)
        except asyncio.TimeoutError:
            raise LimitReached(Refusal.of("timeout", f"{self.config.timeout:g} s")) from None
        except BackendError as exc:
            self.emit(call, "error", error=str(exc), error_type=type(exc).__name__, where="llm_call")
            if call.depth > 0 and not fatal_everywhere(exc):
                raise  # a sub-call's own failure: its parent gets it as that sub-call's error
            raise FatalRunError(exc) from exc
        finally:
            if not settled:  # sent, maybe billed, usage unknown: count what was reserved (never less)
                call.budget.settle(reservation, tokens=reserve_tokens, cost=reserve_cost)
        self.llm_calls += 1
        self.usage = self.usage + Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                                        cost_usd=cost)
        self.emit(
            call,
            "llm_call",
            model=response.model or route.model,
            prompt=stored_prompt(messages[-_new_messages(messages):], call.tool_outputs),
            response=response.message.text,
            tool_calls=response.message.tool_calls,
            token_usage={"input": usage.input_tokens, "output": usage.output_tokens, "total": usage.total_tokens},
            cost=cost,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            finish_reason=response.finish_reason,
            forced=forced,
            **({"temperature": request.temperature, "seed": request.seed} if request.temperature is not None
               else {}),
            **({"cached": True} if hit else {}),
        )
        return response

    def compact(self, call: CallNode, messages: list[Message], route: Route | None = None) -> None:
        """Near the context window, cut older tool outputs (the newest two stay whole).

        The conversation keeps every turn; only the bodies of old tool results
        and REPL feedback shrink to a head and a note.  Recorded as a
        ``context_compacted`` event.
        """
        window = self.context_window(route or self.route(call))
        limit = int(window * COMPACT_AT)
        meter = call.meter
        if meter.estimate_tokens(messages) <= limit:
            return
        candidates = [i for i, m in enumerate(messages)
                      if m.role == "tool" or (m.role == "user" and m.text.startswith("REPL output:"))][:-2]
        saved = 0
        for i in candidates:
            m = messages[i]
            if len(m.text) <= COMPACT_KEEP_CHARS:
                continue
            cut = len(m.text) - COMPACT_KEEP_CHARS
            text = m.text[:COMPACT_KEEP_CHARS] + f"\n[... {cut} characters of this older output removed to fit the context window]"
            messages[i] = Message.tool(m.tool_call_id or "", text, name=m.name) if m.role == "tool" else Message.user(text)
            saved += cut
            if meter.estimate_tokens(messages) <= limit:
                break
        if saved:
            self.emit(call, "context_compacted", removed_chars=saved, window=window,
                      estimated_tokens=meter.estimate_tokens(messages))

    def sampling(self, call: CallNode, route: Route) -> dict[str, Any]:
        """The sampling options of ``call``'s next request: the user's (config), raised by repetition
        control (:meth:`note_repetition`); a kernel-chosen one the backend does not send is left out
        (a user's was refused before the run, :func:`rlm.core.check_sampling`)."""
        chosen = {"temperature": self.config.temperature, "top_p": self.config.top_p, "seed": self.config.seed}
        if call.temperature is not None:
            chosen["temperature"] = max(call.temperature, self.config.temperature or 0.0)
        if call.seed is not None:
            chosen["seed"] = call.seed
        supported = route.capabilities.sampling if route.capabilities is not None else frozenset(SAMPLING_OPTIONS)
        return {k: v for k, v in chosen.items() if v is not None and k in supported}

    async def _send(self, call: CallNode, request: LLMRequest, backend: Backend) -> LLMResponse:
        if self.stream_queue is None or call.depth != 0:
            return await backend.complete(request)
        final: LLMResponse | None = None
        async for event in backend.stream(request):
            if isinstance(event, TextDelta) and event.text:
                await self.stream_queue.put(event.text)
            elif isinstance(event, StreamEnd):
                final = event.response
        if final is None:
            raise BackendError("the backend's stream ended without a final response",
                               fix="report this to the backend plugin's authors")
        return final

    # --- the tools protocol -----------------------------------------------------------------

    def tool_schemas(self) -> tuple[ToolSchema, ...]:
        """The schemas of :attr:`tools`, one tuple while the tools stay the same: every call of the run (a fan-out
        of sub-calls) sends the same object, so what is derived from it (its size, a backend's JSON) is made once."""
        specs = tuple(self.tools.values())
        kept = self._schemas
        if kept is None or len(kept[0]) != len(specs) or any(a is not b for a, b in zip(kept[0], specs)):
            schemas = tuple(ToolSchema(name=t.name, description=t.description, parameters=t.parameters)
                            for t in specs)
            kept = self._schemas = (specs, schemas, tools_size(schemas)[1])
        return kept[1]

    def _tools_bytes(self, tools: Sequence[ToolSchema]) -> int:
        """The UTF-8 bytes :func:`rlm.sizing.tools_size` counts for ``tools`` (kept for :meth:`tool_schemas`')."""
        kept = self._schemas
        return kept[2] if kept is not None and tools is kept[1] else tools_size(tools)[1]

    async def tools_loop(self, call: CallNode, messages: list[Message], *,
                         response_format: Mapping[str, Any] | None = None,
                         max_turns: int | None = None) -> CallOutcome:
        schemas = self.tool_schemas()
        turns = max_turns or self.config.max_turns
        limit: Refusal | None = None
        last_text = ""
        if call is self.top:  # execute_code is there: its sandbox starts while the model thinks
            self.start_environment(call)
        try:
            for _ in range(turns):
                call.turns += 1
                call.subcalls_this_turn = 0
                response = await self.llm(call, messages, tools=schemas, response_format=response_format)
                messages.append(_assistant(response.message))
                last_text = response.message.text or last_text
                if not response.message.tool_calls:
                    return CallOutcome(text=response.message.text)
                await self.run_tools(call, response.message.tool_calls, messages)
                if call.final is not None:
                    return CallOutcome(text=call.final.value, source=call.final.kind)
            limit = Refusal.of("max_turns", f"{turns} turns")
        except LimitReached as stop:
            limit = stop.refusal
        return await self.forced_answer(call, messages, limit, schemas=schemas, last_text=last_text,
                                        response_format=response_format)

    async def forced_answer(self, call: CallNode, messages: list[Message], limit: Refusal, *,
                            schemas: Sequence[ToolSchema] = (), last_text: str = "",
                            response_format: Mapping[str, Any] | None = None,
                            repl: bool = False) -> CallOutcome:
        """One last turn, told to answer now; the outcome names the limit.

        The reply is the answer only when it is one (:func:`answer_problem`): in the repl protocol a
        FINAL/FINAL_VAR that resolves, or prose that is not only code nor a short give-up; in the tools
        protocol a reply that is neither empty nor only code.  Otherwise the outcome has no text and
        says why (``no_answer``); a sub-call raises BudgetExceeded instead, which its parent gets as
        that sub-call's error."""
        self.limits_hit.append(limit.limit)
        self.emit(call, "limit_hit", limit=limit.limit, message=str(limit))
        template = prompts.FORCED_ANSWER_REPL if repl else prompts.FORCED_ANSWER
        messages.append(Message.user(template.format(message=limit.message)))
        try:
            # the last turn may use the reserve ordinary turns left; when even that does not fit,
            # the answer is what the call had said so far, without another LLM call
            response = await self.llm(call, messages, tools=schemas, tool_choice="none" if schemas else None,
                                      response_format=response_format, forced=True)
        except LimitReached as stop:
            self.emit(call, "limit_hit", limit=stop.refusal.limit, message=f"no forced last turn: {stop.refusal}")
            if call.depth > 0 and not last_text:
                raise BudgetExceeded(stop.refusal.message, limit=stop.refusal.limit, fix=stop.refusal.fix) from None
            # in the repl protocol a reply with code was a working turn (its output was still to come)
            why = answer_problem(last_text, give_up=repl, code_is_work=repl) if last_text else None
            if why is not None:
                return self._no_answer(call, limit, why)
            return CallOutcome(text=last_text, limit=limit.limit, forced=True, source="forced")
        messages.append(_assistant(response.message))
        text = response.message.text
        why: str | None = None
        if repl:
            value, why = await self._forced_final(call, text)
            if value is not None:
                return CallOutcome(text=value, limit=limit.limit, forced=True, source="forced")
        why = why or answer_problem(text, give_up=repl)
        if why is None:
            return CallOutcome(text=text, limit=limit.limit, forced=True, source="forced")
        if not repl and last_text and not text.strip() and answer_problem(last_text, give_up=False) is None:
            # an empty last turn: what the model said before it is the answer (the tools protocol)
            return CallOutcome(text=last_text, limit=limit.limit, forced=True, source="forced")
        return self._no_answer(call, limit, why)

    async def _forced_final(self, call: CallNode, text: str) -> tuple[str | None, str | None]:
        """(answer, None) when the forced repl reply ends with a FINAL/FINAL_VAR that resolves,
        (None, why) when it has one that does not, (None, None) when it has none.

        A FINAL written alone in a code block (```repl\nFINAL_VAR(x)\n```, as the system prompt's
        example shows it) is run: that one line is the model's answer, not work still to do."""
        marker = find_final(text)
        if marker is not None:
            value = await self._final_value(call, marker.kind, marker.value)
            if value is None:
                return None, f"its FINAL_VAR({marker.value}) names no REPL variable"
            if not value.strip():
                return None, "its FINAL() was empty"
            return value, None
        blocks = [code.strip() for code in code_blocks(text)]
        if len(blocks) != 1 or not _LONE_FINAL.fullmatch(blocks[0]):
            return None, None
        marker = find_final(blocks[0])
        if marker is not None and marker.kind == "final_var":  # a name, quoted or not: read the variable
            value = await self._final_value(call, marker.kind, marker.value)
            if value is None:
                return None, f"its FINAL_VAR({marker.value}) names no REPL variable"
            return (value, None) if value.strip() else (None, "its FINAL_VAR() was empty")
        result = await self.execute(call, await self.environment_for(call), blocks[0])  # FINAL(expression)
        if result.final is not None and result.final.value.strip():
            return result.final.value, None
        if result.error and marker is not None and "SyntaxError" in result.error and marker.value.strip():
            return marker.value, None  # FINAL(an answer in words), not Python: the words are the answer
        if result.error:
            return None, f"its FINAL failed: {_last_line(result.error)}"
        return None, "its FINAL() was empty"

    def _no_answer(self, call: CallNode, limit: Refusal, why: str) -> CallOutcome:
        """The outcome of a call whose forced last turn gave no answer (a sub-call: BudgetExceeded)."""
        self.emit(call, "no_answer", limit=limit.limit, reason=why)
        if call.depth > 0:
            what = LIMIT_MESSAGES.get(limit.limit, (limit.message, ""))[0]
            raise BudgetExceeded(f"no answer: {what} before the sub-call answered ({why})",
                                 limit=limit.limit, fix=limit.fix)
        return CallOutcome(text="", limit=limit.limit, forced=True, source="forced", no_answer=why)

    async def run_tools(self, call: CallNode, tool_calls: Sequence[ToolCall], messages: list[Message]) -> None:
        """Run the calls concurrently (at most ``max_parallel`` at once); append their results."""
        semaphore = asyncio.Semaphore(self.config.max_parallel)
        self.emit(call, "tool_start", tool_calls=tool_calls)

        async def one(tc: ToolCall) -> ToolResult:
            async with semaphore:
                return await self.run_tool(call, tc)

        results = await asyncio.gather(*(one(tc) for tc in tool_calls))
        self.tool_calls.extend(tool_calls)
        for result in results:
            messages.append(Message.tool(result.call_id, result.content, name=result.name))
        self.emit(call, "tool_results", tool_results=results)
        call.tool_outputs.update((r.call_id, r.content) for r in results)

    async def run_tool(self, call: CallNode, tc: ToolCall) -> ToolResult:
        started = time.monotonic()
        spec = self.tools.get(tc.name)
        is_error = False
        if spec is None:
            payload: Any = {"error": f"unknown tool {tc.name!r}; available tools: {', '.join(sorted(self.tools))}"}
            is_error = True
        else:
            try:
                args = dict(tc.arguments)
                try:
                    validate(args, spec.parameters)
                except SchemaError as exc:
                    raise ToolError(f"invalid arguments for {tc.name}: {exc}") from None
                if spec.takes_context:
                    args["ctx"] = ToolContext(self, call)
                remaining = self.remaining_time()  # tools stop at the soft deadline: the last turn still fits
                payload = await asyncio.wait_for(_no_exit(spec.handler(**args)), timeout=max(0.001, remaining))
            except asyncio.TimeoutError:
                payload, is_error = {"error": "the run's timeout expired while this tool ran"}, True
            except (ToolError, BudgetExceeded, BackendError) as exc:  # BackendError: a failed sub-call
                payload, is_error = {"error": str(exc)}, True
            except SandboxError as exc:  # the sandbox cannot start or died for good: as in the repl protocol
                raise FatalRunError(exc) from exc
            except FatalRunError:
                raise
            except Exception as exc:  # noqa: BLE001 - a tool bug becomes a tool error the model sees
                log.warning("tool_failed", tool=tc.name, error=repr(exc))
                payload, is_error = {"error": f"{type(exc).__name__}: {exc}"}, True
        return ToolResult(call_id=tc.id, name=tc.name, content=to_json_text(payload), is_error=is_error,
                          duration_ms=round((time.monotonic() - started) * 1000, 3))

    # --- sub-calls --------------------------------------------------------------------------

    def admit_sub_calls(self, parent: CallNode, count: int) -> None:
        """Let ``parent`` start ``count`` sub-calls now, or raise BudgetExceeded (depth, sub-calls per turn)."""
        refusal = self.check(SpendRequest(kind="sub_call", node=parent.budget, depth=parent.depth + 1,
                                          subcalls_this_turn=parent.subcalls_this_turn, count=count))
        if refusal is not None:
            self.emit(parent, "limit_hit", limit=refusal.limit, message=str(refusal))
            raise BudgetExceeded(refusal.message, limit=refusal.limit, fix=refusal.fix)
        parent.subcalls_this_turn += count

    def _child_budget(self, parent_budget: BudgetNode, max_tokens: int | None) -> BudgetNode:
        child = parent_budget.child(new_id("budget-"), tokens=max_tokens, share=0.5)
        if child.token_limit is not None and child.token_limit < MIN_OUTPUT * 4:
            refusal = Refusal.of("token_budget", f"only {child.token_limit} tokens for a sub-call")
            raise BudgetExceeded(refusal.message, limit="token_budget", fix=refusal.fix)
        return child

    async def sub_complete(self, parent: CallNode, query: str, *, system: str | None = None,
                           max_tokens: int | None = None, context: str | None = None,
                           budget: BudgetNode | None = None, admitted: bool = False,
                           sub_call_type: str = "rlm_sub_complete") -> str:
        """A recursive call with tools at depth + 1 under an inherited budget."""
        if not admitted:
            self.admit_sub_calls(parent, 1)
        node_budget = budget if budget is not None else self._child_budget(parent.budget, max_tokens)
        child = self.new_call(parent=parent, budget=node_budget, sub_call_type=sub_call_type)
        user = query if not context else f"{query}\n\nContext:\n{context}"
        messages = [Message.system(system or prompts.SUB_CALL_SYSTEM), Message.user(user)]
        self.emit(child, "call_start", prompt=user, system=system, token_limit=node_budget.token_limit)
        started = time.monotonic()
        try:
            outcome = await self.tools_loop(child, messages)
        except (BackendError, BudgetExceeded) as exc:  # BudgetExceeded: a limit left it with no answer
            self.emit(child, "call_end", error=str(exc), error_type=type(exc).__name__,
                      duration_ms=round((time.monotonic() - started) * 1000, 3),
                      tokens_spent=node_budget.tokens_spent, cost=node_budget.cost_spent)
            raise
        finally:
            if child.environment is not None:
                await child.environment.close()
        self.emit(child, "call_end", response=outcome.text, limit=outcome.limit,
                  duration_ms=round((time.monotonic() - started) * 1000, 3),
                  tokens_spent=node_budget.tokens_spent, cost=node_budget.cost_spent)
        return outcome.text

    async def llm_query(self, parent: CallNode, prompt: str, *, budget: BudgetNode | None = None,
                        admitted: bool = False) -> str:
        """A plain sub-LLM call (no tools) made from inside the REPL."""
        if not admitted:
            self.admit_sub_calls(parent, 1)
        node_budget = budget if budget is not None else self._child_budget(parent.budget, None)
        child = self.new_call(parent=parent, budget=node_budget, sub_call_type="llm_query")
        messages = [Message.system(prompts.LLM_QUERY_SYSTEM), Message.user(prompt)]
        self.emit(child, "call_start", prompt=prompt, token_limit=node_budget.token_limit)
        started = time.monotonic()
        try:
            response = await self.llm(child, messages)
            text = response.message.text
        except LimitReached as stop:
            self.emit(child, "limit_hit", limit=stop.refusal.limit, message=str(stop.refusal))
            raise BudgetExceeded(stop.refusal.message, limit=stop.refusal.limit, fix=stop.refusal.fix) from None
        except BackendError as exc:
            self.emit(child, "call_end", error=str(exc), error_type=type(exc).__name__,
                      duration_ms=round((time.monotonic() - started) * 1000, 3),
                      tokens_spent=node_budget.tokens_spent, cost=node_budget.cost_spent)
            raise
        self.emit(child, "call_end", response=text, duration_ms=round((time.monotonic() - started) * 1000, 3),
                  tokens_spent=node_budget.tokens_spent, cost=node_budget.cost_spent)
        return text

    async def _batch(self, parent: CallNode, items: Sequence[str], worker: Any, *,
                     max_parallel: int | None) -> list[Any]:
        if not items:
            return []
        self.admit_sub_calls(parent, len(items))
        shared = self._child_budget(parent.budget, None)  # one budget for the whole batch ...
        # ... split evenly up front, so early calls cannot starve later ones
        per_call = None if shared.token_limit is None else max(1, shared.token_limit // len(items))
        semaphore = asyncio.Semaphore(max(1, min(max_parallel or self.config.max_parallel,
                                                 self.config.max_parallel)))

        async def one(item: str) -> Any:
            async with semaphore:
                node = shared.child(new_id("budget-"), tokens=per_call, share=1.0)
                try:
                    return await worker(parent, item, budget=node, admitted=True)
                except (BudgetExceeded, ToolError, BackendError) as exc:  # the others still answer
                    return f"error: {exc}"

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def batch_complete(self, parent: CallNode, queries: Sequence[str], *,
                             max_parallel: int | None = None) -> list[Any]:
        return await self._batch(parent, queries, self.sub_complete, max_parallel=max_parallel)

    async def llm_query_batched(self, parent: CallNode, prompts_: Sequence[str]) -> list[Any]:
        return await self._batch(parent, prompts_, self.llm_query, max_parallel=None)

    # --- the paper-style repl protocol -----------------------------------------------------

    async def repl_loop(self, call: CallNode, messages: list[Message], *,
                        max_turns: int | None = None) -> CallOutcome:
        turns = max_turns or self.config.max_turns
        env: Environment | None = None  # the first turn gets it: it starts while the model thinks
        nudged = False
        last_text = ""
        last_error = ""  # the error of the last code run (a reply that only repeats it is no answer)
        ran: dict[str, tuple[Any, int]] = {}  # the code run in this call (normalized) -> (its last result, runs)
        try:
            for _ in range(turns):
                call.turns += 1
                call.subcalls_this_turn = 0
                if env is None:
                    response, env = await self._turn_while_starting(call, messages)
                else:
                    response = await self.llm(call, messages)
                text = response.message.text
                last_text = text or last_text
                messages.append(Message.assistant(text))
                blocks = code_blocks(text)
                feedback = []
                notes = []
                for code in blocks:
                    result = await self.execute(call, env, code)
                    if result.final is not None:
                        return CallOutcome(text=result.final.value, source=result.final.kind)
                    last_error = result.error or ""
                    piece = _repl_feedback(code, result)
                    note = self.note_repetition(call, code, result, ran)
                    notes.append(note)
                    feedback.append(piece if note is None else f"{piece}\n\n{note}")
                if blocks and all(notes) and len(messages) >= 2 and messages[-2].role == "user":
                    # the whole turn repeated earlier code: it is dropped from the conversation (each copy
                    # makes a small model surer of it) and the note joins the feedback it already had
                    if call.repeats >= MAX_REPEATS:
                        why = "the model kept writing the same code"
                        self.emit(call, "no_answer", limit=None, reason=why)
                        return CallOutcome(text="", no_answer=why)
                    messages.pop()
                    earlier = messages.pop()
                    note = notes[-1] or ""
                    messages.append(Message.user(earlier.text if note in earlier.text else f"{earlier.text}\n\n{note}"))
                    continue
                # a FINAL written in the same turn as code was written before the model saw the
                # output: the code's own FINAL (above) counts, a guessed one in the text does not
                marker = None if blocks else find_final(text)
                if marker is not None:
                    value = await self._final_value(call, marker.kind, marker.value, messages)
                    if value is not None:
                        return CallOutcome(text=value, source=marker.kind)
                    continue
                if blocks:
                    messages.append(Message.user("\n\n".join(feedback)))
                elif not nudged:
                    nudged = True
                    reply = text.strip()
                    short = (ran and reply and "\n" not in reply and len(reply) <= NUDGE_REPLY_CHARS
                             and _echoed_error(reply, last_error) is None)
                    messages.append(Message.user(prompts.REPL_NUDGE_REPLY.format(reply=reply) if short
                                                 else prompts.REPL_NUDGE))
                else:  # twice no code and no FINAL: the text is the answer, unless it is none
                    why = answer_problem(text, give_up=True) or _echoed_error(text, last_error)
                    if why is not None:
                        self.emit(call, "no_answer", limit=None, reason=why)
                        return CallOutcome(text="", no_answer=why)
                    return CallOutcome(text=text)
            limit = Refusal.of("max_turns", f"{turns} turns")
        except LimitReached as stop:
            limit = stop.refusal
        return await self.forced_answer(call, messages, limit, last_text=last_text, repl=True)

    def note_repetition(self, call: CallNode, code: str, result: Any,
                        ran: dict[str, tuple[Any, int]]) -> str | None:
        """The note for the model when ``code`` is code it already ran in this call and it failed both
        times, or printed the same output again (None otherwise).

        Such a repetition also changes the call's sampling: its next turns ask for at least
        :data:`REPEAT_TEMPERATURE` and a new seed (at temperature 0 a model writes the same code again
        and again), and a ``repeated_code`` event records it."""
        key = _normalize_code(code)
        before, runs = ran.get(key, (None, 0))
        ran[key] = (result, runs + 1)
        if before is None:
            return None
        if before.error and result.error:
            error = _last_line(result.error)
            note = prompts.REPEATED_FAILURE.format(error=error)
        elif not before.error and not result.error and _output_of(before) == _output_of(result):
            error = None
            note = prompts.REPEATED_OUTPUT
        else:
            return None
        call.repeats += 1
        # each repetition samples hotter: 0.7, then 1.0
        call.temperature = max(call.temperature or 0.0, REPEAT_TEMPERATURE + 0.3 * (call.repeats - 1))
        call.seed = random.randrange(1, 2**31)
        self.emit(call, "repeated_code", code=code, runs=runs + 1, error=error, temperature=call.temperature,
                  seed=call.seed)
        return note

    async def execute(self, call: CallNode, env: Environment, code: str) -> Any:
        """Run ``code`` in ``env`` and record it; a run-ending error met by the code's own sub-calls (a bad
        key, in an ``llm_query``) ends the run here, whatever the code did with the exception it got."""
        started = time.monotonic()
        result = await env.execute(code)
        self.emit(call, "repl_execution", **repl_execution_fields(code, result, (time.monotonic() - started) * 1000))
        if self.fatal is not None:
            raise self.fatal
        return result

    async def _final_value(self, call: CallNode, kind: str, value: str,
                           messages: list[Message] | None = None) -> str | None:
        if kind != "final_var":
            return value
        env = await self.environment_for(call)
        try:
            found = await env.get_variable(value)
        except KeyError:
            if messages is not None:
                messages.append(Message.user(
                    f"FINAL_VAR({value}) failed: the REPL has no variable named {value!r}. "
                    "Define it first, or answer with FINAL(answer)."
                ))
            return None
        return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False, default=str)


def _new_messages(messages: Sequence[Message]) -> int:
    """How many trailing messages are new since the last assistant message (at least 1)."""
    count = 0
    for m in reversed(messages):
        if m.role == "assistant":
            break
        count += 1
    return max(1, count)


#: A fenced block (its tag, its body), closed or cut off at the end of the text.
_FENCE_BLOCK = re.compile(r"```[ \t]*([^\n`]*?)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
#: The tags of fences that hold code (a bare fence holds code when it looks like it); an answer in
#: ```json or ```text is still an answer.
_CODE_TAGS = frozenset({"repl", "python", "python3", "py", "sh", "bash", "shell", "console", "zsh"})
#: A reply that starts like this gives up rather than answers (only short replies are judged).
_GIVE_UP = re.compile(
    r"^\W{0,3}(?:"
    r"i(?:\s+am|\s*['\u2019]m)\s+(?:unable|not\s+able|sorry)"
    r"|i\s+(?:cannot|can\s+not|can['\u2019]t|could\s+not|couldn['\u2019]t)\s+"
    r"(?:determine|find|answer|solve|compute|calculate|complete|figure|provide|tell|do|help|access|read)"
    r"|i\s+(?:do\s+not|don['\u2019]t)\s+know"
    r"|sorry\b"
    r"|unfortunately,?\s+i\b"
    r")",
    re.IGNORECASE,
)
#: A FINAL(...) call on a line of its own in code (its value must be Python: see ``prompts.FINAL_IN_CODE``).
_FINAL_CALL = re.compile(r"^\s*FINAL\((.*)\)\s*$", re.MULTILINE)
#: A code block that only gives the answer: FINAL(...) or FINAL_VAR(...).
_LONE_FINAL = re.compile(r"FINAL(?:_VAR)?\(.*\)", re.DOTALL)


def answer_problem(text: str, *, give_up: bool = True, code_is_work: bool = False) -> str | None:
    """Why ``text``, a call's last reply, is no answer; None when it is one.

    Not an answer: empty text; code blocks alone (```repl/```python/a shell/a bare fence holding
    code, with at most a one-line lead-in such as "Here is the code:"); with ``give_up``, a short
    reply (under :data:`GIVE_UP_CHARS` characters) that starts by giving up ("I cannot determine...",
    "I'm unable to...", "I don't know", "Sorry, ..."); with ``code_is_work``, any reply with a code
    block (in the repl protocol such a reply was a working turn, not an answer).
    """
    stripped = text.strip()
    if not stripped:
        return "the model's last reply was empty"
    if "```" not in stripped and code_blocks(stripped):  # a code block whose fences the model left out
        return "the model's last reply was code" if code_is_work else "the model's last reply was only code"
    fences = list(_FENCE_BLOCK.finditer(stripped))
    code = [m for m in fences
            if m.group(1).lower() in _CODE_TAGS or (not m.group(1) and looks_like_code(m.group(2)))]
    if code_is_work and code:
        return "the model's last reply was code"
    if code and len(code) == len(fences):
        rest = [line.strip() for line in _FENCE_BLOCK.sub("", stripped).splitlines() if line.strip()]
        if not rest or (len(rest) == 1 and rest[0].endswith(":") and len(rest[0]) < 200):
            return "the model's last reply was only code"
    if give_up and len(stripped) < GIVE_UP_CHARS and _GIVE_UP.match(stripped):
        return f"the model gave up: {_excerpt(stripped)}"
    return None


def _echoed_error(text: str, error: str) -> str | None:
    """Why ``text`` is no answer when it only repeats a line of the last code run's ``error`` (a small
    model answers with the REPL's ``SyntaxError: ...``); None otherwise."""
    reply = text.strip()
    if reply and error and any(reply == line.strip() for line in error.splitlines()):
        return f"the model's last reply only repeated the REPL's error: {_excerpt(reply)}"
    return None


def _excerpt(text: str, width: int = 80) -> str:
    line = " ".join(text.split())
    return repr(line if len(line) <= width else line[: width - 3] + "...")


def _last_line(error: str) -> str:
    """The last non-empty line of an error (a traceback's ``KeyError: 'x'``), shortened."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else error.strip()
    return last if len(last) <= 300 else last[:297] + "..."


def _normalize_code(code: str) -> str:
    """``code`` compared for repetition: no trailing spaces, blank lines or common indentation."""
    lines = [line.rstrip() for line in textwrap.dedent(code.expandtabs(4)).splitlines()]
    return "\n".join(line for line in lines if line)


def _output_of(result: Any) -> tuple[str, str | None]:
    return (result.output or "").strip(), result.value


def _assistant(message: Message) -> Message:
    return Message.assistant(message.text, tool_calls=message.tool_calls) if message.role == "assistant" else message


def _repl_feedback(code: str, result: Any) -> str:
    parts = []
    if result.output:
        parts.append(result.output)
    if result.value is not None:
        parts.append(result.value)
    if result.error:
        parts.append(result.error)
    body = "\n".join(parts) if parts else "(no output)"
    if len(body) > REPL_FEEDBACK_CHARS:
        body = body[:REPL_FEEDBACK_CHARS] + f"\n... [{len(body) - REPL_FEEDBACK_CHARS} more characters cut]"
    if result.truncated:
        body += "\n[output truncated by the sandbox]"
    final = _FINAL_CALL.search(code) if result.error and "SyntaxError" in result.error else None
    value = final.group(1).strip()[:200] if final else ""
    if value:
        body += "\n" + prompts.FINAL_IN_CODE.format(quoted=json.dumps(value, ensure_ascii=False), value=value)
    if result.notice:
        body = f"[notice: {result.notice}]\n{body}"
    return f"REPL output:\n{body}"


class _HostCallbacks:
    """What REPL code can ask of the orchestrator (``llm_query`` and friends)."""

    def __init__(self, run: Run, call: CallNode) -> None:
        self._run = run
        self._call = call

    async def llm_query(self, prompt: str) -> str:
        return await self._fatal_noted(self._run.llm_query(self._call, str(prompt)))

    async def llm_query_batched(self, prompts_: Sequence[str]) -> list[str]:
        answers = await self._fatal_noted(self._run.llm_query_batched(self._call, [str(p) for p in prompts_]))
        return [str(x) for x in answers]

    async def _fatal_noted(self, work: Any) -> Any:
        """``await work``; an error that ends the run is kept on it (the code only sees an exception it may
        catch; :meth:`Run.execute` raises the kept one when the code returns)."""
        try:
            return await work
        except FatalRunError as exc:
            self._run.fatal = self._run.fatal or exc
            raise


async def _no_exit(awaitable: Any) -> Any:
    """A tool's result; a tool that calls ``exit()`` gets a :class:`ToolError` the model sees, as it must
    not end the process (asyncio re-raises SystemExit out of the event loop, ending every run and batch
    item at once).  Awaited inside the tool's task, before SystemExit could reach the task's boundary."""
    try:
        return await awaitable
    except SystemExit as exc:
        raise ToolError(f"the tool called exit({exc.code!r})") from None
