"""Exit codes the README promises that no other test checks, through the real CLI (``rlm.cli.main``),
the real openai backend and the scripted server over HTTP:

- 5: the sandbox cannot start (the local environment configured so that it cannot, or an environment
  plugin whose ``start()`` raises ``SandboxError``) or died for good (``execute()`` raises it);
- 1: no answer for another reason than a limit (the same failing code until ``MAX_REPEATS``; two
  replies without code that are empty);
- 3: two installed plugins claim one name.

Test plugins are installed the way pip leaves them: a module plus ``*.dist-info/entry_points.txt``
on ``sys.path``, found by the kernel's own entry-point scan. Each test asserts the exit status, what
reached the provider, ``--json``'s ``success`` where the run produced a result, and the trajectory.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rlm import cli
from rlm_testing.server import Reply

MODEL = "openai/gpt-4o-mini"
FAILING = "```repl\nimport no_such_module_here\n```"


# --- helpers -------------------------------------------------------------------------------------


class Site:
    """Fake installed distributions on ``sys.path`` (what pip leaves behind)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(self, dist: str, entry_points: Mapping[str, str], modules: Mapping[str, str]) -> None:
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            self.modules.append(module)
        info = self.root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8")
        lines = ["[rlm]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    for var in ("RLM_STRICT_PLUGINS", "RLM_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    fake = Site(root)
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)


#: An environment plugin: "cannot-start" raises SandboxError in start(); "dies" starts, then its
#: execute() raises SandboxError (the sandbox died and could not be brought back). Both count their
#: calls in files next to the project, so the test sees what the kernel asked of them.
ENV_PLUGIN = '''
    from pathlib import Path

    from rlm import hookimpl
    from rlm.errors import SandboxError
    from rlm.types import REPLResult

    COUNTS = Path(__file__).resolve().parent


    def _count(what):
        path = COUNTS / f"{what}.count"
        path.write_text(str(int(path.read_text()) + 1 if path.exists() else 1))


    class _Base:
        def __init__(self, *, settings, callbacks):
            self.settings, self.callbacks = settings, callbacks

        async def execute(self, code, *, timeout=None):
            _count("execute")
            return REPLResult(output="")

        async def get_context(self):
            return {}

        async def get_variable(self, name):
            raise KeyError(name)

        async def set_context(self, name, value):
            pass

        async def clear_context(self):
            pass

        async def reset(self):
            pass

        async def close(self):
            _count("close")


    class CannotStart(_Base):
        name = "cannot-start"

        async def start(self):
            _count("start")
            raise SandboxError("the test sandbox cannot start", fix="nothing to fix: a test")


    class Dies(_Base):
        name = "dies"

        async def start(self):
            _count("start")

        async def execute(self, code, *, timeout=None):
            _count("execute")
            raise SandboxError("the test sandbox died and could not be restarted", fix="nothing to fix: a test")


    @hookimpl
    def rlm_register_environments(register):
        register("cannot-start", CannotStart, description="start() raises SandboxError (tests)")
        register("dies", Dies, description="execute() raises SandboxError (tests)")
'''


def _config(tmp_path: Path, base_url: str, *, environment: str, protocol: str, extra: str = "") -> None:
    (tmp_path / "rlm.toml").write_text(f'[rlm]\napi_base = "{base_url}"\nenvironment = "{environment}"\n'
                                       f'protocol = "{protocol}"\n{extra}', encoding="utf-8")


