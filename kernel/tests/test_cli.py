"""The ``rlm`` command line, run in subprocesses with a clean environment.

Covers top-level help (including a command contributed by a throwaway plugin),
``--version``/``version``, ``init``, ``plugins`` (text and ``--json``),
``doctor`` (exit codes, no secrets printed), errors as one line on stderr with
the documented exit codes, and logs going to stderr only.
"""

from __future__ import annotations

import json
import subprocess
import sys

import attrs
import pytest

import rlm
from rlm.config import RLMConfig, load_config
from rlm.plugins import DEFAULT_PLUGINS

PLUGIN = {
    "cli_plugin_mod": """
        '''A throwaway plugin: commands with various outcomes, a backend, an environment,
        a config section and a doctor check.'''
        from rlm import hookimpl

        @hookimpl
        def rlm_register_commands(register):
            register("hello", "cli_plugin_cmds:hello", help="Say hello from a throwaway plugin.")
            register("seven", "cli_plugin_cmds:seven", help="Exit with status 7.")
            register("nope", "cli_plugin_cmds:nope", help="Return False.")
            register("interrupt", "cli_plugin_cmds:interrupt", help="Act as if Ctrl-C was pressed.")
            register("chatty", "cli_plugin_cmds:chatty", help="Log to stderr, print to stdout.")
            register("missing", "cli_plugin_no_such_module:run", help="A command whose module is gone.")

        @hookimpl
        def rlm_register_backends(register):
            register("fakeai", "cli_plugin_cmds:backend")

        @hookimpl
        def rlm_register_environments(register):
            register("local", "cli_plugin_cmds:environment", isolation="cli_plugin_cmds:isolation")

        @hookimpl
        def rlm_register_config_sections(register):
            register("cli-plugin", "cli_plugin_cmds:Settings", description="the throwaway plugin")

        @hookimpl
        def rlm_register_doctor_checks(register):
            register("cli-plugin", "cli_plugin_cmds:check")

        @hookimpl
        def rlm_register_budget_policies(register):
            register("cli-frugal", "cli_plugin_cmds:Frugal")
        """,
    "cli_plugin_cmds": """
        import attrs
        from rlm.doctor import Check

        @attrs.define(frozen=True, kw_only=True)
        class Settings:
            greeting: str = attrs.field(default="hello", metadata={"help": "what to say"})
            times: int = 1

        def hello(name: str = "world") -> int:
            '''Say hello.

            Parameters
            ----------
            name: str
                Who to greet.
            '''
            print(f"hello {name}")
            return 0

        def seven() -> int:
            return 7

        def nope() -> bool:
            return False

        def interrupt() -> int:
            raise KeyboardInterrupt

        def chatty() -> int:
            from rlm.logging import get_logger
            get_logger("cli_plugin").warning("chatty_event", detail="to stderr")
            print("result on stdout")
            return 0

        def isolation(config):
            greeting = config.plugin("cli-plugin").greeting
            return {"landlock": "active (ABI 7)", "seccomp": "active", "python-guards": f"active ({greeting})"}

        def check(config):
            section = config.plugin("cli-plugin")
            yield Check(status="ok", summary=f"cli-plugin says {section.greeting} x{section.times}")
        """,
}


@pytest.fixture
def plugin_dir(subprocess_site):
    subprocess_site.add("rlm-cli-plugin", {"cliplug": "cli_plugin_mod"}, PLUGIN, version="3.1")
    return subprocess_site.root


# --- help and version ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["-h"], []])
def test_top_level_help_lists_the_builtin_commands(rlm_cli, args):
    result = rlm_cli(*args)
    assert result.returncode == 0
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("Usage: rlm COMMAND [ARGS]\n")
    for name, summary in [("init", "Write a commented rlm.toml"), ("plugins", "List installed, broken"),
                          ("doctor", "Check Python, plugins"), ("version", "Show the versions")]:
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert summary in line
    assert "--version" in out and "Broken plugins" not in out


def test_top_level_help_lists_commands_from_plugins(rlm_cli, plugin_dir):
    result = rlm_cli("--help", plugin_dirs=[plugin_dir])
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout and "Say hello from a throwaway plugin." in result.stdout
    assert result.stderr == ""


