"""Odd input never crashes (issue 18): each case plants the real thing and checks the behaviour.

- configuration: nan/inf (and nonsense negatives) in every float setting, from rlm.toml,
  ``RLM_*`` variables, keyword arguments, CLI flags and plugin tables; an rlm.toml that is
  not UTF-8 (also in ``rlm doctor``): one line naming the key (or file) and the fix, exit 2;
- trajectory readers: a torn multi-byte tail, undecodable bytes and non-event lines are
  skipped and counted, ``rlm logs`` says how many on one stderr line;
- tool outputs and events: a file name that is not UTF-8 on disk (made through a bytes
  path), lone surrogates in any event field or tool result: escaped, never a crash;
- prompts with a lone surrogate (or an undecodable byte from argv): an ``InputError``
  (exit 2) before anything starts.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from rlm import hookimpl
from rlm.backend import (
    BackendCapabilities,
    LLMRequest,
    LLMResponse,
    StreamEnd,
    TextDelta,
)
from rlm.config import (
    RLMConfig,
    check_cli_numbers,
    first_surrogate,
    load_config,
    read_toml,
)
from rlm.errors import ConfigError, InputError, RLMError, ToolError
from rlm.paths import confine
from rlm.plugins import create_plugin_manager
from rlm.standard_tools import ESCAPED_NAMES_NOTICE, file_read, list_files
from rlm.tools import tool
from rlm.trajectory import (
    JsonlSink,
    Recorder,
    escape_surrogates,
    escape_surrogates_deep,
    read_trajectory,
    read_trajectory_file,
)
from rlm.types import FinalSignal, Message, REPLResult, TextPart, ToolCall, Usage

#: The float settings of [rlm]; each must refuse nan and inf.
FLOAT_KEYS = [f.name for f in attrs.fields(RLMConfig) if f.type in ("float", "float | None")]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("RLM_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def _config_error(**kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)
    return info.value


def _non_utf8_dir(tmp_path: Path) -> Path:
    """``data/`` holding ``caf\\xe9.txt`` (Latin-1, not UTF-8) and ``ok.txt``, made through bytes paths."""
    data = tmp_path / "data"
    data.mkdir()
    with open(os.path.join(os.fsencode(data), b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"latin-1 named\n")
    (data / "ok.txt").write_text("fine\n")
    return data


def _lines_are_events(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    text = raw.decode("utf-8")  # strict: the file is valid UTF-8
    events = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in events)
    return events


# --- 1. configuration ------------------------------------------------------------------------


def test_the_float_keys_are_the_ones_the_issue_names():
    assert {"timeout", "cost_limit", "env_timeout", "session_cost_cap"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_environment_variable_nan_or_inf_is_refused(key, value):
    message = str(_config_error(use_file=False, env={f"RLM_{key.upper()}": value}))
    assert message.startswith(f"environment variable RLM_{key.upper()}: must be a finite number, got {value!r}")
    assert "leave the key unset" in message


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "+inf"])
def test_rlm_toml_nan_or_inf_is_refused(tmp_path, key, literal):
    path = tmp_path / "rlm.toml"
    path.write_text(f"[rlm]\n{key} = {literal}\n", encoding="utf-8")
    message = str(_config_error(path=path, env={}))
    assert message.startswith(f"rlm.toml: [rlm] {key}: must be a finite number")


@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_keyword_nan_is_refused(key):
    message = str(_config_error(use_file=False, env={}, **{key: math.nan}))
    assert message.startswith(f"keyword argument {key}: must be a finite number")


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_config_built_in_python_is_checked_by_rlm(value):
    from rlm import RLM

    with pytest.raises(ConfigError, match="timeout: must be a finite number"):
        RLM(config=RLMConfig(timeout=value), plugin_manager=create_plugin_manager(entry_points=False))


@pytest.mark.parametrize(("literal", "expected"), [
    ("nan", "input_per_mtok: must be a finite number, got nan"),
    ("inf", "input_per_mtok: must be a finite number, got inf"),
    ("-1.5", "input_per_mtok: must be a finite number of USD, 0 or more, got -1.5"),
])
def test_pricing_values_must_be_finite_and_not_negative(tmp_path, literal, expected):
    path = tmp_path / "rlm.toml"
    path.write_text(f'[pricing."m"]\ninput_per_mtok = {literal}\noutput_per_mtok = 1.0\n', encoding="utf-8")
    message = str(_config_error(path=path, env={}))
    assert message.startswith('rlm.toml: [pricing."m"] ') and expected in message


@pytest.mark.parametrize(("env", "expected"), [
    ({"RLM_DOCKER_CPUS": "-1"}, "environment variable RLM_DOCKER_CPUS: must be more than 0 CPUs"),
    ({"RLM_DOCKER_CPUS": "0"}, "environment variable RLM_DOCKER_CPUS: must be more than 0 CPUs"),
    ({"RLM_CONTEXT_WINDOW": "-5"}, "environment variable RLM_CONTEXT_WINDOW: must be at least 1 token"),
    ({"RLM_SESSION_COST_CAP": "-1"}, "environment variable RLM_SESSION_COST_CAP: must be more than 0 USD"),
    ({"RLM_ENV_TIMEOUT": "-3"}, "environment variable RLM_ENV_TIMEOUT: must be more than 0 seconds"),
])
def test_negative_values_where_they_make_no_sense(env, expected):
    assert str(_config_error(use_file=False, env=env)).startswith(expected)


@attrs.define(frozen=True, kw_only=True)
class DemoSection:
    """A plugin's config section with a float option."""

    retry_delay: float = 1.0


