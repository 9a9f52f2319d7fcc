"""The hook implementations of rlm-backend-local.

Imported on every ``rlm`` invocation: everything is registered as
``"module:attr"`` strings and the modules are imported only when used.
"""

from __future__ import annotations

from rlm import hookimpl


@hookimpl
def rlm_register_backends(register):
    register("local", "rlm_backend_local.backend:LocalBackend",
             description="embedded small model served by llama.cpp (no API key; default when none is set)")


@hookimpl(tryfirst=True)
def rlm_resolve_backend(model, config):
    """``local/...`` always; any model when no provider key is configured (a notice says so once).

    ``tryfirst``: it must run before catch-all resolvers (litellm's is
    ``trylast``) and before resolvers that claim model names like
    ``gpt-4o-mini`` without checking for a key.
    """
    from rlm_backend_local.resolve import choose

    return choose(model, config)


@hookimpl
def rlm_register_config_sections(register):
    register("backend-local", "rlm_backend_local.settings:LocalSettings")


@hookimpl
def rlm_register_doctor_checks(register):
    register("backend-local", "rlm_backend_local.doctor:check")
