"""Realistic questions over local files, answered by ``rlm run`` with the embedded local model.

Measures how often ``rlm run`` (no model configured: the embedded llama.cpp model) gets the one
right value out of small local data files, how often it answers wrongly while claiming success,
and how long each question takes.  The script

1. generates ``sales.csv``, ``users.json``, ``app.log``, ``notes.txt`` and ``inventory.csv`` (a few
   KB each) into a work directory from a fixed seed, so the files and the truths are reproducible;
   a generated file whose "which ... the most" questions would have a tie is drawn again (the next
   attempt of the same seed), so every name question has exactly one right answer;
2. asks 30 questions (counts, sums, means, min/max, top-k, filters, group-bys, distinct counts,
   log/text and JSON questions, a few two-step ones), each naming its file and asking for one
   value; the truth is computed here from the generated files, never written down by hand;
3. runs ``rlm run --json QUESTION`` once per question in the work directory (stderr goes to
   ``logs/qNN.stderr`` there), with a wall timeout that kills the process group;
4. classifies each: ``right``; ``wrong`` (exit 0 and ``success`` true, but not the truth: the worst
   outcome); ``failed`` (nonzero exit, ``success`` false or no JSON on stdout: an honest failure);
   ``timeout``.

Matching (strict and simple), on the result's ``response``:

* number: numbers are read from the answer (``1,234`` with thousands separators reads 1234).  If
  the answer holds at most 3 numbers and at most 200 characters, any of them may be the truth;
  otherwise only its last number counts.  An integer truth must be equal; a truth rounded to 2
  decimals may differ by at most 0.01.
* name: the truth must appear case-insensitively as a whole word, and none of the question's
  other candidate names may appear (an answer listing every region is wrong).

Usage::

    .venv/bin/python bench/local_tasks.py --out bench/local_tasks.json
    .venv/bin/python bench/local_tasks.py --list                  # questions and truths only
    .venv/bin/python bench/local_tasks.py --only 1,5,7 --timeout 120 -- --max-turns 8

Options: ``--workdir DIR`` (default: a fresh temporary directory, printed on stderr), ``--seed``,
``--timeout`` (seconds per question, default 300), ``--rlm PATH`` (default: the ``rlm`` next to
this Python, else on PATH), ``--model M``, ``--only IDS``, ``--limit N``, ``--out FILE``; what
follows ``--`` is passed to ``rlm run``.  Exits 0 after a complete run (it is a measurement, not a
test), 2 on usage errors.

Goal: >= 80% right, a median <= 60 s per question on a 2-core machine, and 0 wrong answers with
exit 0.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_SEED = 20261103
DEFAULT_TIMEOUT = 300.0
ATTEMPTS = 200  # draws of one file before giving up on a tie-free one

Truth = int | float | str
Scores = dict[str, float]


class Tie(ValueError):
    """Two candidates share the top score: the question would have no single right answer."""


# ---------------------------------------------------------------- data generation

REGIONS = ("North", "South", "East", "West", "Central")
PRODUCTS = {"Widget": 4.50, "Gadget": 12.00, "Gizmo": 7.25, "Sprocket": 2.80, "Bracket": 9.90, "Valve": 15.40}
CITIES = ("Lisbon", "Oslo", "Turin", "Ghent", "Tartu", "Bergen")
FIRST_NAMES = (
    "Alice", "Bruno", "Carla", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Karin", "Luca",
    "Maya", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Stefan", "Tara", "Umar", "Vera", "Wim", "Xenia", "Yusuf",
    "Zora", "Anton", "Bianca", "Cyril", "Dora", "Emil", "Fiona", "Gustav", "Hanna", "Igor", "Jana", "Kai", "Lena",
    "Marek", "Nora", "Oskar", "Petra", "Rafael", "Sofia", "Tomas", "Ulla", "Viktor", "Wanda",
)
COMPONENTS = ("auth", "db", "api", "cache", "scheduler", "payments")
LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
MESSAGES = {
    "INFO": ("request served in {ms} ms", "user {uid} logged in", "job {job} finished", "cache warmed with {n} keys",
             "connection pool size is {n}"),
    "WARN": ("slow query took {ms} ms", "retrying request (attempt {a})", "disk usage at {pct}%",
             "token for user {uid} expires soon"),
    "ERROR": ("connection refused by upstream", "gave up after {ms} ms", "payment {job} declined",
              "could not write record {uid}"),
    "DEBUG": ("state dump for job {job}", "cache miss for key k{n}"),
}
PROJECTS = ("Apollo", "Borealis", "Cygnus", "Draco", "Eclipse")
PEOPLE = ("Ana", "Ben", "Chen", "Dana", "Eli")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
SENTENCES = (
    "The {p} team met on {day} to review progress.",
    "{who} raised a concern about the deadline for {p}.",
    "The deadline for {p} moves to {day}.",
    "{who} will send the updated budget for {p} by {day}.",
    "Testing for {p} is behind schedule.",
    "No blockers were reported this week.",
    "Deadline pressure is high across the board.",
    "We agreed to revisit the plan next {day}.",
    "{who} and {who2} will pair on the {p} migration.",
    "Customer feedback on {p} was mostly positive.",
    "Everyone should log their hours before the deadline on {day}.",
)
WAREHOUSES = ("Leeds", "Porto", "Lyon", "Graz")
ITEMS = ("hex bolt", "washer", "hinge", "bearing", "gasket", "spring", "clamp", "rivet", "pulley", "fuse")


def weights(rng: random.Random, n: int) -> list[int]:
    """Uneven random weights, so group sizes differ."""
    return [rng.randint(1, 8) for _ in range(n)]


def gen_sales(rng: random.Random) -> str:
    region_w, product_w = weights(rng, len(REGIONS)), weights(rng, len(PRODUCTS))
    start = date(2026, 1, 1)
    days = sorted(rng.randint(0, 180) for _ in range(rng.randint(90, 110)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["order_id", "region", "product", "units", "unit_price", "date"])
    for i, day in enumerate(days):
        product = rng.choices(list(PRODUCTS), product_w)[0]
        price = PRODUCTS[product] * rng.uniform(0.9, 1.1)
        writer.writerow([1001 + i, rng.choices(REGIONS, region_w)[0], product, rng.randint(1, 20), f"{price:.2f}",
                         (start + timedelta(days=day)).isoformat()])
    return out.getvalue()


def gen_users(rng: random.Random) -> str:
    city_w = weights(rng, len(CITIES))
    names = rng.sample(FIRST_NAMES, 40)
    users = [{"id": i + 1, "name": name, "age": rng.randint(19, 70), "city": rng.choices(CITIES, city_w)[0],
              "active": rng.random() < 0.65, "score": round(rng.uniform(20, 99), 1)} for i, name in enumerate(names)]
    return "[\n" + ",\n".join("  " + json.dumps(user) for user in users) + "\n]\n"


def gen_log(rng: random.Random) -> str:
    component_w = weights(rng, len(COMPONENTS))
    when = datetime(2026, 11, 3, 8, 0, 0)
    lines = []
    for _ in range(rng.randint(120, 140)):
        when += timedelta(seconds=rng.randint(30, 420))
        level = rng.choices(LEVELS, (55, 22, 15, 8))[0]
        message = rng.choice(MESSAGES[level]).format(ms=rng.randint(5, 9000), uid=rng.randint(1, 500),
                                                     job=rng.randint(100, 999), n=rng.randint(2, 64),
                                                     a=rng.randint(2, 5), pct=rng.randint(70, 99))
        component = rng.choices(COMPONENTS, component_w)[0]
        lines.append(f"{when:%Y-%m-%d %H:%M:%S} {level} [{component}] {message}")
    return "\n".join(lines) + "\n"


def gen_notes(rng: random.Random) -> str:
    project_w = weights(rng, len(PROJECTS))
    paragraphs = []
    for _ in range(rng.randint(7, 10)):
        sentences = []
        for _ in range(rng.randint(3, 6)):
            who, who2 = rng.sample(PEOPLE, 2)
            sentences.append(rng.choice(SENTENCES).format(p=rng.choices(PROJECTS, project_w)[0], who=who, who2=who2,
                                                          day=rng.choice(DAYS)))
        paragraphs.append(textwrap.fill(" ".join(sentences), width=72))
    return "\n\n".join(paragraphs) + "\n"


def gen_inventory(rng: random.Random) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sku", "item", "warehouse", "quantity", "reorder_level"])
    for i in range(rng.randint(28, 34)):
        writer.writerow([f"SKU-{2001 + i}", f"{rng.choice(ITEMS)} M{rng.choice((4, 5, 6, 8, 10))}",
                         rng.choice(WAREHOUSES), rng.randint(0, 400), rng.randrange(20, 160, 10)])
    return out.getvalue()


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "sales.csv": gen_sales, "users.json": gen_users, "app.log": gen_log, "notes.txt": gen_notes,
    "inventory.csv": gen_inventory,
}


# ---------------------------------------------------------------- parsing the generated files

@dataclass(frozen=True)
class LogLine:
    day: str
    time: str
    level: str
    component: str
    message: str


def parse_sales(text: str) -> list[dict[str, Any]]:
    return [{**row, "units": int(row["units"]), "unit_price": float(row["unit_price"]),
             "revenue": int(row["units"]) * float(row["unit_price"])} for row in csv.DictReader(io.StringIO(text))]


def parse_inventory(text: str) -> list[dict[str, Any]]:
    return [{**row, "quantity": int(row["quantity"]), "reorder_level": int(row["reorder_level"])}
            for row in csv.DictReader(io.StringIO(text))]


def parse_log(text: str) -> list[LogLine]:
    pattern = re.compile(r"(\S+) (\S+) (\w+) \[(\w+)\] (.*)")
    return [LogLine(*pattern.fullmatch(line).groups()) for line in text.splitlines()]  # type: ignore[union-attr]


PARSERS: dict[str, Callable[[str], Any]] = {
    "sales.csv": parse_sales, "users.json": json.loads, "app.log": parse_log, "notes.txt": str,
    "inventory.csv": parse_inventory,
}


# ---------------------------------------------------------------- truth helpers

def totals(rows: list[Any], key: Callable[[Any], str], value: Callable[[Any], float] = lambda _: 1) -> Scores:
    """Sum of ``value`` per ``key`` (a count by default)."""
    out: Scores = {}
    for row in rows:
        out[key(row)] = out.get(key(row), 0) + value(row)
    return out


def leader(scores: Scores) -> str:
    """The one key with the highest score; Tie when two share it (scores compared to 1e-6)."""
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < 1e-6:
        raise Tie(f"{ranked[0][0]} and {ranked[1][0]} share the top score {ranked[0][1]}")
    return ranked[0][0]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def word_count(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(word)}\b", text, re.IGNORECASE))


def two_step_sales(rows: list[dict[str, Any]]) -> float:
    region = leader(totals(rows, lambda r: r["region"]))
    return mean([r["units"] for r in rows if r["region"] == region])


def two_step_users(users: list[dict[str, Any]]) -> float:
    city = leader(totals(users, lambda u: u["city"]))
    return mean([u["age"] for u in users if u["city"] == city and u["active"]])


def two_step_log(lines: list[LogLine]) -> int:
    component = leader(totals([x for x in lines if x.level == "ERROR"], lambda x: x.component))
    return sum(1 for x in lines if x.component == component)


# ---------------------------------------------------------------- questions

@dataclass(frozen=True)
class Question:
    """One question.  ``compute`` gets the parsed ``file`` and returns a number, or the scores
    of the candidate names (the truth is then the single highest-scoring name)."""

    id: int
    kind: str
    file: str
    text: str
    compute: Callable[[Any], float | Scores]
    decimals: int | None = None  # the truth is rounded to this many decimals; None: an integer


NUMBER = "Answer with just the number."
ROUND2 = "Round to 2 decimals and answer with just the number."
Q = Question
QUESTIONS: tuple[Question, ...] = (
    Q(1, "count", "sales.csv", f"How many orders (data rows, not counting the header) are in sales.csv? {NUMBER}",
      len),
    Q(2, "sum", "sales.csv", f"What is the total number of units sold over all orders in sales.csv (the sum of the "
      f"units column)? {NUMBER}", lambda rows: sum(r["units"] for r in rows)),
    Q(3, "sum", "sales.csv", f"What is the total revenue in sales.csv, where the revenue of an order is units * "
      f"unit_price? {ROUND2}", lambda rows: sum(r["revenue"] for r in rows), 2),
    Q(4, "mean", "sales.csv", f"What is the average unit_price over all orders in sales.csv? {ROUND2}",
      lambda rows: mean([r["unit_price"] for r in rows]), 2),
    Q(5, "min", "sales.csv", f"What is the lowest unit_price of any order in sales.csv? {NUMBER}",
      lambda rows: min(r["unit_price"] for r in rows), 2),
    Q(6, "top-k", "sales.csv", "Which product sold the most units in total in sales.csv? Answer with just the "
      "product name.", lambda rows: totals(rows, lambda r: r["product"], lambda r: r["units"])),
    Q(7, "group-by", "sales.csv", "Which region has the highest total revenue (the sum of units * unit_price) in "
      "sales.csv? Answer with just the region name.",
      lambda rows: totals(rows, lambda r: r["region"], lambda r: r["revenue"])),
    Q(8, "filter", "sales.csv", f"How many orders in sales.csv have more than 15 units? {NUMBER}",
      lambda rows: sum(1 for r in rows if r["units"] > 15)),
    Q(9, "distinct", "sales.csv", f"How many distinct dates appear in the date column of sales.csv? {NUMBER}",
      lambda rows: len({r["date"] for r in rows})),
    Q(10, "filter", "sales.csv", f"How many units were sold in March 2026 (dates from 2026-03-01 to 2026-03-31) "
      f"according to sales.csv? {NUMBER}", lambda rows: sum(r["units"] for r in rows if r["date"].startswith("2026-03"))),
    Q(11, "two-step", "sales.csv", f"In sales.csv, take the region with the most orders. What is the average number "
      f"of units per order in that region? {ROUND2}", two_step_sales, 2),
    Q(12, "count", "users.json", f"How many users in users.json have active set to true? {NUMBER}",
      lambda users: sum(1 for u in users if u["active"])),
    Q(13, "mean", "users.json", f"What is the average age of all users in users.json? {ROUND2}",
      lambda users: mean([u["age"] for u in users]), 2),
    Q(14, "top-k", "users.json", "Which user in users.json has the highest score? Answer with just the user's name.",
      lambda users: {u["name"]: u["score"] for u in users}),
    Q(15, "group-by", "users.json", "Which city has the most users in users.json? Answer with just the city name.",
      lambda users: totals(users, lambda u: u["city"])),
    Q(16, "distinct", "users.json", f"How many distinct cities appear in users.json? {NUMBER}",
      lambda users: len({u["city"] for u in users})),
    Q(17, "filter", "users.json", f"How many users in users.json are older than 40 (age > 40) and have a score "
      f"above 70? {NUMBER}", lambda users: sum(1 for u in users if u["age"] > 40 and u["score"] > 70)),
    Q(18, "min", "users.json", f"What is the age of the youngest inactive user (active is false) in users.json? "
      f"{NUMBER}", lambda users: min(u["age"] for u in users if not u["active"])),
    Q(19, "two-step", "users.json", f"In users.json, find the city with the most users. What is the average age of "
      f"the active users in that city? {ROUND2}", two_step_users, 2),
    Q(20, "count", "app.log", f"How many lines in app.log have the level ERROR? {NUMBER}",
      lambda lines: sum(1 for x in lines if x.level == "ERROR")),
    Q(21, "group-by", "app.log", "In app.log, which component (the name in square brackets) has the most WARN "
      "lines? Answer with just the component name.",
      lambda lines: totals([x for x in lines if x.level == "WARN"], lambda x: x.component)),
    Q(22, "text", "app.log", f"How many lines does app.log have? {NUMBER}", len),
    Q(23, "distinct", "app.log", f"How many distinct components (the names in square brackets) appear in app.log? "
      f"{NUMBER}", lambda lines: len({x.component for x in lines})),
    Q(24, "filter", "app.log", f"How many ERROR lines in app.log have a time between 14:00:00 and 14:59:59? {NUMBER}",
      lambda lines: sum(1 for x in lines if x.level == "ERROR" and x.time.startswith("14:"))),
    Q(25, "two-step", "app.log", f"In app.log, find the component with the most ERROR lines. How many lines of any "
      f"level does that component have? {NUMBER}", two_step_log),
    Q(26, "text", "notes.txt", f"How many words does notes.txt contain, counting whitespace-separated tokens? "
      f"{NUMBER}", lambda text: len(text.split())),
    Q(27, "text", "notes.txt", f"How many times does the word \"deadline\" appear in notes.txt (case-insensitive, "
      f"whole words only)? {NUMBER}", lambda text: word_count(text, "deadline")),
    Q(28, "top-k", "notes.txt", "Which project (Apollo, Borealis, Cygnus, Draco or Eclipse) is mentioned most often "
      "in notes.txt? Answer with just the project name.", lambda text: {p: word_count(text, p) for p in PROJECTS}),
    Q(29, "filter", "inventory.csv", f"How many items in inventory.csv have a quantity below their reorder_level? "
      f"{NUMBER}", lambda rows: sum(1 for r in rows if r["quantity"] < r["reorder_level"])),
    Q(30, "group-by", "inventory.csv", "Which warehouse has the largest total quantity in inventory.csv? Answer "
      "with just the warehouse name.", lambda rows: totals(rows, lambda r: r["warehouse"], lambda r: r["quantity"])),
)


def truth(question: Question, files: dict[str, str]) -> Truth:
    """The right answer to ``question`` over the generated ``files`` (Tie when there is none)."""
    value = question.compute(PARSERS[question.file](files[question.file]))
    if isinstance(value, dict):
        return leader(value)
    if question.decimals is None:
        assert float(value).is_integer(), (question.id, value)
        return int(value)
    return round(float(value), question.decimals)


def candidates(question: Question, files: dict[str, str]) -> list[str]:
    """The names a name question chooses among (empty for a number question)."""
    value = question.compute(PARSERS[question.file](files[question.file]))
    return sorted(value) if isinstance(value, dict) else []


def generate(seed: int) -> dict[str, str]:
    """File name -> content; each file is drawn again until none of its questions has a tie."""
    files: dict[str, str] = {}
    for name, make in GENERATORS.items():
        for attempt in range(ATTEMPTS):
            files[name] = make(random.Random(f"{seed}/{name}/{attempt}"))
            try:
                for question in QUESTIONS:
                    if question.file == name:
                        truth(question, files)
                break
            except Tie:
                continue
        else:
            raise RuntimeError(f"no tie-free {name} for seed {seed} in {ATTEMPTS} attempts")
    return files


def write_files(files: dict[str, str], workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (workdir / name).write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- matching

NUMBER_RE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)")


def numbers(answer: str) -> list[float]:
    """The numbers in ``answer``, thousands separators removed."""
    return [float(m.replace(",", "")) for m in NUMBER_RE.findall(answer)]


def matches(answer: str, expected: Truth, decimals: int | None = None, names: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether ``answer`` gives ``expected`` (see the module docstring for the rules)."""
    if isinstance(expected, str):
        def named(name: str) -> bool:
            return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", answer, re.IGNORECASE) is not None
        return named(expected) and not any(named(n) for n in names if n.lower() != expected.lower())
    found = numbers(answer)
    if len(found) > 3 or len(answer) > 200:
        found = found[-1:]
    tolerance = 10.0 ** -decimals + 1e-9 if decimals else 1e-9
    return any(abs(value - expected) <= tolerance for value in found)


