"""The kernel's registry: what the plugins registered, by kind and name.

Each ``rlm_register_*`` hook is called once per plugin with a ``register``
callback bound to that plugin, so the kernel knows who registered what and
can refuse a name registered twice (naming both plugins).  Factories given as
``"module:attr"`` strings are imported only by :meth:`Registration.load`;
an environment's isolation describer (``register(..., isolation=...)``) only
by :meth:`Registration.isolation_layers`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from attrs import define, field

from rlm.logging import get_logger
from rlm.errors import PluginError
from rlm.plugins import RLMPluginManager

if TYPE_CHECKING:
    from rlm.config import RLMConfig

log = get_logger(__name__)

Kind = Literal[
    "backend", "environment", "budget_policy", "trajectory_sink", "command", "config_section", "tool", "doctor_check",
    "cache", "context_provider", "executor",
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
    "cache": "rlm_register_caches",
    "context_provider": "rlm_register_context_providers",
    "executor": "rlm_register_executors",
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


#: Caps on what an isolation describer may return (see :meth:`Registration.isolation_layers`).
ISOLATION_MAX_LAYERS = 32
ISOLATION_MAX_KEY = 64
ISOLATION_MAX_VALUE = 300


def _target_repr(t: Any) -> str:
    return t if isinstance(t, str) else getattr(t, "__qualname__", repr(t))


def _is_attrs_class(obj: Any) -> bool:
    import attrs

    return isinstance(obj, type) and attrs.has(obj)


class _InvalidIsolation(ValueError):
    """An isolation describer returned something that is not a valid report."""


def _check_isolation(value: Any) -> dict[str, str]:
    """``value`` as a fresh dict if it is a valid isolation report; :class:`_InvalidIsolation` otherwise."""
    if not isinstance(value, Mapping):
        raise _InvalidIsolation(f"returned {type(value).__name__}, not a mapping of layer name to status")
    if len(value) > ISOLATION_MAX_LAYERS:
        raise _InvalidIsolation(f"returned {len(value)} layers (at most {ISOLATION_MAX_LAYERS})")
    out: dict[str, str] = {}
    for key, status in value.items():
        if not isinstance(key, str) or not key:
            raise _InvalidIsolation(f"layer name {key!r} is not a non-empty string")
        if len(key) > ISOLATION_MAX_KEY:
            raise _InvalidIsolation(f"layer name {key[:20]!r}... is longer than {ISOLATION_MAX_KEY} characters")
        if not isinstance(status, str):
            raise _InvalidIsolation(f"status of layer {key!r} is {type(status).__name__}, not a string")
        if len(status) > ISOLATION_MAX_VALUE:
            raise _InvalidIsolation(f"status of layer {key!r} is longer than {ISOLATION_MAX_VALUE} characters")
        out[key] = status
    return out


@define(frozen=True, kw_only=True)
class Registration:
    """One named thing a plugin registered.  ``target`` is an object or ``"module:attr"``.

    ``isolation`` (environments only) is None or the environment's isolation
    describer: a callable or ``"module:attr"`` string, called as
    ``isolation(config=RLMConfig) -> Mapping[str, str]`` by :meth:`isolation_layers`.
    """

    kind: Kind
    name: str
    target: Any = field(repr=_target_repr)
    plugin: str
    description: str = ""
    isolation: Any = field(default=None, repr=lambda t: "None" if t is None else _target_repr(t))

    def load(self) -> Any:
        """The target object, importing it now if it was given as a string.

        A string that is not ``"module:attr"``, names nothing importable, or
        (for a config section) names anything but an attrs class is a
        :class:`PluginError` naming the plugin: registering never fails, using does.
        """
        target = self.target
        if isinstance(target, str):
            try:
                target = import_target(target)
            except ValueError as exc:
                raise PluginError(
                    f"{self.kind.replace('_', ' ')} {self.name!r} from plugin {self.plugin!r} is registered as "
                    f"{self.target!r}, which is not a 'module:attr' string",
                    fix=f"fix the register() call of plugin {self.plugin!r} (e.g. \"package.module:Name\")",
                ) from exc
            except (ImportError, AttributeError) as exc:
                raise PluginError(
                    f"{self.kind.replace('_', ' ')} {self.name!r} from plugin {self.plugin!r} cannot be imported: "
                    f"{exc}",
                    fix=f"reinstall the distribution that provides plugin {self.plugin!r}",
                ) from exc
        if self.kind == "config_section" and not _is_attrs_class(target):
            raise PluginError(
                f"config section {self.name!r} from plugin {self.plugin!r} is {_target_repr(self.target)!r}, "
                "which is not an attrs class",
                fix=f"register an @attrs.define class (or a 'module:attr' string naming one) in plugin "
                    f"{self.plugin!r}",
            )
        return target

    def make(self, *, fix: str, **kwargs: Any) -> Any:
        """Call the target factory with ``kwargs``; an :class:`~rlm.errors.RLMError` it raises passes
        through (it names its own fix), any other exception is a :class:`PluginError` naming the plugin."""
        from rlm.errors import RLMError

        factory = self.load()
        try:
            return factory(**kwargs)
        except RLMError:
            raise
        except Exception as exc:
            raise PluginError(f"{self.kind.replace('_', ' ')} {self.name!r} from plugin {self.plugin!r} failed to "
                              f"start: {type(exc).__name__}: {exc}", fix=fix) from exc

    def isolation_layers(self, config: RLMConfig) -> dict[str, str] | None:
        """The isolation layers protecting this environment: layer name -> short status.

        None when no describer was registered.  Never raises: a describer that
        cannot be imported, raises, or returns anything but a mapping of str
        to str within the caps (:data:`ISOLATION_MAX_LAYERS` entries, keys up
        to :data:`ISOLATION_MAX_KEY` and values up to
        :data:`ISOLATION_MAX_VALUE` characters) gives ``{"error": "<cause>"}``
        and a logged warning.
        """
        if self.isolation is None:
            return None
        describer_name = _target_repr(self.isolation)
        try:
            describer = import_target(self.isolation) if isinstance(self.isolation, str) else self.isolation
            report = describer(config=config)
        except Exception as exc:  # noqa: BLE001 - a report about the sandbox must never break a run
            return self._isolation_error(
                f"isolation describer {describer_name!r} failed: {type(exc).__name__}: {exc}")
        try:
            return _check_isolation(report)
        except _InvalidIsolation as exc:
            return self._isolation_error(f"isolation describer {describer_name!r} {exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. a mapping whose items() raises
            return self._isolation_error(
                f"isolation describer {describer_name!r} returned an unreadable value: {type(exc).__name__}: {exc}")

    def _isolation_error(self, cause: str) -> dict[str, str]:
        cause = cause[:ISOLATION_MAX_VALUE]
        log.warning("isolation_describer_failed", environment=self.name, plugin=self.plugin, error=cause)
        return {"error": cause}


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


def _check_describer(kind: Kind, plugin: str, name: Any, isolation: Any) -> None:
    """Refuse ``isolation=`` where it means nothing or is neither a callable nor a "module:attr" string."""
    name = getattr(name, "name", name)  # a ToolSpec
    if kind != "environment":
        raise PluginError(
            f"plugin {plugin!r} passed isolation= when registering {kind.replace('_', ' ')} {name!r}; "
            "only environments have isolation layers",
            fix=f"remove isolation= from that register() call in plugin {plugin!r}",
        )
    if isinstance(isolation, str):
        module_name, sep, attr = isolation.partition(":")
        if sep and module_name and attr:
            return
    elif callable(isolation):
        return
    raise PluginError(
        f"plugin {plugin!r} registered environment {name!r} with isolation={isolation!r}, "
        "which is neither a callable nor a 'module:attr' string",
        fix="pass isolation=\"package.module:describe\" naming a function describe(config) -> dict[str, str]",
    )


def collect(pm: RLMPluginManager, kind: Kind, *, strict: bool = True, **kwargs: Any) -> dict[str, Registration]:
    """Gather the registrations of one kind.

    A name registered by two plugins raises :class:`PluginError` naming both;
    with ``strict=False`` the second is skipped with a warning instead (used
    while assembling the CLI, so one bad plugin cannot break ``rlm``).
    """
    found: dict[str, Registration] = {}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(name: Any, target: Any = None, *, description: str = "", help: str = "",
                     isolation: Any = None) -> None:
            if isolation is not None:
                _check_describer(kind, plugin, name, isolation)
            if kind == "tool":
                from rlm.types import ToolSpec

                if not isinstance(name, ToolSpec):
                    raise PluginError(
                        f"plugin {plugin!r} registered a tool that is not a ToolSpec: {name!r}",
                        fix="build tools with rlm.tools.tool() or rlm.types.ToolSpec",
                    )
                spec: ToolSpec = name
                name, target, description = spec.name, spec, spec.description
            add(Registration(kind=kind, name=str(name), target=target, plugin=plugin, description=description or help,
                             isolation=isolation))

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


def environment_isolation(pm: RLMPluginManager, plugin_name: str, config: RLMConfig) -> dict[str, dict[str, str]]:
    """The isolation layers of each environment one plugin registers with a describer (for ``rlm plugins``).

    Environments without a describer are left out.  Never raises: a failing
    describer gives ``{"error": ...}`` (see :meth:`Registration.isolation_layers`);
    a failing register hook is left to :func:`provided_by` to show.
    """
    regs: list[Registration] = []
    for impl in pm.hook.rlm_register_environments.get_hookimpls():
        if impl.plugin_name != plugin_name:
            continue

        def register(name: Any, target: Any = None, *, description: str = "", isolation: Any = None,
                     **_: Any) -> None:
            if isolation is not None:
                regs.append(Registration(kind="environment", name=str(name), target=target, plugin=plugin_name,
                                         description=description, isolation=isolation))

        try:
            impl.function(**({"register": register} if "register" in impl.argnames else {}))
        except Exception as exc:  # noqa: BLE001 - provided_by shows it
            log.debug("register_hook_failed", plugin=plugin_name, hook="rlm_register_environments", error=str(exc))
    out: dict[str, dict[str, str]] = {}
    for reg in regs:
        layers = reg.isolation_layers(config)
        if layers is not None:
            out[reg.name] = layers
    return out
