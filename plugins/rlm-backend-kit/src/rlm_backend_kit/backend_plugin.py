"""The hooks of an LLM-backend plugin, written once: a :class:`BackendPlugin` holds the plugin's names and
its methods are the hook implementations (cheap to import: no SDK, no kernel types).

A backend distribution makes one and names it as its entry point (``openai =
"rlm_backend_openai.plugin:plugin"``): pluggy takes an object's methods as hooks like a module's
functions, so the hooks every backend plugin had copied exist once, here.  The backend itself is registered as a ``"module:attr"`` string, so
its SDK is imported only when it is used.  A catch-all backend subclasses it with a ``trylast``
``rlm_resolve_backend``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from attrs import Factory, define

from rlm.hookspecs import hookimpl

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.doctor import Check


@define(frozen=True, kw_only=True)
class BackendPlugin:
    """The ``<name>`` backend of ``factory``, claiming ``<prefix><model>`` strings first, configured by
    ``[plugins.backend-<name>]`` (``options``), checked by ``rlm doctor`` (:meth:`check`)."""

    name: str
    #: how the provider is named in help ("OpenAI")
    provider: str
    #: the backend class, ``"module:attr"``
    factory: str
    #: one line for ``rlm plugins``
    description: str
    #: the ``[plugins.backend-<name>]`` class (or its ``"module:attr"``)
    options: Any
    #: the module the backend needs ("openai"), found without importing it (SDKs take seconds to import),
    #: its pip requirement, and how checks call it
    sdk: str
    requirement: str
    needs: str = Factory(lambda self: f"{self.sdk} SDK", takes_self=True)
    #: the model strings it claims (``"openai/"``); None: none (a subclass may claim them all)
    prefix: str | None = None
    #: the variable holding the key (None: no key check), and what a key looks like, for the fix
    key_env: str | None = None
    key_example: str = "..."

    @property
    def section(self) -> str:
        return f"backend-{self.name}"

    @hookimpl
    def rlm_register_backends(self, register: Any) -> None:
        register(self.name, self.factory, description=self.description)

    @hookimpl(tryfirst=True)
    def rlm_resolve_backend(self, model: str, config: RLMConfig) -> str | None:
        """``<prefix><model>`` is ours; anything else is left to other backends."""
        claimed = self.prefix is not None and isinstance(model, str) and model.startswith(self.prefix)
        return self.name if claimed else None

    @hookimpl
    def rlm_register_config_sections(self, register: Any) -> None:
        register(self.section, self.options, description=f"the {self.provider} backend")

    @hookimpl
    def rlm_register_doctor_checks(self, register: Any) -> None:
        register(self.section, self.check)

    def check(self, config: RLMConfig) -> Iterator[Check]:
        """The SDK is installed and a key or an api_base is set (without a key the first call fails)."""
        from rlm.doctor import Check

        who, needs = f"{self.name} backend", self.needs
        if importlib.util.find_spec(self.sdk) is None:
            yield Check(status="fail", summary=f"{who}: {needs} is not installed", fix=f"pip install '{self.requirement}'")
            return
        yield Check(status="ok", summary=f"{who}: {needs} installed")
        if self.key_env is None:
            return
        if os.environ.get(self.key_env):
            yield Check(status="ok", summary=f"{who}: {self.key_env} is set")
        elif config.api_base:
            yield Check(status="ok", summary=f"{who}: no key needed for api_base {config.api_base}")
        else:
            yield Check(status="warn", summary=f"{who}: {self.key_env} is not set",
                        fix=f"export {self.key_env}={self.key_example} to use {self.prefix} models")
