"""The hook implementations of rlm-backend-openai (cheap to import: no SDK, no kernel types).

``plugin`` (the entry point) registers the ``openai`` backend as a ``"module:attr"`` string, claims
``openai/<model>`` strings first, registers ``[plugins.backend-openai]`` and a doctor check (is the SDK
installed, is a key set): the hooks every backend plugin has, in :class:`rlm_backend_kit.backend_plugin.BackendPlugin`.
"""

from __future__ import annotations

from rlm_backend_kit.backend_plugin import BackendPlugin

plugin = BackendPlugin(
    name="openai",
    provider="OpenAI",
    prefix="openai/",
    factory="rlm_backend_openai.backend:OpenAIBackend",
    description="OpenAI Chat Completions via the official openai SDK (model openai/<name>)",
    options="rlm_backend_openai.options:OpenAIOptions",  # imported when the config is built
    sdk="openai",
    requirement="openai>=2,<4",
    key_env="OPENAI_API_KEY",
    key_example="sk-...",
)