# ---------------------------------------------------------------- running

@dataclass
class Record:
    id: int
    kind: str
    file: str
    question: str
    truth: Truth
    result: str  # right, wrong, failed, timeout
    seconds: float
    exit_code: int | None
    answer: str
    success: bool | None
    error: str | None = None
    limit_hit: str | None = None
    answer_source: str | None = None
    total_calls: int | None = None
    total_tokens: int | None = None
    stderr_tail: str = ""


def default_rlm() -> str | None:
    beside = Path(sys.executable).parent / "rlm"
    return str(beside) if beside.exists() else shutil.which("rlm")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def execute(cmd: list[str], cwd: Path, stderr_path: Path, timeout: float) -> tuple[str, int | None, bool, float]:
    """(stdout, exit code, timed out, seconds) of ``cmd``, stderr into ``stderr_path``."""
    started = time.perf_counter()
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_group(proc)
            timed_out = True
            try:
                out, _ = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a stray child holds stdout open
                out = b""
    return out.decode("utf-8", "replace"), proc.returncode, timed_out, time.perf_counter() - started


def parse_output(stdout: str) -> dict[str, Any] | None:
    """The JSON object ``rlm run --json`` printed (None when there is none)."""
    for start in [0] + [m.start() + 1 for m in re.finditer(r"\n\{", stdout)]:
        try:
            data = json.loads(stdout[start:])
        except ValueError:
            continue
        return data if isinstance(data, dict) else None
    return None


