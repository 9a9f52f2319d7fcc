"""The registry: per-plugin ``register`` callbacks, name collisions, lazy ``"module:attr"`` targets."""

from __future__ import annotations

import sys

import pytest
from structlog.testing import capture_logs

from rlm import hookimpl
from rlm.errors import PluginError
from rlm.plugins import create_plugin_manager
from rlm.registry import Registration, add_tools, collect, import_target, provided_by
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