def test_plugin_float_option_refuses_nan_from_environment_and_file(tmp_path):
    env = {"RLM_PLUGINS__DEMO__RETRY_DELAY": "nan"}
    message = str(_config_error(use_file=False, env=env, sections={"demo": DemoSection}))
    assert message.startswith("environment variable RLM_PLUGINS__DEMO__RETRY_DELAY: must be a finite number")
    path = tmp_path / "rlm.toml"
    path.write_text("[plugins.demo]\nretry_delay = inf\n", encoding="utf-8")
    message = str(_config_error(path=path, env={}, sections={"demo": DemoSection}))
    assert message.startswith("rlm.toml: [plugins.demo] retry_delay: must be a finite number")


def test_finite_values_still_load(tmp_path):
    config = load_config(use_file=False, env={"RLM_TIMEOUT": "12.5", "RLM_COST_LIMIT": "0.25",
                                              "RLM_ENV_TIMEOUT": "3"})
    assert (config.timeout, config.cost_limit, config.env_timeout) == (12.5, 0.25, 3.0)


def test_rlm_toml_that_is_not_utf8_is_one_line_naming_byte_and_line(tmp_path):
    path = tmp_path / "rlm.toml"
    path.write_bytes(b'[rlm]\nmodel = "caf\xe9"\n')  # Latin-1
    error = _config_error(path=path, env={})
    assert str(error) == f"{path}: is not valid UTF-8 (byte 0xe9 on line 2): save the file as UTF-8"
    assert error.__cause__ is None and error.__suppress_context__  # no chained traceback to print


def test_rlm_toml_in_utf16_says_so(tmp_path):
    path = tmp_path / "rlm.toml"
    path.write_bytes('[rlm]\nmax_depth = 2\n'.encode("utf-16"))
    assert str(_config_error(path=path, env={})) == f"{path}: is UTF-16 text, not UTF-8: save the file as UTF-8"


def test_rlm_toml_with_a_utf8_bom_is_read(tmp_path):
    path = tmp_path / "rlm.toml"
    path.write_bytes(b"\xef\xbb\xbf[rlm]\nmax_depth = 2\n")
    assert read_toml(path) == {"rlm": {"max_depth": 2}}


def test_text_settings_with_undecodable_bytes_are_refused():
    message = str(_config_error(use_file=False, env={"RLM_MODEL": "caf\udce9"}))
    assert message == ("environment variable RLM_MODEL: is not valid UTF-8 text "
                       "(an undecodable byte 0xe9 at character 3): set it as UTF-8 text")


