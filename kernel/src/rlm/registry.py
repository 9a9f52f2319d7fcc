"""The kernel's registry: what the plugins registered, by kind and name.

Each ``rlm_register_*`` hook is called once per plugin with a ``register``
callback bound to that plugin, so the kernel knows who registered what and
can refuse a name registered twice (naming both plugins).  Factories given as
``"module:attr"`` strings are imported only by :meth:`Registration.load`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from attrs import define, field

from rlm.logging import get_logger
from rlm.errors import PluginError
from rlm.plugins import RLMPluginManager

log = get_logger(__name__)

Kind = Literal[
    "backend", "environment", "budget_policy", "trajectory_sink", "command", "config_section", "tool", "doctor_check"
]

_HOOKS: Mapping[Kind, str] = {
    "backend": "rlm_register_backends",
    "environment": "rlm_register_environments",
    "budget_policy": "rlm_register_budget_policies",
    "trajectory_sink": "rlm_register_trajectory_sinks",
    "command": "rlm_register_commands",
    "config_section": "rlm_register_config_sections",
    "tool": "rlm_register_tools",
    "doctor_check": "rlm_register_doctor_checks",
}


def import_target(target: str) -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted) and return the object."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} is not a 'module:attr' string")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@define(frozen=True, kw_only=True)
class Registration:
    """One named thing a plugin registered.  ``target`` is an object or ``"module:attr"``."""

    kind: Kind
    name: str
    target: Any = field(repr=lambda t: t if isinstance(t, str) else getattr(t, "__qualname__", repr(t)))
    plugin: str
    description: str = ""

    def load(self) -> Any:
        """The target object, importing it now if it was given as a string."""
        if not isinstance(self.target, str):
            return self.target
        try:
            return import_target(self.target)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"{self.kind.replace('_', ' ')} {self.name!r} from plugin {self.plugin!r} cannot be imported: {exc}",
                fix=f"reinstall the distribution that provides plugin {self.plugin!r}",
            ) from exc


def _call_per_plugin(pm: RLMPluginManager, hook_name: str, make_register: Callable[[str], Callable[..., None]],
                     **kwargs: Any) -> None:
    """Call one register hook implementation at a time, each with its own ``register``."""
    caller = getattr(pm.hook, hook_name)
    # tryfirst, plain, trylast; within each, registration order: the kernel's own plugins come first,
    # so on a clash (non-strict) a built-in name wins over an installed plugin's
    impls = caller.get_hookimpls()
    ordered = ([i for i in impls if i.tryfirst] + [i for i in impls if not (i.tryfirst or i.trylast)]
               + [i for i in impls if i.trylast])
    for impl in ordered:
        register = make_register(impl.plugin_name)
        args = {"register": register, **kwargs}
        impl.function(**{name: args[name] for name in impl.argnames if name in args})


def collect(pm: RLMPluginManager, kind: Kind, *, strict: bool = True, **kwargs: Any) -> dict[str, Registration]:
    """Gather the registrations of one kind.

    A name registered by two plugins raises :class:`PluginError` naming both;
    with ``strict=False`` the second is skipped with a warning instead (used
    while assembling the CLI, so one bad plugin cannot break ``rlm``).
    """
    found: dict[str, Registration] = {}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(name: Any, target: Any = None, *, description: str = "", help: str = "") -> None:
            if kind == "tool":
                from rlm.types import ToolSpec

                if not isinstance(name, ToolSpec):
                    raise PluginError(
                        f"plugin {plugin!r} registered a tool that is not a ToolSpec: {name!r}",
                        fix="build tools with rlm.tools.tool() or rlm.types.ToolSpec",
                    )
                spec: ToolSpec = name
                name, target, description = spec.name, spec, spec.description
            add(Registration(kind=kind, name=str(name), target=target, plugin=plugin, description=description or help))

        return register

    def add(reg: Registration) -> None:
        previous = found.get(reg.name)
        if previous is not None:
            message = (
                f"{kind.replace('_', ' ')} {reg.name!r} is registered by both plugin {previous.plugin!r} "
                f"and plugin {reg.plugin!r}"
            )
            fix = f"uninstall one of them or block one with RLM_DISABLE_PLUGINS={reg.plugin}"
            if strict:
                raise PluginError(message, fix=fix)
            log.warning("name_collision", kind=kind, name=reg.name, kept=previous.plugin, skipped=reg.plugin)
            return
        found[reg.name] = reg

    _call_per_plugin(pm, _HOOKS[kind], make_register, **kwargs)
    return found


def add_tools(found: dict[str, Registration], tools: Iterable[Any], *, source: str) -> dict[str, Registration]:
    """Add tools given directly (``RLM(tools=[...])``) to collected ones; collisions are errors."""
    result = dict(found)
    for spec in tools:
        previous = result.get(spec.name)
        if previous is not None:
            raise PluginError(
                f"tool {spec.name!r} is registered by both plugin {previous.plugin!r} and {source}",
                fix="rename your tool or block the plugin with RLM_DISABLE_PLUGINS=" + previous.plugin,
            )
        result[spec.name] = Registration(
            kind="tool", name=spec.name, target=spec, plugin=source, description=spec.description
        )
    return result


def provided_by(pm: RLMPluginManager, plugin_name: str, **kwargs: Any) -> dict[Kind, list[str]]:
    """What one plugin gives, by kind (for ``rlm plugins``)."""
    out: dict[Kind, list[str]] = {}
    plugin = pm.get_plugin(plugin_name)
    if plugin is None:
        return out
    for kind, hook_name in _HOOKS.items():
        names: list[str] = []
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name != plugin_name:
                continue

            def register(name: Any, target: Any = None, **_: Any) -> None:
                names.append(str(getattr(name, "name", name)))

            args = {"register": register, **kwargs}
            try:
                impl.function(**{n: args[n] for n in impl.argnames if n in args})
            except Exception as exc:  # noqa: BLE001 - shown, not fatal
                names.append(f"<error: {exc}>")
        if names:
            out[kind] = names
    return out
