"""The registry: per-plugin ``register`` callbacks, name collisions, lazy ``"module:attr"`` targets,
environments' isolation describers."""

from __future__ import annotations

import sys

import pytest
from structlog.testing import capture_logs

from rlm import hookimpl
from rlm.config import RLMConfig
from rlm.errors import PluginError
from rlm.plugins import create_plugin_manager
from rlm.registry import Registration, add_tools, collect, environment_isolation, import_target, provided_by
from rlm.types import ToolSpec


def _pm(**plugins):
    pm = create_plugin_manager(entry_points=False, default_plugins=False)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


def _backend_plugin(*names, target="pkg.mod:factory"):
    class Plugin:
        @hookimpl
        def rlm_register_backends(self, register):
            for name in names:
                register(name, target, description=f"{name} backend")

    return Plugin()


async def _noop(**kwargs):
    return None


def test_each_plugin_gets_its_own_register_callback():
    pm = _pm(alpha=_backend_plugin("a1", "a2"), beta=_backend_plugin("b1"))
    found = collect(pm, "backend")
    assert {name: reg.plugin for name, reg in found.items()} == {"a1": "alpha", "a2": "alpha", "b1": "beta"}
    # plugins are asked in registration order (the kernel's built-ins are registered first)
    assert list(found) == ["a1", "a2", "b1"]
    assert found["a1"] == Registration(
        kind="backend", name="a1", target="pkg.mod:factory", plugin="alpha", description="a1 backend"
    )


def test_a_name_registered_by_two_plugins_is_an_error_naming_both():
    pm = _pm(older=_backend_plugin("shared"), newer=_backend_plugin("shared"))
    with pytest.raises(PluginError) as info:
        collect(pm, "backend")
    message = str(info.value)
    assert "backend 'shared' is registered by both plugin 'older' and plugin 'newer'" in message
    assert "RLM_DISABLE_PLUGINS=newer" in message


def test_a_name_registered_twice_by_one_plugin_is_an_error_too():
    pm = _pm(solo=_backend_plugin("dup", "dup"))
    with pytest.raises(PluginError, match="both plugin 'solo' and plugin 'solo'"):
        collect(pm, "backend")


def test_non_strict_keeps_the_first_with_a_warning():
    pm = _pm(older=_backend_plugin("shared", target="a:older"), newer=_backend_plugin("shared", target="b:newer"))
    with capture_logs() as logs:
        found = collect(pm, "backend", strict=False)
    assert found["shared"].plugin == "older"
    assert found["shared"].target == "a:older"
    assert [e for e in logs if e["event"] == "name_collision"] == [
        {"event": "name_collision", "log_level": "warning", "kind": "backend", "name": "shared",
         "kept": "older", "skipped": "newer"}
    ]


def test_collection_order_honours_tryfirst_and_trylast():
    class Early:
        @hookimpl(tryfirst=True)
        def rlm_register_backends(self, register):
            register("shared", "early:x")

    class Late:
        @hookimpl(trylast=True)
        def rlm_register_backends(self, register):
            register("shared", "late:x")
            register("only-late", "late:y")

    pm = _pm(early=Early(), plain=_backend_plugin("shared", target="plain:x"), late=Late())
    found = collect(pm, "backend", strict=False)
    assert found["shared"].plugin == "early"
    assert list(found) == ["shared", "only-late"]


def test_the_same_name_in_different_kinds_does_not_collide():
    class Plugin:
        @hookimpl
        def rlm_register_backends(self, register):
            register("local", "a:b")

        @hookimpl
        def rlm_register_environments(self, register):
            register("local", "c:d")

    pm = _pm(p=Plugin())
    assert collect(pm, "backend")["local"].target == "a:b"
    assert collect(pm, "environment")["local"].target == "c:d"