def test_plugin_command_runs_and_has_its_own_help(rlm_cli, plugin_dir):
    result = rlm_cli("hello", "--name", "tests", plugin_dirs=[plugin_dir])
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello tests\n", "")
    result = rlm_cli("hello", "--help", plugin_dirs=[plugin_dir])
    assert result.returncode == 0
    assert "--name" in result.stdout and "Who to greet." in result.stdout


def test_version_flag(rlm_cli):
    result = rlm_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, rlm.__version__ + "\n", "")


def test_python_dash_m_rlm(project):
    result = subprocess.run([sys.executable, "-m", "rlm", "--version"], cwd=project, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout) == (0, rlm.__version__ + "\n")


def test_version_command_lists_plugins(rlm_cli, plugin_dir):
    result = rlm_cli("version", plugin_dirs=[plugin_dir])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"rlm-kernel {rlm.__version__} (Python {sys.version_info.major}.")
    assert "  cliplug: rlm-cli-plugin 3.1 [loaded]" in lines
    assert result.stderr == ""


# --- init ----------------------------------------------------------------------------------


def test_init_writes_a_config_that_loads_unchanged(rlm_cli, project):
    result = rlm_cli("init")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["wrote rlm.toml", "wrote .env.example"]
    text = (project / "rlm.toml").read_text()
    assert text.startswith("# rlm configuration.")
    assert "# max_depth = 4" in text and "# nesting of sub-LLM calls" in text
    config = load_config(path=project / "rlm.toml", env={})
    assert attrs.evolve(config, source=None) == RLMConfig()


def test_init_refuses_to_overwrite_without_force(rlm_cli, project):
    (project / "rlm.toml").write_text("[rlm]\nmax_depth = 2\n")
    result = rlm_cli("init")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "rlm: error: rlm.toml already exists: edit it, or pass --force to overwrite it"
    ]
    assert (project / "rlm.toml").read_text() == "[rlm]\nmax_depth = 2\n"

    result = rlm_cli("init", "--force")
    assert result.returncode == 0, result.stderr
    assert "# max_depth = 4" in (project / "rlm.toml").read_text()


def test_init_path_option(rlm_cli, project):
    result = rlm_cli("init", "--path", "conf/other.toml")
    assert result.returncode == 2  # the folder does not exist
    assert result.stderr.splitlines() == [
        "rlm: error: conf/other.toml: cannot write: No such file or directory: check the folder exists and is writable"
    ]
    (project / "conf").mkdir()
    result = rlm_cli("init", "--path", "conf/other.toml")
    assert result.returncode == 0, result.stderr
    assert (project / "conf" / "other.toml").is_file() and not (project / "rlm.toml").exists()


def test_init_includes_plugin_sections_that_load_unchanged(rlm_cli, project, plugin_dir):
    result = rlm_cli("init", plugin_dirs=[plugin_dir])
    assert result.returncode == 0, result.stderr
    text = (project / "rlm.toml").read_text()
    assert "# the throwaway plugin\n# [plugins.cli-plugin]\n" in text
    assert "# what to say\n# greeting = \"hello\"" in text
    # uncommenting the plugin table gives a valid file too
    uncommented = text.replace("# [plugins.cli-plugin]", "[plugins.cli-plugin]").replace("# greeting =", "greeting =")
    (project / "rlm.toml").write_text(uncommented)
    result = rlm_cli("doctor", plugin_dirs=[plugin_dir])
    assert "cli-plugin says hello x1" in result.stdout


# --- plugins -------------------------------------------------------------------------------


def test_plugins_text(rlm_cli, plugin_dir):
    result = rlm_cli("plugins", plugin_dirs=[plugin_dir])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "rlm.builtin.commands  [builtin]  rlm.builtin.commands" in out
    assert "    commands: init, plugins, doctor, version" in out
    assert "    doctor checks: python, config, plugins, providers" in out
    assert "cliplug  [loaded]  rlm-cli-plugin 3.1" in out
    assert "    commands: hello, seven, nope, interrupt, chatty, missing" in out
    assert "    backends: fakeai" in out
    assert "    config sections: cli-plugin" in out
    assert "    budget policies: cli-frugal" in out
    assert ("    isolation of environment 'local': landlock: active (ABI 7); seccomp: active; "
            "python-guards: active (hello)\n") in out
    assert "isolation of" not in out.split("cliplug  [loaded]")[0]  # built-ins have no environment
    assert result.stderr == ""