def classify(timed_out: bool, exit_code: int | None, data: dict[str, Any] | None, right: bool) -> str:
    if timed_out:
        return "timeout"
    if exit_code != 0 or data is None or data.get("success") is not True:
        return "failed"
    return "right" if right else "wrong"


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def ask(question: Question, files: dict[str, str], args: argparse.Namespace, extra: list[str]) -> Record:
    expected = truth(question, files)
    cmd = [args.rlm, "run", "--json", question.text, *(["--model", args.model] if args.model else []), *extra]
    logs = args.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stderr_path = logs / f"q{question.id:02d}.stderr"
    stdout, exit_code, timed_out, seconds = execute(cmd, args.workdir, stderr_path, args.timeout)
    data = parse_output(stdout)
    answer = str(data.get("response") or "") if data else stdout.strip()
    right = matches(answer, expected, question.decimals, candidates(question, files))
    return Record(id=question.id, kind=question.kind, file=question.file, question=question.text, truth=expected,
                  result=classify(timed_out, exit_code, data, right), seconds=round(seconds, 2),
                  exit_code=exit_code, answer=answer, success=data.get("success") if data else None,
                  error=data.get("error") if data else None, limit_hit=data.get("limit_hit") if data else None,
                  answer_source=data.get("answer_source") if data else None,
                  total_calls=data.get("total_calls") if data else None,
                  total_tokens=data.get("total_tokens") if data else None, stderr_tail=last_line(stderr_path))


