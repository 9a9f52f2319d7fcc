"""``REPLResult.notice`` (e.g. "the session was restarted, variables are gone") reaches the model and the trajectory."""

from __future__ import annotations

import json

import attrs
import pytest

from rlm.trajectory import read_trajectory
from rlm.types import ToolCall

from .conftest import FakeEnvironment

NOTICE = "the worker was killed since the last call; the session was restarted: variables are gone"


@pytest.fixture
def noticing(monkeypatch):
    real = FakeEnvironment.execute

    async def execute(self, code, *, timeout=None):
        return attrs.evolve(await real(self, code, timeout=timeout), notice=NOTICE)

    monkeypatch.setattr(FakeEnvironment, "execute", execute)


def tc(name, **arguments):
    return ToolCall(id="", name=name, arguments=arguments)


def test_the_tool_result_and_the_event_carry_the_notice(make_rlm, tmp_path, noticing):
    rlm, backend = make_rlm([[tc("execute_code", code="print(1)")], "done"])
    result = rlm.completion_sync("go")
    tool_message = backend.requests[1].messages[-1]
    assert json.loads(tool_message.content)["notice"] == NOTICE
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    assert [e["notice"] for e in events if e["type"] == "repl_execution"] == [NOTICE]


def test_the_repl_protocol_feedback_starts_with_the_notice(make_rlm, noticing):
    rlm, backend = make_rlm(["```repl\nprint(1)\n```", "```repl\nFINAL(1)\n```"], protocol="repl")
    rlm.completion_sync("go")
    feedback = backend.requests[1].messages[-1].text
    assert f"[notice: {NOTICE}]" in feedback