def _trajectory(tmp_path: Path) -> list[dict[str, Any]]:
    files = sorted((tmp_path / "logs").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    assert len(files) == 1, files
    events = [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines() if line.strip()]
    assert events and events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"
    return events


def _count(site: Site, what: str) -> int:
    path = site.root / f"{what}.count"
    return int(path.read_text()) if path.exists() else 0


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = cli.main(["run", *args, "--model", MODEL, "--json"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, json.loads(captured.out), captured.err


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("rlm: error:")]


# --- 5: the sandbox cannot start or died for good ----------------------------------------------------


@pytest.mark.parametrize("how", ["missing-interpreter", "missing-os-layer"])
def test_a_local_sandbox_that_cannot_start_exits_5(scripted_llm, tmp_path, capsys, monkeypatch, how):
    """The real local environment, configured so that it cannot start: its worker interpreter does not
    exist, or (required by default on Linux) an OS isolation layer is missing."""
    pytest.importorskip("rlm_backend_openai")
    pytest.importorskip("rlm_env_local")
    extra = ""
    if how == "missing-interpreter":
        extra = f'[plugins.env-local]\npython = "{tmp_path / "no-such-python"}"\n'
    else:
        monkeypatch.setenv("RLM_ENV_LOCAL_PRETEND_MISSING", "landlock")
    _config(tmp_path, scripted_llm.openai_base_url, environment="local", protocol="repl", extra=extra)
    scripted_llm.script([Reply.text("FINAL(never asked)")])
    code, result, err = _run_json(capsys, "count the lines")
    assert code == 5, err
    assert result["success"] is False and result["response"] == ""
    assert result["error_type"] == "SandboxError"
    assert scripted_llm.requests == []  # the repl protocol starts the sandbox before the first call
    assert len(_errors(err)) == 1, err
    assert ("refuses to start" in err) == (how == "missing-os-layer")
    end = _trajectory(tmp_path)[-1]
    assert end["error_type"] == "SandboxError" and end["total_calls"] == 0


def test_an_environment_plugin_whose_start_fails_exits_5(scripted_llm, tmp_path, capsys, site):
    pytest.importorskip("rlm_backend_openai")
    site.add("rlm-test-sandboxes", {"test-sandboxes": "rlm_test_sandboxes"}, {"rlm_test_sandboxes": ENV_PLUGIN})
    _config(tmp_path, scripted_llm.openai_base_url, environment="cannot-start", protocol="repl")
    scripted_llm.script([Reply.text("FINAL(never asked)")])
    code, result, err = _run_json(capsys, "count the lines")
    assert code == 5, err
    assert result["success"] is False and result["error_type"] == "SandboxError"
    assert _count(site, "start") >= 1 and _count(site, "execute") == 0
    assert scripted_llm.requests == []
    assert _errors(err) == ["rlm: error: the test sandbox cannot start: nothing to fix: a test"]
    assert _trajectory(tmp_path)[-1]["error_type"] == "SandboxError"


def test_a_sandbox_that_died_for_good_exits_5_and_the_run_goes_no_further(scripted_llm, tmp_path, capsys, site):
    pytest.importorskip("rlm_backend_openai")
    site.add("rlm-test-sandboxes", {"test-sandboxes": "rlm_test_sandboxes"}, {"rlm_test_sandboxes": ENV_PLUGIN})
    _config(tmp_path, scripted_llm.openai_base_url, environment="dies", protocol="repl")
    scripted_llm.script(lambda request: Reply.text("```repl\nprint(len(context))\n```"))
    code, result, err = _run_json(capsys, "count the lines")
    assert code == 5, err
    assert result["success"] is False and result["error_type"] == "SandboxError"
    assert _count(site, "execute") == 1  # the first cell killed it ...
    assert len(scripted_llm.requests) == 1  # ... and no further turn was spent on a dead sandbox
    assert _count(site, "close") >= 1  # the environment is still closed at the end
    assert _trajectory(tmp_path)[-1]["error_type"] == "SandboxError"


def test_a_sandbox_that_cannot_start_exits_5_in_the_tools_protocol_too(scripted_llm, tmp_path, capsys, site):
    pytest.importorskip("rlm_backend_openai")
    site.add("rlm-test-sandboxes", {"test-sandboxes": "rlm_test_sandboxes"}, {"rlm_test_sandboxes": ENV_PLUGIN})
    _config(tmp_path, scripted_llm.openai_base_url, environment="cannot-start", protocol="tools")

    def script(request: Any) -> Reply:
        if "answer now" in json.dumps(request.body).lower():
            return Reply.text(" ")
        return Reply.tool_calls(("execute_code", {"code": "print(open('data.csv').read().count(chr(10)))"}))

    scripted_llm.script(script)
    code = cli.main(["run", "count the lines", "--model", MODEL, "--json", "--max-turns", "3"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 5, captured.err
    assert result["success"] is False and result["error_type"] == "SandboxError"
    assert len(scripted_llm.requests) == 1


# --- 1: no answer, and no limit stopped the run ---------------------------------------------------------


def test_the_same_failing_code_until_max_repeats_exits_1(scripted_llm, tmp_path, capsys):
    pytest.importorskip("rlm_backend_openai")
    pytest.importorskip("rlm_env_local")
    from rlm.orchestrator import MAX_REPEATS

    _config(tmp_path, scripted_llm.openai_base_url, environment="local", protocol="repl")
    scripted_llm.script(lambda request: Reply.text(FAILING))
    code, result, err = _run_json(capsys, "load it", "--max-turns", "20")
    assert code == 1, err
    assert result["success"] is False and result["response"] == "" and result["limit_hit"] is None
    assert len(scripted_llm.requests) == MAX_REPEATS + 1  # the remaining 16 turns are not spent
    assert len(_errors(err)) == 1
    events = _trajectory(tmp_path)
    assert [e["runs"] for e in events if e["type"] == "repeated_code"] == list(range(2, MAX_REPEATS + 2))
    assert [e["limit"] for e in events if e["type"] == "no_answer"] == [None]
    assert events[-1]["response"] == "" and events[-1]["error"] and events[-1]["limit_hit"] is None


@pytest.mark.parametrize("replies", [[" \n", "\n\n"], ["I think I need more data.", "I cannot determine the answer."]],
                         ids=["blank-twice", "give-up"])
def test_two_replies_without_code_and_no_answer_exit_1(scripted_llm, tmp_path, capsys, replies):
    """A reply with no text at all is retried by the backend (an empty answer, exit 4 once the retries
    are spent); a blank one reaches the loop, which nudges once and then finds no answer."""
    pytest.importorskip("rlm_backend_openai")
    pytest.importorskip("rlm_env_local")
    _config(tmp_path, scripted_llm.openai_base_url, environment="local", protocol="repl")
    scripted_llm.script([Reply.text(text) for text in replies])
    code, result, err = _run_json(capsys, "what is in the file?")
    assert code == 1, err
    assert result["success"] is False and result["response"] == "" and result["limit_hit"] is None
    assert len(scripted_llm.requests) == 2  # one nudge, then the second reply is judged
    assert len(_errors(err)) == 1
    events = _trajectory(tmp_path)
    assert [e["limit"] for e in events if e["type"] == "no_answer"] == [None]
    assert events[-1]["limit_hit"] is None and events[-1]["error"]


# --- 3: two plugins claim one name -------------------------------------------------------------------------


TWIN = '''
    from rlm import hookimpl


    class Twin:
        name = "twin"

        def __init__(self, *, settings, callbacks):
            raise AssertionError("never started: the name is claimed twice")


    @hookimpl
    def rlm_register_environments(register):
        register("twin", Twin, description="claimed by two plugins (tests)")
'''


@pytest.mark.parametrize("environment", ["twin", "local"])
def test_two_installed_plugins_claiming_one_name_exit_3(scripted_llm, tmp_path, capsys, site, environment):
    """Both distributions are found by the entry-point scan; the collision is an error whichever
    environment the run names (the user must not get one of the two at random)."""
    pytest.importorskip("rlm_backend_openai")
    site.add("rlm-twin-one", {"twin-one": "rlm_twin_one"}, {"rlm_twin_one": TWIN})
    site.add("rlm-twin-two", {"twin-two": "rlm_twin_two"}, {"rlm_twin_two": TWIN})
    _config(tmp_path, scripted_llm.openai_base_url, environment=environment, protocol="repl")
    scripted_llm.script([Reply.text("FINAL(never asked)")])
    code = cli.main(["run", "hi", "--model", MODEL, "--json"])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert scripted_llm.requests == []
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("*.jsonl"))
    errors = _errors(captured.err)
    assert len(errors) == 1 and "'twin-one'" in errors[0] and "'twin-two'" in errors[0]
    assert "Traceback" not in captured.err
