"""The public API: :class:`RLM` — configure once, then ``await rlm.completion(prompt)``.

An RLM resolves its plugins (backend, environment, tools, budget policies,
trajectory sinks) from a plugin manager, applies the configuration
(keyword > environment > rlm.toml > default) and runs each completion as an
:class:`rlm.orchestrator.Run`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import attrs

from rlm import prompts
from rlm.backend import SAMPLING_OPTIONS, Backend, BackendCapabilities, BackendSettings
from rlm.budget import HARD_CAPS, LIMIT_MESSAGES, BudgetNode, Refusal
from rlm.config import ModelPricing, RLMConfig, first_surrogate, load_config, structure_section, validate
from rlm.errors import BudgetExceeded, ConfigError, InputError, PluginError, RLMError
from rlm.hints import missing_plugin_fix
from rlm.logging import get_logger
from rlm.orchestrator import CallOutcome, FatalRunError, LimitReached, Route, Run
from rlm.plugins import RLMPluginManager, create_plugin_manager
from rlm.pricing import price_for
from rlm.session import Session, SyncSession
from rlm.tokens import estimate_tokens, tokens_for_chars
from rlm.registry import Registration, add_tools, collect
from rlm.schema import InvalidSchemaError, SchemaError, check as check_schema, validate as validate_schema
from rlm.trajectory import Recorder, new_trajectory_id
from rlm.types import CompletionResult, ContentPart, Message, ToolSpec

log = get_logger(__name__)



def clamp_to_caps(config: RLMConfig) -> RLMConfig:
    """``config`` with max_depth, cost_limit and timeout clamped to :data:`HARD_CAPS`."""
    changes: dict[str, Any] = {}
    for key, cap in HARD_CAPS.items():
        value = getattr(config, key)
        if value is not None and value > cap:
            log.warning("limit_clamped", setting=key, requested=value, cap=cap)
            changes[key] = type(value)(cap)
    return attrs.evolve(config, **changes) if changes else config


def _override(config: RLMConfig, overrides: Mapping[str, Any],
              sources: Mapping[str, str] | None = None) -> RLMConfig:
    """Apply keyword overrides to a given config, validated like any other layer.

    ``sources`` names where a key came from in error messages (default: ``keyword argument <key>``).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    data = {f.name: getattr(config, f.name) for f in attrs.fields(RLMConfig)
            if f.name not in ("pricing", "plugins", "source", "explicit")}
    data.update(given)
    labels = {k: (sources or {}).get(k, f"keyword argument {k}") for k in given}
    structured = structure_section(data, RLMConfig, where="keyword arguments:", sources=labels)
    new = attrs.evolve(structured, pricing=config.pricing, plugins=config.plugins, source=config.source,
                       explicit=config.explicit | frozenset(given))
    validate(new, labels)
    return new


def check_input_text(prompt: str | Sequence[ContentPart], *, system: str | None = None) -> None:
    """Refuse a prompt or system prompt that is not valid Unicode text (a lone surrogate, or an
    undecodable byte that Python kept as one, as in ``rlm run $'\\xff'``): no provider could be sent it.

    Called once at each entry point (:meth:`RLM.completion` and friends, ``AgentRunner.run``),
    before anything starts.
    """
    texts: list[tuple[str, str]] = []
    if isinstance(prompt, str):
        texts.append(("the prompt", prompt))
    else:
        texts.extend(("the prompt", part.text) for part in prompt if isinstance(getattr(part, "text", None), str))
    if isinstance(system, str):
        texts.append(("the system prompt", system))
    for what, text in texts:
        bad = first_surrogate(text)
        if bad is not None:
            raise InputError(f"{what} is not valid text: it holds {bad}",
                             fix="pass UTF-8 text (decode bytes with errors='replace' to keep the rest)")