def test_plugins_calls_the_isolation_describer_with_the_effective_config(rlm_cli, plugin_dir):
    result = rlm_cli("plugins", "--json", plugin_dirs=[plugin_dir], env={"RLM_PLUGINS__CLI_PLUGIN__GREETING": "hi"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[-1]["isolation"]["local"]["python-guards"] == "active (hi)"


def test_plugins_with_a_broken_isolation_describer_still_lists_everything(rlm_cli, subprocess_site):
    subprocess_site.add("rlm-leaky", {"leaky": "leaky_plugin_mod"}, {"leaky_plugin_mod": """
        from rlm import hookimpl

        def explode(config):
            raise OSError("landlock probe failed")

        @hookimpl
        def rlm_register_environments(register):
            register("leaky", "leaky_plugin_mod:Env", isolation=explode)
            register("gone", "leaky_plugin_mod:Env", isolation="leaky_no_such_module:describe")
            register("bare", "leaky_plugin_mod:Env")
        """})
    result = rlm_cli("plugins", "--json", plugin_dirs=[subprocess_site.root])
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)[-1]
    assert row["provides"] == {"environment": ["leaky", "gone", "bare"]}
    assert set(row["isolation"]) == {"leaky", "gone"}  # no describer, no entry
    assert row["isolation"]["leaky"] == {
        "error": "isolation describer 'explode' failed: OSError: landlock probe failed"}
    assert row["isolation"]["gone"]["error"].startswith(
        "isolation describer 'leaky_no_such_module:describe' failed: ModuleNotFoundError:")
    assert "isolation_describer_failed" in result.stderr  # logged, on stderr only
    text = rlm_cli("plugins", plugin_dirs=[subprocess_site.root]).stdout
    assert "    isolation of environment 'leaky': error: isolation describer 'explode' failed: OSError:" in text


def test_plugins_json(rlm_cli, plugin_dir):
    result = rlm_cli("plugins", "--json", plugin_dirs=[plugin_dir])
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == [*DEFAULT_PLUGINS, "cliplug"]
    builtin, plugin = rows[0], rows[-1]
    assert all(row["status"] == "builtin" and row["distribution"] is None for row in rows[:-1])
    assert builtin["provides"]["command"][:4] == ["init", "plugins", "doctor", "version"]
    assert plugin == {
        "name": "cliplug",
        "status": "loaded",
        "distribution": "rlm-cli-plugin",
        "version": "3.1",
        "module": "cli_plugin_mod",
        "error": None,
        "provides": {
            "backend": ["fakeai"],
            "environment": ["local"],
            "command": ["hello", "seven", "nope", "interrupt", "chatty", "missing"],
            "config_section": ["cli-plugin"],
            "doctor_check": ["cli-plugin"],
            "budget_policy": ["cli-frugal"],
        },
        "isolation": {
            "local": {"landlock": "active (ABI 7)", "seccomp": "active", "python-guards": "active (hello)"},
        },
    }
    assert all(row["isolation"] == {} for row in rows[:-1])


# --- doctor --------------------------------------------------------------------------------


def test_doctor_with_only_warnings_exits_0(rlm_cli):
    result = rlm_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[warn] no rlm.toml found (defaults in use)" in result.stdout
    assert "[warn] No providers configured" in result.stdout
    assert "[warn] no LLM backend installed" in result.stdout
    assert "FAIL" not in result.stdout
    assert result.stderr.strip() == "Usable; warnings above."


def test_doctor_all_good(rlm_cli, project, plugin_dir):
    (project / "rlm.toml").write_text("[rlm]\nmax_depth = 2\n")
    result = rlm_cli("doctor", plugin_dirs=[plugin_dir], env={"ANTHROPIC_API_KEY": "sk-ant-x"})
    assert result.returncode == 0, result.stdout
    assert "[warn]" not in result.stdout
    assert f"[ok  ] config file {project / 'rlm.toml'}" in result.stdout
    assert "[ok  ] LLM backends: fakeai" in result.stdout
    assert "[ok  ] environment 'local' is installed" in result.stdout
    assert "[ok  ] cli-plugin says hello x1" in result.stdout
    assert result.stderr.strip() == "All good."


def test_doctor_bad_config_exits_1(rlm_cli, project):
    (project / "rlm.toml").write_text("[rlm]\nmax_depht = 3\n")
    result = rlm_cli("doctor")
    assert result.returncode == 1
    path = (project / "rlm.toml").resolve()
    assert f"[FAIL] {path}: [rlm] max_depht: unknown key; did you mean max_depth? (line 2)" in result.stdout
    assert f"fix: fix or delete {path}" in result.stdout and "rlm init" not in result.stdout
    assert result.stderr.strip() == "Problems found."


def test_doctor_bad_environment_variable_exits_1(rlm_cli):
    result = rlm_cli("doctor", env={"RLM_MAX_DEPTH": "deep"})
    assert result.returncode == 1
    assert "environment variable RLM_MAX_DEPTH: expected an integer, got 'deep'" in result.stdout


def test_doctor_uninstalled_environment_fails_when_others_are_installed(rlm_cli, plugin_dir):
    result = rlm_cli("doctor", plugin_dirs=[plugin_dir], env={"RLM_ENVIRONMENT": "docker"})
    assert result.returncode == 1
    assert "[FAIL] environment 'docker' is not installed (installed: local)" in result.stdout


def test_doctor_never_prints_key_values(rlm_cli, project, plugin_dir):
    secrets = {"OPENAI_API_KEY": "sk-test-OPENAI-SECRET-1", "ANTHROPIC_API_KEY": "sk-ant-SECRET-2",
               "SNIPARA_API_KEY": "rlm_SECRET-3"}
    (project / "rlm.toml").write_text("[rlm]\nsnipara_api_key = 12345678\n")
    for args in (["doctor"], ["doctor", "--json"]):
        result = rlm_cli(*args, plugin_dirs=[plugin_dir], env=secrets)
        everything = result.stdout + result.stderr
        assert "provider keys set: OPENAI_API_KEY, ANTHROPIC_API_KEY" in everything
        for value in [*secrets.values(), "12345678"]:
            assert value not in everything


def test_doctor_json(rlm_cli):
    result = rlm_cli("doctor", "--json")
    assert result.returncode == 0
    checks = json.loads(result.stdout)
    assert {c["check"] for c in checks} >= {"python", "config", "plugins", "providers"}
    assert all(set(c) == {"check", "status", "summary", "fix"} for c in checks)
    assert {c["status"] for c in checks} == {"ok", "warn"}


def test_doctor_reports_a_crashing_check_as_a_failure(rlm_cli, subprocess_site):
    subprocess_site.add("rlm-crash", {"crash": "crash_check_mod"}, {"crash_check_mod": """
        from rlm import hookimpl

        def isolation(config):
            greeting = config.plugin("cli-plugin").greeting
            return {"landlock": "active (ABI 7)", "seccomp": "active", "python-guards": f"active ({greeting})"}

        def check(config):
            raise RuntimeError("disk on fire")

        @hookimpl
        def rlm_register_doctor_checks(register):
            register("crashy", check)
        """})
    result = rlm_cli("doctor", plugin_dirs=[subprocess_site.root])
    assert result.returncode == 1
    assert "[FAIL] check 'crashy' crashed: disk on fire" in result.stdout


# --- exit codes and streams ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (["seven"], 7, ""),
        (["nope"], 1, ""),
        (["interrupt"], 130, None),
        (["doctr"], 2, "rlm: error: unknown command 'doctr' (did you mean 'doctor'?): run `rlm --help` to see the commands\n"),
        (["missing"], 3, None),
    ],
)
def test_exit_codes(rlm_cli, plugin_dir, args, code, stderr):
    result = rlm_cli(*args, plugin_dirs=[plugin_dir])
    assert result.returncode == code, result.stderr
    if stderr is not None:
        assert result.stderr == stderr
    assert "Traceback" not in result.stderr


