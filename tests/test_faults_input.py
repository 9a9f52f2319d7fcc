"""Fault injection, odd input (issue 18): the real CLI (``rlm.cli.main``) with the installed
plugins, against ``rlm_testing``'s scripted server over real HTTP.

One test per bullet of "odd input never crashes":

1. nan/inf in a float setting (flag, environment variable, rlm.toml, pricing, a plugin's
   option) and an rlm.toml that is not UTF-8: exit 2, one stderr line, nothing started;
2. ``rlm logs`` (list, ``last``, ``--json``) over a trajectory with a torn multi-byte tail
   and undecodable bytes: exit 0, one warning line saying how many lines were skipped;
3. a file name that is not UTF-8 on disk, listed and read by the model through the
   openai, anthropic and litellm routes: the run finishes, the trajectory is valid;
4. a prompt holding an undecodable byte or a lone surrogate: exit 2 (``InputError`` from
   Python), one stderr line, nothing sent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rlm import cli
from rlm_testing.server import Reply

ROUTES = [
    pytest.param("openai/gpt-4o-mini", "openai", "rlm_backend_openai", id="openai"),
    pytest.param("anthropic/claude-sonnet-4-6", "anthropic", "rlm_backend_anthropic", id="anthropic"),
    pytest.param("gpt-4o-mini", "openai", "rlm_backend_litellm", id="litellm"),
]
OPENAI = ["--model", "openai/gpt-4o-mini"]


@pytest.fixture(autouse=True)
def _plugins():
    pytest.importorskip("rlm_backend_openai")
    pytest.importorskip("rlm_env_local")


def write_config(tmp_path: Path, base_url: str, extra: str = "") -> None:
    (tmp_path / "rlm.toml").write_text(f'[rlm]\napi_base = "{base_url}"\nenvironment = "local"\n{extra}',
                                       encoding="utf-8")


def one_error_line(err: str) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rlm: error: ")
    return lines[0]


def valid_trajectory(path: Path) -> list[dict]:
    """Every line JSON in valid UTF-8, the last event run_end."""
    events = [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]
    assert events and events[-1]["type"] == "run_end"
    return events


def printable(*texts: str) -> None:
    """What a real UTF-8 terminal would have to encode (capsys would accept lone surrogates)."""
    for text in texts:
        text.encode("utf-8")


# --- 1. configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "toml", "expected"),
    [
        (["run", "hi", "--timeout", "nan"], {}, "", "--timeout nan: must be a finite number more than 0"),
        (["run", "hi", "--cost-limit", "inf"], {}, "", "--cost-limit inf: must be a finite number more than 0"),
        (["agent", "hi", "--cost-limit", "inf"], {}, "", "--cost-limit inf: must be a finite number more than 0"),
        (["run", "hi"], {"RLM_ENV_TIMEOUT": "nan"}, "",
         "environment variable RLM_ENV_TIMEOUT: must be a finite number, got 'nan'"),
        (["run", "hi"], {"RLM_TIMEOUT": "inf"}, "", "environment variable RLM_TIMEOUT: must be a finite number"),
        (["run", "hi"], {}, "cost_limit = nan\n", "rlm.toml: [rlm] cost_limit: must be a finite number, got nan"),
        (["agent", "hi"], {}, "session_cost_cap = inf\n", "rlm.toml: [rlm] session_cost_cap: must be a finite"),
        (["run", "hi"], {}, '[pricing."gpt-4o-mini"]\ninput_per_mtok = nan\noutput_per_mtok = 1.0\n',
         'rlm.toml: [pricing."gpt-4o-mini"] input_per_mtok: must be a finite number'),
        (["run", "hi"], {}, "[plugins.backend-openai]\nretry_max_delay = inf\n",
         "rlm.toml: [plugins.backend-openai] retry_max_delay: must be a finite number"),
    ],
    ids=["flag-timeout", "flag-cost-limit", "agent-flag-cost-limit", "env-env-timeout", "env-timeout",
         "toml-cost-limit", "toml-session-cap", "toml-pricing", "toml-plugin-option"],
)
def test_nan_and_inf_settings_exit_2_with_one_line(scripted_llm, tmp_path, capsys, monkeypatch,
                                                   args, env, toml, expected):
    write_config(tmp_path, scripted_llm.openai_base_url, toml)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = cli.main([*args, *OPENAI])
    out, err = capsys.readouterr()
    assert code == 2, err
    line = one_error_line(err)
    assert expected in line and ("give" in line or "leave" in line)  # the fix is named
    assert out == "" and scripted_llm.requests == [] and not (tmp_path / "logs").exists()


def test_rlm_toml_that_is_not_utf8_is_one_line_in_run_and_doctor(scripted_llm, tmp_path, capsys):
    (tmp_path / "rlm.toml").write_bytes(b'[rlm]\nmodel = "caf\xe9"\n')  # Latin-1
    expected = f"{tmp_path / 'rlm.toml'}: is not valid UTF-8 (byte 0xe9 on line 2): save the file as UTF-8"
    assert cli.main(["run", "hi"]) == 2
    assert one_error_line(capsys.readouterr().err) == f"rlm: error: {expected}"
    assert cli.main(["doctor"]) == 1  # doctor reports it as a finding (its contract: problems exit 1)
    out, err = capsys.readouterr()
    assert f"[FAIL] {tmp_path / 'rlm.toml'}: is not valid UTF-8 (byte 0xe9 on line 2)" in out
    assert "Traceback" not in out + err
    assert scripted_llm.requests == [] and not (tmp_path / "logs").exists()


# --- 2. trajectory readers -------------------------------------------------------------------


def test_rlm_logs_skips_a_torn_tail_and_undecodable_bytes(scripted_llm, tmp_path, capsys):
    write_config(tmp_path, scripted_llm.openai_base_url)
    scripted_llm.script([Reply.text("42, café \u6f22\u5b57")])
    assert cli.main(["run", "answer", *OPENAI, "--json"]) == 0
    trajectory_id = json.loads(capsys.readouterr().out)["trajectory_id"]
    path = tmp_path / "logs" / f"{trajectory_id}.jsonl"
    valid_trajectory(path)
    # a crash mid-write cut a 3-byte character; another writer left Latin-1 bytes
    full = json.dumps({"type": "llm_call", "response": "\u6f22\u5b57"}, ensure_ascii=False).encode()
    with open(path, "ab") as fh:
        fh.write(b'{"type": "note", "text": "caf\xe9"}\n' + full[: full.rindex("\u5b57".encode()) + 1])
    warning = (f"rlm: warning: skipped 2 unreadable lines of logs/{trajectory_id}.jsonl "
               "(torn by a crash, not UTF-8, or not a JSON event)\n")

    assert cli.main(["logs"]) == 0
    out, err = capsys.readouterr()
    assert err == ("rlm: warning: skipped 2 unreadable lines in 1 trajectory "
                   "(torn by a crash, not UTF-8, or not a JSON event)\n")
    assert trajectory_id in out and " ok " in out
    assert cli.main(["logs", "last"]) == 0
    out, err = capsys.readouterr()
    assert err == warning and "answer: 42, café \u6f22\u5b57" in out
    assert cli.main(["logs", "last", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == warning
    events = json.loads(out)
    assert [e["type"] for e in events][-1] == "run_end" and events[-1]["response"] == "42, café \u6f22\u5b57"
    printable(out, err)


# --- 3. tool outputs and events ----------------------------------------------------------------


@pytest.mark.parametrize(("model", "protocol", "package"), ROUTES)
def test_a_file_name_that_is_not_utf8_does_not_end_the_run(scripted_llm, tmp_path, capsys, model, protocol,
                                                           package):
    pytest.importorskip(package)
    write_config(tmp_path, scripted_llm.base_url(protocol))
    data = tmp_path / "data"
    data.mkdir()
    with open(os.path.join(os.fsencode(data), b"caf\xe9.txt"), "wb") as fh:  # a Latin-1 name, on disk
        fh.write(b"latin-1 named\n")
    scripted_llm.script([
        Reply.tool_calls(("list_files", {"path": "data"})),
        Reply.tool_calls(("file_read", {"path": "data/caf\\xe9.txt"})),  # the name as the listing showed it
        Reply.text("it says: latin-1 named"),
    ])
    code = cli.main(["run", "what is in data?", "--model", model, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    result = json.loads(out)
    assert result["response"] == "it says: latin-1 named" and result["total_calls"] == 3
    listing, reading = (json.dumps(scripted_llm.requests[i].body) for i in (1, 2))
    assert "caf\\\\\\\\xe9.txt" in listing  # the escaped name reached the provider (JSON inside JSON)
    assert "latin-1 named" in reading  # and the model could read the file by that name
    events = valid_trajectory(tmp_path / "logs" / f"{result['trajectory_id']}.jsonl")
    results = [r for e in events if e["type"] == "tool_results" for r in e["tool_results"]]
    assert [r["name"] for r in results] == ["list_files", "file_read"]
    assert not any(r["is_error"] for r in results)
    printable(out, err)


# --- 4. prompts with a lone surrogate ----------------------------------------------------------


@pytest.mark.parametrize(("command", "prompt", "cause"), [
    ("run", "caf\udce9", "an undecodable byte 0xe9 at character 3"),  # argv b"caf\xe9" from a Latin-1 shell
    ("agent", "caf\udce9", "an undecodable byte 0xe9 at character 3"),
    ("run", "\ud800 hi", "a lone surrogate U+D800 at character 0"),
])
def test_a_prompt_that_is_not_valid_text_exits_2(scripted_llm, tmp_path, capsys, command, prompt, cause):
    write_config(tmp_path, scripted_llm.openai_base_url)
    code = cli.main([command, prompt, *OPENAI])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert one_error_line(err) == (f"rlm: error: the prompt is not valid text: it holds {cause}: "
                                   "pass UTF-8 text (decode bytes with errors='replace' to keep the rest)")
    assert out == "" and scripted_llm.requests == [] and not (tmp_path / "logs").exists()


def test_the_python_api_raises_input_error(scripted_llm, tmp_path):
    from rlm import RLM
    from rlm.errors import InputError

    write_config(tmp_path, scripted_llm.openai_base_url)
    rlm = RLM(model="openai/gpt-4o-mini")
    with pytest.raises(InputError, match="lone surrogate U[+]D800") as info:
        rlm.completion_sync("\ud800")
    assert info.value.exit_code == 2
    assert scripted_llm.requests == []