@pytest.mark.parametrize(("flags", "expected"), [
    ({"timeout": math.nan}, "--timeout nan: must be a finite number more than 0: give seconds"),
    ({"cost_limit": math.inf}, "--cost-limit inf: must be a finite number more than 0: give USD"),
    ({"cost_limit": -1.0}, "--cost-limit -1.0: must be a finite number more than 0"),
    ({"token_budget": 0}, "--token-budget 0: must be a whole number more than 0"),
    ({"max_depth": -1}, "--max-depth -1: must be a whole number 0 or more"),
])
def test_cli_number_flags_are_checked(flags, expected):
    with pytest.raises(ConfigError) as info:
        check_cli_numbers(**flags)
    assert str(info.value).startswith(expected) and info.value.exit_code == 2


def test_cli_number_flags_accept_sane_values():
    check_cli_numbers(timeout=5.0, cost_limit=0.01, token_budget=10, max_depth=0, max_turns=None)


@pytest.mark.parametrize(("args", "expected"), [
    (("run", "hi", "--timeout", "nan"), "rlm: error: --timeout nan: must be a finite number more than 0"),
    (("run", "hi", "--cost-limit", "inf"), "rlm: error: --cost-limit inf: must be a finite number more than 0"),
    (("agent", "hi", "--timeout", "-inf"), "rlm: error: --timeout -inf: must be a finite number more than 0"),
    (("agent", "hi", "--cost-limit", "nan"), "rlm: error: --cost-limit nan: must be a finite number more than 0"),
])
def test_cli_flags_nan_inf_exit_2_with_one_line(rlm_cli, args, expected):
    result = rlm_cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(expected) and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_run_with_non_utf8_rlm_toml_is_one_line(rlm_cli, project):
    (project / "rlm.toml").write_bytes(b'[rlm]\nmodel = "caf\xe9"\n')
    result = rlm_cli("run", "hi")
    assert result.returncode == 2
    assert result.stderr == (f"rlm: error: {project / 'rlm.toml'}: is not valid UTF-8 (byte 0xe9 on line 2): "
                             "save the file as UTF-8\n")


def test_doctor_reports_a_non_utf8_rlm_toml_as_a_finding(rlm_cli, project):
    (project / "rlm.toml").write_bytes(b'[rlm]\nmodel = "caf\xe9"\n')
    result = rlm_cli("doctor")
    assert result.returncode == 1  # doctor's own contract: a real problem exits 1
    assert f"[FAIL] {project / 'rlm.toml'}: is not valid UTF-8 (byte 0xe9 on line 2)\n" \
           f"       fix: fix or delete {project / 'rlm.toml'}; save the file as UTF-8" in result.stdout
    assert "no rlm.toml found" not in result.stdout  # no check describing the stand-in defaults
    assert "Traceback" not in result.stdout + result.stderr


# --- 2. trajectory readers -------------------------------------------------------------------


def _event(kind: str, **fields: Any) -> bytes:
    base = {"type": kind, "trajectory_id": "t1", "call_id": "c", "depth": 0, "timestamp": 1_700_000_000.0}
    return (json.dumps({**base, **fields}, ensure_ascii=False) + "\n").encode("utf-8")


def _write_trajectory(path: Path, *extra: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_event("run_start", prompt="héllo", model="m")
                     + _event("llm_call", token_usage={"total": 7}, cost=0.001, response="café")
                     + _event("run_end", response="café", token_usage={"total": 7}, cost=0.001)
                     + b"".join(extra))


def _torn_tail() -> bytes:
    """An event line cut after the first byte of a 3-byte character, as a crash mid-write leaves it."""
    full = _event("llm_call", response="caf\u00e9 \u6f22\u5b57")
    torn = full[: full.rindex("\u5b57".encode()) + 1]
    with pytest.raises(UnicodeDecodeError):
        torn.decode("utf-8")
    return torn


def test_a_torn_multibyte_tail_is_skipped_and_counted(tmp_path):
    path = tmp_path / "t.jsonl"
    _write_trajectory(path, _torn_tail())
    read = read_trajectory_file(str(path))
    assert [e["type"] for e in read.events] == ["run_start", "llm_call", "run_end"] and read.skipped == 1
    assert read_trajectory(str(path)) == read.events