def test_a_command_whose_module_is_gone_is_a_one_line_plugin_error(rlm_cli, plugin_dir):
    result = rlm_cli("missing", plugin_dirs=[plugin_dir])
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        "rlm: error: command 'missing' from plugin 'cliplug' cannot be imported: "
        "No module named 'cli_plugin_no_such_module': reinstall the distribution that provides plugin 'cliplug'"
    ]
    # ... and it does not break the other commands
    assert rlm_cli("hello", plugin_dirs=[plugin_dir]).returncode == 0
    assert rlm_cli("no-such-command", plugin_dirs=[plugin_dir]).returncode == 2


def test_usage_errors_go_to_stderr(rlm_cli):
    result = rlm_cli("doctor", "--no-such-option")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "--no-such-option" in result.stderr


def test_logs_go_to_stderr_only(rlm_cli, plugin_dir):
    result = rlm_cli("chatty", plugin_dirs=[plugin_dir])
    assert result.returncode == 0
    assert result.stdout == "result on stdout\n"
    assert "chatty_event" in result.stderr and "to stderr" in result.stderr

    result = rlm_cli("plugins", "--json", plugin_dirs=[plugin_dir], env={"RLM_LOG_LEVEL": "debug"})
    assert result.returncode == 0
    assert "plugin_loaded" in result.stderr
    json.loads(result.stdout)  # stdout is nothing but the JSON document


