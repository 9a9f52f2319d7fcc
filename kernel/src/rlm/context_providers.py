"""Context providers: which one serves auto-context, and asking it for text.

A context provider is registered by a plugin through
``rlm_register_context_providers`` (see :mod:`rlm.hookspecs`) and offers
``async def context(self, query: str, *, max_tokens: int) -> str``.  Two
things use it: ``rlm_sub_complete(..., context_query=...)`` (the text goes to
the sub-call as its ``context``) and ``AgentRunner(auto_context=True)`` (the
text goes into the run's system prompt).

Which provider: ``[rlm] context_provider = "<name>"``; unset, the only
installed one; none when none or several are installed (:func:`choose`).
Every use is recorded as a ``context_injected`` trajectory event
(:func:`event_fields`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from rlm.errors import ConfigError, PluginError, RLMError, ToolError
from rlm.logging import get_logger
from rlm.tokens import CHARS_PER_TOKEN, estimate_tokens

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.registry import Registration

log = get_logger(__name__)

#: The fix told when no provider is installed.
INSTALL_FIX = "pip install rlm-snipara (or another plugin providing a context provider)"


class ContextProvider(Protocol):
    """What a context provider factory returns."""

    async def context(self, query: str, *, max_tokens: int) -> str: ...


def registrations(pm: Any) -> dict[str, Registration]:
    """The context providers the plugins of ``pm`` register, by name (``pm``: anything with ``.hook``)."""
    from rlm.registry import collect

    return collect(pm, "context_provider")


def choose(config: RLMConfig, found: Mapping[str, Registration]) -> Registration | None:
    """The provider ``config`` selects among ``found``.

    ``[rlm] context_provider`` names it (an unknown name is a :class:`ConfigError`
    listing those installed); unset (or empty), the only installed provider, and
    None when none or several are installed (:func:`missing_message` says which).
    """
    name = (getattr(config, "context_provider", None) or "").strip()
    if name:
        reg = found.get(name)
        if reg is None:
            have = ", ".join(sorted(found)) or "none installed"
            raise ConfigError(f"[rlm] context_provider = {name!r}: no installed plugin provides a context provider "
                              f"of that name (installed: {have})",
                              fix=f"name one of those installed, or {INSTALL_FIX}" if found else INSTALL_FIX)
        return reg
    if len(found) == 1:
        return next(iter(found.values()))
    return None


def missing_message(found: Mapping[str, Any], *, alternative: str) -> tuple[str, str]:
    """(message, fix) saying why no provider was chosen among ``found``; ``alternative`` is the other way
    out ("drop context_query")."""
    if not found:
        return "no context provider is installed", f"pip install rlm-snipara, or {alternative}"
    names = sorted(found)
    message = (f"several context providers are installed ({', '.join(names)}) and [rlm] context_provider "
               "does not say which to use")
    fix = f'set [rlm] context_provider = "{names[0]}" (or RLM_CONTEXT_PROVIDER), or {alternative}'
    return message, fix


def build(reg: Registration, config: RLMConfig) -> Any:
    """The provider object: ``factory(config=config)``.

    A factory raising :class:`RLMError` (e.g. a ConfigError: nothing configured for
    it to search) is passed on; any other failure becomes a :class:`PluginError`.
    """
    factory = reg.load()
    try:
        provider = factory(config=config)
    except RLMError:
        raise
    except Exception as exc:  # a plugin bug, named
        raise PluginError(f"context provider {reg.name!r} from plugin {reg.plugin!r} could not be built: "
                          f"{type(exc).__name__}: {exc}",
                          fix=f"report it to the plugin's authors, or hide it with RLM_DISABLE_PLUGINS={reg.plugin}"
                          ) from exc
    if not callable(getattr(provider, "context", None)):
        raise PluginError(f"context provider {reg.name!r} from plugin {reg.plugin!r} has no context() method",
                          fix="its factory must return an object with async context(query, *, max_tokens) -> str")
    return provider


def cut(text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` by :func:`rlm.tokens.estimate_tokens`, at a line or word
    boundary when one is near the end."""
    limit = max(0, max_tokens) * CHARS_PER_TOKEN + CHARS_PER_TOKEN - 1  # the most characters that estimate to it
    if len(text) <= limit:
        return text
    head = text[:limit - 2]
    for sep in ("\n", " "):
        at = head.rfind(sep)
        if at > len(head) // 2:
            head = head[:at]
            break
    return head.rstrip() + " …"


async def fetch(provider: Any, name: str, query: str, *, max_tokens: int) -> str:
    """The provider's text for ``query``, at most ``max_tokens`` tokens (cut when it returned more).

    A failure becomes a :class:`ToolError` naming the provider (a ToolError it raised is kept as is);
    a result that is not a string is a ToolError too.
    """
    try:
        text = await provider.context(query, max_tokens=max_tokens)
    except ToolError:
        raise
    except RLMError as exc:
        raise ToolError(f"context provider {name!r}: {exc.message}", fix=exc.fix) from exc
    except Exception as exc:  # a provider bug or outage: the model (or the caller) is told
        log.warning("context_provider_failed", provider=name, error=repr(exc))
        raise ToolError(f"context provider {name!r} failed: {type(exc).__name__}: {exc}") from exc
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ToolError(f"context provider {name!r} returned {type(text).__name__}, not text")
    return cut(text, max_tokens)


def event_fields(query: str, provider: str, text: str) -> dict[str, Any]:
    """The fields of a ``context_injected`` event for ``text`` retrieved for ``query``."""
    return {"query": query, "provider": provider, "chars": len(text), "tokens": estimate_tokens(text)}


# --- per run ---------------------------------------------------------------------------------

#: run -> (provider name, provider object) or the RLMError explaining why there is none
_PER_RUN: weakref.WeakKeyDictionary[Any, tuple[str, Any] | RLMError] = weakref.WeakKeyDictionary()


def for_run(run: Any, *, alternative: str = "drop context_query") -> tuple[str, Any]:
    """(name, provider) for a :class:`rlm.orchestrator.Run`, built once per run; raises :class:`RLMError`
    (ConfigError/PluginError) when there is none.

    The plugins are those of the run's plugin manager (``run.plugin_manager``, set by ``RLM.prepare_run``).
    A run whose ``context_provider`` attribute is set (``(name, provider)``) uses that.
    """
    given = getattr(run, "context_provider", None)
    if given is not None:
        return given
    cached = _PER_RUN.get(run)
    if cached is None:
        try:
            cached = _resolve(run, alternative)
        except RLMError as exc:
            cached = exc
        _PER_RUN[run] = cached
    if isinstance(cached, RLMError):
        raise cached
    return cached


def _resolve(run: Any, alternative: str) -> tuple[str, Any]:
    pm = getattr(run, "plugin_manager", None)
    found = registrations(pm) if pm is not None else {}
    reg = choose(run.config, found)
    if reg is None:
        message, fix = missing_message(found, alternative=alternative)
        raise ConfigError(message, fix=fix)
    return reg.name, build(reg, run.config)


__all__ = ["ContextProvider", "build", "choose", "cut", "event_fields", "fetch", "for_run", "missing_message",
           "registrations"]