def _parse_json_answer(text: str) -> Any:
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*\n?(.*?)\n?```", stripped, re.DOTALL)
    if fenced:
        stripped = fenced.group(1).strip()
    return json.loads(stripped)


class RLM:
    """A Recursive Language Model runtime.

    :param model: model string (``"gpt-4o-mini"``, ``"anthropic/claude-..."``).
    :param environment: REPL environment plugin (``"local"``, ``"docker"``, ``"wasm"``).
    :param backend: backend plugin name; default: the one that claims ``model``.
    :param config: an :class:`RLMConfig`; default: loaded from rlm.toml and ``RLM_*``.
    :param tools: extra tools (``@rlm.tool`` functions or ToolSpecs).
    :param max_depth: nesting of sub-LLM calls (hard cap 5).
    :param plugin_manager: a plugin manager to use (tests pass their own).
    :param system_prompt: replaces the default system prompt.
    :param settings: any other ``[rlm]`` key (``token_budget=``, ``max_turns=``...); rlm-runtime 2.x's names
        ``timeout_seconds=`` and ``docker_timeout=`` are taken for ``timeout=`` and ``env_timeout=``, and its
        ``tool_budget=`` and ``api_key=`` are refused with what to use instead (:mod:`rlm.compat`).
    """

    def __init__(
        self,
        model: str | None = None,
        environment: str | None = None,
        backend: str | None = None,
        config: RLMConfig | None = None,
        tools: Iterable[ToolSpec] | None = None,
        max_depth: int | None = None,
        *,
        plugin_manager: RLMPluginManager | None = None,
        system_prompt: str | None = None,
        **settings: Any,
    ) -> None:
        from rlm.compat import LEGACY_SETTINGS, rlm_settings  # imported with rlm.core already

        if any(key in settings for key in LEGACY_SETTINGS):
            settings = rlm_settings(settings)  # rlm-runtime 2.x's names: timeout_seconds=, docker_timeout=...
        self.pm = plugin_manager or create_plugin_manager()
        self._sections = {name: reg.load() for name, reg in collect(self.pm, "config_section").items()}
        overrides = {"model": model, "environment": environment, "backend": backend, "max_depth": max_depth,
                     **settings}
        if config is None:
            config = load_config(sections=self._sections, **overrides)
        else:
            config = _override(config, overrides)
            validate(config, where="RLM(config=...):")  # a config built in Python was never checked
        self.config = clamp_to_caps(config)
        self.system_prompt = system_prompt
        self.extra_tools = list(tools or ())
        for spec in self.extra_tools:
            if not isinstance(spec, ToolSpec):
                raise ConfigError(f"tools=[...] holds {spec!r}, which is not a tool",
                                  fix="decorate the function with @rlm.tool")
        self._backend_objects: dict[str, Backend] = {}  # backend plugin name -> its backend, made on first use
        self._cache: Any = None  # the response cache ([rlm] cache), opened by the first run
        self._cache_opened = False
        self._session_budget = BudgetNode(name="session", cost_limit=self.config.session_cost_cap,
                                          cost_limit_name="session_cost_cap")
        self._environments = collect(self.pm, "environment")
        self._backends = collect(self.pm, "backend")
        self.pricing: ModelPricing | None = price_for(self.config.model, self.config)
        if self.pricing is None and self._cost_limited() and not self._backends:
            self._check_pricing(None)  # no backend can declare a price: say so now

    @property
    def session_budget(self) -> BudgetNode:
        """The budget node every run of this RLM draws from (``session_cost_cap`` is its limit)."""
        return self._session_budget

    def _cost_limited(self) -> bool:
        return self.config.cost_limit is not None or self.config.session_cost_cap is not None

    def _check_pricing(self, caps: BackendCapabilities | None) -> None:
        """Price the model (:func:`rlm.pricing.price_for`: rlm.toml, the price ``caps`` declare, litellm's
        map); a cost limit needs a price."""
        if caps is not None and caps.pricing_per_mtok is not None:
            self.pricing = price_for(self.config.model, self.config, declared=caps.pricing_per_mtok)
        if self.pricing is None and self._cost_limited():
            raise ConfigError(
                f"a cost limit is set but the price of model {self.config.model!r} is unknown",
                fix=f'add [pricing."{self.config.model}"] input_per_mtok/output_per_mtok to rlm.toml, '
                    "or remove cost_limit",
            )

    # --- plugin resolution -------------------------------------------------------------------

    def backend_name(self, model: str | None = None, backend: str | None = None) -> str:
        """The backend that serves ``model`` (default: the configured model; ``backend``: the one named)."""
        model = model or self.config.model
        if model == self.config.model and backend is None:
            backend = self.config.backend
        if backend:
            name = backend
        else:
            name = self.pm.hook.rlm_resolve_backend(model=model, config=self.config)
            if name is None and len(self._backends) == 1:
                name = next(iter(self._backends))
        if name is None:
            raise PluginError(
                f"no installed backend serves model {model!r}",
                fix="pip install rlm-backend-litellm (or rlm-runtime), or set backend=",
            )
        if name not in self._backends:
            have = ", ".join(sorted(self._backends)) or "none"
            raise PluginError(f"backend {name!r} is not installed (installed: {have})",
                              fix=missing_plugin_fix("backend", name, self._backends))
        return name

    def _get_backend(self, name: str | None = None) -> Backend:
        """The backend plugin ``name`` (default: the model's), made once and kept until :meth:`aclose`."""
        name = name or self.backend_name()
        if name not in self._backend_objects:
            reg = self._backends[name]
            factory = reg.load()
            settings = BackendSettings(
                base_url=self.config.api_base,
                timeout=min(self.config.timeout, HARD_CAPS["timeout"]),
                max_retries=self.config.max_retries,
                options=self.config.plugin(f"backend-{reg.name}"),
            )
            self._backend_objects[name] = factory(settings=settings)
        return self._backend_objects[name]

    def _sub_route(self, config: RLMConfig) -> Route | None:
        """The route of the sub-calls when ``sub_model`` (or ``sub_backend``) sends them elsewhere."""
        if config.sub_model is None and config.sub_backend is None:
            return None
        model = config.sub_model or config.model
        name = self.backend_name(model, config.sub_backend)
        backend = self._get_backend(name)
        caps = _capabilities(backend, model)
        check_sampling(config, name, caps)
        declared = caps.pricing_per_mtok if caps is not None else None
        pricing = price_for(model, config, declared=declared)
        if pricing is None and self._cost_limited():
            raise ConfigError(f"a cost limit is set but the price of the sub-model {model!r} is unknown",
                              fix=f'add [pricing."{model}"] input_per_mtok/output_per_mtok to rlm.toml, '
                                  "or remove cost_limit")
        return Route(backend=backend, model=model, pricing=pricing, capabilities=caps,
                     context_window=None, scope=_scope(name, config, caps))

    def _environment_factory(self) -> Any:
        name = self.config.environment
        reg: Registration | None = self._environments.get(name)
        if reg is None:
            have = ", ".join(sorted(self._environments)) or "none"
            raise PluginError(f"environment {name!r} is not installed (installed: {have})",
                              fix=missing_plugin_fix("environment", name, self._environments))
        return reg.load()

    def environment_isolation(self, config: RLMConfig | None = None) -> dict[str, str] | None:
        """The isolation layers of the configured environment (layer -> status), as its plugin describes them.

        None when the environment is not installed or registered no describer;
        ``{"error": ...}`` when the describer fails.  Never raises.
        """
        reg: Registration | None = self._environments.get(self.config.environment)
        if reg is None:
            return None
        try:
            return reg.isolation_layers(config or self.config)
        except Exception as exc:  # noqa: BLE001 - isolation_layers never raises; a report must not end a run
            log.warning("isolation_describer_failed", environment=reg.name, plugin=reg.plugin, error=str(exc))
            return {"error": str(exc)[:300]}

    def _tools(self) -> dict[str, ToolSpec]:
        found = collect(self.pm, "tool", config=self.config)
        found = add_tools(found, self.extra_tools, source="RLM(tools=...)")
        return {name: reg.target for name, reg in found.items()}

    def _policies(self, config: RLMConfig | None = None) -> list[Any]:
        config = config or self.config
        regs = collect(self.pm, "budget_policy")
        out = []
        for name in config.budget_policies:
            if name not in regs:
                raise ConfigError(f"[rlm] budget_policies: no budget policy named {name!r} is installed",
                                  fix=f"installed: {', '.join(sorted(regs)) or 'none'}")
            out.append(regs[name].load()(config=config))
        return out

    def trajectory_sinks(self) -> list[Any]:
        """New instances of the sinks ``[rlm] trajectory_sinks`` names (one set per top-level run)."""
        regs = collect(self.pm, "trajectory_sink")
        out = []
        for name in self.config.trajectory_sinks:
            if name not in regs:
                raise ConfigError(f"[rlm] trajectory_sinks: no sink named {name!r} is installed",
                                  fix=f"installed: {', '.join(sorted(regs)) or 'none'}")
            out.append(regs[name].load()(config=self.config))
        return out

    def _protocol(self, requested: str | None, caps: BackendCapabilities | None) -> str:
        protocol = requested or self.config.protocol
        if protocol == "auto":
            protocol = caps.preferred_protocol if caps is not None and caps.native_tools else "repl"
        if protocol not in ("tools", "repl"):
            raise ConfigError(f"protocol {protocol!r} is not one of auto, tools, repl")
        return protocol

    # --- completions ---------------------------------------------------------------------------

    async def completion(
        self,
        prompt: str | Sequence[ContentPart],
        *,
        system: str | None = None,
        context: Any = None,
        response_format: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        max_turns: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_output_tokens: int | None = None,
        options: Any = None,
    ) -> CompletionResult:
        """Answer ``prompt``; the model may run code, call tools and delegate.

        :param prompt: text, or a list of content parts (text/image/audio).
        :param system: a system prompt added to the default one.
        :param context: data for the REPL variable ``context`` (repl protocol;
            default: the prompt itself).
        :param response_format: a JSON Schema the answer must satisfy;
            ``result.parsed`` holds the validated value.
        :param protocol: ``"tools"`` or ``"repl"`` (default from config).
        :param max_turns: overrides ``max_turns`` for this call.
        :param temperature: sampling options for this call's model requests (``top_p``, ``seed`` too);
            default: the config's.  A backend that does not send one refuses it before any call.
        :param max_output_tokens: output tokens one model call may write (default: the config's).
        :param options: rlm-runtime 2.x's :class:`rlm.compat.CompletionOptions` (its limits for this call,
            mapped onto rlm's settings; a field rlm has no counterpart for is a ConfigError).
        """
        overrides: dict[str, Any] = {}
        include_events = True
        if options is not None:
            overrides, response_format, include_events = self._options(options, response_format=response_format,
                                                                       temperature=temperature)
            temperature = overrides.pop("temperature", temperature)  # _complete's sampling keywords win
        result = await self._complete(prompt, system=system, context=context, response_format=response_format,
                                      protocol=protocol, max_turns=max_turns, temperature=temperature,
                                      top_p=top_p, seed=seed, max_output_tokens=max_output_tokens,
                                      overrides=overrides)
        return result if include_events else attrs.evolve(result, events=())

    def _options(self, options: Any, *, response_format: Mapping[str, Any] | None,
                 temperature: float | None) -> tuple[dict[str, Any], Mapping[str, Any] | None, bool]:
        """2.x's ``options=``: the ``[rlm]`` overrides it sets (checked now, errors naming the option), the
        response format, and whether the result keeps its events (``include_trajectory``)."""
        from rlm.compat import CompletionOptions

        if not isinstance(options, CompletionOptions):
            raise ConfigError(f"options={options!r}: not a CompletionOptions",
                              fix="pass rlm.CompletionOptions(...), or give the settings as keyword arguments")
        overrides = options.settings()
        for name, given in (("temperature", temperature), ("response_format", response_format)):
            other = overrides.get(name) if name != "response_format" else options.response_format
            if given is not None and other is not None and given != other:
                raise ConfigError(f"{name} is given twice, as completion({name}=...) and in CompletionOptions",
                                  fix="give it once")
        _override(self.config, overrides, sources=options.sources())  # refuse a bad value now, naming the option
        for key, cap in HARD_CAPS.items():  # clamped like RLM(...)'s own settings
            value = overrides.get(key)
            if value is not None and value > cap:
                log.warning("limit_clamped", setting=key, requested=value, cap=cap)
                overrides[key] = type(value)(cap)
        fmt = response_format if response_format is not None else options.json_schema()
        return overrides, fmt, options.include_trajectory is not False

    async def agent_run(self, goal: str, max_iterations: int = 10, cost_limit: float | None = None,
                        system: str | None = None) -> Any:
        """rlm-runtime 2.x's ``agent_run``: run :class:`rlm.agent.AgentRunner` on ``goal`` with this RLM's
        configuration, plugins and tools; returns its :class:`rlm.agent.AgentResult`."""
        from rlm.agent import AgentRunner
        from rlm.compat import AgentConfig

        runner = AgentRunner(self, AgentConfig(max_iterations=max_iterations, cost_limit=cost_limit))
        try:
            return await runner.run(goal, system=system)
        finally:
            await runner.aclose()

    async def stream(self, prompt: str | Sequence[ContentPart], *, system: str | None = None,
                     protocol: str | None = None) -> AsyncIterator[str]:
        """Yield the answer's text as it arrives (tool turns run in between).

        After the iteration ends, :attr:`last_result` holds the CompletionResult.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        async def produce() -> CompletionResult:
            try:
                return await self._complete(prompt, system=system, protocol=protocol, stream_queue=queue)
            finally:
                await queue.put(done)

        task = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                yield item
            self.last_result = await task
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass

    last_result: CompletionResult | None = None

    def completion_sync(self, prompt: str | Sequence[ContentPart], **kwargs: Any) -> CompletionResult:
        """:meth:`completion` for scripts without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._complete_and_close(prompt, **kwargs))
        raise RuntimeError("completion_sync() cannot run inside an event loop: use 'await rlm.completion(...)'")

    async def _complete_and_close(self, prompt: Any, **kwargs: Any) -> CompletionResult:
        try:
            return await self.completion(prompt, **kwargs)
        finally:
            await self.aclose()

    def _response_cache(self) -> Any:
        """The response cache ``[rlm] cache`` names (None: off), opened once (:func:`rlm.cache.open_cache`)."""
        if not self._cache_opened:
            from rlm.cache import open_cache

            self._cache = open_cache(self.pm, self.config)
            self._cache_opened = True
        return self._cache

    async def aclose(self) -> None:
        """Close the backends' connections (and the response cache)."""
        backends, self._backend_objects = list(self._backend_objects.values()), {}
        for backend in backends:
            await backend.aclose()
        cache, self._cache, self._cache_opened = self._cache, None, False
        if cache is not None:
            try:
                cache.close()
            except Exception as exc:  # noqa: BLE001 - closing a memo must not fail the caller
                log.warning("cache_close_failed", error=str(exc))

    async def batch(self, input: str | os.PathLike[str], output: str | os.PathLike[str], *,
                    concurrency: int = 4, executor: str | None = None, address: str | None = None) -> Any:
        """Answer every prompt of the JSONL file ``input``, appending each result to ``output`` as it ends
        (ids already answered there are skipped); returns a :class:`rlm.batch.BatchSummary`.  A cost cap
        across the whole batch is ``session_cost_cap``.  ``executor`` is where the items run (``local``:
        this process; ``ray``: a Ray cluster, with ``rlm-executor-ray``; default: ``[rlm] executor``),
        ``address`` its cluster."""
        from rlm.batch import read_items, run_batch

        return await run_batch(self, read_items(input), output, concurrency=concurrency, executor=executor,
                               address=address)

    def session(self) -> Session:
        """Completions that share one REPL and one conversation: ``async with rlm.session() as s:
        await s.completion(...)`` (:mod:`rlm.session`); the REPL closes with the session."""
        return Session(self)

    def session_sync(self) -> SyncSession:
        """:meth:`session` for scripts without an event loop: ``with rlm.session_sync() as s: s.completion(...)``."""
        return SyncSession(self)

    async def __aenter__(self) -> RLM:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _complete(
        self,
        prompt: str | Sequence[ContentPart],
        *,
        system: str | None = None,
        context: Any = None,
        response_format: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        max_turns: int | None = None,
        stream_queue: asyncio.Queue[Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        session: Session | None = None,
        batch_id: str | None = None,
        session_budget: BudgetNode | None = None,
        **sampling: Any,
    ) -> CompletionResult:
        """:meth:`completion`'s work; ``overrides`` (any ``[rlm]`` keys: a batch item's limits) and the
        sampling options (``temperature``, ``top_p``, ``seed``, ``max_output_tokens``) apply to this run;
        ``batch_id`` is written in its ``run_start`` (a batch's runs are grouped by it); ``session_budget``
        replaces this RLM's session budget for the run (a remote executor's lease, :mod:`rlm.executors`)."""
        check_input_text(prompt, system=system)
        check_response_format(response_format)
        run = self.prepare_run(protocol=protocol, stream_queue=stream_queue,
                               overrides={**(overrides or {}), **sampling}, session_budget=session_budget)
        run.session = session
        run.batch_id = batch_id
        return await self.execute_run(run, prompt, system=system, context=context,
                                      response_format=response_format, max_turns=max_turns)

    def prepare_run(self, *, protocol: str | None = None, stream_queue: asyncio.Queue[Any] | None = None,
                    extra_tools: Sequence[ToolSpec] = (), default_cost_limit: float | None = None,
                    overrides: Mapping[str, Any] | None = None, session_budget: BudgetNode | None = None) -> Run:
        """Resolve plugins and budgets for one run (nothing is sent yet).

        ``default_cost_limit`` applies when no cost limit was configured and
        the model's price is known; with an unknown price it cannot be
        enforced, which is logged as a warning (an explicit limit is an error).
        ``overrides`` (``[rlm]`` keys: ``temperature``, ``max_turns``...) replace the config's for this run;
        ``session_budget`` replaces the session budget node it draws from.
        """
        name = self.backend_name()
        backend = self._get_backend(name)
        caps = _capabilities(backend, self.config.model)
        self._check_pricing(caps)
        config = self.config
        if overrides:
            config = _override(config, overrides)  # None values are "not given"
        if config.cost_limit is None and default_cost_limit is not None:
            if self.pricing is not None:
                config = attrs.evolve(config, cost_limit=default_cost_limit)
            else:
                log.warning("cost_limit_not_enforced", model=config.model, default_cost_limit=default_cost_limit,
                            fix=f'add [pricing."{config.model}"] to rlm.toml to enforce it')
        sub_route = self._sub_route(config)
        check_sampling(config, name, caps)
        protocol = self._protocol(protocol, caps)
        if caps is not None and caps.suggested_sub_calls is False and config.sub_calls \
                and "sub_calls" not in config.explicit:
            config = attrs.evolve(config, sub_calls=False)  # a small model that misuses them; the user may say yes
        tools = self._tools()
        for spec in extra_tools:
            if spec.name in tools:
                raise PluginError(f"tool {spec.name!r} is registered twice", fix="rename one of the tools")
            tools[spec.name] = spec
        env_factory = self._environment_factory() if (protocol == "repl" or "execute_code" in tools) else None
        if env_factory is None:
            tools.pop("execute_code", None)
        recorder = Recorder(trajectory_id=new_trajectory_id(), sinks=self.trajectory_sinks(), hook=self.pm.hook)
        run = Run(
            config=config,
            backend=backend,
            model=self.config.model,
            tools=tools,
            environment_factory=env_factory,
            policies=self._policies(config),
            recorder=recorder,
            session_budget=self._session_budget if session_budget is None else session_budget,
            pricing=self.pricing,
            protocol=protocol,
            stream_queue=stream_queue,
            capabilities=caps,
            sub_route=sub_route,
            main_scope=_scope(name, config, caps),
            cache=self._response_cache(),
        )
        run.plugin_manager = self.pm
        return run

    async def execute_run(
        self,
        run: Run,
        prompt: str | Sequence[ContentPart],
        *,
        system: str | None = None,
        context: Any = None,
        response_format: Mapping[str, Any] | None = None,
        max_turns: int | None = None,
        system_prompt: str | None = None,
    ) -> CompletionResult:
        """Run a prepared :class:`Run` to its answer; the environments are closed at the end.

        ``system_prompt`` replaces the default system prompt for this run.
        """
        started = time.monotonic()
        trajectory_id, recorder, tools, protocol = run.trajectory_id, run.recorder, run.tools, run.protocol
        backend, caps = run.main_route.backend, run.main_route.capabilities
        if run.session is not None:  # before anything is written: a refused switch leaves no trajectory
            run.session.check_protocol(protocol)
        user_text = prompt if isinstance(prompt, str) else Message.user(list(prompt)).text
        fmt = None
        if response_format is not None:
            schema = response_format.get("schema", response_format)
            fmt = {"name": str(response_format.get("name", schema.get("title", "response"))), "schema": schema}
        # which isolation layers protect the sandbox; only for a run that has one
        isolation = self.environment_isolation(run.config) if run.environment_factory is not None else None
        top = run.top = run.new_call(parent=None, budget=run.budget, sub_call_type=None)
        path = "direct" if self._direct(run, user_text, context) else "rlm"
        served = caps.served_model if caps is not None and caps.served_model else self.config.model
        if max_turns is None and "max_turns" not in self.config.explicit and caps is not None \
                and caps.suggested_max_turns:
            max_turns = min(self.config.max_turns, caps.suggested_max_turns)
        run.emit(top, "run_start", prompt=user_text, system=system, model=served,
                 **({"requested_model": self.config.model} if served != self.config.model else {}),
                 **({"sub_model": run.sub_route.model} if run.sub_route is not None else {}),
                 backend=getattr(backend, "name", None), environment=self.config.environment, protocol=protocol,
                 isolation=isolation, token_budget=run.config.token_budget, cost_limit=run.config.cost_limit,
                 max_depth=run.config.max_depth, tools=sorted(tools), path=path,
                 **({"batch_id": run.batch_id} if run.batch_id else {}))
        error: RLMError | None = None
        outcome = CallOutcome(text="")
        parsed: Any = None
        messages: list[Message] | None = None
        try:
            if path == "direct":
                messages = self._direct_messages(prompt, system, context, system_prompt)
                outcome = await _direct_answer(run, top, messages, fmt)
            elif protocol == "repl":
                messages = await self._repl_messages(run, top, prompt, system, context, system_prompt)
                outcome = await run.repl_loop(top, messages, max_turns=max_turns)
            else:
                messages = self._tool_messages(prompt, system, tools, system_prompt, run.session)
                outcome = await run.tools_loop(top, messages, response_format=fmt, max_turns=max_turns)
            if fmt is not None and outcome.no_answer is None:  # no answer: nothing to parse or repair
                outcome, parsed, error = await self._structured(run, top, messages, outcome, fmt)
        except FatalRunError as exc:
            error = exc.error
        except RLMError as exc:
            error = exc
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Ctrl-C, a cancelled task, a server shutting down: the trajectory still ends with run_end
            run.end_cancelled(started)
            await _close_quietly(run)
            raise
        finally:
            if not run.ended:
                try:
                    await run.close()
                except BaseException:  # cancelled while the sandboxes closed: the trajectory still ends
                    run.end_cancelled(started)
                    raise
        if error is None and parsed is None and not (outcome.text or "").strip():
            error = no_answer_error(outcome, run)
        if run.session is not None and messages is not None:
            await _remember(run, top, messages, outcome.text)
        result = CompletionResult(
            response=outcome.text,
            trajectory_id=trajectory_id,
            total_calls=run.llm_calls,
            total_tokens=run.usage.total_tokens,
            total_input_tokens=run.usage.input_tokens,
            total_output_tokens=run.usage.output_tokens,
            total_tool_calls=len(run.tool_calls),
            total_cost_usd=run.usage.cost_usd,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            tool_calls=tuple(run.tool_calls),
            error=str(error) if error else None,
            error_type=type(error).__name__ if error else None,
            limit_hit=outcome.limit or (run.limits_hit[0] if run.limits_hit else None),
            answer_source=outcome.source if error is None else "error",
            parsed=parsed,
            path=path,
            events=tuple(recorder.events),
        )
        run.emit(top, "run_end", response=result.response, error=result.error, error_type=result.error_type,
                 limit_hit=result.limit_hit, answer_source=result.answer_source, total_calls=result.total_calls,
                 token_usage={"input": result.total_input_tokens, "output": result.total_output_tokens,
                              "total": result.total_tokens},
                 cost=result.total_cost_usd, duration_ms=result.duration_ms,
                 total_tool_calls=result.total_tool_calls)
        run.ended = True
        run.closed()
        recorder.close()
        result = attrs.evolve(result, events=tuple(recorder.events))
        return result

    def _direct(self, run: Run, text: str, context: Any) -> bool:
        """Whether the input (the prompt and any ``context``) is short enough for one plain model call
        (``direct_below_tokens``; 0: never)."""
        limit = run.config.direct_below_tokens
        if limit <= 0 or run.session is not None:  # a session's conversation goes on where it is
            return False
        size = len(text) + (len(context if isinstance(context, str) else json.dumps(context, default=str))
                            if context is not None else 0)
        return tokens_for_chars(size) < limit

    def _direct_messages(self, prompt: Any, system: str | None, context: Any,
                         system_prompt: str | None = None) -> list[Message]:
        """One plain call's conversation: the caller's system prompt (or the default one) and the input."""
        base = system_prompt or self.system_prompt or prompts.DIRECT_SYSTEM
        system_text = f"{base}\n\n{system}" if system else base
        user: Any = prompt if isinstance(prompt, str) else list(prompt)
        if context is not None:
            data = context if isinstance(context, str) else json.dumps(context, ensure_ascii=False, default=str)
            text = prompt if isinstance(prompt, str) else Message.user(list(prompt)).text
            user = f"{text}\n\nContext:\n{data}"
        return [Message.system(system_text), Message.user(user)]

    def _tool_messages(self, prompt: Any, system: str | None, tools: Mapping[str, ToolSpec],
                       system_prompt: str | None = None, session: Session | None = None) -> list[Message]:
        if session is not None and session.messages is not None:  # the session's conversation goes on
            return [*session.messages, Message.user(prompt if isinstance(prompt, str) else list(prompt))]
        base = system_prompt or self.system_prompt or prompts.tools_system(tools.values())
        system_text = f"{base}\n\n{system}" if system else base
        return [Message.system(system_text), Message.user(prompt if isinstance(prompt, str) else list(prompt))]

    async def _repl_messages(self, run: Run, top: Any, prompt: Any, system: str | None,
                             context: Any, system_prompt: str | None = None) -> list[Message]:
        text = prompt if isinstance(prompt, str) else Message.user(list(prompt)).text
        value = text if context is None else context
        session = run.session
        contexts = {"context": value}
        if session is not None:  # a session's inputs stay: context_0, context_1... (answers: answer_0...)
            contexts[f"context_{session.completions}"] = value
        run.start_environment(top, contexts)  # it starts while the first model call runs
        if session is not None:
            number = session.completions
            if session.messages is not None:
                earlier = f"context_0..context_{number - 1} and answer_0..answer_{number - 1}"
                return [*session.messages, Message.user(
                    f"Next task (its input is in `context` and `context_{number}`; the earlier inputs and answers "
                    f"are in {earlier}):\n{text[:TASK_SHOWN_CHARS]}"
                    + ("\n[... the full text is in `context`]" if len(text) > TASK_SHOWN_CHARS else ""))]
        desc: str | None
        if context is None and len(text) <= TASK_SHOWN_CHARS:
            # the whole task is in the message: `context` is not mentioned (a small model otherwise
            # parses the task's words for the data, e.g. json.loads(context) for a question about a file)
            desc, user = None, f"Task:\n{text}"
        elif context is None:
            desc = f"the task's whole text, {len(text)} characters"
            user = (f"Task (the full text is in the REPL variable `context`):\n{text[:TASK_SHOWN_CHARS]}"
                    "\n[... the full text is in `context`]")
        else:
            desc = f"{type(value).__name__}, {len(value) if hasattr(value, '__len__') else '?'} items/characters"
            # said after the task too: a small model otherwise answers from the question alone (the end
            # of the message weighs most; "answer with the value only" in a task is otherwise obeyed at once)
            user = (f"Task: {text}\n\nThe input is in the REPL variable `context` ({desc}); you have not seen it. "
                    "Start with a ```repl block that looks at `context` (e.g. searches it for the task's "
                    "distinctive words).")
        base = system_prompt or self.system_prompt or prompts.repl_system(desc, sub_calls=run.config.sub_calls)
        system_text = f"{base}\n\n{system}" if system else base
        return [Message.system(system_text), Message.user(user)]

    async def _structured(self, run: Run, top: Any, messages: list[Message], outcome: CallOutcome,
                          fmt: Mapping[str, Any]) -> tuple[CallOutcome, Any, RLMError | None]:
        """Parse and validate a JSON answer; one repair turn if it is invalid."""
        for attempt in range(2):
            try:
                value = _parse_json_answer(outcome.text)
                validate_schema(value, fmt["schema"])
                return outcome, value, None
            except (json.JSONDecodeError, SchemaError) as exc:
                reason = f"not JSON ({exc.msg} at position {exc.pos})" if isinstance(exc, json.JSONDecodeError) \
                    else str(exc)
                if attempt == 1:
                    return outcome, None, RLMError(
                        f"Structured output invalid: {reason}",
                        fix="simplify the schema or use a model with JSON Schema support",
                    )
                messages.append(Message.user(prompts.JSON_REPAIR.format(reason=reason)))
                try:
                    response = await run.llm(top, messages, response_format=fmt)
                except Exception as err:  # noqa: BLE001 - keep the first answer and say why
                    return outcome, None, RLMError(f"Structured output invalid: {reason} ({err})")
                outcome = CallOutcome(text=response.message.text, limit=outcome.limit, forced=outcome.forced,
                                      source=outcome.source)
        raise AssertionError("unreachable")


