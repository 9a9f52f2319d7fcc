"""The hook implementations of rlm-backend-litellm (cheap to import: litellm is not imported here).

``plugin`` (the entry point) registers the ``litellm`` backend as a ``"module:attr"`` string (litellm is
imported only when a call is made), ``[plugins.backend-litellm]`` and a doctor check (is litellm
installed): the hooks every backend plugin has, in :class:`rlm_backend_kit.backend_plugin.BackendPlugin`.  Unlike the
others it claims no prefix: it is the catch-all, answering for any model string no other backend claimed.
"""

from __future__ import annotations

from rlm import hookimpl
from rlm_backend_kit.backend_plugin import BackendPlugin


class CatchAll(BackendPlugin):
    """A backend plugin that serves every model string the other backends left unclaimed."""

    @hookimpl(trylast=True)
    def rlm_resolve_backend(self, model, config):
        """The default backend: asked last, it answers for everything."""
        return self.name


plugin = CatchAll(
    name="litellm",
    provider="litellm",
    factory="rlm_backend_litellm.backend:LiteLLMBackend",
    description="100+ providers through litellm (model strings as litellm names them)",
    options="rlm_backend_litellm.options:LiteLLMOptions",  # imported when the config is built
    sdk="litellm",
    needs="litellm",
    requirement="litellm>=1.100,!=1.107.0,<2",
)
