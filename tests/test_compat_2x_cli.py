"""The CLI as an rlm-runtime 2.x user types it, each command a real ``rlm`` process: ``rlm run`` and
``rlm agent`` with 2.x short flags and a 2.x config file (``-c``) against the scripted OpenAI-compatible
server through the real openai SDK, then ``rlm logs --dir --tail``, ``rlm init DIR``, ``rlm config show``,
a 2.x setting rlm does not have, usage errors, and the help cache with the new ``config`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rlm_backend_openai")
pytest.importorskip("rlm_env_local")

from rlm_testing.server import Reply  # noqa: E402

MODEL = "openai/gpt-4o-mini"


def _rlm(tmp_path: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "SNIPARA_"))}
    clean.update({"OPENAI_API_KEY": "sk-test", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"),
                  **env})
    return subprocess.run([sys.executable, "-m", "rlm", *args], cwd=cwd or tmp_path, env=clean, text=True,
                          capture_output=True, timeout=120)


def _events(tmp_path: Path, trajectory_id: str) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "logs" / f"{trajectory_id}.jsonl").read_text().splitlines()]


def _write_2x_config(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    """A config as rlm-runtime 2.x wrote and read it ([rlm], its own key names), plus where the server is."""
    path = tmp_path / "old-rlm.toml"
    path.write_text(f'# RLM Runtime Configuration\n\n[rlm]\nmodel = "{MODEL}"\nenvironment = "local"\n'
                    f'max_depth = 4\nmax_subcalls = 12\ntoken_budget = 8000\nverbose = false\n'
                    f'timeout_seconds = 120\nsub_calls_enabled = true\ndocker_network_disabled = true\n'
                    f'api_base = "{base_url}"\nprotocol = "tools"\n{extra}')
    return path


def test_run_and_agent_with_2x_flags_and_a_2x_config_then_logs(scripted_llm, tmp_path):
    _write_2x_config(tmp_path, scripted_llm.openai_base_url)
    scripted_llm.script([Reply.tool_calls(("execute_code", {"code": "print(6 * 7)"})), Reply.text("42")])
    run = _rlm(tmp_path, "run", "What is six times seven?", "-m", MODEL, "-e", "local", "-d", "1", "-t", "20000",
               "-s", "Answer with a number.", "-c", "old-rlm.toml", "--json")
    assert run.returncode == 0, run.stderr
    assert "config_2x_names" in run.stderr and "timeout_seconds -> timeout" in run.stderr
    result = json.loads(run.stdout)
    assert result["response"] == "42" and result["success"] is True
    start = _events(tmp_path, result["trajectory_id"])[0]
    assert start["type"] == "run_start" and start["system"] == "Answer with a number."
    assert (start["max_depth"], start["token_budget"], start["environment"]) == (1, 20000, "local")
    first = json.dumps(scripted_llm.requests[0].body)
    assert "Answer with a number." in first and "What is six times seven?" in first

    scripted_llm.script([Reply.tool_calls(("execute_code", {"code": "x = 6 * 7"})),
                         Reply.tool_calls(("FINAL_VAR", {"name": "x"}))])
    agent = _rlm(tmp_path, "agent", "Compute six times seven", "-m", MODEL, "-e", "local", "-i", "3",
                 "--budget", "30000", "-c", "old-rlm.toml")
    assert agent.returncode == 0, agent.stderr
    assert agent.stdout == "42\n" and "final_var after 2 iteration(s)" in agent.stderr

    listing = _rlm(tmp_path, "logs", "--dir", "logs", "--tail", "1", "--json")
    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)  # --tail 1: the newest run only, the agent's
    assert row["trajectory_id"] != result["trajectory_id"] and row["model"] == MODEL
    assert _events(tmp_path, row["trajectory_id"])[0]["token_budget"] == 30000  # --budget: the token budget
    both = _rlm(tmp_path, "logs", "-d", "logs", "-n", "5", "--json")
    assert [r["trajectory_id"] for r in json.loads(both.stdout)] == [row["trajectory_id"], result["trajectory_id"]]


def test_a_2x_setting_rlm_does_not_have_is_one_line_exit_2_and_nothing_is_asked(scripted_llm, tmp_path):
    _write_2x_config(tmp_path, scripted_llm.openai_base_url, extra='api_key = "sk-live-secret"\n')
    run = _rlm(tmp_path, "run", "hi", "-m", MODEL, "-c", "old-rlm.toml")
    assert run.returncode == 2
    line, = run.stderr.strip().splitlines()
    assert line.startswith("rlm: error: old-rlm.toml: [rlm] api_key: an rlm-runtime 2.x setting")
    assert "OPENAI_API_KEY" in line and "sk-live-secret" not in line and "Traceback" not in run.stderr
    assert scripted_llm.requests == []
    missing = _rlm(tmp_path, "agent", "hi", "-c", "nowhere.toml")
    assert missing.returncode == 2 and "--config nowhere.toml: no such file" in missing.stderr


def test_init_dir_then_config_show_of_it(tmp_path):
    init = _rlm(tmp_path, "init", "project")
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "project" / "rlm.toml").is_file() and (tmp_path / "project" / ".env.example").is_file()
    again = _rlm(tmp_path, "init", "project")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert _rlm(tmp_path, "init", "project", "-f").returncode == 0
    (tmp_path / "project" / "rlm.toml").write_text('[rlm]\nmodel = "gpt-4o"\nsnipara_api_key = "rlm_topsecret"\n')
    shown = _rlm(tmp_path, "config", "show", "-c", "project/rlm.toml", RLM_MAX_TURNS="7")
    assert shown.returncode == 0, shown.stderr
    assert "file: project/rlm.toml" in shown.stdout
    assert '= "gpt-4o"  # project/rlm.toml' in shown.stdout
    assert "= 7  # environment variable RLM_MAX_TURNS" in shown.stdout
    assert '= "(set, hidden)"  # project/rlm.toml' in shown.stdout and "topsecret" not in shown.stdout


def test_usage_errors_point_at_the_subcommands_help(tmp_path):
    bogus = _rlm(tmp_path, "run", "hi", "--bogus")
    assert bogus.returncode == 2
    assert bogus.stderr.strip() == ("rlm: error: Unknown option: --bogus (did you mean --verbose?): "
                                    "see `rlm run --help`")
    sub = _rlm(tmp_path, "logs", "prune", "--bogus")
    assert sub.returncode == 2 and "see `rlm logs prune --help`" in sub.stderr and "Traceback" not in sub.stderr


def test_the_help_cache_knows_config_and_each_command_shows_its_docstring(tmp_path):
    work = tmp_path / "work"  # `python -m rlm` puts the working directory on sys.path: the cache watches it
    work.mkdir()
    os.utime(work, (1_700_000_000, 1_700_000_000))  # not "modified in the last 2 s": the text may be stored
    first = _rlm(tmp_path, "--help", cwd=work)
    cached = list((tmp_path / "cache" / "rlm" / "help").glob("*.txt"))
    second = _rlm(tmp_path, "--help", cwd=work)  # from the cache now
    assert first.returncode == second.returncode == 0 and first.stdout == second.stdout
    assert cached and "show (run `rlm config --help`)" in cached[0].read_text()
    assert "config" in second.stdout and "show (run `rlm config --help`)" in second.stdout
    assert "rlm.commands.config:show" in cached[0].read_text()  # the command is dispatched from the cache
    shown = _rlm(tmp_path, "config", "show", "--json", cwd=work)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["rlm"]["model"]["source"] == "default"
    help_run = _rlm(tmp_path, "run", "--help", cwd=work)
    assert help_run.returncode == 0 and "Exit codes: 0 answered" in help_run.stdout
    assert "--model -m" in help_run.stdout and "--config -c" in help_run.stdout