def test_undecodable_and_non_event_lines_are_skipped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(_event("run_start", prompt="x") + b'{"type": "llm_call", "response": "\xff\xfe"}\n'
                     + b'"a string"\n[1, 2]\n{"no_type": 1}\n{bad json\n' + _event("run_end", response="ok"))
    read = read_trajectory_file(str(path))
    assert [e["type"] for e in read.events] == ["run_start", "run_end"] and read.skipped == 5


def test_a_surrogate_escape_in_the_json_is_read_as_printable_text(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"type": "run_start", "prompt": "a\\udcffb \\ud800 \\ud83d\\ude00"}\n')
    (event,) = read_trajectory(str(path))
    assert event["prompt"] == "a\\xffb \\ud800 \U0001f600"
    event["prompt"].encode("utf-8")


def test_rlm_logs_skips_a_torn_tail_and_says_so_on_one_line(rlm_cli, project):
    logs = project / "logs"
    _write_trajectory(logs / "20250101-000000-aaaa.jsonl", _torn_tail())
    (logs / "20250101-000001-bbbb.jsonl").write_bytes(_event("run_start", prompt="p") + b"\xff\xfe\n")
    listing = rlm_cli("logs")
    assert listing.returncode == 0, listing.stderr
    assert listing.stderr == ("rlm: warning: skipped 2 unreadable lines in 2 trajectories "
                              "(torn by a crash, not UTF-8, or not a JSON event)\n")
    assert "20250101-000000-aaaa" in listing.stdout and "20250101-000001-bbbb" in listing.stdout
    shown = rlm_cli("logs", "20250101-000000")
    assert shown.returncode == 0 and "answer: café" in shown.stdout
    assert shown.stderr == ("rlm: warning: skipped 1 unreadable line of logs/20250101-000000-aaaa.jsonl "
                            "(torn by a crash, not UTF-8, or not a JSON event)\n")
    as_json = rlm_cli("logs", "20250101-000000", "--json")
    assert as_json.returncode == 0 and len(as_json.stderr.splitlines()) == 1
    assert [e["type"] for e in json.loads(as_json.stdout)] == ["run_start", "llm_call", "run_end"]


