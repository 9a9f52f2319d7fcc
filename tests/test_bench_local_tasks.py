"""bench/local_tasks.py: generated data, truths, the answer matcher and the runner's accounting
(against a fake ``rlm`` executable; the real model is never run here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "local_tasks.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_local_tasks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


lt = _load()


def test_enough_questions_with_unique_ids_each_naming_its_file():
    assert len(lt.QUESTIONS) >= 25
    assert len({q.id for q in lt.QUESTIONS}) == len(lt.QUESTIONS)
    assert {q.file for q in lt.QUESTIONS} == set(lt.GENERATORS)
    for q in lt.QUESTIONS:
        assert q.file in q.text
        assert "answer with just the" in q.text.lower()


@pytest.mark.parametrize("seed", [lt.DEFAULT_SEED, 1, 7])
def test_generation_is_deterministic_and_every_truth_is_computed(seed):
    files = lt.generate(seed)
    assert files == lt.generate(seed)
    assert set(files) == set(lt.GENERATORS)
    for name, text in files.items():
        assert 500 < len(text.encode()) < 12_000, name  # a few KB: a small model reads them
    for q in lt.QUESTIONS:
        value = lt.truth(q, files)
        if q.decimals is None and not lt.candidates(q, files):
            assert isinstance(value, int), q.id
        assert value not in ("", None)


def test_different_seeds_give_different_files():
    assert lt.generate(1) != lt.generate(2)


@pytest.mark.parametrize("seed", [lt.DEFAULT_SEED, 1, 2, 3, 7])
def test_name_questions_have_no_tie(seed):
    files = lt.generate(seed)
    named = [q for q in lt.QUESTIONS if lt.candidates(q, files)]
    assert len(named) >= 5
    for q in named:
        scores = sorted(q.compute(lt.PARSERS[q.file](files[q.file])).values(), reverse=True)
        assert scores[0] > scores[1], q.id
        assert lt.truth(q, files) in lt.candidates(q, files)


def test_tie_is_detected():
    with pytest.raises(lt.Tie):
        lt.leader({"a": 3, "b": 3, "c": 1})
    assert lt.leader({"a": 3, "b": 2}) == "a"


def test_truths_agree_with_a_direct_reading_of_the_files():
    files = lt.generate(lt.DEFAULT_SEED)
    by_id = {q.id: q for q in lt.QUESTIONS}
    sales = files["sales.csv"].splitlines()
    assert lt.truth(by_id[1], files) == len(sales) - 1
    assert lt.truth(by_id[2], files) == sum(int(line.split(",")[3]) for line in sales[1:])
    log = files["app.log"].splitlines()
    assert lt.truth(by_id[20], files) == sum(1 for line in log if " ERROR [" in line)
    assert lt.truth(by_id[22], files) == len(log)
    users = json.loads(files["users.json"])
    assert lt.truth(by_id[12], files) == sum(1 for u in users if u["active"] is True)
    assert lt.truth(by_id[26], files) == len(files["notes.txt"].split())


@pytest.mark.parametrize(("answer", "expected", "decimals", "ok"), [
    ("42", 42, None, True),
    ("The answer is 42.", 42, None, True),
    ("42.0", 42, None, True),
    ("43", 42, None, False),
    ("", 42, None, False),
    ("1,234", 1234, None, True),
    ("Total: 8,460.15", 8460.15, 2, True),
    ("8460.16", 8460.15, 2, True),  # rounding differs by one cent
    ("8460.2", 8460.15, 2, False),  # 0.05 off
    ("8460.3", 8460.15, 2, False),
    ("7.7", 7.70, 2, True),
    ("7.75", 7.70, 2, False),
    ("4212", 42, None, False),
    ("q42 1 2 3 4 5", 42, None, False),  # digits glued to a word are not numbers
    ("1 2 3 4 42", 42, None, True),      # many numbers: only the last one counts
    ("42 1 2 3 4", 42, None, False),
])
def test_number_matching(answer, expected, decimals, ok):
    assert lt.matches(answer, expected, decimals) is ok


@pytest.mark.parametrize(("answer", "ok"), [
    ("East", True),
    ("east", True),
    ("The region is **East**.", True),
    ("East, West, North", False),   # a name among others is wrong
    ("Northeast", False),           # whole words only
    ("Eastern", False),
    ("West", False),
    ("", False),
])
def test_name_matching(answer, ok):
    assert lt.matches(answer, "East", None, list(lt.REGIONS)) is ok


FAKE_RLM = '''#!{python}
import json, sys, time
from pathlib import Path
here = Path(__file__).parent
with open(here / "argv.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
plan = json.loads((here / "plan.json").read_text())
step = plan[sys.argv[3]]
print("progress on stderr", file=sys.stderr)
print(step.get("stderr", "rlm: done"), file=sys.stderr)
time.sleep(step.get("sleep", 0))
if "raw" in step:
    print(step["raw"])
else:
    print(json.dumps({{"response": step["response"], "success": step["success"], "error": step.get("error"),
                      "limit_hit": None, "answer_source": "text", "total_calls": 2, "total_tokens": 99}}, indent=2))
sys.exit(step.get("exit", 0))
'''


def test_runner_accounting_with_a_fake_rlm(tmp_path, capsys):
    files = lt.generate(lt.DEFAULT_SEED)
    q = {question.id: question for question in lt.QUESTIONS}
    t = {i: lt.truth(q[i], files) for i in (1, 2, 3, 6, 7, 12, 14, 20)}
    plan = {
        q[1].text: {"response": str(t[1]), "success": True},
        q[2].text: {"response": f"{t[2]:,} units", "success": True},
        q[3].text: {"response": f"{t[3] + 0.004:.3f}", "success": True},
        q[6].text: {"response": t[6], "success": True},
        q[7].text: {"response": ", ".join(lt.REGIONS), "success": True},  # wrong, exit 0
        q[12].text: {"response": "", "success": False, "error": "max_turns reached", "exit": 6,
                     "stderr": "rlm: error: no answer (max_turns)"},
        q[14].text: {"response": "late", "success": True, "sleep": 30},
        q[20].text: {"raw": "not json", "exit": 0},
    }
    fake = tmp_path / "bin" / "rlm"
    fake.parent.mkdir()
    fake.write_text(FAKE_RLM.format(python=sys.executable))
    fake.chmod(0o755)
    (fake.parent / "plan.json").write_text(json.dumps(plan))
    workdir, out = tmp_path / "work", tmp_path / "out" / "result.json"

    code = lt.main(["--rlm", str(fake), "--workdir", str(workdir), "--timeout", "1.5", "--model", "m1",
                    "--only", "1,2,3,6,7,12,14,20", "--out", str(out), "--", "--max-turns", "3"])

    assert code == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    results = {r["id"]: r["result"] for r in data["questions"]}
    assert results == {1: "right", 2: "right", 3: "right", 6: "right", 7: "wrong", 12: "failed",
                       14: "timeout", 20: "failed"}
    totals = data["totals"]
    assert (totals["questions"], totals["right"], totals["wrong"], totals["failed"], totals["timeout"]) == (8, 4, 1, 2, 1)
    assert totals["model"] == data["model"] == "m1"
    assert data["seed"] == lt.DEFAULT_SEED and data["date"]
    record = {r["id"]: r for r in data["questions"]}
    assert record[12]["exit_code"] == 6 and record[12]["success"] is False
    assert record[12]["stderr_tail"] == "rlm: error: no answer (max_turns)"
    assert record[1]["truth"] == t[1] and record[1]["total_calls"] == 2
    assert 1.0 <= record[14]["seconds"] < 10
    # the files, the per-question stderr logs and the command line
    assert (workdir / "sales.csv").read_text() == files["sales.csv"]
    assert "rlm: error: no answer (max_turns)" in (workdir / "logs" / "q12.stderr").read_text()
    argv = [json.loads(line) for line in (fake.parent / "argv.jsonl").read_text().splitlines()]
    assert argv[0] == ["run", "--json", q[1].text, "--model", "m1", "--max-turns", "3"]
    # the printed report
    assert "right 4/8 (50%)" in printed and "wrong with exit 0: 1" in printed and "timeouts: 1" in printed
    assert "model: m1" in printed
    assert "stderr: rlm: error: no answer (max_turns)" in printed
    assert any(line.startswith("q07 wrong") for line in printed.splitlines())


def test_limit_and_default_model(tmp_path, capsys):
    files = lt.generate(lt.DEFAULT_SEED)
    fake = tmp_path / "rlm"
    fake.write_text(FAKE_RLM.format(python=sys.executable))
    fake.chmod(0o755)
    plan = {q.text: {"response": str(lt.truth(q, files)), "success": True} for q in lt.QUESTIONS}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert lt.main(["--rlm", str(fake), "--workdir", str(tmp_path / "w"), "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    assert "right 2/2 (100%)" in printed and "model: embedded default" in printed
    argv = [json.loads(line) for line in (tmp_path / "argv.jsonl").read_text().splitlines()]
    assert [a[:2] for a in argv] == [["run", "--json"]] * 2 and all(len(a) == 3 for a in argv)


def test_list_runs_nothing(capsys):
    assert lt.main(["--list", "--rlm", "/nonexistent/rlm"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("truth=") == len(lt.QUESTIONS)


@pytest.mark.parametrize("argv", [["--only", "99"], ["--only", "a,b"], ["--limit", "0"], ["--timeout", "0"],
                                  ["--rlm", "/nonexistent/rlm"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        lt.main(argv)
    assert exc.value.code == 2
