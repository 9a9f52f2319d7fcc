"""``BackendPluginConformance``: the tests every LLM-backend plugin runs on its hooks and on how its
backend is set up, next to :mod:`rlm_testing.backend_suite` (which tests what goes over the wire).

How to use it: in the plugin's tests, subclass it (the name must start with ``Test``) and fill in the
class attributes, which are what the tests expect, not read from the plugin::

    class TestOpenAIPlugin(BackendPluginConformance):
        entry_point = "rlm_backend_openai.plugin:plugin"   # as the distribution's pyproject names it
        name = "openai"
        factory = "rlm_backend_openai.backend:OpenAIBackend"
        backend = OpenAIBackend
        options = OpenAIOptions
        ...

What the suite checks:

- the entry point names the plugin object; registered on a fresh plugin manager it registers the
  backend as a lazy ``"module:attr"`` string, resolves the ``claimed`` model strings to it and leaves the
  ``unclaimed`` ones, registers ``[plugins.<section>]`` (``config_env`` read into ``config_expected``),
  and a doctor check answering ``doctor`` with no key in the environment;
- importing the plugin imports no SDK, no HTTP client and no heavy kernel module, and constructing the
  backend (and asking its capabilities) does not import the SDK;
- a missing SDK is a PluginError naming ``pip install '<requirement>'``, also one that cannot be
  imported (a backend that keeps the module it imported forgets it first, in an override); no key is
  NoProvidersConfigured (permanent) for each of ``unkeyed_models``; a local ``api_base`` needs no key
  (``placeholder_key`` is sent, ``local_model`` goes out as ``sent_model``); a key from ``$<key_env>`` is
  sent; the kernel resolves a claimed model to the backend and builds it from the configuration (the
  retry options inherited from :class:`rlm_backend_kit.backend_options.RetryOptions` come from the environment too);
- the backend retries a stream dropped before its first event and 5xx answers without ``Retry-After``
  (backing off), obeys ``x-should-retry: false``, and one backend serves several event loops.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import subprocess
import sys
from typing import Any, ClassVar, Literal

import pytest
from rlm.backend import Backend, BackendSettings, LLMRequest, TextDelta
from rlm.config import RLMConfig, load_config
from rlm.entrypoints import entry_points
from rlm.errors import NoProvidersConfigured, PluginError, ProviderUnavailableError
from rlm.plugins import ENTRY_POINT_GROUP, RLMPluginManager, create_plugin_manager
from rlm.registry import collect, import_target
from rlm.types import Message

from rlm_testing.server import RecordedRequest, Reply, ScriptedLLMServer

#: Modules importing a plugin must not import (the SDK under test is added to them).
HEAVY = ("openai", "anthropic", "litellm", "httpx", "httpx2", "pydantic", "rlm.backend", "rlm.config", "structlog")
#: Variables that would give the backend a key or another server.
PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                "ANTHROPIC_AUTH_TOKEN")


class BackendPluginConformance:
    """Base class of a backend plugin's hook and set-up tests; see the module docstring."""

    entry_point: ClassVar[str]
    name: ClassVar[str]
    factory: ClassVar[str]
    backend: ClassVar[type]
    options: ClassVar[type]
    sdk: ClassVar[str]
    requirement: ClassVar[str]
    protocol: ClassVar[Literal["openai", "anthropic"]] = "openai"
    #: a model of requests and capabilities
    model: ClassVar[str]
    claimed: ClassVar[tuple[str, ...]]
    unclaimed: ClassVar[tuple[str, ...]] = ()
    #: (variable, value) pairs read into ``config_expected``
    config_env: ClassVar[tuple[tuple[str, str], ...]]
    config_expected: ClassVar[Any]
    #: (status, summary) of each doctor check result, with no key in the environment
    doctor: ClassVar[tuple[tuple[str, str], ...]]
    unkeyed_models: ClassVar[tuple[str, ...]]
    local_model: ClassVar[str]
    sent_model: ClassVar[str]
    placeholder_key: ClassVar[str] = "sk-no-key-required"
    key_env: ClassVar[str] = "OPENAI_API_KEY"

    # --- fixtures and helpers -----------------------------------------------------

    @pytest.fixture
    def pm(self) -> RLMPluginManager:
        """A plugin manager with this plugin only, registered as its entry point names it."""
        manager = create_plugin_manager(entry_points=False)
        manager.register(import_target(self.entry_point), name=self.name)
        return manager

    @pytest.fixture
    def no_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for variable in PROVIDER_ENV:
            monkeypatch.delenv(variable, raising=False)

    def config(self, pm: RLMPluginManager, **env: str) -> RLMConfig:
        """The configuration from ``env`` with the plugin's sections (no file read)."""
        sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
        return load_config(use_file=False, env=env, sections=sections)

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> Any:
        return fast_backend(self.backend, server, protocol=self.protocol, **settings)

    def request(self, model: str | None = None) -> LLMRequest:
        return LLMRequest(model=model or self.model, messages=[Message.user("hi")])

    def imported_after(self, code: str) -> list[str]:
        """The modules of :data:`HEAVY` (and the SDK) that a fresh interpreter has imported after ``code``."""
        names = tuple(dict.fromkeys((self.sdk, *HEAVY)))
        probe = f"{code}; import sys; print(sorted(m for m in {names!r} if m in sys.modules))"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        return ast.literal_eval(result.stdout.strip())

    # --- the hooks ----------------------------------------------------------------

    def test_the_entry_point_names_the_plugin(self) -> None:
        found = {ep.name: ep.value for ep in entry_points(ENTRY_POINT_GROUP)}
        assert found.get(self.name) == self.entry_point, "reinstall the distribution (pip install -e) if it moved"

    def test_backend_is_registered_as_a_lazy_string(self, pm: RLMPluginManager) -> None:
        reg = collect(pm, "backend")[self.name]
        assert reg.target == self.factory
        assert reg.plugin == self.name
        assert reg.load() is self.backend

    def test_resolves_the_claimed_models_only(self, pm: RLMPluginManager) -> None:
        config = RLMConfig()
        for model in self.claimed:
            assert pm.hook.rlm_resolve_backend(model=model, config=config) == self.name, model
        for model in self.unclaimed:
            assert pm.hook.rlm_resolve_backend(model=model, config=config) is None, model

    def test_config_section(self, pm: RLMPluginManager) -> None:
        assert collect(pm, "config_section")[f"backend-{self.name}"].load() is self.options
        assert self.config(pm, **dict(self.config_env)).plugin(f"backend-{self.name}") == self.config_expected

    def test_retry_options_from_the_environment(self, pm: RLMPluginManager) -> None:
        prefix = f"RLM_PLUGINS__BACKEND_{self.name.upper()}__"
        config = self.config(pm, **{prefix + "READ_TIMEOUT": "7", prefix + "RETRY_MAX_DELAY": "3"})
        options = config.plugin(f"backend-{self.name}")
        assert (options.read_timeout, options.retry_max_delay, options.retry_base_delay) == (7.0, 3.0, 0.5)

    def test_doctor_check(self, pm: RLMPluginManager, no_env: None) -> None:
        run_check = collect(pm, "doctor_check")[f"backend-{self.name}"].load()
        assert [(c.status, c.summary) for c in run_check(config=self.config(pm))] == list(self.doctor)

    def test_doctor_check_without_the_sdk(self, pm: RLMPluginManager, monkeypatch: pytest.MonkeyPatch) -> None:
        run_check = collect(pm, "doctor_check")[f"backend-{self.name}"].load()
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
        (only,) = run_check(config=self.config(pm))
        assert only.status == "fail" and only.fix == f"pip install '{self.requirement}'"

    # --- import cost ----------------------------------------------------------------

    def test_importing_the_plugin_does_not_import_the_sdk(self) -> None:
        assert self.imported_after(f"import {self.entry_point.partition(':')[0]}") == []

    def test_constructing_the_backend_does_not_import_the_sdk(self) -> None:
        module, _, attr = self.factory.partition(":")
        code = f"from {module} import {attr}; {attr}().capabilities({self.model!r})"
        assert self.sdk not in self.imported_after(code)

    # --- set-up errors and keys ---------------------------------------------------

    def test_missing_sdk_names_the_pip_command(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
        with pytest.raises(PluginError) as info:
            self.backend(settings=BackendSettings())
        assert f"pip install '{self.requirement}'" in str(info.value)

    def test_unimportable_sdk_names_the_pip_command(self, monkeypatch: pytest.MonkeyPatch) -> None:
        backend = self.backend(settings=BackendSettings(api_key="k"))
        monkeypatch.setitem(sys.modules, self.sdk, None)  # import <sdk> -> ImportError
        with pytest.raises(PluginError, match=f"pip install '{self.requirement}'"):
            asyncio.run(backend.complete(self.request()))

    def test_missing_key_is_no_providers_configured(self, no_env: None) -> None:
        backend = self.backend(settings=BackendSettings())
        assert isinstance(backend, Backend)
        for model in self.unkeyed_models:
            for call in (backend.complete(self.request(model)), _drain(backend.stream(self.request(model)))):
                with pytest.raises(NoProvidersConfigured) as info:
                    asyncio.run(call)
                assert "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY" in str(info.value)
                assert info.value.permanent

    def test_local_server_needs_no_key(self, no_env: None, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.text("local answer")])
        backend = self.make_backend(scripted_llm, api_key=None)
        assert run(backend, self.request(self.local_model)).message.text == "local answer"
        sent = scripted_llm.last_request
        assert sent.model == self.sent_model
        assert key_sent(sent) == self.placeholder_key

    def test_key_from_the_environment_is_sent(self, no_env: None, monkeypatch: pytest.MonkeyPatch,
                                              scripted_llm: ScriptedLLMServer) -> None:
        monkeypatch.setenv(self.key_env, "sk-from-env")
        scripted_llm.script([Reply.text("ok")])
        run(self.make_backend(scripted_llm, api_key=None), self.request())
        assert key_sent(scripted_llm.last_request) == "sk-from-env"

    def test_the_kernel_resolves_and_builds_the_backend(self, pm: RLMPluginManager, no_env: None) -> None:
        from rlm.core import RLM

        rlm = RLM(model=self.claimed[0], plugin_manager=pm, api_base="http://127.0.0.1:9/v1")
        assert rlm.backend_name() == self.name
        factory = collect(pm, "backend")[self.name].load()
        backend = factory(settings=BackendSettings(base_url=rlm.config.api_base,
                                                   options=rlm.config.plugin(f"backend-{self.name}")))
        assert backend.options == self.options()
        if callable(getattr(backend, "api_key", None)):
            assert backend.api_key() == self.placeholder_key

    # --- retries and event loops ----------------------------------------------------

    def test_stream_retries_before_the_first_event(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.drop(), Reply.text("streamed after a drop")])
        events = run(self.make_backend(scripted_llm), self.request(), stream=True)
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "streamed after a drop"
        assert len(scripted_llm.requests) == 2

    def test_server_errors_without_retry_after_back_off_then_succeed(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.server_error(), Reply.overloaded(status=503), Reply.text("third time lucky")])
        response = run(self.make_backend(scripted_llm), self.request())
        assert response.message.text == "third time lucky" and len(scripted_llm.requests) == 3

    def test_x_should_retry_false_is_obeyed(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([])  # an exhausted script answers 500 with x-should-retry: false
        with pytest.raises(ProviderUnavailableError, match="script exhausted"):
            run(self.make_backend(scripted_llm, max_retries=3), self.request())
        assert len(scripted_llm.requests) == 1

    def test_one_backend_across_event_loops(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.text("first"), Reply.text("second")])
        backend = self.make_backend(scripted_llm)
        assert asyncio.run(backend.complete(self.request())).message.text == "first"
        assert asyncio.run(backend.complete(self.request())).message.text == "second", "a closed loop's client is replaced"
        asyncio.run(backend.aclose())
        asyncio.run(backend.aclose())


