"""Plugin discovery: fake installed distributions are found, loaded, skipped when broken,
made fatal by ``RLM_STRICT_PLUGINS`` and blocked before import by ``RLM_DISABLE_PLUGINS``.

In-process tests use the ``fake_site`` fixture; the CLI tests run ``rlm`` in a
subprocess with the fake distribution on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from rlm.entrypoints import entry_points
from rlm.errors import PluginError
from rlm.plugins import DEFAULT_PLUGINS, create_plugin_manager
from rlm.registry import collect

GOOD = {
    "good_plugin_mod": """
        '''A well-behaved plugin: one command and one backend, both as strings.'''
        from rlm import hookimpl

        @hookimpl
        def rlm_register_commands(register):
            register("hello", "good_plugin_cmd:hello", help="Say hello from a throwaway plugin.")

        @hookimpl
        def rlm_register_backends(register):
            register("fakeai", "good_plugin_backend:make", description="a fake backend")
        """,
    "good_plugin_cmd": """
        def hello(name: str = "world") -> int:
            '''Say hello.'''
            print(f"hello {name}")
            return 0
        """,
}

BROKEN = {"broken_plugin_mod": "raise ImportError('needs libfoo 2.0')\n"}


def _records(pm):
    return {r.name: r for r in pm.records}


# --- in process ----------------------------------------------------------------------------


def test_fake_installed_plugin_is_loaded_and_its_registrations_seen(fake_site):
    fake_site.add("rlm-good", {"good": "good_plugin_mod"}, GOOD, version="2.5")

    pm = create_plugin_manager()

    record = _records(pm)["good"]
    assert (record.status, record.distribution, record.version, record.module) == (
        "loaded", "rlm-good", "2.5", "good_plugin_mod"
    )
    assert pm.get_plugin("good") is sys.modules["good_plugin_mod"]
    commands = collect(pm, "command")
    assert commands["hello"].plugin == "good"
    assert commands["hello"].description == "Say hello from a throwaway plugin."
    assert set(commands) >= {"hello", "init", "plugins", "doctor", "version"}
    assert collect(pm, "backend")["fakeai"].target == "good_plugin_backend:make"
    # the command body is a string target: registering it imported nothing
    assert "good_plugin_cmd" not in sys.modules
    assert commands["hello"].load()(name="x") == 0
    assert "good_plugin_cmd" in sys.modules


def test_entry_point_may_name_an_attribute(fake_site):
    fake_site.add(
        "rlm-attr",
        {"attr": "attr_plugin_mod:PLUGIN"},
        {"attr_plugin_mod": """
            from rlm import hookimpl

            class _Plugin:
                @hookimpl
                def rlm_register_environments(self, register):
                    register("moon", "somewhere:Moon")

            PLUGIN = _Plugin()
            """},
    )
    pm = create_plugin_manager()
    assert _records(pm)["attr"].status == "loaded"
    assert collect(pm, "environment")["moon"].plugin == "attr"


def test_builtin_plugins_are_recorded_first():
    pm = create_plugin_manager(entry_points=False)
    assert [(r.name, r.status) for r in pm.records] == [(name, "builtin") for name in DEFAULT_PLUGINS]
    assert create_plugin_manager(entry_points=False, default_plugins=False).records == []


def test_broken_plugin_is_skipped_with_a_structured_warning(fake_site):
    fake_site.add("rlm-broken", {"broken": "broken_plugin_mod"}, BROKEN, version="0.3")
    fake_site.add("rlm-good", {"good": "good_plugin_mod"}, GOOD)

    with capture_logs() as logs:
        pm = create_plugin_manager()

    broken = [entry for entry in logs if entry["event"] == "plugin_broken"]
    assert len(broken) == 1
    assert broken[0]["log_level"] == "warning"
    assert broken[0]["plugin"] == "broken"
    assert broken[0]["distribution"] == "rlm-broken"
    assert broken[0]["error"] == "ImportError: needs libfoo 2.0"
    records = _records(pm)
    assert records["broken"].status == "broken"
    assert records["broken"].error == "ImportError: needs libfoo 2.0"
    assert records["broken"].version == "0.3"
    assert not pm.has_plugin("broken")
    # the others still load
    assert records["good"].status == "loaded"
    assert "hello" in collect(pm, "command")


def test_syntax_error_in_a_plugin_is_reported_on_one_line(fake_site):
    fake_site.add("rlm-syntax", {"syntax": "syntax_plugin_mod"}, {"syntax_plugin_mod": "def broken(:\n    pass\n"})
    with capture_logs():
        pm = create_plugin_manager()
    error = _records(pm)["syntax"].error
    assert error.startswith("SyntaxError: ")
    assert "syntax_plugin_mod.py" in error
    assert "\n" not in error


def test_plugin_with_an_invalid_hookimpl_is_broken_and_not_half_registered(fake_site):
    fake_site.add(
        "rlm-badimpl",
        {"badimpl": "badimpl_plugin_mod"},
        {"badimpl_plugin_mod": """
            from rlm import hookimpl

            @hookimpl
            def rlm_register_commands(register):
                register("half", "x:y")

            @hookimpl
            def rlm_register_backends(register, no_such_argument):
                pass
            """},
    )
    with capture_logs() as logs:
        pm = create_plugin_manager()
    record = _records(pm)["badimpl"]
    assert record.status == "broken"
    assert "no_such_argument" in record.error
    assert [e["plugin"] for e in logs if e["event"] == "plugin_broken"] == ["badimpl"]
    assert not pm.has_plugin("badimpl")
    assert "half" not in collect(pm, "command")


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_strict_mode_makes_a_broken_plugin_fatal(fake_site, monkeypatch, how):
    fake_site.add("rlm-broken", {"broken": "broken_plugin_mod"}, BROKEN)
    if how == "environment":
        monkeypatch.setenv("RLM_STRICT_PLUGINS", "1")
        kwargs = {}
    else:
        kwargs = {"strict": True}
    with pytest.raises(PluginError) as info:
        create_plugin_manager(**kwargs)
    message = str(info.value)
    assert "plugin 'broken' (rlm-broken) failed to load: ImportError: needs libfoo 2.0" in message
    assert "RLM_DISABLE_PLUGINS=broken" in message
    assert info.value.exit_code == 3


@pytest.mark.parametrize("value", ["0", "", "no", "false"])
def test_strict_mode_off_values(fake_site, monkeypatch, value):
    fake_site.add("rlm-broken", {"broken": "broken_plugin_mod"}, BROKEN)
    monkeypatch.setenv("RLM_STRICT_PLUGINS", value)
    with capture_logs():
        pm = create_plugin_manager()
    assert _records(pm)["broken"].status == "broken"


def test_disabled_plugins_are_blocked_before_import(fake_site, monkeypatch, tmp_path):
    marker = tmp_path / "imported.txt"
    side_effect = f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('must never be imported')\n"
    fake_site.add("rlm-a", {"a": "plugin_a_mod"}, {"plugin_a_mod": side_effect})
    fake_site.add("rlm-b", {"b": "plugin_b_mod"}, {"plugin_b_mod": side_effect})
    fake_site.add("rlm-good", {"good": "good_plugin_mod"}, GOOD)
    monkeypatch.setenv("RLM_DISABLE_PLUGINS", " a , b,")
    monkeypatch.setenv("RLM_STRICT_PLUGINS", "1")  # a disabled plugin is not even a strict-mode failure

    pm = create_plugin_manager()

    assert not marker.exists()
    assert "plugin_a_mod" not in sys.modules and "plugin_b_mod" not in sys.modules
    records = _records(pm)
    assert (records["a"].status, records["b"].status, records["good"].status) == ("disabled", "disabled", "loaded")
    assert records["a"].distribution == "rlm-a"
    assert not pm.has_plugin("a")


def test_disabled_argument_overrides_environment(fake_site, monkeypatch):
    fake_site.add("rlm-good", {"good": "good_plugin_mod"}, GOOD)
    monkeypatch.setenv("RLM_DISABLE_PLUGINS", "good")
    assert _records(create_plugin_manager(disabled=set()))["good"].status == "loaded"
    assert _records(create_plugin_manager())["good"].status == "disabled"


def test_entry_points_false_ignores_installed_plugins(fake_site):
    fake_site.add("rlm-broken", {"broken": "broken_plugin_mod"}, BROKEN)
    pm = create_plugin_manager(entry_points=False, strict=True)
    assert "broken" not in _records(pm)


def test_two_distributions_with_one_plugin_name_first_wins(fake_site):
    fake_site.add("rlm-aaa", {"same": "good_plugin_mod"}, GOOD)
    fake_site.add("rlm-zzz", {"same": "broken_plugin_mod"}, BROKEN)
    with capture_logs() as logs:
        pm = create_plugin_manager(strict=True)
    assert _records(pm)["same"].distribution == "rlm-aaa"
    taken = [e for e in logs if e["event"] == "plugin_name_taken"]
    assert taken and taken[0]["plugin"] == "same" and taken[0]["distribution"] == "rlm-zzz"
    assert "broken_plugin_mod" not in sys.modules


# --- the entry-point reader ----------------------------------------------------------------


def _dist(root: Path, folder: str, body: str) -> None:
    (root / folder).mkdir(parents=True)
    (root / folder / "entry_points.txt").write_text(body, encoding="utf-8")


def test_entry_point_reader_parses_dist_info_and_egg_info(tmp_path):
    _dist(tmp_path, "rlm_backend_x-1.2.3.dist-info", "[rlm]\nx = pkg.mod:plugin\n[console_scripts]\nx = a:b\n")
    _dist(tmp_path, "Old_Style-0.9-py3.11.egg-info", "[rlm]\nOld = old_mod\n")
    _dist(tmp_path, "no_rlm-1.0.dist-info", "[pytest11]\np = q\n")
    (tmp_path / "not-a-dist").mkdir()

    found = {ep.name: ep for ep in entry_points("rlm", paths=[str(tmp_path)])}

    assert set(found) == {"x", "Old"}  # names are case-sensitive
    assert (found["x"].value, found["x"].distribution, found["x"].version) == ("pkg.mod:plugin", "rlm-backend-x", "1.2.3")
    assert (found["Old"].distribution, found["Old"].version) == ("Old-Style", "0.9")
    assert entry_points("console_scripts", paths=[str(tmp_path)])[0].value == "a:b"


def test_entry_point_reader_first_distribution_on_the_path_wins(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "rlm_thing-2.0.dist-info", "[rlm]\nthing = new_mod\n")
    _dist(second, "rlm_thing-1.0.dist-info", "[rlm]\nthing = old_mod\n")
    _dist(second, "other-1.0.dist-info", "[rlm]\nother = other_mod\n")

    found = entry_points("rlm", paths=[str(first), str(tmp_path / "missing"), str(second)])

    assert [(ep.name, ep.value, ep.version) for ep in found] == [("thing", "new_mod", "2.0"), ("other", "other_mod", "1.0")]


def test_entry_point_reader_skips_unreadable_metadata(tmp_path):
    _dist(tmp_path, "bad-1.0.dist-info", "this is [not an ini file\n= =\n")
    _dist(tmp_path, "good-1.0.dist-info", "[rlm]\ngood = good_mod\n")
    assert [ep.name for ep in entry_points("rlm", paths=[str(tmp_path)])] == ["good"]


def test_entry_point_load_imports_module_and_attribute(tmp_path, monkeypatch):
    (tmp_path / "ep_target_mod.py").write_text("class A:\n    class B:\n        value = 42\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    _dist(tmp_path, "t-1.0.dist-info", "[rlm]\nnested = ep_target_mod:A.B\nwhole = ep_target_mod\n")
    try:
        found = {ep.name: ep for ep in entry_points("rlm", paths=[str(tmp_path)])}
        assert found["nested"].load().value == 42
        assert found["whole"].load() is sys.modules["ep_target_mod"]
    finally:
        sys.modules.pop("ep_target_mod", None)


# --- through the CLI (subprocess) ----------------------------------------------------------


@pytest.fixture
def broken_site(subprocess_site):
    subprocess_site.add("rlm-broken", {"broken": "broken_plugin_mod"}, BROKEN, version="0.3")
    subprocess_site.add("rlm-good", {"good": "good_plugin_mod"}, GOOD)
    return subprocess_site.root


def test_cli_lists_a_broken_plugin_and_keeps_working(rlm_cli, broken_site):
    result = rlm_cli("plugins", plugin_dirs=[broken_site])
    assert result.returncode == 0, result.stderr
    assert "broken  [broken]  rlm-broken 0.3" in result.stdout
    assert "error: ImportError: needs libfoo 2.0" in result.stdout
    assert "RLM_DISABLE_PLUGINS=broken" in result.stdout
    assert "good  [loaded]  rlm-good 1.0" in result.stdout
    assert "plugin_broken" in result.stderr and "plugin_broken" not in result.stdout

    result = rlm_cli("plugins", "--json", plugin_dirs=[broken_site])
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["broken"]["status"] == "broken"
    assert rows["broken"]["error"] == "ImportError: needs libfoo 2.0"
    assert rows["broken"]["provides"] == {}
    assert rows["good"]["provides"] == {"command": ["hello"], "backend": ["fakeai"]}

    result = rlm_cli("--help", plugin_dirs=[broken_site])
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout
    assert "Broken plugins (see `rlm plugins`): broken" in result.stdout

    result = rlm_cli("hello", "--name", "tester", plugin_dirs=[broken_site])
    assert (result.returncode, result.stdout) == (0, "hello tester\n")


def test_doctor_fails_and_names_a_broken_plugin(rlm_cli, broken_site):
    result = rlm_cli("doctor", plugin_dirs=[broken_site])
    assert result.returncode == 1
    assert "[FAIL] plugin broken is broken: ImportError: needs libfoo 2.0" in result.stdout
    assert "RLM_DISABLE_PLUGINS=broken" in result.stdout
    assert "Problems found." in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["doctor"], ["version"]])
def test_strict_mode_cli_prints_one_line_and_exits_3(rlm_cli, broken_site, args):
    result = rlm_cli(*args, plugin_dirs=[broken_site], env={"RLM_STRICT_PLUGINS": "1"})
    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rlm: error: plugin 'broken' (rlm-broken) failed to load: ImportError: needs libfoo 2.0")
    assert "Traceback" not in result.stderr


def test_cli_disable_plugins_hides_the_broken_one(rlm_cli, broken_site):
    env = {"RLM_DISABLE_PLUGINS": "broken", "RLM_STRICT_PLUGINS": "1"}
    result = rlm_cli("plugins", plugin_dirs=[broken_site], env=env)
    assert result.returncode == 0, result.stderr
    assert "broken  [disabled]" in result.stdout
    assert "disabled by RLM_DISABLE_PLUGINS" in result.stdout
    assert result.stderr == ""


def test_a_misspelled_hookimpl_marks_the_plugin_broken(fake_site, monkeypatch):
    """A hookimpl whose name matches no hookspec would be silently ignored by pluggy: we refuse it."""
    from rlm.plugins import create_plugin_manager

    fake_site.add("rlm-typo", {"typo": "typo_plugin_mod"},
                  {"typo_plugin_mod": "from rlm import hookimpl\n\n@hookimpl\ndef rlm_register_backend(register):\n    pass\n"})
    pm = create_plugin_manager(strict=False, disabled=set())
    record = pm.record_for("typo")
    assert record is not None and record.status == "broken"
    assert "rlm_register_backend" in record.error and "did you mean rlm_register_backends?" in record.error
