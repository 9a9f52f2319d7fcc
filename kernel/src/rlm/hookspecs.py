"""The hook specifications of rlm: the contract between the kernel and plugins.

A plugin is any object or module with functions marked ``@rlm.hookimpl``
whose names match these specs.  Installed distributions expose plugins
through the entry-point group ``rlm``; the kernel's own pieces are plugins too
(``rlm.plugins.DEFAULT_PLUGINS``).

Collections (backends, environments, tools, budget policies, trajectory
sinks, response caches, CLI commands, config sections, context providers) arrive through a ``register`` callback
the kernel passes in: the kernel records which plugin registered what and
refuses a name registered twice, naming both plugins.

The kernel always calls hooks with keyword arguments.  Specs grow only by
adding arguments, so an implementation may accept any subset of them.

Factories, command targets, config-section classes and environments' isolation
describers may be given as ``"module:attr"`` strings: the kernel imports them only when they
are used, so that ``rlm --help`` and ``import rlm`` stay fast whatever is
installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from rlm.config import RLMConfig

PROJECT_NAME = "rlm"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def rlm_register_backends(register: Callable[..., None]) -> None:
    """Register LLM backends.

    Called once when the kernel builds its registry.

    :param register: call ``register(name, factory, *, description="")`` once
        per backend.  ``name`` is the short name users give as ``backend=``
        or ``[rlm] backend``.  ``factory`` is a callable or a ``"module:attr"``
        string naming one; the kernel calls it as
        ``factory(settings=rlm.backend.BackendSettings)`` and expects an object
        satisfying :class:`rlm.backend.Backend`.  Heavy SDKs must be imported
        inside the factory, not at module import.
    :return: nothing; results are ignored.
    """


@hookspec(firstresult=True)
def rlm_resolve_backend(model: str, config: RLMConfig) -> str | None:
    """Say which registered backend serves a model string.

    Called when a run starts and no ``backend=`` was given explicitly.
    First result wins (``firstresult``): plugins answering only for the
    model strings they know (``"anthropic/..."``) should use
    ``tryfirst=True``; catch-all backends use ``trylast=True``.

    :param model: the model string as the user wrote it (``"gpt-4o-mini"``,
        ``"anthropic/claude-sonnet-4-20250514"``...).
    :param config: the effective configuration (to see which keys are set).
    :return: the name of a registered backend, or None to let others answer.
    """


@hookspec
def rlm_register_environments(register: Callable[..., None]) -> None:
    """Register execution environments (REPL sandboxes).

    Called once when the kernel builds its registry.

    :param register: call ``register(name, factory, *, description="",
        isolation=None)``.  The kernel calls
        ``factory(settings=rlm.environment.EnvironmentSettings,
        callbacks=rlm.environment.HostCallbacks | None)`` and expects an
        :class:`rlm.environment.Environment`.  ``name`` is what users give as
        ``environment=`` / ``--env``.  ``isolation`` optionally says which
        isolation layers protect the sandbox: a callable or a ``"module:attr"``
        string naming one (imported only when used, like the factory); the
        kernel calls ``isolation(config=RLMConfig)`` and expects a
        ``Mapping[str, str]`` of layer name to a short status, e.g.
        ``{"landlock": "active (ABI 7)", "seccomp": "active", "namespaces":
        "unavailable: user namespaces are disabled"}`` (at most 32 layers,
        names up to 64 and statuses up to 300 characters).  It must be quick
        and must not start a sandbox.  The kernel shows the result in ``rlm
        plugins`` and records it as the ``isolation`` field of the
        ``run_start`` trajectory event of every run that uses the environment
        (None without a describer).  A describer that raises or returns
        anything else is reported as ``{"error": "<cause>"}`` with a logged
        warning; it never fails a run.  Passing ``isolation`` when
        registering anything but an environment is a :class:`rlm.errors.PluginError`.
    :return: nothing.
    """


@hookspec
def rlm_register_tools(register: Callable[..., None], config: RLMConfig) -> None:
    """Register tools the model may call.

    Called when a run builds its tool set.  Plugins decide from ``config``
    whether their tools apply (e.g. only when a service is configured).

    :param register: call ``register(spec)`` with a :class:`rlm.types.ToolSpec`
        (see :func:`rlm.tools.tool` to build one from a typed function).
        Two tools with one name is an error naming both plugins.
    :param config: the effective configuration.
    :return: nothing.
    """


@hookspec
def rlm_register_budget_policies(register: Callable[..., None]) -> None:
    """Register budget policies: rules that allow or refuse spending.

    Called once when the kernel builds its registry.

    :param register: call ``register(name, factory, *, description="")``.
        The kernel calls ``factory(config=RLMConfig)`` for every policy named
        in ``[rlm] budget_policies`` when a run starts, and expects an object
        with ``check(request: rlm.budget.SpendRequest) -> rlm.budget.Refusal |
        None``: None allows the spending, a Refusal names the limit and the
        fix.  It is consulted before every LLM call and every sub-call.
    :return: nothing.
    """


@hookspec
def rlm_register_trajectory_sinks(register: Callable[..., None]) -> None:
    """Register trajectory sinks: where trajectory events are written.

    Called once when the kernel builds its registry.

    :param register: call ``register(name, factory, *, description="")``.
        The kernel calls ``factory(config=RLMConfig)`` for every sink named in
        ``[rlm] trajectory_sinks`` when a top-level run starts, and expects an
        object with ``write(event: Mapping) -> None`` and ``close() -> None``.
    :return: nothing.
    """


@hookspec
def rlm_register_caches(register: Callable[..., None]) -> None:
    """Register response caches: stores that answer an LLM request seen before.

    Called when the kernel opens the cache ``[rlm] cache`` names
    (:func:`rlm.cache.open_cache`: when a run starts, and by ``rlm cache``)
    and by ``rlm plugins``.  Caching is off unless ``[rlm] cache`` is set.

    :param register: call ``register(name, factory, *, description="")``
        (``description`` keyword-only) once per cache.  ``name`` is what users
        give as ``[rlm] cache``.  ``factory`` is a callable or a ``"module:attr"``
        string naming one; the kernel calls ``factory(config=RLMConfig)`` and
        expects a :class:`rlm.cache.ResponseCache` (async ``get(key)`` and
        ``put(key, response)``, ``stats()``, ``clear()``, ``close()``), keyed by
        :func:`rlm.cache.request_key` and storing responses as
        :func:`rlm.cache.response_to_json` writes them.  The factory must be
        cheap: open files and connections on first use.  A cache that fails
        later (``get``/``put`` raise) never fails an LLM call: the kernel logs
        a ``cache_failed`` warning and calls the model uncached.
    :return: nothing; results are ignored.
    """


@hookspec
def rlm_register_commands(register: Callable[..., None]) -> None:
    """Contribute commands to the ``rlm`` CLI.

    Called when the CLI is assembled (on every ``rlm`` invocation, so it
    must be cheap: register strings, import nothing heavy).

    :param register: call ``register(name, target, *, help="")`` where
        ``target`` is a ``"module:attr"`` string naming a function or a
        ``cyclopts.App`` (imported only when the command runs) and ``help``
        the one-line summary shown by ``rlm --help``.
    :return: nothing.
    """


@hookspec
def rlm_register_config_sections(register: Callable[..., None]) -> None:
    """Declare a plugin's own configuration table.

    Called whenever the kernel builds or validates a configuration (``RLM(...)``,
    ``rlm run``, ``rlm doctor``, ``rlm init``...), by ``rlm plugins`` (to list
    the sections), and at discovery in strict mode (``RLM_STRICT_PLUGINS=1``).
    Not called by ``rlm --help``.  Must be cheap: register strings, import
    nothing heavy.

    :param register: call ``register(section, cls, *, description="")``:
        ``[plugins.<section>]`` in rlm.toml (and
        ``RLM_PLUGINS__<SECTION>__<KEY>`` in the environment) is validated into
        the attrs class ``cls``; unknown keys are errors.  ``cls`` is an attrs
        class or, preferably, a ``"module:attr"`` string naming one
        (``register("example-name", "rlm_plugin_example_name.settings:ExampleSettings")``):
        the kernel imports it only when a configuration is built or validated,
        so the plugin's module need not import attrs or its settings module.
        ``description`` is the comment ``rlm init`` writes above the table.
        A string that is malformed, cannot be imported, or names anything but
        an attrs class does not fail discovery (``rlm plugins`` still lists the
        section); it is a :class:`rlm.errors.PluginError` naming the plugin when
        a configuration is built (``RLM(...)``, ``rlm run``: exit 3), and at
        discovery when ``RLM_STRICT_PLUGINS=1``.  ``rlm doctor`` reports it as
        a failed check and ``rlm plugins`` as a warning, both going on with the
        default configuration.
    :return: nothing; results are ignored.
    """


@hookspec
def rlm_register_doctor_checks(register: Callable[..., None]) -> None:
    """Contribute checks to ``rlm doctor``.

    Called when ``rlm doctor`` runs.

    :param register: call ``register(name, check)`` where ``check`` is a
        callable or ``"module:attr"`` string; the kernel calls
        ``check(config=RLMConfig)`` and expects an iterable of
        :class:`rlm.doctor.Check` (status ``ok``/``warn``/``fail``, summary,
        fix).  ``warn`` is for optional pieces that are missing (exit 0),
        ``fail`` for real problems (exit 1).  A check that raises is reported
        as a failure.
    :return: nothing.
    """


@hookspec
def rlm_register_context_providers(register: Callable[..., None]) -> None:
    """Register context providers: where automatic context comes from.

    Called when the kernel looks for a context provider: once per run, the
    first time one of its calls uses ``rlm_sub_complete(...,
    context_query=...)``, and when an ``AgentRunner(auto_context=True)`` is
    built (also by ``rlm plugins``).  Must be cheap: register strings,
    import nothing heavy.

    :param register: call ``register(name, factory, *, description="")``.
        ``name`` is what users give as ``[rlm] context_provider``; with that
        key unset the kernel uses the only installed provider, and none when
        several are installed (see :mod:`rlm.context_providers`).
        ``factory`` is a callable or a ``"module:attr"`` string naming one;
        the kernel calls ``factory(config=RLMConfig)`` once per run (once
        per ``AgentRunner``, whose runs share it) and expects an object with ``async def context(self, query:
        str, *, max_tokens: int) -> str``: the text to inject for
        ``query``, at most about ``max_tokens`` tokens by
        :func:`rlm.tokens.estimate_tokens` (the kernel cuts what is longer),
        and ``""`` when nothing is relevant.  A factory that cannot serve
        this configuration (nothing to search, no key) raises
        :class:`rlm.errors.ConfigError` naming the fix; ``context`` raises
        :class:`rlm.errors.ToolError` for a failure the model may see
        (service down, bad key); any other exception is reported the same
        way, naming the provider.  Every use is recorded as a
        ``context_injected`` trajectory event.
    :return: nothing.
    """


@hookspec
def rlm_register_executors(register: Callable[..., None]) -> None:
    """Register batch executors: where the items of ``rlm batch`` / ``RLM.batch`` run.

    Called when a batch starts (and by ``rlm plugins``).  Must be cheap:
    register strings, import nothing heavy (a cluster client is imported by
    the factory).  The kernel registers ``local`` (asyncio in this process,
    the default).

    :param register: call ``register(name, factory, *, description="")``.
        ``name`` is what users give as ``--executor`` (or ``[rlm] executor``).
        ``factory`` is a callable or a ``"module:attr"`` string naming one;
        the kernel calls ``factory(config=RLMConfig, address=str | None)``
        (``address``: ``--address``, where the cluster is; None: the
        executor's default) and expects a
        :class:`rlm.executors.BatchExecutor`: ``async run(job)`` answers the
        :class:`rlm.executors.BatchJob`'s items, at most ``job.concurrency``
        at once, calling ``job.finish(item, result)`` once per item as it
        ends (``job.finish_remote`` for an item run in another process: it
        writes the trajectory the result carries through the driver's
        sinks), and ``async aclose()``.  An executor that runs items
        elsewhere must hold the batch's cost cap
        (:class:`rlm.executors.CostLeases`) and build each worker's RLM from
        :func:`rlm.executors.worker_spec` (:class:`rlm.executors.WorkerHost`).
        A factory that cannot work here (no cluster at ``address``) raises
        :class:`rlm.errors.RLMError` naming the fix.
    :return: nothing.
    """


@hookspec
def rlm_trajectory_event(event: Mapping[str, Any]) -> None:
    """Observe one trajectory event as it happens (1:N: every plugin sees it).

    Called by the kernel for every event of every run, after the run's
    configured sinks wrote it.  Implementations must be quick and must not
    raise (an exception is logged and ignored).

    :param event: the event as a JSON-ready mapping with at least ``type``,
        ``trajectory_id``, ``call_id``, ``parent_call_id``, ``depth`` and
        ``timestamp``, as the sinks write it: a tool output already in a
        ``tool_results`` event is a reference in the next ``llm_call`` prompt
        (an observer that reads prompts feeds every event to one
        :class:`rlm.events.PromptResolver`).
    :return: nothing.
    """