#: Why a run has no answer when nothing more precise is known.
NO_REPLY = "the model's last reply was empty"


#: A task this long or shorter is shown whole in the first message (longer: its start, the rest in ``context``).
TASK_SHOWN_CHARS = 4000


def check_response_format(response_format: Mapping[str, Any] | None) -> None:
    """An invalid JSON Schema in ``response_format`` is the caller's mistake (InputError, exit 2),
    said before any model call rather than after a repair turn."""
    if response_format is None:
        return
    schema = response_format.get("schema", response_format)
    try:
        check_schema(schema)
    except InvalidSchemaError as exc:
        raise InputError(f"response_format: {exc}", fix="fix the JSON Schema") from None


def _scope(backend_name: str, config: RLMConfig, caps: BackendCapabilities | None) -> str:
    """What decides an answer besides the request, for the response cache: the backend, its server and the
    model that really serves (a local stand-in never fills the entries of the model it stands in for)."""
    served = caps.served_model if caps is not None and caps.served_model else ""
    return f"{backend_name}|{config.api_base or ''}|{served}"


def check_sampling(config: RLMConfig, backend_name: str, caps: BackendCapabilities | None) -> None:
    """A sampling option the user set (``temperature``, ``top_p``, ``seed``) that the backend does not send
    to its provider is refused before any call, rather than silently ignored."""
    if caps is None:
        return
    for option in SAMPLING_OPTIONS:
        if getattr(config, option) is not None and option not in caps.sampling:
            raise ConfigError(f"the {backend_name} backend does not send {option} to its provider",
                              fix=f"remove {option} (rlm.toml, RLM_{option.upper()}, the call), or use a backend "
                                  f"that takes it")


