"""Provider faults, injected through rlm_testing's scripted server over real HTTP, for the three routes of
a model string: ``gpt-4o-mini`` (litellm), ``openai/gpt-4o-mini`` (the openai SDK) and
``anthropic/claude-sonnet-4-6`` (the anthropic SDK), each with ``api_base`` in rlm.toml.

What must hold for every fault: the run does not take it for an answer.  ``rlm run`` exits 4 (a backend
error) with one ``rlm: error:`` line on stderr naming the cause and the fix, no traceback, and the
trajectory (``logs/<id>.jsonl``) is valid JSON lines ending in ``run_end``; a fault the next attempt does
not repeat is retried and the run answers.

``rlm run`` does not stream, so the faults of a *stream* (cut before its end marker, stalled mid-answer,
an HTML page instead of events) are driven through ``RLM.stream`` (the public API; the orchestrator
streams the top-level call), asserting the error the run ends with (a BackendError: exit code 4), its one
line, and the trajectory.

Each test is quick: ``[plugins.backend-*] read_timeout`` is a fraction of a second and the retry backoff
is tiny, so a hung server costs a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rlm.errors
from rlm import cli
from rlm_testing.server import Reply, ScriptedLLMServer

pytest.importorskip("rlm_env_local")

#: (model, wire protocol, plugin section, plugin package, what the server's stream must end with)
ROUTES = [
    pytest.param(("gpt-4o-mini", "openai", "backend-litellm", "rlm_backend_litellm", "finish_reason"),
                 id="litellm"),
    pytest.param(("openai/gpt-4o-mini", "openai", "backend-openai", "rlm_backend_openai", "finish_reason"),
                 id="openai"),
    pytest.param(("anthropic/claude-sonnet-4-6", "anthropic", "backend-anthropic", "rlm_backend_anthropic",
                  "message_stop"), id="anthropic"),
]
#: Seconds an attempt waits for the server (the backends retry 3 times: 4 attempts).
READ_TIMEOUT = 0.5
ATTEMPTS = 4
QUESTION = "What is six times seven?"

#: litellm's pydantic deprecation noise
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@dataclass
class Route:
    model: str
    protocol: str
    section: str
    #: what a stream of this route must end with
    marker: str
    server: ScriptedLLMServer


@pytest.fixture(params=ROUTES)
def route(request, scripted_llm, tmp_path) -> Route:
    """A route with rlm.toml pointing at the scripted server."""
    model, protocol, section, package, marker = request.param
    pytest.importorskip(package)
    (tmp_path / "rlm.toml").write_text(
        "[rlm]\n"
        f'api_base = "{scripted_llm.base_url(protocol)}"\n'
        'environment = "local"\n'
        "\n"
        f"[plugins.{section}]\n"
        f"read_timeout = {READ_TIMEOUT}\n"
        "retry_base_delay = 0.01\n"
        "retry_max_delay = 0.02\n"
    )
    return Route(model=model, protocol=protocol, section=section, marker=marker, server=scripted_llm)


def run_cli(model: str, capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["run", QUESTION, "--model", model, "--timeout", "60", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    """The one ``rlm: error:`` line of stderr (and nothing like a traceback around it)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("rlm: error:")]
    assert len(lines) == 1, f"expected one error line on stderr:\n{err}"
    assert err.count("rlm: error:") == 1, err
    return lines[0]


def trajectory(directory: Path, trajectory_id: str | None = None) -> list[dict]:
    """The run's events (``logs/<id>.jsonl``, or the only trajectory there): every line JSON, the last run_end."""
    if trajectory_id is None:
        (path,) = (directory / "logs").glob("*.jsonl")
    else:
        path = directory / "logs" / f"{trajectory_id}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    assert events and events[0]["type"] == "run_start", [e["type"] for e in events]
    assert events[-1]["type"] == "run_end", [e["type"] for e in events]
    return events


def assert_backend_error(code: int, err: str, tmp_path: Path, *words: str) -> str:
    assert code == rlm.errors.BackendError.exit_code == 4, err
    line = error_line(err)
    for word in words:
        assert word in line, f"{word!r} not in: {line}"
    events = trajectory(tmp_path)
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[-1]["where"] == "llm_call", errors
    return line


# --- rlm run: answers that are not answers --------------------------------------------------


def test_body_cut_in_half_is_exit_4(route, capsys, tmp_path):
    route.server.script([Reply.truncated("The answer is 42.")] * ATTEMPTS)
    code, out, err = run_cli(route.model, capsys)
    assert_backend_error(code, err, tmp_path, "not valid JSON", "api_base")
    assert out == ""


def test_html_page_is_exit_4_and_not_retried(route, capsys, tmp_path):
    route.server.script([Reply.html(), Reply.text("must not be reached")])
    code, out, err = run_cli(route.model, capsys)
    line = assert_backend_error(code, err, tmp_path, "sent an HTML page ('Sign in') instead of an API response",
                                "check that api_base points at an")
    assert route.server.url in line and out == ""
    assert len(route.server.requests) == 1, "a wrong api_base does not get better by retrying"


