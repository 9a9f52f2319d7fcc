"""Plugin discovery: the plugin manager factory and the record of what loaded.

Plugins come from two places: the kernel's own :data:`DEFAULT_PLUGINS` and
installed distributions exposing the entry-point group ``rlm``.  Discovery
fails soft: a plugin that cannot be imported is skipped with a warning and
recorded as broken (``rlm plugins`` shows why).  ``RLM_STRICT_PLUGINS=1``
makes such a failure fatal, and also resolves at discovery the config
sections plugins registered as ``"module:attr"`` strings
(:func:`check_config_sections`); ``RLM_DISABLE_PLUGINS=a,b`` blocks plugins
by entry-point name before they are imported.
"""

from __future__ import annotations

import importlib
import os
from typing import Literal

import pluggy
from attrs import define

from rlm import hookspecs
from rlm.logging import get_logger
from rlm.errors import PluginError

log = get_logger(__name__)

ENTRY_POINT_GROUP = "rlm"

#: The kernel's own pieces, registered through the same hooks as any plugin.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "rlm.builtin.commands",
    "rlm.builtin.tools",
    "rlm.builtin.budget",
    "rlm.builtin.trajectory",
    "rlm.builtin.executors",
)

PluginStatus = Literal["builtin", "loaded", "broken", "disabled"]


@define(frozen=True, kw_only=True)
class PluginRecord:
    """What discovery did with one plugin."""

    name: str
    status: PluginStatus
    module: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None


class RLMPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers broken and disabled plugins."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []

    def record_for(self, name: str) -> PluginRecord | None:
        return next((r for r in self.records if r.name == name), None)


def strict_from_env() -> bool:
    return os.environ.get("RLM_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def disabled_from_env() -> frozenset[str]:
    raw = os.environ.get("RLM_DISABLE_PLUGINS", "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def create_plugin_manager(
    *,
    entry_points: bool = True,
    default_plugins: bool = True,
    strict: bool | None = None,
    disabled: frozenset[str] | set[str] | None = None,
) -> RLMPluginManager:
    """Build a fresh plugin manager (never a module global).

    :param entry_points: discover installed plugins (group ``rlm``).
    :param default_plugins: register the kernel's :data:`DEFAULT_PLUGINS`.
    :param strict: a broken plugin raises :class:`PluginError`; default from
        ``RLM_STRICT_PLUGINS``.
    :param disabled: entry-point names not to load; default from
        ``RLM_DISABLE_PLUGINS``.
    """
    pm = RLMPluginManager()
    if default_plugins:
        for module_name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
            pm.records.append(PluginRecord(name=module_name, status="builtin", module=module_name))
    if entry_points:
        strict = strict_from_env() if strict is None else strict
        load_entry_points(pm, strict=strict, disabled=disabled_from_env() if disabled is None else frozenset(disabled))
        if strict:
            check_config_sections(pm)
    return pm


def check_config_sections(pm: RLMPluginManager) -> None:
    """Resolve now every config section the installed plugins registered as a ``"module:attr"`` string.

    Normally such a string is imported only when a configuration is built (a
    bad one fails there, loudly, naming the plugin; discovery stays soft).  In
    strict mode (``RLM_STRICT_PLUGINS=1``) discovery calls this, so a bad one
    fails at once: :class:`PluginError`.
    """
    from rlm.registry import collect

    loaded = {r.name for r in pm.records if r.status == "loaded"}
    for reg in collect(pm, "config_section", strict=False).values():
        if reg.plugin in loaded:
            reg.load()


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (a SyntaxError's caret block would span several)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _check_hook_names(plugin: object) -> None:
    """A misspelled ``@hookimpl`` (no such hookspec) is an error, not silently ignored."""
    import difflib

    specs = {name for name in dir(hookspecs) if name.startswith("rlm_")}
    marker = f"{hookspecs.PROJECT_NAME}_impl"
    for name in dir(plugin):
        if name.startswith("_"):
            continue
        try:
            attr = getattr(plugin, name)
        except Exception:  # noqa: BLE001 - odd attributes are not hooks
            continue
        if hasattr(attr, marker) and name not in specs:
            close = difflib.get_close_matches(name, specs, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"@hookimpl {name!r} matches no rlm hookspec{hint}")


def load_entry_points(pm: RLMPluginManager, *, strict: bool, disabled: frozenset[str]) -> None:
    """Import and register every ``rlm`` entry point, recording each outcome."""
    seen: set[str] = set()
    from rlm.entrypoints import entry_points

    for ep in sorted(entry_points(ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:  # two distributions declaring one name: the first on sys.path wins
            log.warning("plugin_name_taken", plugin=ep.name, distribution=ep.distribution)
            continue
        seen.add(ep.name)
        dist, version = ep.distribution, ep.version
        if ep.name in disabled:
            pm.records.append(
                PluginRecord(name=ep.name, status="disabled", module=ep.value, distribution=dist, version=version)
            )
            log.info("plugin_disabled", plugin=ep.name)
            continue
        plugin = None
        try:
            plugin = ep.load()
            _check_hook_names(plugin)
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - any import failure of a plugin is recorded
            if plugin is not None and pm.get_plugin(ep.name) is plugin:  # pluggy < 1.7 may half-register
                pm.unregister(name=ep.name)
            reason = _one_line(exc)
            if strict:
                raise PluginError(
                    f"plugin {ep.name!r} ({dist or ep.value}) failed to load: {reason}",
                    fix="reinstall or fix it, or block it with RLM_DISABLE_PLUGINS=" + ep.name,
                ) from exc
            log.warning("plugin_broken", plugin=ep.name, distribution=dist, error=reason)
            pm.records.append(
                PluginRecord(
                    name=ep.name, status="broken", module=ep.value, distribution=dist, version=version, error=reason
                )
            )
            continue
        pm.records.append(
            PluginRecord(name=ep.name, status="loaded", module=ep.value, distribution=dist, version=version)
        )
        log.debug("plugin_loaded", plugin=ep.name, distribution=dist)
