"""The rlm-runtime 2.x habits on rlm's CLI: each short flag and alias reaches the option it names, ``--config``
reads a file (a 2.x one translated, what does not map refused), ``rlm config show``, ``rlm init DIR``,
``rlm logs --dir/--tail``, ``rlm agent --budget``; and the two CLI nits (a command's own docstring in its
``--help``, a usage error pointing at the subcommand's help)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rlm import cli
from rlm.compat import REFUSED_SETTINGS, RENAMED_SETTINGS, translate_settings
from rlm.errors import ConfigError


class Stop(ConfigError):
    """Raised by the recording fakes once they have what the test asserts on (exit 2, one line)."""


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch, tmp_path):
    for key in ("RLM_CONFIG", "RLM_MODEL", "RLM_MAX_DEPTH", "RLM_TOKEN_BUDGET", "RLM_TIMEOUT", "SNIPARA_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RLM_HELP_CACHE", "0")
    monkeypatch.setenv("RLM_DOTENV", "0")
    monkeypatch.chdir(tmp_path)
    from rlm.plugins import create_plugin_manager

    monkeypatch.setattr(cli, "create_plugin_manager", lambda **_: create_plugin_manager(entry_points=False))


@pytest.fixture
def recorded_rlm(monkeypatch):
    """Replace :class:`rlm.core.RLM` by a recorder: ``rlm run`` stops (exit 2) once it has its arguments."""
    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)
            import os

            seen["RLM_CONFIG"] = os.environ.get("RLM_CONFIG")
            self.config = SimpleNamespace(verbose=False)

        async def _complete_and_close(self, prompt: str, *, system: str | None = None) -> Any:
            seen.update(prompt=prompt, system=system)
            raise Stop("recorded")

    import rlm.core

    monkeypatch.setattr(rlm.core, "RLM", Recorder)
    return seen


@pytest.fixture
def recorded_agent(monkeypatch):
    """Replace :class:`rlm.agent.AgentRunner` by a recorder: ``rlm agent`` stops (exit 2) at its start."""
    seen: dict[str, Any] = {}

    class Recorder:
        max_iterations = 10

        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

        def cancel(self) -> None:
            pass

        async def run(self, task: str) -> Any:
            seen["task"] = task
            raise Stop("recorded")

        async def aclose(self) -> None:
            pass

    import rlm.agent

    monkeypatch.setattr(rlm.agent, "AgentRunner", Recorder)
    return seen


# --- short flags and aliases -----------------------------------------------------------------------


def test_run_takes_the_2x_short_flags(recorded_rlm, capsys):
    code = cli.main(["run", "hi", "-m", "gpt-x", "-e", "wasm", "-d", "2", "-t", "5000", "-s", "Be brief.",
                     "-b", "openai", "-v"])
    assert code == 2 and "recorded" in capsys.readouterr().err
    assert recorded_rlm["model"] == "gpt-x" and recorded_rlm["environment"] == "wasm"
    assert recorded_rlm["max_depth"] == 2 and recorded_rlm["token_budget"] == 5000
    assert recorded_rlm["backend"] == "openai" and recorded_rlm["verbose"] is True
    assert recorded_rlm["prompt"] == "hi" and recorded_rlm["system"] == "Be brief."


def test_run_long_names_still_work(recorded_rlm):
    assert cli.main(["run", "hi", "--model", "m2", "--max-depth", "1", "--token-budget", "700",
                     "--system", "S", "--backend", "b"]) == 2
    assert (recorded_rlm["model"], recorded_rlm["max_depth"], recorded_rlm["token_budget"], recorded_rlm["system"],
            recorded_rlm["backend"]) == ("m2", 1, 700, "S", "b")


def test_agent_takes_the_2x_flags_and_budget_is_the_token_budget(recorded_agent):
    code = cli.main(["agent", "do it", "-m", "gpt-x", "-e", "docker", "-i", "7", "--budget", "30000",
                     "-b", "litellm", "-d", "3"])
    assert code == 2
    assert recorded_agent["model"] == "gpt-x" and recorded_agent["environment"] == "docker"
    assert recorded_agent["max_iterations"] == 7 and recorded_agent["token_budget"] == 30000
    assert recorded_agent["backend"] == "litellm" and recorded_agent["max_depth"] == 3
    assert recorded_agent["task"] == "do it"


def test_agent_budget_default_is_unchanged_and_token_budget_still_works(recorded_agent):
    assert cli.main(["agent", "x"]) == 2 and recorded_agent["token_budget"] == 50_000
    assert cli.main(["agent", "x", "--token-budget", "123"]) == 2 and recorded_agent["token_budget"] == 123
    assert cli.main(["agent", "x", "-t", "456"]) == 2 and recorded_agent["token_budget"] == 456


def test_a_bad_budget_is_one_line_exit_2(recorded_agent, capsys):
    assert cli.main(["agent", "x", "--budget", "0"]) == 2
    err = capsys.readouterr().err
    assert "must be a whole number more than 0" in err and len(err.strip().splitlines()) == 1
    assert "task" not in recorded_agent


@pytest.mark.parametrize(("command", "flags"), [
    ("run", ["--model -m", "--env -e", "--max-depth -d", "--token-budget -t", "--system -s", "--backend -b",
             "--config -c"]),
    ("agent", ["--model -m", "--env -e", "--max-iterations -i", "--token-budget --budget -t", "--backend -b",
               "--config -c"]),
    ("batch", ["--model -m", "--env -e", "--backend -b", "--config -c"]),
    ("logs", ["--log-dir --dir -d", "--limit --tail -n"]),
    ("init", ["DIRECTORY", "--force -f", "--no-snipara"]),
    ("config show", ["--config -c", "--json"]),
])
def test_each_alias_shows_in_the_commands_help(capsys, command, flags):
    assert cli.main([*command.split(), "--help"]) == 0
    text = capsys.readouterr().out
    for flag in flags:
        assert flag in text, (command, flag)


# --- the two CLI nits --------------------------------------------------------------------------------


def test_a_commands_help_is_its_docstring_not_the_one_line_of_the_listing(capsys):
    assert cli.main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Run a prompt: the model may run Python" in text and "Exit codes: 0 answered" in text
    assert cli.main(["cache", "--help"]) == 0  # a group lists its commands by their one line, unimported
    assert "Show the response cache: entries, size, location." in capsys.readouterr().out
    assert cli.main(["--help", "run"]) == 0  # the option first: the same help
    assert "Exit codes: 0 answered" in capsys.readouterr().out


def test_a_usage_error_points_at_the_subcommands_help(capsys):
    assert cli.main(["run", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlm: error: Unknown option: --bogus") and "see `rlm run --help`" in err
    assert len(err.strip().splitlines()) == 1
    assert cli.main(["cache", "stats", "--bogus"]) == 2
    assert "see `rlm cache stats --help`" in capsys.readouterr().err
    assert cli.main(["logs", "prune", "--older-than"]) == 2
    assert "see `rlm logs prune --help`" in capsys.readouterr().err
    assert cli.main(["--bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown option '--bogus' before the command" in err and "rlm --help" in err


# --- --config ----------------------------------------------------------------------------------------


def test_config_points_the_run_at_the_file_and_is_restored_after(recorded_rlm, tmp_path):
    (tmp_path / "elsewhere.toml").write_text('[rlm]\nmodel = "from-file"\n')
    assert cli.main(["run", "hi", "-c", "elsewhere.toml"]) == 2
    assert recorded_rlm["RLM_CONFIG"] == str((tmp_path / "elsewhere.toml").resolve())
    import os

    assert "RLM_CONFIG" not in os.environ


def test_a_missing_config_file_is_one_line_exit_2(recorded_rlm, capsys):
    assert cli.main(["run", "hi", "--config", "nope.toml"]) == 2
    err = capsys.readouterr().err
    assert "--config nope.toml: no such file" in err and "rlm init" in err and "Traceback" not in err
    assert "prompt" not in recorded_rlm


def test_a_2x_file_is_read_with_its_names_mapped_and_a_warning(recorded_rlm, tmp_path, capsys):
    (tmp_path / "old.toml").write_text('[rlm]\nmodel = "gpt-4o"\ntimeout_seconds = 90\nsub_calls_enabled = false\n'
                                       'docker_network_disabled = true\n')
    assert cli.main(["run", "hi", "-c", "old.toml"]) == 2
    assert recorded_rlm["RLM_CONFIG"] == str((tmp_path / "old.toml").resolve())  # the file itself, no copy
    from rlm.config import load_config

    config = load_config(path=tmp_path / "old.toml", env={})
    assert (config.timeout, config.sub_calls, config.model) == (90, False, "gpt-4o")
    err = capsys.readouterr().err
    assert "config_2x_names" in err and "timeout_seconds -> timeout; sub_calls_enabled -> sub_calls" in err
    load_config(path=tmp_path / "old.toml", env={})
    assert "config_2x_names" not in capsys.readouterr().err  # said once per file


def test_a_2x_rlm_toml_found_from_the_current_directory_is_read_too(tmp_path, monkeypatch, capsys):
    (tmp_path / "rlm.toml").write_text('[rlm]\nmodel = "gpt-4o"\ntimeout_seconds = 45\n')
    monkeypatch.chdir(tmp_path)
    from rlm.config import load_config

    assert load_config(env={}).timeout == 45
    assert cli.main(["config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["rlm"]["timeout"]
    assert shown == {"value": 45.0, "source": str(tmp_path / "rlm.toml")}


@pytest.mark.parametrize("key", sorted(REFUSED_SETTINGS))
def test_a_2x_key_without_an_equivalent_is_refused_with_what_to_do(key):
    value = {"sub_calls_budget_inheritance": 0.7, "docker_network_disabled": False}.get(key, "x")
    with pytest.raises(ConfigError) as info:
        translate_settings({key: value}, where="old.toml: [rlm]")
    assert f"old.toml: [rlm] {key}: an rlm-runtime 2.x setting rlm does not have" in str(info.value)
    assert info.value.fix == REFUSED_SETTINGS[key]


def test_renamed_keys_map_and_a_conflict_is_refused():
    table, notes = translate_settings({**{k: 5 for k in RENAMED_SETTINGS}, "model": "m"}, where="f:")
    assert table == {**{ours: 5 for ours in RENAMED_SETTINGS.values()}, "model": "m"}
    assert len(notes) == len(RENAMED_SETTINGS)
    with pytest.raises(ConfigError, match="timeout_seconds = 5 and timeout = 6"):
        translate_settings({"timeout_seconds": 5, "timeout": 6}, where="f:")


def test_a_real_2x_init_file_loads(recorded_rlm):
    Path("rlm.toml").write_text('# RLM Runtime Configuration\n\n[rlm]\nbackend = "litellm"\nmodel = "gpt-4o-mini"\n'
                                'environment = "local"  # or "docker"\nmax_depth = 4\nmax_subcalls = 12\n'
                                'token_budget = 8000\nverbose = false\n\ndocker_image = "python:3.11-slim"\n'
                                'docker_cpus = 1.0\ndocker_memory = "512m"\n')
    from rlm.config import load_config

    config = load_config(path="rlm.toml")
    assert (config.backend, config.token_budget, config.docker_memory) == ("litellm", 8000, "512m")


# --- rlm config show ---------------------------------------------------------------------------------


def test_config_show_names_each_values_source_and_masks_secrets(tmp_path, capsys, monkeypatch):
    Path("rlm.toml").write_text('[rlm]\nmodel = "gpt-4o"\napi_base = "http://user:pw@127.0.0.1:9/v1"\n'
                                '[pricing."gpt-4o"]\ninput_per_mtok = 2.5\noutput_per_mtok = 10.0\n')
    monkeypatch.setenv("RLM_MAX_DEPTH", "2")
    monkeypatch.setenv("SNIPARA_API_KEY", "rlm_supersecretvalue")
    assert cli.main(["config", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"].endswith("rlm.toml")
    assert data["rlm"]["model"] == {"value": "gpt-4o", "source": data["file"]}
    assert data["rlm"]["max_depth"] == {"value": 2, "source": "environment variable RLM_MAX_DEPTH"}
    assert data["rlm"]["max_turns"] == {"value": 20, "source": "default"}
    assert data["rlm"]["snipara_api_key"] == {"value": "(set, hidden)",
                                              "source": "environment variable SNIPARA_API_KEY"}
    assert data["rlm"]["api_base"]["value"] == "http://(set, hidden)@127.0.0.1:9/v1"
    assert data["pricing"] == {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}}
    assert cli.main(["config", "show"]) == 0
    text = capsys.readouterr().out
    assert "supersecret" not in text and "pw@" not in text
    assert 'model' in text and '= "gpt-4o"  # ' in text and "= 2  # environment variable RLM_MAX_DEPTH" in text
    import tomllib

    shown = tomllib.loads(text)  # the text is TOML: what is set, under its table
    assert shown["rlm"]["model"] == "gpt-4o" and shown["pricing"]["gpt-4o"]["input_per_mtok"] == 2.5


def test_config_show_of_a_2x_file_names_the_file_given(tmp_path, capsys):
    (tmp_path / "old.toml").write_text('[rlm]\ntimeout_seconds = 45\n')
    assert cli.main(["config", "show", "-c", "old.toml", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"] == "old.toml" and data["rlm"]["timeout"] == {"value": 45.0, "source": "old.toml"}


def test_config_show_with_a_bad_value_is_one_line_exit_2(capsys):
    Path("rlm.toml").write_text('[rlm]\nmax_depht = 3\n')
    assert cli.main(["config", "show"]) == 2
    err = capsys.readouterr().err
    assert "max_depht: unknown key; did you mean max_depth?" in err and len(err.strip().splitlines()) == 1


def test_config_show_of_a_2x_key_without_equivalent_is_exit_2(tmp_path, capsys):
    (tmp_path / "old.toml").write_text('[rlm]\napi_key = "sk-secret"\n')
    assert cli.main(["config", "show", "-c", "old.toml"]) == 2
    err = capsys.readouterr().err
    assert "[rlm] api_key: an rlm-runtime 2.x setting rlm does not have" in err and "OPENAI_API_KEY" in err
    assert "sk-secret" not in err


# --- rlm init DIR, rlm logs --dir/--tail -------------------------------------------------------------


def test_init_takes_a_directory_and_makes_it(tmp_path, capsys):
    assert cli.main(["init", "proj/sub"]) == 0
    assert (tmp_path / "proj/sub/rlm.toml").read_text().startswith("# rlm configuration.")
    assert (tmp_path / "proj/sub/.env.example").exists()
    assert "created proj/sub/" in capsys.readouterr().err
    assert cli.main(["init", "proj/sub"]) == 2
    assert "already exists: edit it, or pass --force" in capsys.readouterr().err
    assert cli.main(["init", "proj/sub", "-f"]) == 0


def test_init_refuses_a_directory_and_a_path_or_a_file(tmp_path, capsys):
    assert cli.main(["init", "d", "--path", "x.toml"]) == 2
    assert "both a directory (d) and --path (x.toml)" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert cli.main(["init", "afile"]) == 2
    assert "afile is a file, not a directory" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_init_without_a_directory_writes_here(tmp_path):
    assert cli.main(["init"]) == 0 and (tmp_path / "rlm.toml").exists()


def _trajectory(directory: Path, name: str, prompt: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    events = [{"type": "run_start", "v": 2, "trajectory_id": name, "call_id": "c", "parent_call_id": None,
               "depth": 0, "ts": 1.0, "prompt": prompt, "system": None, "model": "m", "backend": "b",
               "environment": "local", "protocol": "tools", "isolation": None, "token_budget": 10,
               "cost_limit": None, "max_depth": 1, "tools": []}]
    (directory / f"{name}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_logs_dir_and_tail(tmp_path, capsys):
    import os
    import time

    for i, name in enumerate(["20260101-000000-aaaaaaaa", "20260101-000001-bbbbbbbb", "20260101-000002-cccccccc"]):
        _trajectory(tmp_path / "runs", name, f"prompt {i}")
        os.utime(tmp_path / "runs" / f"{name}.jsonl", (time.time() - 100 + i, time.time() - 100 + i))
    assert cli.main(["logs", "--dir", "runs", "--tail", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    assert cli.main(["logs", "-d", "runs", "-n", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert cli.main(["logs", "-d", "runs", "-n", "0"]) == 2
    assert "--limit 0: must be at least 1" in capsys.readouterr().err
    assert cli.main(["logs", "rm", "last", "--dir", "runs"]) == 0  # rm and prune take --dir/-d too
    assert not (tmp_path / "runs" / "20260101-000002-cccccccc.jsonl").exists()
    assert cli.main(["logs", "prune", "--older-than", "1s", "-d", "runs"]) == 0
    assert list((tmp_path / "runs").glob("*.jsonl")) == []


def test_agent_auto_context_reaches_the_runner_off_by_default(recorded_agent):
    assert cli.main(["agent", "x"]) == 2
    assert recorded_agent["auto_context"] is False and recorded_agent["context_budget"] is None
    assert cli.main(["agent", "x", "--auto-context", "--context-budget", "1500"]) == 2
    assert recorded_agent["auto_context"] is True and recorded_agent["context_budget"] == 1500


def test_the_2x_show_config_flag_names_config_show(capsys):
    assert cli.main(["run", "hi", "--show-config"]) == 2
    err = capsys.readouterr().err
    assert "rlm-runtime 2.x's --show-config is `rlm config show` here" in err and "see `rlm run --help`" in err
    assert len(err.strip().splitlines()) == 1


def test_the_2x_snipara_status_command_names_doctor(capsys):
    assert cli.main(["snipara-status"]) == 2
    err = capsys.readouterr().err
    assert "rlm-runtime 2.x's snipara-status is part of `rlm doctor`" in err and "run `rlm doctor`" in err
    assert len(err.strip().splitlines()) == 1


def test_2x_environment_variables_are_mapped_or_reported(capsys):
    from rlm import config as config_module
    from rlm.compat import LEGACY_SETTINGS
    from rlm.config import load_config

    assert config_module._LEGACY_NAMES == LEGACY_SETTINGS - {"log_level"}  # RLM_LOG_LEVEL is ours as well
    config_module._reported_2x_env.clear()
    env = {"RLM_TIMEOUT_SECONDS": "75", "RLM_DOCKER_TIMEOUT": "12", "RLM_TOOL_BUDGET": "20", "RLM_LOG_LEVEL": "info"}
    config = load_config(env=env, use_file=False)
    assert (config.timeout, config.env_timeout) == (75, 12)
    err = capsys.readouterr().err
    assert "RLM_TIMEOUT_SECONDS" in err and "rename it RLM_TIMEOUT" in err
    assert "config_2x_ignored" in err and "RLM_TOOL_BUDGET" in err and "max_turns" in err
    assert "RLM_LOG_LEVEL" not in err
    assert load_config(env={**env, "RLM_TIMEOUT": "30"}, use_file=False).timeout == 30  # rlm's own name wins
    assert capsys.readouterr().err == ""  # each said once per process
