"""The hook implementations of rlm-snipara (imported on every ``rlm`` run: keep it cheap).

Tools are registered only when configured (see
:func:`rlm_snipara.config.choose_provider`); with nothing configured this
plugin registers nothing and ``rlm doctor`` says why and how to enable it.
The tool and provider modules are imported only when tools are collected;
the context provider (``rlm_sub_complete(context_query=...)``, auto-context)
only when a run asks for context.
"""

from __future__ import annotations

from rlm import hookimpl


@hookimpl
def rlm_register_config_sections(register):
    register("snipara", "rlm_snipara.config:SniparaConfig")


@hookimpl
def rlm_register_tools(register, config):
    from rlm_snipara.config import choose_provider, settings_of

    choice = choose_provider(config)
    if choice.provider is None:
        return
    from rlm_snipara.providers import build_provider
    from rlm_snipara.tools import build_tools

    settings = settings_of(config)
    provider = build_provider(choice, config)
    specs = build_tools(provider, default_tokens=settings.max_tokens, memory=config.memory_enabled)
    if settings.legacy_tool_names:  # the rlm-runtime 2.x names instead of ours (one name per tool)
        from rlm_snipara import legacy
        from rlm_snipara.tools import clamp_tokens

        specs = legacy.apply(specs, provider=provider, clamp=clamp_tokens, memory=config.memory_enabled)
    for spec in specs:
        register(spec)


@hookimpl
def rlm_register_context_providers(register):
    # the factory is imported only when a run asks for context (context_query, auto_context)
    register("snipara", "rlm_snipara.context_provider:SniparaContextProvider",
             description="sections of the offline docs index or the hosted Snipara project")


@hookimpl
def rlm_register_doctor_checks(register):
    register("snipara", "rlm_snipara.doctor:check")