def test_empty_answer_is_exit_4(route, capsys, tmp_path):
    route.server.script([Reply.empty()] * ATTEMPTS)
    code, out, err = run_cli(route.model, capsys)
    content = "content: []" if route.protocol == "anthropic" else "content: null"
    assert_backend_error(code, err, tmp_path, f"sent an answer with no content ({content}",
                         f"gave up after {ATTEMPTS} attempts")
    assert out == ""


def test_one_empty_answer_is_retried(route, capsys, tmp_path):
    route.server.script([Reply.empty(), Reply.text("42")])
    code, out, err = run_cli(route.model, capsys)
    assert code == 0, err
    assert out.strip() == "42"
    assert len(route.server.requests) == 2
    trajectory(tmp_path)


# --- rlm run: a server that stops answering -------------------------------------------------


def test_hung_server_is_exit_4_after_the_read_timeouts(route, capsys, tmp_path):
    route.server.script([Reply.hang()] * ATTEMPTS)
    started = time.monotonic()
    code, out, err = run_cli(route.model, capsys)
    took = time.monotonic() - started
    assert_backend_error(code, err, tmp_path, f"did not answer within the {READ_TIMEOUT:g}s timeout",
                         f"gave up after {ATTEMPTS} attempts", f"raise [plugins.{route.section}] read_timeout")
    assert out == ""
    assert len(route.server.requests) == ATTEMPTS, "each read timeout is retried like a connection failure"
    assert took < 30, f"a hung server held the run for {took:.0f}s (the run's timeout is 60s)"


def test_hung_server_is_retried_and_the_run_answers(route, capsys, tmp_path):
    route.server.script([Reply.hang(), Reply.text("42")])
    code, out, err = run_cli(route.model, capsys)
    assert code == 0, err
    assert out.strip() == "42"
    assert len(route.server.requests) == 2
    trajectory(tmp_path)


def test_body_stalled_mid_answer_is_exit_4(route, capsys, tmp_path):
    route.server.script([Reply.stalled("The answer is 42.")] * ATTEMPTS)
    code, out, err = run_cli(route.model, capsys)
    assert_backend_error(code, err, tmp_path, "timeout", f"raise [plugins.{route.section}] read_timeout")
    assert out == ""


# --- streams (RLM.stream: the CLI does not stream) -------------------------------------------


def stream_run(model: str) -> tuple[list[str], Any]:
    """The pieces ``RLM.stream`` passed on, and the run's CompletionResult."""
    from rlm import RLM

    async def go() -> tuple[list[str], Any]:
        client = RLM(model=model, environment="local", timeout=60)
        pieces: list[str] = []
        try:
            async for piece in client.stream(QUESTION):
                pieces.append(piece)
        finally:
            await client.aclose()
        return pieces, client.last_result

    return asyncio.run(go())


def assert_stream_error(result: Any, tmp_path: Path, *words: str) -> str:
    """The run ended with a backend error (exit code 4 at the CLI), one line, and a complete trajectory."""
    assert result.error_type, f"the run answered {result.response!r}"
    error_class = getattr(rlm.errors, result.error_type)
    assert issubclass(error_class, rlm.errors.BackendError) and error_class.exit_code == 4
    message = str(result.error)
    assert "\n" not in message and "Traceback" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    assert not result.response
    events = trajectory(tmp_path, result.trajectory_id)
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[-1]["where"] == "llm_call", errors
    return message


def test_stream_cut_after_text_is_an_error(route, tmp_path):
    route.server.script([Reply.truncated("The answer is forty"), Reply.text("must not be reached")])
    pieces, result = stream_run(route.model)
    assert_stream_error(result, tmp_path, "ended the stream before the answer was complete",
                        f"(no {route.marker})")
    assert "".join(pieces) == "The answer is forty", "the text went out as it came"
    assert len(route.server.requests) == 1, "text went out to the caller: the stream is not retried"


def test_stream_cut_before_any_text_is_retried(route, tmp_path):
    route.server.script([Reply.truncated("", keep=1), Reply.text("42")])
    pieces, result = stream_run(route.model)
    assert result.error is None, result.error
    assert result.response == "42" and "".join(pieces) == "42"
    assert len(route.server.requests) == 2
    trajectory(tmp_path, result.trajectory_id)


def test_stream_stalled_mid_answer_is_an_error(route, tmp_path):
    route.server.script([Reply.stalled("The answer is forty"), Reply.text("must not be reached")])
    started = time.monotonic()
    _, result = stream_run(route.model)
    assert time.monotonic() - started < 30
    assert_stream_error(result, tmp_path, f"did not answer within the {READ_TIMEOUT:g}s timeout",
                        f"raise [plugins.{route.section}] read_timeout")
    assert len(route.server.requests) == 1


def test_stream_html_page_is_an_error(route, tmp_path):
    route.server.script([Reply.html(), Reply.text("must not be reached")])
    pieces, result = stream_run(route.model)
    assert_stream_error(result, tmp_path, "sent an HTML page ('Sign in') instead of an API response")
    assert pieces == [] and len(route.server.requests) == 1
