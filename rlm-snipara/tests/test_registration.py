"""Which tools register for which configuration, and what ``rlm doctor`` says about it."""

from __future__ import annotations

import subprocess
import sys

from rlm.registry import collect
from rlm_snipara import doctor
from rlm_snipara.config import SniparaConfig, choose_provider
from rlm_snipara.tools import CONTEXT_TOOLS, MEMORY_TOOLS


def test_nothing_registers_without_configuration(h):
    config = h.make_config()
    assert h.tools_for(config) == {}
    assert choose_provider(config).provider is None
    [check] = doctor.check(config)
    assert check.status == "warn"
    assert "no snipara tools are active" in check.summary
    assert "SNIPARA_API_KEY" in check.fix and "docs" in check.fix


def test_key_and_slug_register_the_six_context_tools(h):
    config = h.make_config(env={"SNIPARA_API_KEY": h.KEY, "SNIPARA_PROJECT_SLUG": "my-app"})
    assert config.snipara_api_key == h.KEY
    assert sorted(h.tools_for(config)) == sorted(CONTEXT_TOOLS)
    assert choose_provider(config).provider == "snipara"


def test_key_without_slug_registers_nothing_and_doctor_says_which_is_missing(h):
    config = h.make_config(env={"SNIPARA_API_KEY": h.KEY})
    assert h.tools_for(config) == {}
    [check] = doctor.check(config)
    assert "SNIPARA_PROJECT_SLUG" in check.summary


def test_docs_register_the_local_provider(local_config, h):
    config = local_config()
    assert sorted(h.tools_for(config)) == sorted(CONTEXT_TOOLS)
    assert choose_provider(config).provider == "local"
    statuses = [c.status for c in doctor.check(config)]
    assert statuses == ["ok"]


def test_memory_tools_only_with_memory_enabled(local_config, h):
    assert not set(MEMORY_TOOLS) & set(h.tools_for(local_config()))
    assert set(h.tools_for(local_config(memory_enabled=True))) == set(CONTEXT_TOOLS) | set(MEMORY_TOOLS)


def test_memory_enabled_alone_registers_nothing(h):
    assert h.tools_for(h.make_config(memory_enabled=True)) == {}


def test_auto_prefers_hosted_when_key_slug_and_docs(local_config, h):
    config = local_config(snipara_api_key=h.KEY, snipara_project_slug="p")
    assert choose_provider(config).provider == "snipara"


def test_explicit_provider_local_ignores_the_key(local_config, h):
    config = local_config('provider = "local"\n', snipara_api_key=h.KEY, snipara_project_slug="p")
    assert choose_provider(config).provider == "local"


def test_explicit_provider_without_its_requirements_fails_in_doctor(h, tmp_path):
    config = h.make_config(toml='[plugins.snipara]\nprovider = "snipara"\n', where=tmp_path)
    assert h.tools_for(config) == {}
    [check] = doctor.check(config)
    assert check.status == "fail" and "SNIPARA_API_KEY" in check.fix
    config = h.make_config(toml='[plugins.snipara]\nprovider = "local"\n', where=tmp_path)
    [check] = doctor.check(config)
    assert check.status == "fail" and "docs" in check.fix


def test_doctor_flags_a_malformed_key_without_showing_it(h):
    config = h.make_config(snipara_api_key="sk-wrong-secret", snipara_project_slug="p")
    [check] = doctor.check(config)
    assert check.status == "fail" and "Invalid API key" in check.summary
    assert "sk-wrong-secret" not in check.summary + (check.fix or "")


def test_section_is_declared_and_validated(rlm_pm, h):
    from rlm_snipara import plugin

    rlm_pm.register(plugin, name="snipara")
    assert collect(rlm_pm, "config_section")["snipara"].load() is SniparaConfig
    config = h.make_config(env={"RLM_PLUGINS__SNIPARA__DOCS": "docs/,README.md"})
    assert config.plugin("snipara").docs == ("docs/", "README.md")
    import pytest
    from rlm.errors import ConfigError

    with pytest.raises(ConfigError, match="PROVIDER: expected one of .auto."):
        h.make_config(env={"RLM_PLUGINS__SNIPARA__PROVIDER": "cloud"})


def test_tools_register_through_the_hook_on_a_plugin_manager(rlm_pm, local_config):
    from rlm_snipara import plugin

    rlm_pm.register(plugin, name="snipara")
    found = collect(rlm_pm, "tool", config=local_config())
    assert {name for name, reg in found.items() if reg.plugin == "snipara"} == set(CONTEXT_TOOLS)


def test_plugin_import_is_cheap():
    code = ("import sys, rlm_snipara.plugin; heavy = [m for m in ('sqlite3', 'urllib.request', 'rlm_snipara.index', "
            "'rlm_snipara.hosted', 'rlm_snipara.tools') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_entry_point_is_declared():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="rlm")}
    assert eps.get("snipara") == "rlm_snipara.plugin"