def test_rlm_logs_lists_a_trajectory_whose_file_name_is_not_utf8(rlm_cli, project):
    logs = project / "logs"
    logs.mkdir()
    with open(os.path.join(os.fsencode(logs), b"run-\xff.jsonl"), "wb") as fh:
        fh.write(_event("run_start", prompt="p") + _event("run_end", response="r"))
    result = rlm_cli("logs", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["trajectory_id"] == "run-\\xff" and row["status"] == "ok"
    assert rlm_cli("logs", "last").returncode == 0


def test_render_tree_survives_fields_of_unexpected_shapes():
    from rlm.commands.logs import render_tree

    events = [{"type": "run_start"}, {"type": "llm_call", "cost": "cheap", "depth": "deep"},
              {"type": "tool_results", "tool_results": [{"content": 1}]}, {"type": "call_start"},
              {"type": "run_end", "cost": None, "duration_ms": "slow"}]
    tree = render_tree(events)
    assert "llm_call event with unexpected fields" in tree and "run None" in tree


# --- 3. tool outputs and events --------------------------------------------------------------


def _ctx(root: Path) -> Any:
    return SimpleNamespace(config=SimpleNamespace(allowed_paths=(str(root),)))


def test_list_files_escapes_a_name_that_is_not_utf8(tmp_path):
    data = _non_utf8_dir(tmp_path)
    assert os.fsencode(data / "x").startswith(os.fsencode(data))  # the name really is bytes on disk
    assert b"caf\xe9.txt" in os.listdir(os.fsencode(data))
    out = asyncio.run(list_files.handler(ctx=_ctx(tmp_path), path="data"))
    assert out["entries"] == ["caf\\xe9.txt", "ok.txt"] and out["notice"] == ESCAPED_NAMES_NOTICE
    json.dumps(out, ensure_ascii=False).encode("utf-8")  # what every backend does with a tool result


def test_list_files_recursive_escapes_directory_names_too(tmp_path):
    os.makedirs(os.path.join(os.fsencode(tmp_path), b"d\xff", b"sub"))
    with open(os.path.join(os.fsencode(tmp_path), b"d\xff", b"sub", b"f\xfe.txt"), "wb"):
        pass
    out = asyncio.run(list_files.handler(ctx=_ctx(tmp_path), path=".", recursive=True))
    assert "d\\xff/sub/f\\xfe.txt" in out["entries"] and "d\\xff/" in out["entries"]


def test_list_files_of_plain_names_has_no_notice(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    out = asyncio.run(list_files.handler(ctx=_ctx(tmp_path), path="."))
    assert out == {"path": ".", "entries": ["a.txt"], "truncated": False}


def test_file_read_and_list_files_accept_the_escaped_name(tmp_path):
    _non_utf8_dir(tmp_path)
    out = asyncio.run(file_read.handler(ctx=_ctx(tmp_path), path="data/caf\\xe9.txt"))
    assert out["content"] == "latin-1 named\n" and out["path"] == "data/caf\\xe9.txt"
    os.makedirs(os.path.join(os.fsencode(tmp_path), b"dir\xe9"))
    listed = asyncio.run(list_files.handler(ctx=_ctx(tmp_path), path="dir\\xe9"))
    assert listed["entries"] == [] and listed["path"] == "dir\\xe9"


def test_file_read_of_a_name_that_exists_literally_is_unchanged(tmp_path):
    (tmp_path / "lit\\x41.txt").write_text("literal")
    (tmp_path / "litA.txt").write_text("unescaped")
    out = asyncio.run(file_read.handler(ctx=_ctx(tmp_path), path="lit\\x41.txt"))
    assert out["content"] == "literal"


@pytest.mark.parametrize(("path", "reason"), [("a\x00b", "NUL character"), ("\ud800.txt", "lone surrogate")])
def test_confine_refuses_paths_no_file_name_can_hold(tmp_path, path, reason):
    with pytest.raises(ToolError, match=reason):
        confine(path, [str(tmp_path)])


def test_tool_results_with_surrogates_are_escaped_sync_and_async():
    @tool
    def names() -> dict:
        """Names as os.listdir gives them."""
        return {"entries": ["caf\udce9", "ok"], "\udcff": ("\ud800",), "n": 3}

    @tool
    async def text() -> str:
        """Text with a lone surrogate."""
        return "x\udcffy"

    assert asyncio.run(names.handler()) == {"entries": ["caf\\xe9", "ok"], "\\xff": ("\\ud800",), "n": 3}
    assert asyncio.run(text.handler()) == "x\\xffy"


def test_escape_helpers():
    assert escape_surrogates("caf\udce9") == "caf\\xe9"
    assert escape_surrogates("\ud800!") == "\\ud800!"
    assert escape_surrogates("\ud83d\ude00") == "\U0001f600"  # a pair is one character
    plain = "héllo"
    assert escape_surrogates(plain) is plain
    value = {"a": [1, "b"]}
    assert escape_surrogates_deep(value) is value  # nothing to escape: not copied
    assert first_surrogate("ok") is None and first_surrogate("a\ud800") == "a lone surrogate U+D800 at character 1"


def test_the_trajectory_writer_never_raises_on_a_lone_surrogate(tmp_path):
    sink = JsonlSink(log_dir=str(tmp_path / "logs"))
    recorder = Recorder(trajectory_id="t-odd", sinks=[sink])

    class Odd:
        def __repr__(self) -> str:
            return "Odd(\udcff)"

    recorder.emit("run_start", prompt="\ud800 prompt", model="m\udce9")
    recorder.emit("tool_results", tool_results=[{"name": "list_files", "content": ["caf\udce9"]}],
                  **{"key\udcff": Odd()})
    recorder.emit("llm_call", messages=[Message.user("hi \udcff"), Message.user([TextPart(text="\ud800")])])
    sink.write({"type": "raw", "trajectory_id": "t-odd", "value": "raw \udcff", "obj": Odd()})  # no jsonable
    recorder.emit("run_end", response="done \udcff")
    recorder.close()
    assert not recorder._broken  # no sink was given up on
    events = _lines_are_events(tmp_path / "logs" / "t-odd.jsonl")
    assert [e["type"] for e in events] == ["run_start", "tool_results", "llm_call", "raw", "run_end"]
    assert events[0]["prompt"] == "\\ud800 prompt" and events[0]["model"] == "m\\xe9"
    assert events[1]["key\\xff"] == "Odd(\\xff)"
    assert events[3]["value"] == "raw \\xff" and events[4]["response"] == "done \\xff"
    assert recorder.events[-1]["response"] == "done \\xff"  # hooks and listeners see the same


# --- a whole run with the odd names (in-process fakes) -----------------------------------------


class ScriptBackend:
    """Native tool calls from a script of ``[ToolCall...]`` or text replies."""

    name = "script"

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[LLMRequest] = []

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(native_tools=True, preferred_protocol="tools", pricing_per_mtok=(0.0, 0.0))

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        for message in request.messages:  # what the HTTP layer of every SDK does
            json.dumps({"content": message.text}, ensure_ascii=False).encode("utf-8")
        item = self.script.pop(0)
        message = Message.assistant(item) if isinstance(item, str) else Message.assistant("", tool_calls=tuple(item))
        return LLMResponse(message=message, usage=Usage(input_tokens=10, output_tokens=5, cost_usd=0.0),
                           finish_reason="stop" if isinstance(item, str) else "tool_calls", model=request.model)

    async def stream(self, request: LLMRequest):
        response = await self.complete(request)
        yield TextDelta(text=response.message.text)
        yield StreamEnd(response=response)

    async def aclose(self) -> None:
        pass


class OddEnvironment:
    """A REPL stand-in whose output and FINAL value hold undecodable file names."""

    name = "odd"

    def __init__(self, *, settings: Any, callbacks: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        return REPLResult(output="['caf\udce9.txt']\n", final=FinalSignal(kind="final", value="caf\udce9.txt"))

    async def get_context(self) -> dict[str, str]:
        return {}

    async def get_variable(self, name: str) -> Any:
        raise KeyError(name)

    async def set_context(self, name: str, value: Any) -> None:
        pass

    async def clear_context(self) -> None:
        pass

    async def reset(self) -> None:
        pass

    async def close(self) -> None:
        pass


class ScriptPlugin:
    def __init__(self, backend: ScriptBackend) -> None:
        self.backend = backend

    @hookimpl
    def rlm_register_backends(self, register):
        register("script", lambda settings: self.backend, description="scripted")

    @hookimpl
    def rlm_register_environments(self, register):
        register("odd", OddEnvironment, description="tests only")


def _rlm(tmp_path: Path, script: list[Any], **settings: Any) -> tuple[Any, ScriptBackend]:
    from rlm import RLM

    backend = ScriptBackend(script)
    pm = create_plugin_manager(entry_points=False)
    pm.register(ScriptPlugin(backend), name="script-plugin")
    rlm = RLM(model="script-model", backend="script", environment="odd", plugin_manager=pm,
              log_dir=str(tmp_path / "logs"), allowed_paths=(str(tmp_path),), **settings)
    return rlm, backend


def test_a_run_that_lists_a_non_utf8_name_finishes_with_a_valid_trajectory(tmp_path):
    _non_utf8_dir(tmp_path)
    rlm, backend = _rlm(tmp_path, [[ToolCall(id="t1", name="list_files", arguments={"path": "data"})],
                                   "two files"])
    result = rlm.completion_sync("what is in data?")
    assert result.error is None and result.response == "two files", result.error
    tool_message = next(m for m in backend.requests[1].messages if m.role == "tool")
    assert json.loads(tool_message.text)["entries"] == ["caf\\xe9.txt", "ok.txt"]
    events = _lines_are_events(tmp_path / "logs" / f"{result.trajectory_id}.jsonl")
    assert events[-1]["type"] == "run_end"
    (results,) = [e for e in events if e["type"] == "tool_results"]
    assert "caf\\\\xe9.txt" in results["tool_results"][0]["content"]


def test_a_repl_output_and_final_with_undecodable_names_are_escaped(tmp_path):
    rlm, _ = _rlm(tmp_path, [[ToolCall(id="t1", name="execute_code", arguments={"code": "FINAL(x)"})]])
    result = rlm.completion_sync("name it")
    assert result.error is None and result.response == "caf\\xe9.txt", result.error
    result.response.encode("utf-8")
    events = _lines_are_events(tmp_path / "logs" / f"{result.trajectory_id}.jsonl")
    (execution,) = [e for e in events if e["type"] == "repl_execution"]
    assert execution["output"] == "['caf\\xe9.txt']\n" and events[-1]["type"] == "run_end"


# --- 4. prompts with a lone surrogate --------------------------------------------------------


@pytest.mark.parametrize(("prompt", "system", "expected"), [
    ("\ud800", None, "the prompt is not valid text: it holds a lone surrogate U+D800 at character 0"),
    ("ok \udcff", None, "the prompt is not valid text: it holds an undecodable byte 0xff at character 3"),
    ([TextPart(text="fine"), TextPart(text="x\udfff")], None,
     "the prompt is not valid text: it holds a lone surrogate U+DFFF at character 1"),
    ("fine", "sys \ud801", "the system prompt is not valid text: it holds a lone surrogate U+D801"),
])
def test_completion_refuses_a_prompt_with_a_lone_surrogate(tmp_path, prompt, system, expected):
    rlm, backend = _rlm(tmp_path, ["never"])
    with pytest.raises(InputError) as info:
        rlm.completion_sync(prompt, system=system)
    assert str(info.value).startswith(expected) and "errors='replace'" in str(info.value)
    assert info.value.exit_code == 2 and isinstance(info.value, RLMError)
    assert backend.requests == [] and not (tmp_path / "logs").exists()  # nothing started


def test_async_completion_and_stream_refuse_it_too(tmp_path):
    rlm, _ = _rlm(tmp_path, ["never"])

    async def main() -> None:
        with pytest.raises(InputError):
            await rlm.completion("\ud800")
        with pytest.raises(InputError):
            async for _ in rlm.stream("\udcff"):
                pass

    asyncio.run(main())


def test_agent_runner_refuses_it(tmp_path):
    from rlm.agent import AgentRunner

    backend = ScriptBackend(["never"])
    pm = create_plugin_manager(entry_points=False)
    pm.register(ScriptPlugin(backend), name="script-plugin")
    runner = AgentRunner(model="script-model", backend="script", environment="odd", plugin_manager=pm,
                         log_dir=str(tmp_path / "logs"))
    with pytest.raises(InputError, match="undecodable byte 0xe9"):
        asyncio.run(runner.run("caf\udce9"))
    assert backend.requests == []


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_agent_runner_refuses_nan_or_inf_limits_instead_of_clamping(value):
    from rlm.agent import AgentRunner

    with pytest.raises(ConfigError, match="keyword argument cost_limit: must be a finite number"):
        AgentRunner(cost_limit=value, plugin_manager=create_plugin_manager(entry_points=False))


@pytest.mark.parametrize("command", ["run", "agent"])
def test_cli_prompt_with_an_undecodable_byte_exits_2_with_one_line(rlm_cli, project, command):
    result = rlm_cli(command, "caf\udce9")  # argv bytes b"caf\xe9", as a Latin-1 terminal sends them
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("rlm: error: the prompt is not valid text: it holds an undecodable byte 0xe9 at "
                             "character 3: pass UTF-8 text (decode bytes with errors='replace' to keep the rest)\n")
    assert not (project / "logs").exists()


def test_jsonable_of_plain_and_odd_values():
    """Plain built-in values (taken first, by exact type) and their subclasses, attrs instances, bytes and
    lone surrogates come out the same JSON-ready way."""
    from collections import OrderedDict

    from rlm.trajectory import jsonable

    class Count(int):
        pass

    call = ToolCall(id="c1", name="noop", arguments={"k": (1, 2)})
    value = {"a": [1, 2.5, True, None, ("x", b"\x00\x01")], "\udcff": "bad \udcff", 3: call,
             "sub": OrderedDict(z=Count(7)), "set": frozenset({1})}
    out = jsonable(value)
    assert out == {"a": [1, 2.5, True, None, ["x", "<2 bytes>"]], "\\xff": "bad \\xff",
                   "3": {"id": "c1", "name": "noop", "arguments": {"k": [1, 2]}},
                   "sub": {"z": 7}, "set": [1]}
    assert json.loads(json.dumps(out)) == out
