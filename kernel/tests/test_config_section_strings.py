"""Config sections registered as ``"module:attr"`` strings (``rlm_register_config_sections``).

The kernel imports the class only when a configuration is built or validated:
discovery stays soft (a bad string does not break loading the plugin, and
``rlm plugins`` still lists the section), use is loud (a :class:`PluginError`
naming the plugin), and ``RLM_STRICT_PLUGINS=1`` makes discovery loud too.
A class object is still accepted (``test_cli.py``'s plugin registers one).
"""

from __future__ import annotations

import sys

import pytest

from rlm.config import load_config
from rlm.errors import PluginError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect

SETTINGS = """
    import attrs

    @attrs.define(frozen=True, kw_only=True)
    class StrSettings:
        greeting: str = "Hello"
        times: int = 1

    class NotAttrs:
        pass
    """


def _plugin(target: str) -> str:
    return f"""
        from rlm import hookimpl

        @hookimpl
        def rlm_register_config_sections(register):
            register("strsec", {target!r}, description="a section named by a string")
        """


def _install(site, target: str, *, module: str = "strsec_plugin") -> None:
    site.add("rlm-strsec", {"strsec": module}, {module: _plugin(target), "strsec_settings": SETTINGS})


def _sections(pm) -> dict[str, type]:
    return {name: reg.load() for name, reg in collect(pm, "config_section").items()}


def test_a_section_registered_as_a_string_is_imported_only_when_the_config_is_built(fake_site, tmp_path):
    _install(fake_site, "strsec_settings:StrSettings")
    pm = create_plugin_manager(strict=False)
    assert pm.record_for("strsec").status == "loaded"
    assert "strsec_settings" not in sys.modules  # discovery did not import it

    sections = _sections(pm)
    assert "strsec_settings" in sys.modules
    cls = sys.modules["strsec_settings"].StrSettings
    assert sections["strsec"] is cls

    toml = tmp_path / "rlm.toml"
    toml.write_text('[plugins.strsec]\ngreeting = "Hi"\ntimes = 3\n', encoding="utf-8")
    config = load_config(path=toml, env={}, sections=sections, dotenv=False)
    assert config.plugin("strsec") == cls(greeting="Hi", times=3)

    toml.write_text('[plugins.strsec]\ngreting = "Hi"\n', encoding="utf-8")  # unknown keys stay errors
    with pytest.raises(Exception, match="greting"):
        load_config(path=toml, env={}, sections=sections, dotenv=False)


def test_a_section_registered_as_a_string_is_listed_and_validated_by_the_cli(rlm_cli, subprocess_site, project):
    _install(subprocess_site, "strsec_settings:StrSettings")
    result = rlm_cli("plugins", plugin_dirs=[subprocess_site.root])
    assert result.returncode == 0, result.stderr
    assert "strsec  [loaded]  rlm-strsec 1.0" in result.stdout
    assert "config sections: strsec" in result.stdout

    (project / "rlm.toml").write_text('[plugins.strsec]\ntimes = "many"\n', encoding="utf-8")
    result = rlm_cli("doctor", plugin_dirs=[subprocess_site.root])
    assert "strsec" in result.stdout and "times" in result.stdout  # validated into StrSettings: a bad value


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("strsec_no_such_module:StrSettings", "config section 'strsec' from plugin 'strsec' cannot be imported: "
                                              "No module named 'strsec_no_such_module'"),
        ("strsec_settings:NoSuchClass", "config section 'strsec' from plugin 'strsec' cannot be imported"),
        ("strsec_settings.StrSettings", "config section 'strsec' from plugin 'strsec' is registered as "
                                        "'strsec_settings.StrSettings', which is not a 'module:attr' string"),
        ("strsec_settings:NotAttrs", "config section 'strsec' from plugin 'strsec' is 'strsec_settings:NotAttrs', "
                                     "which is not an attrs class"),
    ],
)
def test_a_bad_string_fails_soft_at_discovery_and_loud_at_use(fake_site, target, message):
    _install(fake_site, target)
    pm = create_plugin_manager(strict=False)  # discovery: soft
    assert pm.record_for("strsec").status == "loaded"
    assert "strsec" in collect(pm, "config_section")

    from rlm.core import RLM

    with pytest.raises(PluginError) as caught:  # use: loud, naming the plugin
        RLM(model="gpt-4o-mini", plugin_manager=pm)
    assert str(caught.value).startswith(message)
    assert caught.value.exit_code == 3


def test_strict_mode_makes_a_bad_string_loud_at_discovery(fake_site):
    _install(fake_site, "strsec_no_such_module:StrSettings")
    with pytest.raises(PluginError, match="config section 'strsec' from plugin 'strsec' cannot be imported"):
        create_plugin_manager(strict=True)
    assert create_plugin_manager(strict=False).record_for("strsec").status == "loaded"


def test_strict_mode_from_the_environment_on_the_command_line(rlm_cli, subprocess_site):
    _install(subprocess_site, "strsec_no_such_module:StrSettings")
    soft = rlm_cli("plugins", plugin_dirs=[subprocess_site.root])
    assert soft.returncode == 0 and "config sections: strsec" in soft.stdout
    assert "Traceback" not in soft.stderr

    loud = rlm_cli("plugins", plugin_dirs=[subprocess_site.root], env={"RLM_STRICT_PLUGINS": "1"})
    assert loud.returncode == 3
    assert loud.stderr.startswith("rlm: error: config section 'strsec' from plugin 'strsec' cannot be imported")
    assert "Traceback" not in loud.stderr

    help_text = rlm_cli("--help", plugin_dirs=[subprocess_site.root], env={"RLM_STRICT_PLUGINS": "1"})
    assert help_text.returncode == 3  # strict mode bypasses the help cache: discovery runs and fails