def short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[:width - 3] + "...")


def report_line(record: Record) -> str:
    exit_code = "-" if record.exit_code is None else str(record.exit_code)
    return (f"q{record.id:02d} {record.result:<7} {record.seconds:7.1f}s exit {exit_code:<4} "
            f"truth={record.truth!s:<10} answer={short(record.answer)}")


def summarize(records: list[Record], model: str) -> dict[str, Any]:
    count = {name: sum(1 for r in records if r.result == name) for name in ("right", "wrong", "failed", "timeout")}
    seconds = [r.seconds for r in records]
    return {"questions": len(records), **count,
            "right_pct": round(100 * count["right"] / len(records), 1) if records else 0.0,
            "median_seconds": round(statistics.median(seconds), 2) if seconds else 0.0,
            "total_seconds": round(sum(seconds), 2), "model": model}


def summary_lines(totals_: dict[str, Any]) -> list[str]:
    right = (f"right {totals_['right']}/{totals_['questions']} ({totals_['right_pct']:.0f}%)  "
             f"wrong with exit 0: {totals_['wrong']}  failed: {totals_['failed']}  timeouts: {totals_['timeout']}")
    time_ = (f"median {totals_['median_seconds']:.1f} s per question, total {totals_['total_seconds']:.0f} s; "
             f"model: {totals_['model']}")
    return [right, time_]