def test_log_level_filters(rlm_cli, plugin_dir):
    result = rlm_cli("chatty", plugin_dirs=[plugin_dir], env={"RLM_LOG_LEVEL": "error"})
    assert (result.returncode, result.stderr) == (0, "")


def test_a_command_name_taken_twice_warns_unless_strict(rlm_cli, subprocess_site):
    for dist, module in (("rlm-twin-a", "twin_a_mod"), ("rlm-twin-b", "twin_b_mod")):
        subprocess_site.add(dist, {module.removesuffix("_mod"): module}, {module: f"""
            from rlm import hookimpl

            @hookimpl
            def rlm_register_commands(register):
                register("twin", "{module}:run", help="from {module}")

            def run() -> int:
                print("{module}")
                return 0
            """})
    result = rlm_cli("--help", plugin_dirs=[subprocess_site.root])
    assert result.returncode == 0
    assert result.stdout.count("twin ") == 1
    assert "name_collision" in result.stderr and "twin" in result.stderr

    result = rlm_cli("--help", plugin_dirs=[subprocess_site.root], env={"RLM_STRICT_PLUGINS": "1"})
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        "rlm: error: command 'twin' is registered by both plugin 'twin_a' and plugin 'twin_b': "
        "uninstall one of them or block one with RLM_DISABLE_PLUGINS=twin_b"
    ]


def test_multi_word_command_names_form_kernel_owned_groups(rlm_cli, subprocess_site):
    """Two plugins can both add `rlm env <name>`: the kernel owns the group `env`."""
    for dist, module, sub in (("rlm-grp-a", "grp_a_mod", "alpha"), ("rlm-grp-b", "grp_b_mod", "beta")):
        subprocess_site.add(dist, {module.removesuffix("_mod"): module}, {module: f"""
            from rlm import hookimpl

            @hookimpl
            def rlm_register_commands(register):
                register("env {sub}", "{module}:run", help="{sub} things")

            def run() -> int:
                print("ran {sub}")
                return 0
            """})
    top = rlm_cli("--help", plugin_dirs=[subprocess_site.root])
    assert top.returncode == 0 and "env" in top.stdout and "alpha, beta" in top.stdout
    assert rlm_cli("env", "beta", plugin_dirs=[subprocess_site.root]).stdout == "ran beta\n"
    group = rlm_cli("env", "--help", plugin_dirs=[subprocess_site.root])
    assert group.returncode == 0 and "alpha" in group.stdout and "beta" in group.stdout
    assert rlm_cli("env", "gamma", plugin_dirs=[subprocess_site.root]).returncode != 0
