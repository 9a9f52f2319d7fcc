"""The executor extension point (:mod:`rlm.executors`): choosing one, the local executor, the batch id on
every run and output line, cost leases for remote executors, replaying a remote trajectory through the
driver's sinks, and what a worker is given."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from rlm import hookimpl
from rlm.budget import BudgetNode
from rlm.errors import ConfigError, InputError, PluginError
from rlm.executors import (BatchExecutor, CostLeases, LocalExecutor, open_executor, provider_environment,
                           worker_spec, write_events)
from rlm.plugins import create_plugin_manager
from rlm.trajectory import read_trajectory
from rlm.types import CompletionResult


def run_batch_file(rlm, tmp_path, lines, **kwargs):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    summary = asyncio.run(rlm.batch(source, out, **kwargs))
    return summary, [json.loads(line) for line in out.read_text().splitlines()]


# --- choosing an executor ---------------------------------------------------------------------


def test_local_is_the_builtin_default():
    pm = create_plugin_manager(entry_points=False)
    executor = open_executor(pm, "local", None)
    assert isinstance(executor, LocalExecutor) and isinstance(executor, BatchExecutor)


def test_an_executor_that_is_not_installed_names_the_installed_ones_and_the_install():
    pm = create_plugin_manager(entry_points=False)
    with pytest.raises(ConfigError) as info:
        open_executor(pm, "ray", None)
    assert "executor 'ray' is not installed (installed: local)" in str(info.value)
    assert info.value.fix == "pip install rlm-executor-ray"


def test_the_local_executor_refuses_an_address():
    with pytest.raises(ConfigError, match="runs in this process"):
        LocalExecutor(address="auto")


class _Broken:
    @hookimpl
    def rlm_register_executors(self, register):
        register("raises", lambda **kwargs: 1 / 0)
        register("not-one", lambda **kwargs: object())


def test_a_failing_or_wrong_executor_factory_is_a_plugin_error_naming_the_plugin():
    pm = create_plugin_manager(entry_points=False)
    pm.register(_Broken(), name="broken-executors")
    with pytest.raises(PluginError, match="'raises' from plugin 'broken-executors' failed to start: ZeroDivision"):
        open_executor(pm, "raises", None)
    with pytest.raises(PluginError, match="made a object, which has no async run"):
        open_executor(pm, "not-one", None)


def test_an_unknown_executor_or_a_bad_address_fails_before_anything_is_asked(make_rlm, tmp_path):
    rlm, backend = make_rlm(lambda request: "fine")
    with pytest.raises(ConfigError, match="executor 'nope' is not installed"):
        run_batch_file(rlm, tmp_path, [{"prompt": "a"}], executor="nope")
    with pytest.raises(InputError, match="is not an address"):
        run_batch_file(rlm, tmp_path, [{"prompt": "a"}], address=" ")
    assert backend.requests == [] and not (tmp_path / "out.jsonl").exists()


# --- the batch id ------------------------------------------------------------------------------


def test_every_run_and_line_of_a_batch_carries_its_id_and_a_resumed_batch_keeps_it(make_rlm, tmp_path):
    calls = []

    def script(request):
        calls.append(1)
        if "fails" in request.messages[-1].text and len(calls) < 3:
            raise __import__("rlm.errors", fromlist=["BackendError"]).BackendError("provider said no")
        return "ok " + request.messages[-1].text

    rlm, _backend = make_rlm(script)
    summary, lines = run_batch_file(rlm, tmp_path, [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "fails"}],
                                    concurrency=1)
    assert summary.batch_id and summary.batch_id.startswith("b-") and summary.failed == 1
    assert {line["batch_id"] for line in lines} == {summary.batch_id}
    for line in lines:
        if line["trajectory_id"]:
            start = read_trajectory(str(tmp_path / "logs" / f"{line['trajectory_id']}.jsonl"))[0]
            assert start["type"] == "run_start" and start["batch_id"] == summary.batch_id
    again, lines = run_batch_file(rlm, tmp_path, [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "fails"}])
    assert again.batch_id == summary.batch_id and (again.ok, again.skipped) == (1, 1)
    assert lines[-1]["id"] == "b" and lines[-1]["status"] == "ok" and lines[-1]["batch_id"] == summary.batch_id


def test_a_run_outside_a_batch_has_no_batch_id(make_rlm, tmp_path):
    rlm, _backend = make_rlm(lambda request: "fine")
    result = asyncio.run(rlm.completion("hi"))
    assert "batch_id" not in result.events[0]


# --- cost leases ---------------------------------------------------------------------------------


def test_leases_split_what_the_cap_leaves_among_the_free_slots():
    session = BudgetNode(name="session", cost_limit=1.0)
    leases = CostLeases(session, slots=4)
    first = leases.take()
    second = leases.take(run_cost_limit=0.1)
    assert first.amount == pytest.approx(0.25) and second.amount == pytest.approx(0.1)
    third = leases.take()
    assert third.amount == pytest.approx((1.0 - 0.35) / 2)
    leases.settle(first, CompletionResult(response="", trajectory_id="", total_cost_usd=0.05))
    assert session.cost_spent == pytest.approx(0.05)
    leases.settle(first, CompletionResult(response="", trajectory_id="", total_cost_usd=0.05))  # only once
    assert session.cost_spent == pytest.approx(0.05) and leases.outstanding == 2


def test_without_a_cap_a_lease_is_unlimited_and_still_counts_what_was_spent():
    session = BudgetNode(name="session")
    leases = CostLeases(session, slots=2)
    lease = leases.take()
    assert lease.amount is None
    leases.settle(lease, CompletionResult(response="", trajectory_id="", total_cost_usd=0.5, total_tokens=9))
    assert (session.cost_spent, session.tokens_spent, session.cost_reserved) == (0.5, 9, 0)


@pytest.mark.parametrize("reported", [None, float("nan"), float("inf"), -1.0, True, "0.01"])
def test_a_cost_that_is_not_a_finite_non_negative_number_charges_the_whole_lease(reported):
    session = BudgetNode(name="session", cost_limit=1.0)
    leases = CostLeases(session, slots=1)
    lease = leases.take()
    leases.settle(lease, CompletionResult(response="", trajectory_id="", total_cost_usd=reported))
    assert session.cost_spent == pytest.approx(1.0) and session.cost_reserved == pytest.approx(0.0)


@settings(deadline=None, max_examples=200)
@given(cap=st.floats(0.001, 10.0), slots=st.integers(1, 8),
       steps=st.lists(st.tuples(st.sampled_from(["take", "settle", "forfeit"]), st.floats(0.0, 1.0),
                                st.floats(0.0, 1.0)), max_size=60))
def test_leases_never_promise_more_than_the_cap(cap, slots, steps):
    """A worker spends at most its lease (its session cap makes it so); whatever the order of takes, settles
    and deaths, what is spent plus what is leased out never exceeds the cap."""
    session = BudgetNode(name="session", cost_limit=cap)
    leases = CostLeases(session, slots=slots)
    open_leases = []
    for action, pick, fraction in steps:
        if action == "take" and len(open_leases) < slots:
            open_leases.append(leases.take(run_cost_limit=None if pick < 0.5 else pick))
        elif open_leases:
            lease = open_leases.pop(int(pick * len(open_leases)) % len(open_leases))
            if action == "settle":
                leases.settle(lease, CompletionResult(response="", trajectory_id="",
                                                      total_cost_usd=lease.amount * fraction))
            else:
                leases.forfeit(lease)
        outstanding = sum(lease.amount for lease in open_leases)
        assert session.cost_spent + outstanding <= cap * (1 + 1e-9) + 1e-12
        assert math.isclose(session.cost_reserved, outstanding, rel_tol=1e-9, abs_tol=1e-12)
    for lease in open_leases:
        leases.forfeit(lease)
    assert session.cost_spent <= cap * (1 + 1e-9) and abs(session.cost_reserved) < 1e-9


# --- what a remote executor uses ------------------------------------------------------------------


def test_a_remote_trajectory_is_written_through_the_drivers_sinks_and_hook(make_rlm, tmp_path):
    seen = []

    class Observer:
        @hookimpl
        def rlm_trajectory_event(self, event):
            seen.append(event["type"])

    rlm, _backend = make_rlm(lambda request: "fine")
    rlm.pm.register(Observer(), name="observer")
    events = [{"type": "run_start", "trajectory_id": "20261202-000000-abcdef12", "prompt": "p"},
              "not an event", {"type": 3, "trajectory_id": "x"}, {"type": "run_end", "trajectory_id": ""},
              {"type": "run_end", "trajectory_id": "20261202-000000-abcdef12", "response": "r"}]
    write_events(rlm, events)
    written = read_trajectory(str(tmp_path / "logs" / "20261202-000000-abcdef12.jsonl"))
    assert [e["type"] for e in written] == ["run_start", "run_end"] and seen == ["run_start", "run_end"]
    write_events(rlm, [])  # nothing to write: no file, no error


def test_a_worker_gets_the_effective_config_without_sinks_and_only_provider_variables(make_rlm, monkeypatch,
                                                                                           tmp_path):
    rlm, _backend = make_rlm(lambda request: "fine")
    rlm.config = __import__("attrs").evolve(rlm.config, session_cost_cap=2.0, max_turns=7)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-1")
    monkeypatch.setenv("MY_SERVICE_BASE_URL", "http://x")
    monkeypatch.setenv("HOME_SECRET", "no")
    spec = worker_spec(rlm)
    assert spec.config.trajectory_sinks == () and spec.config.session_cost_cap == 2.0
    assert spec.config.max_turns == 7 and spec.config.log_dir == str(tmp_path / "logs")
    assert spec.env["OPENAI_API_KEY"] == "sk-1" and spec.env["MY_SERVICE_BASE_URL"] == "http://x"
    assert "HOME_SECRET" not in spec.env and "sk-1" not in repr(spec)
    assert spec.cwd == str(tmp_path)
    assert worker_spec(rlm, env={}).env == {}
    assert provider_environment({"PATH": "/bin", "SNIPARA_API_KEY": "k", "RLM_MODEL": "m"}) == {"SNIPARA_API_KEY": "k"}


def test_a_tool_that_calls_exit_is_a_tool_error_not_the_end_of_the_batch(make_rlm, tmp_path):
    from rlm.tools import tool

    from .conftest import call

    @tool
    def quit_now() -> str:
        """Calls exit()."""
        raise SystemExit(4)

    @tool
    async def quit_async() -> str:
        """Calls exit() from a coroutine."""
        raise SystemExit(5)

    seen = []

    def script(request):
        tools = [m for m in request.messages if m.role == "tool"]
        if "leave" in request.messages[1].text and not tools:
            return [call("quit_now"), call("quit_async")]
        seen.extend(m.text for m in tools)
        return "fine"

    rlm, _backend = make_rlm(script, tools=[quit_now, quit_async])
    summary, lines = run_batch_file(rlm, tmp_path, [{"id": "q", "prompt": "leave"}, {"id": "a", "prompt": "stay"}])
    assert (summary.ok, summary.failed) == (2, 0) and {line["response"] for line in lines} == {"fine"}
    assert any("the tool called exit(4)" in text for text in seen)
    assert any("the tool called exit(5)" in text for text in seen)


def test_a_worker_host_rebuilds_the_rlm_once_and_runs_each_item_under_its_lease(make_rlm, tmp_path):
    from rlm.batch import BatchItem
    from rlm.executors import WorkerHost

    pricing = {"fake-model": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}
    driver, backend = make_rlm(lambda request: "fine", session_cost_cap=5.0, pricing=pricing)
    host = WorkerHost(worker_spec(driver, env={}), plugin_manager=driver.pm)

    async def go():
        free = await host.answer(BatchItem(id="a", index=0, prompt="one"), batch_id="b-000000000001", lease=None)
        built = host._rlm
        starved = await host.answer(BatchItem(id="b", index=1, prompt="two"), batch_id="b-000000000001",
                                    lease=1e-12)
        assert host._rlm is built  # built once, kept
        await host.aclose()
        return free, starved

    free, starved = asyncio.run(go())
    assert free.success and free.response == "fine" and free.events[0]["batch_id"] == "b-000000000001"
    assert not (tmp_path / "logs").exists()  # a worker writes no trajectory: the driver does
    assert starved.limit_hit == "session_cost_cap" and len(backend.requests) == 1  # refused before sending


def test_the_configured_executor_is_the_default_of_rlm_batch(make_rlm, tmp_path):
    rlm, backend = make_rlm(lambda request: "fine", executor="nope")
    with pytest.raises(ConfigError, match="executor 'nope' is not installed"):
        run_batch_file(rlm, tmp_path, [{"prompt": "a"}])
    summary, _lines = run_batch_file(rlm, tmp_path, [{"prompt": "a"}], executor="local")  # the argument wins
    assert summary.ok == 1


def test_a_tool_with_its_own_handler_that_calls_exit_is_a_tool_error_too(make_rlm):
    from rlm.types import ToolSpec

    from .conftest import call

    async def handler(**kwargs):
        raise SystemExit(6)

    raw = ToolSpec(name="raw_quit", description="Calls exit().", parameters={"type": "object", "properties": {}},
                   handler=handler)
    seen = []

    def script(request):
        tools = [m for m in request.messages if m.role == "tool"]
        if not tools:
            return [call("raw_quit")]
        seen.extend(m.text for m in tools)
        return "still here"

    rlm, _backend = make_rlm(script, tools=[raw])
    result = asyncio.run(rlm.completion("go"))
    assert result.response == "still here" and any("the tool called exit(6)" in text for text in seen)