# ---------------------------------------------------------------- command line

def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, extra = split_passthrough(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- are passed to `rlm run`.")
    parser.add_argument("--workdir", type=Path, help="where the files are written (default: a fresh temp dir)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per question")
    parser.add_argument("--rlm", default=None, help="the rlm executable")
    parser.add_argument("--model", help="passed to rlm run as --model")
    parser.add_argument("--only", help="comma-separated question ids")
    parser.add_argument("--limit", type=int, help="run at most N questions")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--list", action="store_true", help="print the questions and truths, run nothing")
    args = parser.parse_args(own)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    args.selected = select(parser, args.only, args.limit)
    if not args.list:
        args.rlm = args.rlm or default_rlm()
        if not args.rlm or not (shutil.which(args.rlm) or Path(args.rlm).is_file()):
            parser.error(f"rlm executable not found: {args.rlm or 'rlm'} (use --rlm PATH)")
    return args, extra


def select(parser: argparse.ArgumentParser, only: str | None, limit: int | None) -> list[Question]:
    chosen = list(QUESTIONS)
    if only:
        try:
            ids = [int(part) for part in only.split(",") if part.strip()]
        except ValueError:
            parser.error(f"--only takes comma-separated ids, not {only!r}")
        known = {q.id: q for q in QUESTIONS}
        unknown = [i for i in ids if i not in known]
        if unknown:
            parser.error(f"--only: no question {', '.join(map(str, unknown))} (ids 1-{len(QUESTIONS)})")
        chosen = [known[i] for i in ids]
    return chosen[:limit] if limit else chosen


def list_questions(questions: list[Question], files: dict[str, str]) -> None:
    for q in questions:
        print(f"q{q.id:02d} [{q.kind}, {q.file}] truth={truth(q, files)}\n    {q.text}")


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    files = generate(args.seed)
    if args.list:
        if args.workdir:
            write_files(files, args.workdir)
        list_questions(args.selected, files)
        return 0
    if args.workdir is None:
        args.workdir = Path(tempfile.mkdtemp(prefix="rlm-local-tasks-"))
    args.workdir = args.workdir.resolve()
    write_files(files, args.workdir)
    model = args.model or os.environ.get("RLM_MODEL") or "embedded default"
    print(f"workdir: {args.workdir}  seed {args.seed}  rlm {args.rlm}  model: {model}", file=sys.stderr)
    records = []
    for question in args.selected:
        record = ask(question, files, args, extra)
        records.append(record)
        print(report_line(record), flush=True)
        if record.result in ("failed", "timeout") and record.stderr_tail:
            print(f"    stderr: {record.stderr_tail[:200]}", flush=True)
    summary = summarize(records, model)
    for line in summary_lines(summary):
        print(line)
    if args.out:
        write_json(args, extra, summary, records)
    return 0


def write_json(args: argparse.Namespace, extra: list[str], summary: dict[str, Any], records: list[Record]) -> None:
    data = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "seed": args.seed,
            "model": summary["model"], "rlm": args.rlm, "extra_args": extra, "timeout_s": args.timeout,
            "workdir": str(args.workdir),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "totals": summary, "questions": [asdict(r) for r in records]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