def fast_backend(backend_type: Any, server: ScriptedLLMServer, *, protocol: str = "openai", **settings: Any) -> Any:
    """A ``backend_type`` talking to ``server`` with a key, short timeouts and fast retries (its
    ``options_type`` with small delays), unless ``settings`` say otherwise."""
    values: dict[str, Any] = {"api_key": "k", "base_url": server.base_url(protocol), "timeout": 5.0, "max_retries": 2,
                              "options": backend_type.options_type(retry_base_delay=0.01, retry_max_delay=0.02)}
    values.update(settings)
    return backend_type(settings=BackendSettings(**values))


def key_sent(sent: RecordedRequest) -> str:
    """The key as the SDK sent it: ``x-api-key``, or ``Authorization: Bearer``."""
    return sent.header("x-api-key") or (sent.header("authorization") or "").removeprefix("Bearer ")


def run(backend: Any, request: LLMRequest, *, stream: bool = False) -> Any:
    """``backend.complete(request)`` (or the list of its stream's events), then ``backend.aclose()``."""

    async def go() -> Any:
        try:
            if stream:
                return [e async for e in backend.stream(request)]
            return await backend.complete(request)
        finally:
            await backend.aclose()

    return asyncio.run(go())


async def _drain(stream: Any) -> list[Any]:
    return [event async for event in stream]
