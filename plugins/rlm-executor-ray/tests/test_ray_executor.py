"""The ray executor on a real local Ray cluster (started by the tests), with the local sandbox and the real
OpenAI SDK against the scripted server: the same answers as the local executor, trajectories written by the
driver (``rlm logs`` lists them with the batch id), the cost cap across workers, a killed worker's item
tried again, a task that raises failing only its item, and ``rlm batch --executor ray`` starting and
stopping a cluster of its own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("rlm_backend_openai")
pytest.importorskip("rlm_env_local")

from rlm import RLM, cli  # noqa: E402
from rlm.tools import tool  # noqa: E402
from rlm_testing.server import Reply  # noqa: E402

MODEL = "openai/gpt-4o-mini"
PRICING = {"gpt-4o-mini": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (the executor uses the session this process opened)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith(("RLM_", "OPENAI_")) and key != "RLM_STRICT_PLUGINS":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.chdir(tmp_path)


@tool
def host_pid(file: str) -> str:
    """Appends the pid of the process running the item (the host of its sandbox) to ``file``."""
    with open(file, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return "noted"


def sandboxed(request):
    """Each item runs code in its sandbox first (the item's word, upper-cased), then answers with the output;
    where the RLM has the ``host_pid`` tool it also notes which process ran the item."""
    messages = request.body["messages"]
    outputs = [json.loads(m["content"]).get("output", "") for m in messages if m["role"] == "tool"
               and m["content"].startswith("{")]
    if not outputs:
        word = json.dumps(messages[-1]["content"]).strip('"').split()[-1]
        calls = [("execute_code", {"code": f"print({word!r}.upper())"})]
        if any(t["function"]["name"] == "host_pid" for t in request.body.get("tools", [])):
            calls.append(("host_pid", {"file": "pids.txt"}))
        return Reply.tool_calls(*calls, input_tokens=100, output_tokens=10)
    return Reply.text("answer: " + outputs[0].strip(), input_tokens=120, output_tokens=5)


def make(server, tmp_path, **settings):
    settings.setdefault("environment", "local")
    return RLM(model=MODEL, api_base=server.openai_base_url, protocol="tools", log_dir=str(tmp_path / "logs"),
               **settings)


def write_input(tmp_path, lines, name="in.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def read_lines(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def batch(rlm, source, output, **kwargs):
    async def go():
        try:
            return await rlm.batch(source, output, **kwargs)
        finally:
            await rlm.aclose()

    return asyncio.run(go())


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]


def test_the_same_answers_as_the_local_executor_with_trajectories_on_the_driver(cluster, scripted_llm, tmp_path,
                                                                                capsys):
    scripted_llm.script(sandboxed)
    source = write_input(tmp_path, [{"id": w, "prompt": f"shout {w}"} for w in WORDS])
    local = batch(make(scripted_llm, tmp_path, tools=[host_pid]), source, str(tmp_path / "local.jsonl"),
                  concurrency=3)
    local_pids = set((tmp_path / "pids.txt").read_text().split())
    (tmp_path / "pids.txt").unlink()
    remote = batch(make(scripted_llm, tmp_path, tools=[host_pid]), source, str(tmp_path / "ray.jsonl"),
                   concurrency=3, executor="ray")
    assert (local.ok, local.failed, remote.ok, remote.failed) == (6, 0, 6, 0)
    by_id = {name: {line["id"]: line for line in read_lines(tmp_path / f"{name}.jsonl")} for name in ("local", "ray")}
    for word in WORDS:
        mine, theirs = by_id["local"][word], by_id["ray"][word]
        assert theirs["response"] == mine["response"] == f"answer: {word.upper()}"
        assert (theirs["status"], theirs["index"], theirs["total_tokens"], theirs["total_cost_usd"]) == \
               (mine["status"], mine["index"], mine["total_tokens"], mine["total_cost_usd"])
        assert theirs["batch_id"] == remote.batch_id != local.batch_id
    # the items ran on the Ray workers (in the driver's working directory), not in this process
    ray_pids = (tmp_path / "pids.txt").read_text().split()
    assert local_pids == {str(os.getpid())}
    assert len(ray_pids) == 6 and str(os.getpid()) not in ray_pids
    # the driver wrote every remote trajectory: run_start carries the batch id; `rlm logs` lists them
    for line in by_id["ray"].values():
        path = tmp_path / "logs" / f"{line['trajectory_id']}.jsonl"
        events = [json.loads(e) for e in path.read_text().splitlines()]
        assert events[0]["type"] == "run_start" and events[0]["batch_id"] == remote.batch_id
        assert events[-1]["type"] == "run_end" and events[-1]["response"] == line["response"]
        assert any(e["type"] == "tool_results" for e in events)
    capsys.readouterr()
    assert cli.main(["logs", "--log-dir", str(tmp_path / "logs"), "--batch", remote.batch_id, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(row["trajectory_id"] for row in listed) == sorted(
        line["trajectory_id"] for line in by_id["ray"].values())


def test_the_cost_cap_holds_across_workers(cluster, scripted_llm, tmp_path):
    # every call costs (1000 * $1 + 100 * $2) / 1e6 = $0.0012 by the provider's count
    scripted_llm.script(lambda request: Reply.text("ok", input_tokens=1000, output_tokens=100))
    source = write_input(tmp_path, [{"id": str(i), "prompt": f"item {i}"} for i in range(8)])
    rlm = make(scripted_llm, tmp_path, session_cost_cap=0.02, pricing=PRICING)
    summary = batch(rlm, source, str(tmp_path / "out.jsonl"), concurrency=4, executor="ray")
    lines = read_lines(tmp_path / "out.jsonl")
    spent = sum(line["total_cost_usd"] or 0 for line in lines)
    assert len(lines) == 8 and spent <= 0.02
    # the provider's own count of what was asked, independent of ours
    billed = sum((1000 * 1.0 + 100 * 2.0) / 1e6 for _ in scripted_llm.requests)
    assert billed <= 0.02 + 1e-12
    assert rlm.session_budget.cost_spent <= 0.02 and rlm.session_budget.cost_reserved == pytest.approx(0.0)
    assert summary.ok >= 1 and summary.failed >= 1
    assert all(line["limit_hit"] == "session_cost_cap" for line in lines if line["status"] == "failed")


@tool
def checkpoint(marker: str) -> str:
    """Kills the process it runs in the first time (the marker file does not exist yet)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return "alive"


def test_a_killed_workers_item_is_tried_again_and_the_others_are_untouched(cluster, scripted_llm, tmp_path):
    marker = str(tmp_path / "died-once")

    def script(request):
        messages = request.body["messages"]
        if "victim" in json.dumps(messages[1]["content"]) and not any(m["role"] == "tool" for m in messages):
            return Reply.tool_calls(("checkpoint", {"marker": marker}), input_tokens=10, output_tokens=5)
        return Reply.text("done " + json.dumps(messages[1]["content"]).strip('"').split()[-1],
                          input_tokens=10, output_tokens=5)

    scripted_llm.script(script)
    source = write_input(tmp_path, [{"id": "a", "prompt": "plain a"}, {"id": "v", "prompt": "the victim"},
                                    {"id": "b", "prompt": "plain b"}])
    rlm = make(scripted_llm, tmp_path, tools=[checkpoint], session_cost_cap=1.0, pricing=PRICING)
    summary = batch(rlm, source, str(tmp_path / "out.jsonl"), concurrency=3, executor="ray")
    lines = {line["id"]: line for line in read_lines(tmp_path / "out.jsonl")}
    assert os.path.exists(marker)  # the worker really died once
    assert (summary.ok, summary.failed) == (3, 0), lines["v"]["error"]
    assert lines["v"]["response"] == "done victim" and lines["a"]["response"] == "done a"
    # the dead attempt's lease was charged in full: more than the three answers cost
    assert rlm.session_budget.cost_spent > sum(line["total_cost_usd"] for line in lines.values())
    assert rlm.session_budget.cost_reserved == pytest.approx(0.0)


def test_with_no_retries_a_dead_worker_fails_its_item_alone(cluster, scripted_llm, tmp_path, monkeypatch):
    marker = str(tmp_path / "died")
    scripted_llm.script(lambda request: Reply.tool_calls(("checkpoint", {"marker": marker}))
                        if "victim" in json.dumps(request.body["messages"][1]["content"])
                        and not any(m["role"] == "tool" for m in request.body["messages"])
                        else Reply.text("fine"))
    monkeypatch.setenv("RLM_PLUGINS__EXECUTOR_RAY__MAX_ITEM_RETRIES", "0")
    source = write_input(tmp_path, [{"id": "v", "prompt": "the victim"}, {"id": "a", "prompt": "plain a"}])
    rlm = make(scripted_llm, tmp_path, tools=[checkpoint])
    summary = batch(rlm, source, str(tmp_path / "out.jsonl"), concurrency=2, executor="ray")
    lines = {line["id"]: line for line in read_lines(tmp_path / "out.jsonl")}
    assert (summary.ok, summary.failed) == (1, 1)
    assert lines["a"]["status"] == "ok"
    assert lines["v"]["status"] == "failed" and "died 1 times" in lines["v"]["error"]
    assert lines["v"]["error_type"] == "ExecutorError" and lines["v"]["trajectory_id"] is None


@tool
def explode() -> str:
    """Ends the worker process, every time."""
    os._exit(3)


def test_an_item_whose_worker_dies_every_try_fails_alone_after_the_retries(cluster, scripted_llm, tmp_path):
    scripted_llm.script(lambda request: Reply.tool_calls(("explode", {}))
                        if "bomb" in json.dumps(request.body["messages"][1]["content"])
                        and not any(m["role"] == "tool" for m in request.body["messages"])
                        else Reply.text("fine"))
    source = write_input(tmp_path, [{"id": "x", "prompt": "the bomb"}, {"id": "a", "prompt": "plain a"}])
    rlm = make(scripted_llm, tmp_path, tools=[explode])
    summary = batch(rlm, source, str(tmp_path / "out.jsonl"), concurrency=2, executor="ray")
    lines = {line["id"]: line for line in read_lines(tmp_path / "out.jsonl")}
    assert lines["a"]["status"] == "ok" and lines["a"]["response"] == "fine"
    assert lines["x"]["status"] == "failed" and summary.failed == 1
    assert "died 3 times" in lines["x"]["error"]  # the first try and max_item_retries = 2
    bombs = [r for r in scripted_llm.requests if "bomb" in json.dumps(r.body["messages"][1]["content"])]
    assert len(bombs) == 3


def test_a_task_that_raises_fails_its_item_alone_without_a_retry(cluster, scripted_llm, tmp_path, monkeypatch):
    from rlm_executor_ray import executor

    class Flaky(executor.ItemRunner):  # a local class: Ray sends it by value, the actors run it
        async def answer(self, item, batch_id, lease):
            if item.id == "x":
                raise ValueError("a bug in the item's code path")
            return await super().answer(item, batch_id, lease)

    monkeypatch.setattr(executor.RayExecutor, "runner_class", Flaky)
    scripted_llm.script(lambda request: Reply.text("fine"))
    source = write_input(tmp_path, [{"id": "x", "prompt": "one"}, {"id": "a", "prompt": "two"}])
    rlm = make(scripted_llm, tmp_path, session_cost_cap=1.0, pricing=PRICING)
    summary = batch(rlm, source, str(tmp_path / "out.jsonl"), concurrency=2, executor="ray")
    lines = {line["id"]: line for line in read_lines(tmp_path / "out.jsonl")}
    assert (summary.ok, summary.failed) == (1, 1) and lines["a"]["response"] == "fine"
    assert lines["x"]["error"].startswith("the Ray task answering this item raised ValueError: a bug")
    assert len(scripted_llm.requests) == 1  # x was not tried again (nor asked at all)
    assert rlm.session_budget.cost_reserved == pytest.approx(0.0)


def test_rlm_batch_executor_ray_starts_and_stops_its_own_cluster(scripted_llm, tmp_path):
    scripted_llm.script(sandboxed)
    (tmp_path / "rlm.toml").write_text(
        f'[rlm]\napi_base = "{scripted_llm.openai_base_url}"\nenvironment = "local"\nprotocol = "tools"\n'
        f'model = "{MODEL}"\nexecutor = "ray"\n[plugins.executor-ray]\nnum_cpus = 2\ntask_cpus = 0.5\n')
    source = write_input(tmp_path, [{"id": w, "prompt": f"shout {w}"} for w in WORDS[:3]])
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run([sys.executable, "-m", "rlm", "batch", source, "-o", "out.jsonl"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == ""  # results go to the file, logs to stderr
    lines = {line["id"]: line for line in read_lines(tmp_path / "out.jsonl")}
    assert {w: lines[w]["response"] for w in WORDS[:3]} == {w: f"answer: {w.upper()}" for w in WORDS[:3]}
    assert "3 answered, 0 failed" in done.stderr
    assert all((tmp_path / "logs" / f"{line['trajectory_id']}.jsonl").exists() for line in lines.values())


def test_an_actor_size_the_cluster_cannot_place_is_a_clear_error_not_a_wait(cluster, scripted_llm, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("RLM_PLUGINS__EXECUTOR_RAY__TASK_CPUS", "3")  # the cluster has 2
    source = write_input(tmp_path, [{"id": "a", "prompt": "plain a"}])
    with pytest.raises(Exception) as info:
        batch(make(scripted_llm, tmp_path), source, str(tmp_path / "out.jsonl"), executor="ray")
    assert "task_cpus = 3 is more than the 2 CPUs of the Ray cluster" in str(info.value)
    assert scripted_llm.requests == []