def _capabilities(backend: Any, model: str) -> BackendCapabilities | None:
    """The backend's capabilities for ``model``, or None when it cannot say (a test double)."""
    try:
        caps = backend.capabilities(model)
    except Exception:  # noqa: BLE001 - only informs defaults and the trajectory
        return None
    return caps if isinstance(caps, BackendCapabilities) else None


def no_answer_error(outcome: CallOutcome, run: Run) -> RLMError:
    """The error of a run that ended without an answer, in one line that says why: a limit stopped it
    (exit 6; also when the forced last reply was only code, empty or a give-up, which the message adds
    in parentheses) or the model's last reply was no answer (exit 1: empty, only code, gave up)."""
    limit = outcome.limit or (run.limits_hit[0] if run.limits_hit else None)
    why = outcome.no_answer
    if limit is not None:
        message, fix = LIMIT_MESSAGES.get(limit, (limit, ""))
        detail = f" ({why})" if why else ""
        return BudgetExceeded(f"no answer: {message} before the model answered{detail}", limit=limit,
                              fix=fix or "raise the limit")
    return RLMError(f"no answer: {why or NO_REPLY}",
                    fix="run again, rephrase the prompt or use a stronger model (--model)")


async def _remember(run: Run, top: Any, messages: list[Message], answer: str) -> None:
    """A session keeps the conversation, and in the repl protocol the answer as ``answer_<n>``."""
    session = run.session
    if messages and messages[-1].role != "assistant" and answer:
        messages.append(Message.assistant(answer))
    session.messages = list(messages)
    if session.environment is not None and run.protocol == "repl":
        try:
            await session.environment.set_context(f"answer_{session.completions}", answer)
        except Exception as exc:  # noqa: BLE001 - the answer is returned anyway; only the variable is missing
            log.warning("session_answer_not_kept", error=str(exc))
    session.completions += 1


