"""`rlm batch` through the real openai SDK and the scripted server: ids and order, resumption, the global
cost cap across concurrent items, per-item failure isolation, input errors."""

from __future__ import annotations

import json

import pytest

from rlm import cli
from rlm_testing.server import Reply


@pytest.fixture
def configured(scripted_llm, tmp_path, monkeypatch):
    pytest.importorskip("rlm_backend_openai")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rlm.toml").write_text(
        f'[rlm]\napi_base = "{scripted_llm.base_url("openai")}"\nenvironment = "local"\nprotocol = "tools"\n'
        'model = "openai/gpt-4o-mini"\n[pricing."gpt-4o-mini"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n')
    return scripted_llm


def write_input(tmp_path, lines) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def read_output(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def echo(request):
    """Answers with the prompt's last word (so each item's answer is its own)."""
    text = json.dumps(request.body["messages"][-1]["content"])
    return Reply.text("answer to " + text.strip('"').split()[-1], input_tokens=100, output_tokens=10)


def test_every_item_is_answered_keyed_by_id_with_its_index(configured, tmp_path, capsys):
    configured.script(echo)
    source = write_input(tmp_path, [{"id": "a", "prompt": "say alpha"}, {"prompt": "say beta"},
                                    {"id": "c", "prompt": "say gamma", "max_turns": 3}])
    code = cli.main(["batch", source, "-o", "out.jsonl", "--concurrency", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = {line["id"]: line for line in read_output(tmp_path / "out.jsonl")}
    assert set(lines) == {"a", "2", "c"}  # an id, or the line number
    assert [lines[i]["index"] for i in ("a", "2", "c")] == [0, 1, 2]
    assert [lines[i]["response"] for i in ("a", "2", "c")] == ["answer to alpha", "answer to beta",
                                                               "answer to gamma"]
    assert all(line["status"] == "ok" and line["trajectory_id"] for line in lines.values())
    assert all((tmp_path / "logs" / f"{line['trajectory_id']}.jsonl").exists() for line in lines.values())
    assert "3 answered, 0 failed" in err


def test_a_rerun_skips_what_is_done_and_retries_what_failed(configured, tmp_path, capsys):
    (tmp_path / "out.jsonl").write_text(
        json.dumps({"id": "a", "status": "ok", "response": "earlier"}) + "\n"
        + json.dumps({"id": "b", "status": "failed", "response": ""}) + "\n"
        + '{"id": "c", "status": "o')  # a line torn by a kill
    configured.script(echo)
    source = write_input(tmp_path, [{"id": "a", "prompt": "say alpha"}, {"id": "b", "prompt": "say beta"},
                                    {"id": "c", "prompt": "say gamma"}])
    assert cli.main(["batch", source, "-o", "out.jsonl"]) == 0
    assert "2 answered, 0 failed, 1 already done" in capsys.readouterr().err
    asked = {json.dumps(r.body["messages"][-1]["content"]) for r in configured.requests}
    assert not any("alpha" in a for a in asked) and len(configured.requests) == 2  # only b and c were asked


def test_one_failing_item_fails_alone(configured, tmp_path, capsys):
    def script(request):
        if "beta" in json.dumps(request.body["messages"]):
            return Reply.error(400, "bad request for this item")
        return echo(request)

    configured.script(script)
    source = write_input(tmp_path, [{"id": "a", "prompt": "say alpha"}, {"id": "b", "prompt": "say beta"},
                                    {"id": "c", "prompt": "say gamma"}])
    assert cli.main(["batch", source, "-o", "out.jsonl"]) == 1
    lines = {line["id"]: line for line in read_output(tmp_path / "out.jsonl")}
    assert lines["b"]["status"] == "failed" and lines["b"]["error"]
    assert lines["a"]["status"] == lines["c"]["status"] == "ok"


def test_the_cost_limit_holds_across_the_whole_batch(configured, tmp_path, capsys):
    configured.script(lambda request: Reply.text("ok", input_tokens=1000, output_tokens=100))
    source = write_input(tmp_path, [{"id": str(i), "prompt": f"item {i}"} for i in range(10)])
    # each call costs (1000 * 1 + 100 * 2) / 1e6 = $0.0012 by the provider's count; the cap allows a few
    code = cli.main(["batch", source, "-o", "out.jsonl", "--concurrency", "4", "--cost-limit", "0.03"])
    capsys.readouterr()
    lines = read_output(tmp_path / "out.jsonl")
    spent = sum(line["total_cost_usd"] or 0 for line in lines)
    assert len(lines) == 10 and spent <= 0.03  # never more than the cap, concurrent items included
    assert any(line["status"] == "failed" and line["limit_hit"] for line in lines) and code == 1
    assert any(line["status"] == "ok" for line in lines)


@pytest.mark.parametrize(("content", "message"), [
    ('{"prompt": "a"}\nnot json\n', "line 2: not JSON"),
    ('{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n', "id 'x' is also on line 1"),
    ('{"text": "a"}\n', 'needs a "prompt"'),
    ('{"prompt": "a", "temperatur": 1}\n', "unknown field 'temperatur'"),
])
def test_a_bad_input_line_is_one_clear_error_and_nothing_is_asked(configured, tmp_path, capsys, content, message):
    (tmp_path / "in.jsonl").write_text(content)
    assert cli.main(["batch", "in.jsonl", "-o", "out.jsonl"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and configured.requests == []
    assert not (tmp_path / "out.jsonl").exists()


def test_ctrl_c_keeps_what_finished_and_exits_130(configured, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    def script(request):
        if "first" in json.dumps(request.body["messages"]):
            return Reply.text("done first")
        return Reply.slow(60, Reply.text("too late"))

    configured.script(script)
    source = write_input(tmp_path, [{"id": "1", "prompt": "the first"}, {"id": "2", "prompt": "a slow one"},
                                    {"id": "3", "prompt": "another slow one"}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env.update({"OPENAI_API_KEY": "sk-test", "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "rlm", "batch", source, "-o", "out.jsonl", "--concurrency", "3"],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = tmp_path / "out.jsonl"
    end = time.monotonic() + 60
    while not (out.exists() and out.read_text().count("\n") >= 1 and len(configured.requests) >= 3):
        assert time.monotonic() < end and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "what finished is in out.jsonl" in stderr
    (line,) = read_output(out)  # the finished item is kept, whole
    assert line["id"] == "1" and line["status"] == "ok"
    ends = [json.loads(e) for p in (tmp_path / "logs").glob("*.jsonl") for e in p.read_text().splitlines()
            if '"run_end"' in e]
    assert sorted(e["answer_source"] for e in ends) == ["cancelled", "cancelled", "text"]


def test_a_killed_batch_resumes_where_it_stopped_with_its_batch_id(configured, tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    slow = {"on": True}

    def script(request):
        text = json.dumps(request.body["messages"])
        if "first" in text:
            return Reply.text("done first")
        if slow["on"]:
            return Reply.slow(60, Reply.text("too late"))
        return Reply.text("done " + json.dumps(request.body["messages"][-1]["content"]).strip('"').split()[-1])

    configured.script(script)
    source = write_input(tmp_path, [{"id": "1", "prompt": "the first"}, {"id": "2", "prompt": "slow second"},
                                    {"id": "3", "prompt": "slow third"}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env.update({"OPENAI_API_KEY": "sk-test"})
    proc = subprocess.Popen([sys.executable, "-m", "rlm", "batch", source, "-o", "out.jsonl", "--concurrency", "3"],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "out.jsonl"
    end = time.monotonic() + 60
    while not (out.exists() and out.read_text().count("\n") >= 1 and len(configured.requests) >= 3):
        assert time.monotonic() < end and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: only what was flushed survives
    proc.wait(timeout=30)
    (first,) = read_output(out)
    slow["on"] = False
    assert cli.main(["batch", source, "-o", "out.jsonl"]) == 0
    assert "2 answered, 0 failed, 1 already done" in capsys.readouterr().err
    lines = read_output(out)
    assert sorted(line["id"] for line in lines) == ["1", "2", "3"]  # each id once: nothing answered twice
    assert {line["id"]: line["response"] for line in lines} == {"1": "done first", "2": "done second",
                                                               "3": "done third"}
    assert {line["batch_id"] for line in lines} == {first["batch_id"]}  # the resumed batch keeps its id
    asked_first = [r for r in configured.requests if "first" in json.dumps(r.body["messages"])]
    assert len(asked_first) == 1  # the finished item was not asked again
