"""Issue 19: ``rlm doctor`` with the local model as the provider and with a broken rlm.toml, and
``rlm run`` without its prompt -- in subprocesses with a clean environment (see conftest.py).
"""

from __future__ import annotations

import json

import pytest

from rlm.doctor import config_problem
from rlm.errors import ConfigError

LOCAL_PLUGIN = {
    "fake_local_plugin": """
        '''A stand-in for rlm-backend-local: backend "local", chosen when no provider key is set.'''
        import os
        import sys
        from rlm import hookimpl

        @hookimpl
        def rlm_register_backends(register):
            register("local", "fake_local_impl:backend", description="embedded small model")
            register("hosted", "fake_local_impl:backend", description="a hosted provider's")

        @hookimpl(tryfirst=True)
        def rlm_resolve_backend(model, config):
            if model.startswith("local/"):
                return "local"
            if os.environ.get("OPENAI_API_KEY") or os.environ.get("ANTHROPIC_API_KEY") or "model" in config.explicit:
                return None
            print("rlm: no provider key set: using the local model", file=sys.stderr)
            return "local"

        @hookimpl
        def rlm_register_doctor_checks(register):
            register("backend-local", "fake_local_impl:check")
        """,
    "fake_local_impl": """
        import os
        from rlm.doctor import Check

        def backend(settings):
            raise AssertionError("doctor must not start a backend")

        def check(config):
            if os.environ.get("FAKE_LOCAL_MISSING"):
                yield Check(status="warn", summary="local model: the runtime is not installed", fix="pip install it")
            else:
                yield Check(status="ok", summary="local model: runtime installed")
            yield Check(status="ok", summary="local model: model file verified")
        """,
}


@pytest.fixture
def local_plugin(subprocess_site):
    subprocess_site.add("rlm-fake-local", {"fakelocal": "fake_local_plugin"}, LOCAL_PLUGIN)
    return subprocess_site.root


def _providers(result) -> list[dict]:
    return [c for c in json.loads(result.stdout) if c["check"] == "providers"]


# --- doctor: the local model is the provider ------------------------------------------------------


def test_doctor_names_the_local_model_as_the_provider_when_no_key_is_set(rlm_cli, local_plugin):
    result = rlm_cli("doctor", plugin_dirs=[local_plugin])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No providers configured" not in result.stdout
    assert ("[ok  ] provider: the embedded local model serves model 'gpt-4o-mini' (no provider key set); "
            "it is installed and ready") in result.stdout
    assert "using the local model" not in result.stderr  # the resolver's notice is not the doctor's output


def test_doctor_says_when_the_local_model_is_not_ready(rlm_cli, local_plugin):
    result = rlm_cli("doctor", "--json", plugin_dirs=[local_plugin], env={"FAKE_LOCAL_MISSING": "1"})
    assert result.returncode == 0, result.stderr
    [check] = _providers(result)
    assert check["status"] == "warn"
    assert check["summary"] == ("provider: the embedded local model serves model 'gpt-4o-mini' (no provider key "
                                "set), but it is not ready: the runtime is not installed")
    assert "local model" in check["fix"]


def test_doctor_with_a_key_or_a_named_model_does_not_claim_the_local_model(rlm_cli, local_plugin):
    result = rlm_cli("doctor", "--json", plugin_dirs=[local_plugin], env={"OPENAI_API_KEY": "sk-x"})
    assert _providers(result)[0]["summary"] == "provider keys set: OPENAI_API_KEY"
    # a model the user named is not served by the stand-in: no provider for it
    result = rlm_cli("doctor", "--json", plugin_dirs=[local_plugin], env={"RLM_MODEL": "gpt-4o"})
    [check] = _providers(result)
    assert check["status"] == "warn" and check["summary"] == "No providers configured"
    assert "embedded local model" in check["fix"]


def test_doctor_without_any_provider_still_warns(rlm_cli):
    result = rlm_cli("doctor")
    assert "[warn] No providers configured" in result.stdout and result.returncode == 0


def test_doctor_accepts_an_api_base_as_the_provider(rlm_cli, project):
    (project / "rlm.toml").write_text('[rlm]\napi_base = "http://127.0.0.1:8080/v1"\n')
    result = rlm_cli("doctor", "--json")
    [check] = _providers(result)
    assert check["status"] == "ok" and "api_base" in check["summary"]
    assert "127.0.0.1" not in result.stdout  # an endpoint may hold credentials: it is not echoed


# --- doctor: a broken rlm.toml --------------------------------------------------------------------


