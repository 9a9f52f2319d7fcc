"""The built-in ``file_read`` and ``list_files`` tools, as the model calls them, against a real tree.

Outside the allowed root lies a canary file holding a secret: whatever path the model passes
(``..``, absolute, symlinks out, escaped bytes), neither tool's result nor its error ever holds
the secret.  Reads and listings are bounded, and every failure is a :class:`ToolError` (a message
the model can act on), never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from types import SimpleNamespace

import pytest
from rlm import standard_tools
from rlm.errors import ToolError
from rlm.standard_tools import MAX_LIST_ENTRIES, MAX_READ_CHARS, file_read, list_files

SECRET = "CANARY-7f3a9c-TOP-SECRET"


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("hello")
    (root / "sub" / "b.txt").write_text("inner")
    (root / ".hidden").write_text("dot file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / f"{SECRET}.name").write_text(SECRET)  # a name that is itself secret
    # the ways out: symlinks to the file, to its directory, relative, absolute, dangling
    (root / "link-file").symlink_to(outside / "secret.txt")
    (root / "link-dir").symlink_to(outside)
    (root / "sub" / "rel-link").symlink_to("../../outside/secret.txt")
    (root / "dangling").symlink_to(outside / "not-yet")
    return root, outside


def ctx_for(*roots) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(allowed_paths=tuple(str(r) for r in roots)))


def call(spec, root, **kwargs):
    return asyncio.run(spec.handler(ctx=ctx_for(root), **kwargs))


def outcome(spec, root, **kwargs) -> str:
    """The tool's result or error as the model would see it (JSON / the error's text)."""
    try:
        return json.dumps(call(spec, root, **kwargs), ensure_ascii=False)
    except ToolError as exc:
        return str(exc)


ESCAPES = [
    "../outside/secret.txt",
    "sub/../../outside/secret.txt",
    "link-file",
    "link-dir/secret.txt",
    "sub/rel-link",
    "dangling",
    "\\x2e\\x2e/outside/secret.txt",     # '..' written as escaped bytes (the list_files notation)
    "..\\x2foutside\\x2fsecret.txt",      # '/' written so
    "sub/" + "../" * 40 + "etc/passwd",
]


@pytest.mark.parametrize("path", ESCAPES + ["<outside-absolute>"])
def test_file_read_never_reveals_a_file_outside(tree, path):
    root, outside = tree
    if path == "<outside-absolute>":
        path = str(outside / "secret.txt")
    with pytest.raises(ToolError):
        call(file_read, root, path=path)
    assert SECRET not in outcome(file_read, root, path=path)


@pytest.mark.parametrize("path", [".", "sub", "link-dir", "../outside", "\\x2e\\x2e/outside"])
@pytest.mark.parametrize("recursive", [False, True])
def test_list_files_never_shows_what_lies_outside(tree, path, recursive):
    root, _ = tree
    shown = outcome(list_files, root, path=path, recursive=recursive)
    assert SECRET not in shown and "secret.txt" not in shown


def test_list_files_shows_hidden_files_and_leaves_out_links_that_leave_the_root(tree):
    root, _ = tree
    (root / "alias").symlink_to(root / "sub" / "b.txt")  # a link that stays inside is listed
    out = call(list_files, root, path=".")
    assert out == {"path": ".", "entries": [".hidden", "a.txt", "alias", "sub/"], "truncated": False}
    deep = call(list_files, root, path=".", recursive=True)
    assert deep["entries"] == [".hidden", "a.txt", "alias", "sub/", "sub/b.txt"]


def test_list_files_refuses_directories_outside_and_patterns_that_are_paths(tree):
    root, _ = tree
    for path in ("..", "link-dir", "/", "/etc"):
        with pytest.raises(ToolError, match="outside the allowed paths"):
            call(list_files, root, path=path)
    for pattern in ("../*", "/etc/*", "sub/*", "..\\*"):
        with pytest.raises(ToolError, match="only match names"):
            call(list_files, root, path=".", pattern=pattern)


def test_list_files_of_a_file_or_a_missing_directory_is_a_clear_error(tree):
    root, _ = tree
    with pytest.raises(ToolError, match="not a directory"):
        call(list_files, root, path="a.txt")
    with pytest.raises(ToolError, match="does not exist"):
        call(list_files, root, path="nope")


def test_list_files_is_bounded_and_says_so(tree, monkeypatch):
    root, _ = tree
    many = root / "many"
    many.mkdir()
    for i in range(MAX_LIST_ENTRIES + 5):
        (many / f"f{i:05d}").touch()
    out = call(list_files, root, path="many")
    assert len(out["entries"]) == MAX_LIST_ENTRIES and out["truncated"] is True
    deep = call(list_files, root, path=".", recursive=True)
    assert len(deep["entries"]) == MAX_LIST_ENTRIES and deep["truncated"] is True


def test_a_listing_of_exactly_the_limit_is_not_called_truncated(tree, monkeypatch):
    root, _ = tree
    monkeypatch.setattr(standard_tools, "MAX_LIST_ENTRIES", 4)
    exact = root / "exact"
    exact.mkdir()
    for name in "abcd":
        (exact / name).touch()
    out = call(list_files, root, path="exact")
    assert out == {"path": "exact", "entries": ["a", "b", "c", "d"], "truncated": False}
    (exact / "e").touch()
    out = call(list_files, root, path="exact")
    assert out["entries"] == ["a", "b", "c", "d"] and out["truncated"] is True


def test_file_read_of_a_large_file_is_cut_at_the_limit_and_says_so(tree):
    root, _ = tree
    (root / "big.txt").write_text("y" * (3 * MAX_READ_CHARS))
    out = call(file_read, root, path="big.txt")
    assert len(out["content"]) == MAX_READ_CHARS
    assert out["truncated"] is True and out["next_offset"] == MAX_READ_CHARS and out["size"] == 3 * MAX_READ_CHARS
    asked_for_more = call(file_read, root, path="big.txt", max_chars=10 * MAX_READ_CHARS)
    assert len(asked_for_more["content"]) == MAX_READ_CHARS and asked_for_more["truncated"] is True
    assert call(file_read, root, path="big.txt", max_chars=-5)["content"] == "y"  # at least one character


def test_file_read_of_bytes_that_are_not_utf8_does_not_crash(tree):
    root, _ = tree
    (root / "bin.dat").write_bytes(bytes(range(256)) * 4)
    out = call(file_read, root, path="bin.dat")
    assert out["size"] == 1024 and out["truncated"] is False
    json.dumps(out, ensure_ascii=False).encode("utf-8")  # what every backend does with a tool result
    assert "\ufffd" in out["content"]


@pytest.mark.parametrize(("path", "said"), [
    ("sub", "is a directory"),
    (".", "is a directory"),
    ("missing.txt", "does not exist"),
    ("sub/missing/deeper.txt", "does not exist"),
])
def test_file_read_of_a_directory_or_missing_file_is_a_clear_error(tree, path, said):
    root, _ = tree
    with pytest.raises(ToolError, match=said) as info:
        call(file_read, root, path=path)
    assert "Traceback" not in str(info.value)


def test_file_read_of_a_fifo_is_refused_at_once(tree):
    root, _ = tree
    os.mkfifo(root / "pipe")
    done: list = []
    worker = threading.Thread(target=lambda: done.append(outcome(file_read, root, path="pipe")), daemon=True)
    worker.start()
    worker.join(10)
    assert done and "not a regular file" in done[0]


def test_file_read_refuses_a_symlink_put_in_place_after_the_check(tree, monkeypatch):
    """The path was confined, then (a race) its last component became a link out: not followed."""
    root, _ = tree
    monkeypatch.setattr(standard_tools, "_resolve", lambda path, allowed, exists: str(root / "link-file"))
    shown = outcome(file_read, root, path="a.txt")
    assert SECRET not in shown and "symbolic link" in shown


def test_file_read_refuses_a_fifo_put_in_place_after_the_check(tree, monkeypatch):
    root, _ = tree
    os.mkfifo(root / "pipe")
    monkeypatch.setattr(standard_tools, "_resolve", lambda path, allowed, exists: str(root / "pipe"))
    monkeypatch.setattr(standard_tools.os.path, "isfile", lambda p: True)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(outcome(file_read, root, path="a.txt")), daemon=True)
    worker.start()
    worker.join(10)
    assert done and "not a regular file" in done[0]


@pytest.mark.parametrize("path", ["a.txt\x00../../outside/secret.txt", "x" * 5000, "/".join(["d"] * 3000),
                                  "loop/../../outside/secret.txt"])
def test_file_read_of_odd_paths_is_a_tool_error(tree, path):
    root, _ = tree
    (root / "loop").symlink_to("loop")
    with pytest.raises(ToolError):
        call(file_read, root, path=path)
    assert SECRET not in outcome(file_read, root, path=path)


def test_file_read_inside_through_a_link_that_stays_inside(tree):
    root, _ = tree
    (root / "alias").symlink_to(root / "sub" / "b.txt")
    assert call(file_read, root, path="alias")["content"] == "inner"
