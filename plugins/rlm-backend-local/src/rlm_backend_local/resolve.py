"""Which model strings the local backend serves, and the one-line notice when it is the default.

``local/...`` is always ours.  A bare model name (``gpt-4o-mini``, the
default) is ours when no provider is configured: no ``OPENAI_API_KEY`` or
``ANTHROPIC_API_KEY`` and no ``[rlm] api_base`` or ``backend``.  Then the
run uses the embedded model and says so once per process on stderr.  A
``provider/model`` string (``openai/gpt-4o``, ``ollama/llama3``) is an
explicit choice and is left to the backend of that provider, which reports
a missing key itself: that also keeps the answer independent of the order
in which pluggy calls the ``tryfirst`` resolvers.  A model the user named
(``--model``, ``[rlm] model``, ``RLM_MODEL``, ``RLM(model=...)``) is never
answered by the local model: only the default one is.
``[plugins.backend-local] default_when_no_key = false`` turns the default off.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

PREFIX = "local/"
#: Keys that configure a hosted provider (as ``rlm doctor`` lists them).
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")

_notice_lock = threading.Lock()
_notice_shown = False


def provider_configured(model: str, config: Any, env: Mapping[str, str]) -> str | None:
    """What makes ``model`` a hosted provider's (a key name, a setting, a prefix), or None."""
    for name in PROVIDER_KEYS:
        if env.get(name, "").strip():
            return name
    if getattr(config, "api_base", None):
        return "[rlm] api_base"
    if getattr(config, "backend", None):
        return "[rlm] backend"
    provider, sep, _ = model.partition("/")
    if sep and provider:
        return f"the explicit provider prefix {provider + '/'!r}"
    return None


def local_model_name(config: Any) -> str:
    from rlm_backend_local.settings import SECTION, settings_from

    local = settings_from(config.plugin(SECTION) if hasattr(config, "plugin") else None)
    if local.model_path:
        return os.path.basename(local.model_path)
    return local.model


def choose(model: str, config: Any, env: Mapping[str, str] | None = None) -> str | None:
    """``"local"`` when the local backend serves ``model``, else None (let other backends answer)."""
    if model.startswith(PREFIX):
        return "local"
    from rlm_backend_local.settings import SECTION, settings_from

    local = settings_from(config.plugin(SECTION) if hasattr(config, "plugin") else None)
    if not local.default_when_no_key:
        return None
    if "model" in getattr(config, "explicit", ()):
        return None  # a model the user named is theirs: never answered by a stand-in
    if provider_configured(model, config, os.environ if env is None else env) is not None:
        return None
    notice(model, local_model_name(config))
    return "local"


def notice(model: str, local_name: str) -> None:
    """Say once per process that the local model stands in for ``model``."""
    global _notice_shown
    with _notice_lock:
        if _notice_shown:
            return
        _notice_shown = True
    print(f"rlm: no provider key set ({'/'.join(PROVIDER_KEYS)}): using the local model {local_name} "
          f"(llama.cpp, REPL protocol) for {model!r}", file=sys.stderr, flush=True)


def reset_notice() -> None:
    """Show the notice again on the next default resolution (tests)."""
    global _notice_shown
    with _notice_lock:
        _notice_shown = False
