"""Issue 19 through the real CLI, each backend's real SDK, the local sandbox and the scripted server:
a forced last reply that is only code is no answer (exit 6, ``success: false``, one line on stderr),
a forced FINAL is an answer (exit 0), and the same failing code twice raises the temperature the
provider is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlm import cli
from rlm_testing.server import Reply

ROUTES = [
    pytest.param("openai/gpt-4o-mini", "openai", "rlm_backend_openai", id="openai"),
    pytest.param("anthropic/claude-sonnet-4-6", "anthropic", "rlm_backend_anthropic", id="anthropic"),
    pytest.param("gpt-4o-mini", "openai", "rlm_backend_litellm", id="litellm"),
]

FAILING = "```repl\nimport no_such_module_here\n```"


def _setup(tmp_path: Path, base_url: str, package: str) -> None:
    pytest.importorskip(package)
    pytest.importorskip("rlm_env_local")
    (tmp_path / "rlm.toml").write_text(f'[rlm]\napi_base = "{base_url}"\nenvironment = "local"\nprotocol = "repl"\n')


def _forced(request: Any) -> bool:
    return "answer now" in json.dumps(request.body).lower()


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    files = sorted((tmp_path / "logs").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    events = [json.loads(line) for line in files[-1].read_text(encoding="utf-8").splitlines() if line.strip()]
    assert events[-1]["type"] == "run_end"
    return events


@pytest.mark.parametrize(("model", "protocol", "package"), ROUTES)
def test_a_forced_reply_that_is_only_code_exits_6(scripted_llm, tmp_path, capsys, model, protocol, package):
    _setup(tmp_path, scripted_llm.base_url(protocol), package)
    scripted_llm.script(lambda r: Reply.text("```python\nprint(sum(range(10)))\n```" if _forced(r)
                                             else "```repl\nprint(len(context))\n```"))
    code = cli.main(["run", "sum the numbers", "--model", model, "--max-turns", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 6, captured.err
    result = json.loads(captured.out)
    assert result["success"] is False and result["response"] == "" and result["limit_hit"] == "max_turns"
    errors = [line for line in captured.err.splitlines() if line.startswith("rlm: error:")]
    assert errors == [("rlm: error: no answer: Turn limit reached before the model answered (the model's last "
                       "reply was only code): increase max_turns or simplify the task")]
    assert "Traceback" not in captured.err
    assert _events(tmp_path)[-1]["error_type"] == "BudgetExceeded"


@pytest.mark.parametrize(("model", "protocol", "package"), ROUTES)
def test_a_forced_final_is_the_answer_exit_0(scripted_llm, tmp_path, capsys, model, protocol, package):
    _setup(tmp_path, scripted_llm.base_url(protocol), package)
    scripted_llm.script(lambda r: Reply.text("FINAL(42)" if _forced(r) else "```repl\nprint(len(context))\n```"))
    code = cli.main(["run", "answer", "--model", model, "--max-turns", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == "42\n" and "limit hit: max_turns" in captured.err


@pytest.mark.parametrize(("model", "protocol", "package"), ROUTES)
def test_the_same_failing_code_twice_raises_the_temperature_on_the_wire(scripted_llm, tmp_path, capsys, model,
                                                                         protocol, package):
    _setup(tmp_path, scripted_llm.base_url(protocol), package)
    replies = iter([FAILING, FAILING, "FINAL(gave it another try)"])
    scripted_llm.script(lambda r: Reply.text(next(replies)))
    code = cli.main(["run", "load it", "--model", model])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    bodies = [r.body for r in scripted_llm.requests]
    assert len(bodies) == 3
    assert "temperature" not in bodies[0] and "temperature" not in bodies[1]
    assert bodies[2]["temperature"] == 0.7
    assert "same code as before, and it failed again with:" in json.dumps(bodies[2])
    assert [e["runs"] for e in _events(tmp_path) if e["type"] == "repeated_code"] == [2]