#: The direct path refuses unsent an input estimated at more than this many times the context window.
DIRECT_OVERFLOW_FACTOR = 2


async def _direct_answer(run: Run, top: Any, messages: list[Message],
                         fmt: Mapping[str, Any] | None) -> CallOutcome:
    """The direct path: one model call without tools or REPL; a limit that refuses it leaves no answer, and
    so does an input larger than the model's context window (it is never cut to fit).

    Only an input our estimate puts at more than :data:`DIRECT_OVERFLOW_FACTOR` times the window is refused
    unsent: the estimate can be off by a fifth either way, so nearer the window the provider, which
    counts with the model's own tokenizer, decides (a refusal there is a ``ContextTooLongError``).
    """
    window = run.context_window(run.main_route)
    size = estimate_tokens(messages)
    if size > DIRECT_OVERFLOW_FACTOR * window:
        refusal = Refusal.of("context_window", f"about {size} tokens, the window is {window}")
        run.limits_hit.append(refusal.limit)
        run.emit(top, "limit_hit", limit=refusal.limit, message=str(refusal))
        return CallOutcome(text="", limit=refusal.limit, forced=True, source="forced",
                           no_answer=f"the input does not fit the model's context window ({refusal})")
    try:
        response = await run.llm(top, messages, response_format=fmt)
    except LimitReached as stop:
        run.limits_hit.append(stop.refusal.limit)
        run.emit(top, "limit_hit", limit=stop.refusal.limit, message=str(stop.refusal))
        why = ("the one direct model call did not finish in time" if stop.refusal.limit == "timeout"
               else "the one direct model call did not fit")
        return CallOutcome(text="", limit=stop.refusal.limit, forced=True, source="forced", no_answer=why)
    messages.append(Message.assistant(response.message.text))
    return CallOutcome(text=response.message.text)


async def _close_quietly(run: Run) -> None:
    try:
        await asyncio.shield(run.close())
    except BaseException as exc:  # noqa: BLE001 - already stopping: a second cancel ends the cleanup
        log.info("run_close_interrupted", error=type(exc).__name__)


def _register_legacy_modules() -> None:
    from rlm.compat import register_legacy_modules

    register_legacy_modules(RLM)  # rlm-runtime 2.x's `from rlm.core.orchestrator import RLM` and friends


_register_legacy_modules()