def test_string_targets_are_imported_only_on_load(tmp_path, monkeypatch):
    (tmp_path / "lazy_target_mod.py").write_text("class Factory:\n    made = 'yes'\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = _pm(lazy=_backend_plugin("lazy", target="lazy_target_mod:Factory.made"))
    try:
        reg = collect(pm, "backend")["lazy"]
        assert "lazy_target_mod" not in sys.modules
        assert reg.load() == "yes"
        assert "lazy_target_mod" in sys.modules
    finally:
        sys.modules.pop("lazy_target_mod", None)


def test_object_targets_are_returned_as_is():
    def factory():
        return "made"

    pm = _pm(direct=_backend_plugin("direct", target=factory))
    assert collect(pm, "backend")["direct"].load() is factory


def test_a_missing_module_gives_a_plugin_error_with_a_fix():
    pm = _pm(gone=_backend_plugin("ghost", target="rlm_no_such_module_xyz:factory"))
    reg = collect(pm, "backend")["ghost"]
    with pytest.raises(PluginError) as info:
        reg.load()
    message = str(info.value)
    assert "backend 'ghost' from plugin 'gone' cannot be imported" in message
    assert "rlm_no_such_module_xyz" in message
    assert info.value.fix == "reinstall the distribution that provides plugin 'gone'"


@pytest.mark.parametrize("target", ["no_colon", ":attr", "module:", ""])
def test_import_target_rejects_malformed_strings(target):
    with pytest.raises(ValueError, match="is not a 'module:attr' string"):
        import_target(target)


def test_import_target_follows_dotted_attributes():
    assert import_target("rlm.errors:PluginError.exit_code") == 3


def test_tools_must_be_toolspecs():
    class Plugin:
        @hookimpl
        def rlm_register_tools(self, register):
            register("not a spec")

    with pytest.raises(PluginError, match="plugin 'bad' registered a tool that is not a ToolSpec"):
        collect(_pm(bad=Plugin()), "tool", config=None)


def test_add_tools_refuses_a_name_a_plugin_registered():
    spec = ToolSpec(name="search", description="find things", handler=_noop)

    class Plugin:
        @hookimpl
        def rlm_register_tools(self, register):
            register(spec)

    found = collect(_pm(finder=Plugin()), "tool", config=None)
    other = ToolSpec(name="other", description="x", handler=_noop)
    merged = add_tools(found, [other], source="RLM(tools=...)")
    assert merged["other"].plugin == "RLM(tools=...)" and merged["search"].plugin == "finder"
    with pytest.raises(PluginError, match="tool 'search' is registered by both plugin 'finder' and RLM"):
        add_tools(found, [ToolSpec(name="search", description="mine", handler=_noop)], source="RLM(tools=...)")


def test_provided_by_lists_one_plugins_registrations_by_kind():
    class Plugin:
        @hookimpl
        def rlm_register_backends(self, register):
            register("b", "x:y")

        @hookimpl
        def rlm_register_tools(self, register, config):
            register(ToolSpec(name="t", description="d", handler=_noop))

        @hookimpl
        def rlm_register_doctor_checks(self, register):
            raise RuntimeError("oops")

    pm = _pm(mine=Plugin(), other=_backend_plugin("not-mine"))
    assert provided_by(pm, "mine", config=None) == {
        "backend": ["b"], "tool": ["t"], "doctor_check": ["<error: oops>"]
    }
    assert provided_by(pm, "nobody") == {}


# --- environments' isolation describers ------------------------------------------------------

LAYERS = {"landlock": "active (ABI 7)", "seccomp": "active",
          "namespaces": "unavailable: user namespaces are disabled", "python-guards": "active"}


def _env_plugin(name="sandbox", **register_kwargs):
    class Plugin:
        @hookimpl
        def rlm_register_environments(self, register):
            register(name, "pkg.env:Factory", description="a sandbox", **register_kwargs)

    return Plugin()


def test_an_environment_without_describer_has_no_isolation_layers():
    reg = collect(_pm(p=_env_plugin()), "environment")["sandbox"]
    assert reg.isolation is None and reg.isolation_layers(RLMConfig()) is None


def test_a_callable_describer_is_called_with_the_config():
    seen = []

    def describe(config):
        seen.append(config)
        return LAYERS

    reg = collect(_pm(p=_env_plugin(isolation=describe)), "environment")["sandbox"]
    assert reg.isolation is describe
    config = RLMConfig()
    layers = reg.isolation_layers(config)
    assert layers == LAYERS and layers is not LAYERS  # a fresh dict
    assert seen == [config]


def test_a_string_describer_is_imported_only_when_asked(tmp_path, monkeypatch):
    (tmp_path / "lazy_isolation_mod.py").write_text(
        "from types import MappingProxyType\n"
        "def describe(config):\n    return MappingProxyType({'seccomp': 'active', 'model': config.model})\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        reg = collect(_pm(p=_env_plugin(isolation="lazy_isolation_mod:describe")), "environment")["sandbox"]
        assert "lazy_isolation_mod" not in sys.modules
        assert reg.isolation_layers(RLMConfig(model="m1")) == {"seccomp": "active", "model": "m1"}
        assert "lazy_isolation_mod" in sys.modules
    finally:
        sys.modules.pop("lazy_isolation_mod", None)


def test_a_failing_describer_gives_an_error_and_a_warning_not_an_exception():
    def describe(config):
        raise OSError("no /proc/self/status")

    reg = collect(_pm(p=_env_plugin(isolation=describe)), "environment")["sandbox"]
    with capture_logs() as logs:
        layers = reg.isolation_layers(RLMConfig())
    cause = ("isolation describer 'test_a_failing_describer_gives_an_error_and_a_warning_not_an_exception.<locals>."
             "describe' failed: OSError: no /proc/self/status")
    assert layers == {"error": cause}
    assert logs == [{"event": "isolation_describer_failed", "log_level": "warning", "environment": "sandbox",
                     "plugin": "p", "error": cause}]


def test_a_describer_that_cannot_be_imported_gives_an_error():
    reg = collect(_pm(p=_env_plugin(isolation="rlm_no_such_module_xyz:describe")), "environment")["sandbox"]
    layers = reg.isolation_layers(RLMConfig())
    assert list(layers) == ["error"]
    assert layers["error"].startswith(
        "isolation describer 'rlm_no_such_module_xyz:describe' failed: ModuleNotFoundError:")


def test_a_describer_with_the_wrong_signature_gives_an_error():
    reg = collect(_pm(p=_env_plugin(isolation=lambda: LAYERS)), "environment")["sandbox"]
    assert "TypeError" in reg.isolation_layers(RLMConfig())["error"]


def test_a_very_long_cause_is_capped():
    def describe(config):
        raise RuntimeError("x" * 5000)

    reg = collect(_pm(p=_env_plugin(isolation=describe)), "environment")["sandbox"]
    assert len(reg.isolation_layers(RLMConfig())["error"]) == 300


class _BadMapping(dict):
    def items(self):
        raise RuntimeError("unreadable")


@pytest.mark.parametrize(("report", "cause"), [
    (None, "returned NoneType, not a mapping of layer name to status"),
    ([("seccomp", "active")], "returned list, not a mapping of layer name to status"),
    ("active", "returned str, not a mapping"),
    ({1: "active"}, "layer name 1 is not a non-empty string"),
    ({"": "active"}, "layer name '' is not a non-empty string"),
    ({"seccomp": True}, "status of layer 'seccomp' is bool, not a string"),
    ({"seccomp": None}, "status of layer 'seccomp' is NoneType, not a string"),
    ({f"layer{i}": "on" for i in range(33)}, "returned 33 layers (at most 32)"),
    ({"k" * 65: "on"}, "is longer than 64 characters"),
    ({"seccomp": "v" * 301}, "status of layer 'seccomp' is longer than 300 characters"),
    (_BadMapping(a="b"), "returned an unreadable value: RuntimeError: unreadable"),
])
def test_invalid_reports_become_errors(report, cause):
    reg = collect(_pm(p=_env_plugin(isolation=lambda config: report)), "environment")["sandbox"]
    with capture_logs() as logs:
        layers = reg.isolation_layers(RLMConfig())
    assert list(layers) == ["error"] and cause in layers["error"], layers
    assert [e["event"] for e in logs] == ["isolation_describer_failed"]


def test_reports_at_the_caps_are_accepted():
    report = {f"{i:02d}" + "k" * 62: "v" * 300 for i in range(32)}
    reg = collect(_pm(p=_env_plugin(isolation=lambda config: report)), "environment")["sandbox"]
    assert reg.isolation_layers(RLMConfig()) == report
    assert collect(_pm(p=_env_plugin(isolation=lambda config: {})), "environment")["sandbox"].isolation_layers(
        RLMConfig()) == {}


@pytest.mark.parametrize("kind_hook", ["backends", "budget_policies", "trajectory_sinks", "commands",
                                       "config_sections", "doctor_checks"])
def test_isolation_for_anything_but_an_environment_is_a_plugin_error(kind_hook):
    hook = f"rlm_register_{kind_hook}"
    Plugin = type("Plugin", (), {hook: hookimpl(lambda self, register: register("x", "a:b", isolation="c:d"))})
    kind = {"backends": "backend", "budget_policies": "budget_policy", "trajectory_sinks": "trajectory_sink",
            "commands": "command", "config_sections": "config_section", "doctor_checks": "doctor_check"}[kind_hook]
    with pytest.raises(PluginError) as info:
        collect(_pm(odd=Plugin()), kind)
    assert f"plugin 'odd' passed isolation= when registering {kind.replace('_', ' ')} 'x'" in str(info.value)
    assert "only environments have isolation layers" in str(info.value)


def test_isolation_for_a_tool_is_a_plugin_error():
    class Plugin:
        @hookimpl
        def rlm_register_tools(self, register):
            register(ToolSpec(name="t", description="d", handler=_noop), isolation="c:d")

    with pytest.raises(PluginError, match="plugin 'odd' passed isolation= when registering tool 't'"):
        collect(_pm(odd=Plugin()), "tool", config=None)


@pytest.mark.parametrize("isolation", [{"seccomp": "active"}, "not-a-target", 42])
def test_a_describer_that_is_neither_callable_nor_a_target_is_refused(isolation):
    with pytest.raises(PluginError) as info:
        collect(_pm(weird=_env_plugin(isolation=isolation)), "environment")
    assert f"plugin 'weird' registered environment 'sandbox' with isolation={isolation!r}" in str(info.value)
    assert "neither a callable nor a 'module:attr' string" in str(info.value)


def test_environment_isolation_reports_one_plugins_described_environments():
    class Plugin:
        @hookimpl
        def rlm_register_environments(self, register):
            register("guarded", "a:b", isolation=lambda config: LAYERS)
            register("plain", "a:c")
            register("broken", "a:d", isolation=lambda config: 1 / 0)

    pm = _pm(mine=Plugin(), other=_env_plugin(isolation=lambda config: {"x": "y"}))
    with capture_logs():
        report = environment_isolation(pm, "mine", RLMConfig())
    assert list(report) == ["guarded", "broken"]
    assert report["guarded"] == LAYERS
    assert "ZeroDivisionError" in report["broken"]["error"]
    assert environment_isolation(pm, "other", RLMConfig()) == {"sandbox": {"x": "y"}}
    assert environment_isolation(pm, "nobody", RLMConfig()) == {}


def test_environment_isolation_survives_a_failing_register_hook():
    class Plugin:
        @hookimpl
        def rlm_register_environments(self, register):
            register("first", "a:b", isolation=lambda config: {"seccomp": "active"})
            raise RuntimeError("oops")

    assert environment_isolation(_pm(p=Plugin()), "p", RLMConfig()) == {"first": {"seccomp": "active"}}
