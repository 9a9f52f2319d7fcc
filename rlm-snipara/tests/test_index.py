"""The local index: sections by headings, bm25 order, regex search, incremental refresh, token budgets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rlm.errors import ToolError
from rlm.tokens import estimate_tokens
from rlm_snipara.budget import pack
from rlm_snipara.config import db_path
from rlm_snipara.index import DocIndex
from rlm_snipara.markdown import split_sections
from rlm_snipara.store import Store


@pytest.fixture
def index(docs: Path, tmp_path: Path) -> DocIndex:
    return DocIndex(Store(tmp_path / "idx.sqlite3"), docs=["docs/", "README.md"], shared=["docs/team"], base=docs)


def test_sections_follow_markdown_headings_and_ignore_fenced_code():
    text = "intro\n# A\na body\n## B\nb body\n```\n# not a heading\n```\n### C\nc\n# D\nd\n"
    sections = split_sections(text, name="f.md")
    assert [(s.title, s.level, s.line) for s in sections] == [
        ("f.md", 0, 1), ("A", 1, 2), ("B", 2, 4), ("C", 3, 9), ("D", 1, 11)]
    assert sections[3].heading_path == "A > B > C"
    assert "# not a heading" in sections[2].body


def test_long_sections_are_cut_into_parts():
    body = "\n".join(f"line {i} " + "word " * 40 for i in range(400))
    parts = split_sections("# Big\n" + body, name="big.md")
    assert len(parts) > 1
    assert all(estimate_tokens(p.body) <= 1500 for p in parts)
    assert parts[0].title.startswith("Big (part 1/")


def test_sections_tool_lists_files_and_headings(index):
    listing = index.sections()
    titles = {(s["file"], s["section"]) for s in listing["sections"]}
    assert ("docs/auth.md", "Authentication > Tokens") in titles
    assert ("README.md", "Project") in titles
    assert ("docs/team/conventions.md", "Conventions > Error handling") in titles
    assert index.sections(filter="caching")["sections"] == [
        {"file": "docs/db.md", "section": "Database > Caching", "level": 2, "line": 5,
         "tokens": listing["sections"][[s["section"] for s in listing["sections"]].index("Database > Caching")]["tokens"]}]


def test_bm25_ranks_the_denser_heading_match_first(index):
    out = index.query("authentication tokens", max_tokens=5000)
    sections = [r["section"] for r in out["results"]]
    assert sections[0] == "Authentication > Tokens"
    assert sections.index("Authentication > Tokens") < sections.index("Database > Caching")
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)


def test_query_without_matches_is_empty(index):
    out = index.query("kubernetes helm", max_tokens=1000)
    assert out["results"] == [] and out["tokens"] == 0
    assert index.query("? ! a", max_tokens=1000)["results"] == []


@pytest.mark.parametrize("budget", [100, 150, 300, 1000])
def test_results_never_exceed_the_token_budget(docs, tmp_path, budget):
    (docs / "docs" / "long.md").write_text("# Authentication deep dive\n" + "authentication detail text\n" * 2000)
    index = DocIndex(Store(tmp_path / "b.sqlite3"), docs=["docs/"], base=docs)
    out = index.query("authentication", max_tokens=budget)
    charged = sum(estimate_tokens(r["content"]) + 12 + estimate_tokens(r["file"] + r["section"])
                  for r in out["results"])
    assert charged == out["tokens"] <= budget
    assert out["results"], "the best match is cut to fit rather than dropped"
    assert out["truncated"]


def test_pack_is_greedy_and_bounded():
    cut = pack(["a" * 400, "b" * 4000, "c" * 40], lambda s: s, 200)  # room left: the long one is cut
    kept = [text for _, text in cut.items]
    assert cut.tokens <= 200 and kept[0] == "a" * 400 and kept[1].startswith("bbb") and kept[1].endswith("…")
    assert cut.truncated
    filled = pack(["a" * 600, "b" * 4000, "c" * 40], lambda s: s, 200)  # too little room: skipped, c fills
    assert [text for _, text in filled.items] == ["a" * 600, "c" * 40] and filled.tokens <= 200


def test_regex_search_reports_file_and_line(index):
    out = index.search(r"TODO", max_tokens=5000)
    found = {(m["file"], m["line"]) for m in out["matches"]}
    assert ("README.md", 3) in found
    assert ("docs/auth.md", 16) in found
    assert index.search(r"argon\d", max_tokens=5000)["matches"][0]["text"] == "Passwords are hashed with argon2."


def test_regex_search_rejects_bad_patterns(index):
    with pytest.raises(ToolError, match="invalid regular expression"):
        index.search("(unclosed", max_tokens=100)
    with pytest.raises(ToolError, match="shorter"):
        index.search("a" * 600, max_tokens=100)


def test_refresh_is_incremental(index, docs):
    first = index.refresh()
    assert first.added == 4 and first.updated == 0
    assert index.refresh().unchanged == 4
    auth = docs / "docs" / "auth.md"
    auth.write_text(auth.read_text() + "\n## Sessions\n\nSessions use opaque cookies.\n")
    stat = auth.stat()
    os.utime(auth, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = index.refresh()
    assert (second.added, second.updated, second.removed, second.unchanged) == (0, 1, 0, 3)
    assert index.query("opaque cookies", max_tokens=500)["results"][0]["section"] == "Authentication > Sessions"
    (docs / "docs" / "db.md").unlink()
    (docs / "docs" / "new.md").write_text("# Deploy\n\nDeploy with helm charts.\n")
    third = index.refresh()
    assert (third.added, third.removed) == (1, 1)
    assert index.query("PostgreSQL", max_tokens=500)["results"] == []
    assert index.query("helm", max_tokens=500)["results"][0]["file"] == "docs/new.md"


def test_missing_docs_are_reported(docs, tmp_path):
    index = DocIndex(Store(tmp_path / "m.sqlite3"), docs=["nope/", "README.md"], base=docs)
    assert index.refresh().missing == ("nope/",)


def test_shared_sections_come_from_shared_paths(index):
    out = index.shared_sections(max_tokens=2000)
    assert {r["file"] for r in out["results"]} == {"docs/team/conventions.md"}
    ranked = index.query("error handling", max_tokens=2000, shared_only=True)
    assert ranked["results"][0]["section"] == "Conventions > Error handling"


def test_db_lives_in_the_cache_dir_by_default_or_where_configured(local_config, tmp_path, docs):
    default = db_path(local_config())
    assert default.parent == tmp_path / "cache" / "snipara"
    assert db_path(local_config('db_path = ".rlm/index.sqlite3"\n')) == docs / ".rlm" / "index.sqlite3"


def test_missing_fts5_gives_a_clear_error(monkeypatch, tmp_path):
    from rlm_snipara import store

    monkeypatch.setattr(store, "fts5_available", lambda: False)
    with pytest.raises(ToolError, match="FTS5") as info, Store(tmp_path / "x.sqlite3").connect():
        pass
    assert "hosted provider" in str(info.value)