@pytest.mark.parametrize(("content", "summary", "hint"), [
    (b'[rlm]\nmodel = "gpt-4o\n', "invalid TOML: Illegal character", "see https://toml.io"),
    (b'[rlm]\nmodel = "m"\n\nmax_turns = "many"\n', "[rlm] max_turns: expected an integer, got 'many' (line 4)",
     None),
    (b'[rlm]\nmodel = "\xff\xfe"\n', "is not valid UTF-8 (byte 0xff on line 2)", "save the file as UTF-8"),
    (b'[rlm]\nmax_depth = 3\n\n[rlmm]\nx = 1\n', "[rlmm]: unknown table", None),
    (b'rlm = 3\n', "rlm: must be a table", None),
])
def test_doctor_reports_a_broken_config_file_and_how_to_fix_it(rlm_cli, project, content, summary, hint):
    (project / "rlm.toml").write_bytes(content)
    path = (project / "rlm.toml").resolve()
    result = rlm_cli("doctor")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip() == "Problems found."
    first, fix = result.stdout.splitlines()[:2]
    assert first.startswith(f"[FAIL] {path}: ") and summary in first
    assert fix.startswith(f"       fix: fix or delete {path}")
    if hint:
        assert hint in fix
    assert "rlm init" not in result.stdout  # the file exists: init would refuse to overwrite it


def test_doctor_json_with_a_broken_config(rlm_cli, project):
    (project / "rlm.toml").write_text("[rlm]\nmax_turns = -1\n")
    result = rlm_cli("doctor", "--json")
    assert result.returncode == 1
    [config] = [c for c in json.loads(result.stdout) if c["check"] == "config"]
    assert config["status"] == "fail" and config["summary"].endswith("must be at least 1 (line 2)")
    assert config["fix"] == f"fix or delete {(project / 'rlm.toml').resolve()}"


def test_doctor_blames_a_bad_variable_not_the_file(rlm_cli, project):
    (project / "rlm.toml").write_text("[rlm]\nmax_depth = 2\n")
    result = rlm_cli("doctor", env={"RLM_MAX_DEPTH": "deep"})
    assert result.returncode == 1
    assert "[FAIL] environment variable RLM_MAX_DEPTH: expected an integer, got 'deep'" in result.stdout
    assert "fix: fix or unset RLM_MAX_DEPTH" in result.stdout and "delete" not in result.stdout


def test_doctor_with_rlm_config_pointing_nowhere(rlm_cli, project):
    result = rlm_cli("doctor", env={"RLM_CONFIG": str(project / "missing.toml")})
    assert result.returncode == 1
    assert "no such file" in result.stdout and "rlm init" not in result.stdout


def test_config_problem_never_raises_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RLM_CONFIG", raising=False)
    check = config_problem(ConfigError("keyword argument x: unknown setting"))
    assert check.status == "fail" and check.summary == "keyword argument x: unknown setting"


# --- rlm run without a prompt ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [["run"], ["run", "--json"], ["run", "--max-turns", "3"]])
def test_run_without_a_prompt_names_the_prompt_and_exits_2(rlm_cli, args):
    result = rlm_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == 'rlm run: missing the prompt: rlm run "your prompt" (see `rlm run --help`)\n'


def test_agent_without_a_task_names_the_task(rlm_cli):
    result = rlm_cli("agent")
    assert result.returncode == 2
    assert result.stderr == 'rlm agent: missing the task: rlm agent "your task" (see `rlm agent --help`)\n'


def test_a_plugin_command_missing_its_positional_names_it(rlm_cli, subprocess_site):
    subprocess_site.add("rlm-needs-arg", {"needsarg": "needs_arg_mod"}, {"needs_arg_mod": """
        from rlm import hookimpl

        def greet(name: str, times: int, /, *, loud: bool = False) -> int:
            print(name * times)
            return 0

        @hookimpl
        def rlm_register_commands(register):
            register("greet", "needs_arg_mod:greet", help="Greet someone.")
        """})
    result = rlm_cli("greet", plugin_dirs=[subprocess_site.root])
    assert (result.returncode, result.stderr) == (
        2, 'rlm greet: missing the name: rlm greet "your name" (see `rlm greet --help`)\n')
    result = rlm_cli("greet", "ann", plugin_dirs=[subprocess_site.root])
    assert (result.returncode, result.stderr) == (
        2, "rlm greet: missing the times: rlm greet TIMES (see `rlm greet --help`)\n")
    assert rlm_cli("greet", "ann", "2", plugin_dirs=[subprocess_site.root]).stdout == "annann\n"


def test_an_option_without_its_value_keeps_naming_the_option(rlm_cli):
    result = rlm_cli("run", "hi", "--model")
    assert result.returncode == 2
    assert "--model requires an argument" in result.stderr and "missing the prompt" not in result.stderr
