"""The hook implementations of rlm-backend-anthropic (cheap to import: no SDK, no kernel types).

``plugin`` (the entry point) registers the ``anthropic`` backend as a ``"module:attr"`` string, claims
``anthropic/<model>`` strings first, registers ``[plugins.backend-anthropic]`` and a doctor check (is the
SDK installed, is a key set): the hooks every backend plugin has, in :class:`rlm_backend_kit.backend_plugin.BackendPlugin`.
"""

from __future__ import annotations

from rlm_backend_kit.backend_plugin import BackendPlugin

plugin = BackendPlugin(
    name="anthropic",
    provider="Anthropic",
    prefix="anthropic/",
    factory="rlm_backend_anthropic.backend:AnthropicBackend",
    description="Anthropic Messages API via the official anthropic SDK (model anthropic/<name>)",
    options="rlm_backend_anthropic.options:AnthropicOptions",  # imported when the config is built
    sdk="anthropic",
    requirement="anthropic>=2,<3",
    key_env="ANTHROPIC_API_KEY",
    key_example="sk-ant-...",
)
