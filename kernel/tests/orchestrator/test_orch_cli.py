"""``rlm run`` and ``rlm logs`` through the CLI entry point, with the fake backend plugged in."""

from __future__ import annotations

import json

from rlm import cli
from rlm.errors import AuthenticationError
from rlm.types import ToolCall

FAKE = ["--model", "fake-model", "--backend", "fake", "--env", "fake"]


def test_run_prints_the_answer_on_stdout_and_a_summary_on_stderr(cli_with_fake, capsys, tmp_path):
    backend = cli_with_fake([[ToolCall(id="a", name="execute_code", arguments={"code": "print(2+2)"})], "4"])
    code = cli.main(["run", "what is 2+2?", *FAKE, "--max-depth", "2", "--token-budget", "20000"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "4\n"
    assert "2 model calls, 1 tool calls" in err and "trajectory: logs/" in err
    assert len(list((tmp_path / "logs").glob("*.jsonl"))) == 1
    assert backend.requests[0].model == "fake-model"


def test_run_json_output(cli_with_fake, capsys):
    cli_with_fake(["done"])
    assert cli.main(["run", "x", *FAKE, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["response"] == "done" and data["success"] is True and "trajectory_id" in data


def test_no_sub_calls_flag(cli_with_fake, capsys):
    backend = cli_with_fake(["ok"])
    assert cli.main(["run", "x", *FAKE, "--no-sub-calls"]) == 0
    assert "rlm_sub_complete" not in {t.name for t in backend.requests[0].tools}


def test_backend_error_is_one_line_with_its_exit_code(cli_with_fake, capsys):
    cli_with_fake([AuthenticationError("Invalid API key", fix="check OPENAI_API_KEY")])
    code = cli.main(["run", "x", *FAKE])
    out, err = capsys.readouterr()
    assert code == 4 and out == ""
    assert "rlm: error: Invalid API key: check OPENAI_API_KEY" in err and "Traceback" not in err


def test_unknown_environment_is_a_clear_error(cli_with_fake, capsys):
    cli_with_fake(["x"])
    code = cli.main(["run", "x", "--model", "fake-model", "--backend", "fake", "--env", "nope"])
    err = capsys.readouterr().err
    assert code == 3 and "environment 'nope' is not installed (installed: fake)" in err
    assert "Traceback" not in err


def test_bad_option_value_is_a_usage_error(cli_with_fake, capsys):
    cli_with_fake(["x"])
    assert cli.main(["run", "x", *FAKE, "--max-depth", "deep"]) == 2


def test_logs_lists_and_shows_a_tree(cli_with_fake, capsys):
    cli_with_fake([[ToolCall(id="a", name="execute_code", arguments={"code": "print(1)"})], "one"])
    cli.main(["run", "count", *FAKE])
    capsys.readouterr()
    assert cli.main(["logs"]) == 0
    listing = capsys.readouterr().out
    assert "ok" in listing and "count" in listing and "fake-model" in listing
    assert cli.main(["logs", "last"]) == 0
    tree = capsys.readouterr().out
    assert "repl (ok" in tree and "execute_code" in tree and "answer: one" in tree
    assert cli.main(["logs", "last", "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert events[0]["type"] == "run_start"


def test_logs_with_no_runs(cli_with_fake, capsys):
    cli_with_fake([])
    assert cli.main(["logs"]) == 0
    assert "no trajectories" in capsys.readouterr().out
    assert cli.main(["logs", "zzz"]) == 2


def test_agent_command_prints_the_answer(cli_with_fake, capsys):
    backend = cli_with_fake([[ToolCall(id="a", name="execute_code", arguments={"code": "x = 2"})],
                             [ToolCall(id="b", name="FINAL_VAR", arguments={"name": "x"})]])
    code = cli.main(["agent", "compute x", *FAKE, "--max-iterations", "5", "--verbose"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "2\n"
    assert "final_var after 2 iteration(s)" in err and "model call 1: execute_code" in err
    assert "FINAL" in {t.name for t in backend.requests[0].tools}


def test_agent_command_clamps_and_reports_forced(cli_with_fake, capsys):
    def script(request):
        if request.tool_choice == "none":
            return "best effort"
        return [ToolCall(id="", name="execute_code", arguments={"code": "1"})]

    cli_with_fake(script)
    code = cli.main(["agent", "loop", *FAKE, "--max-iterations", "2"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "best effort\n" and "forced after 2 iteration(s)" in err
