"""``rlm.paths.confine``: the security boundary of the built-in file tools.

A path is allowed only when its real location (symlinks resolved) lies inside an allowed root.
Every refusal is a :class:`ToolError` (a message the model can act on), never a traceback.
"""

from __future__ import annotations

import os

import pytest
from rlm.errors import ToolError
from rlm.paths import confine, inside, roots


@pytest.fixture
def tree(tmp_path):
    """``root`` (allowed) with a file and a sub-directory; ``outside`` beside it, holding a secret."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("inside")
    (root / "sub" / "b.txt").write_text("inside too")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("CANARY-SECRET")
    return root, outside


def real(p) -> str:
    return os.path.realpath(p)


def test_relative_and_absolute_paths_inside_are_allowed(tree):
    root, _ = tree
    assert confine("a.txt", [str(root)]) == real(root / "a.txt")
    assert confine("sub/b.txt", [str(root)]) == real(root / "sub" / "b.txt")
    assert confine(str(root / "sub" / "b.txt"), [str(root)]) == real(root / "sub" / "b.txt")
    assert confine(".", [str(root)]) == real(root)
    assert confine("sub/../a.txt", [str(root)]) == real(root / "a.txt")  # '..' that stays inside


@pytest.mark.parametrize("path", [
    "..",
    "../outside/secret.txt",
    "sub/../../outside/secret.txt",
    "./../outside/secret.txt",
    "sub/" + "../" * 50 + "etc/passwd",
])
def test_dotdot_escapes_are_refused(tree, path):
    root, _ = tree
    with pytest.raises(ToolError, match="outside the allowed paths"):
        confine(path, [str(root)])


def test_absolute_paths_outside_the_roots_are_refused(tree):
    root, outside = tree
    for path in (str(outside / "secret.txt"), "/etc/passwd", "/", str(root.parent)):
        with pytest.raises(ToolError, match="outside the allowed paths"):
            confine(path, [str(root)])


def test_a_sibling_whose_name_starts_like_the_root_is_outside(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    sibling = tmp_path / "data-private"
    sibling.mkdir()
    (sibling / "x").write_text("CANARY")
    with pytest.raises(ToolError):
        confine(str(sibling / "x"), [str(root)])
    with pytest.raises(ToolError):
        confine("../data-private/x", [str(root)])


def test_symlinks_pointing_outside_are_refused(tree):
    root, outside = tree
    (root / "link-file").symlink_to(outside / "secret.txt")
    (root / "link-dir").symlink_to(outside)
    (root / "sub" / "rel-link").symlink_to("../../outside/secret.txt")
    (root / "abs-etc").symlink_to("/etc")
    for path in ("link-file", "link-dir", "link-dir/secret.txt", "sub/rel-link", "abs-etc/passwd",
                 str(root / "link-dir" / "secret.txt")):
        with pytest.raises(ToolError, match="outside the allowed paths"):
            confine(path, [str(root)])


def test_a_symlink_inside_to_inside_is_followed(tree):
    root, _ = tree
    (root / "alias").symlink_to(root / "sub" / "b.txt")
    assert confine("alias", [str(root)]) == real(root / "sub" / "b.txt")


def test_a_dangling_symlink_pointing_outside_is_refused(tree):
    root, outside = tree
    (root / "dangling").symlink_to(outside / "not-yet-there")  # a file the sandbox might create later
    with pytest.raises(ToolError, match="outside the allowed paths"):
        confine("dangling", [str(root)])


@pytest.mark.parametrize("path", ["loop", "loop/x", "loop/../../outside/secret.txt", "a/b", "a/../../outside/secret.txt"])
def test_symlink_loops_never_escape(tree, path):
    root, _ = tree
    (root / "loop").symlink_to("loop")
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    try:
        got = confine(path, [str(root)])
    except ToolError:
        return
    # allowed only as a path inside the root that names no file (opening it fails: ELOOP)
    assert got.startswith(real(root) + os.sep) and ".." not in got.split(os.sep)
    assert not os.path.exists(got)


@pytest.mark.parametrize("path", ["a.txt\x00", "\x00", "../\x00/etc/passwd", "sub/\x00b.txt"])
def test_nul_bytes_are_refused(tree, path):
    root, _ = tree
    with pytest.raises(ToolError, match="NUL"):
        confine(path, [str(root)])


def test_lone_surrogates_are_refused_but_escaped_bytes_are_names(tree):
    root, _ = tree
    with pytest.raises(ToolError, match="surrogate"):
        confine("a\ud800.txt", [str(root)])
    # a name that is not UTF-8 on disk, as os.fsdecode gives it: allowed (surrogateescape)
    assert confine("caf\udce9.txt", [str(root)]).startswith(real(root))


@pytest.mark.parametrize("path", [
    "a" * 5000,                                    # one component past NAME_MAX
    "/".join(["d"] * 3000),                        # a path past PATH_MAX
    "sub/" * 2000 + "../" * 2001 + "outside/secret.txt",  # long, and escaping
])
def test_very_long_paths_are_refused_or_name_nothing(tree, path):
    root, _ = tree
    try:
        got = confine(path, [str(root)])
    except ToolError:
        return
    assert got.startswith(real(root) + os.sep)
    assert not os.path.exists(got)


def test_several_roots_relative_paths_come_from_the_first(tree, tmp_path):
    root, outside = tree
    assert confine("secret.txt", [str(outside), str(root)]) == real(outside / "secret.txt")
    with pytest.raises(ToolError):  # not found in the first root, so not looked for in the second
        confine("../outside/secret.txt", [str(root)])
    assert confine("secret.txt", [str(root), str(outside)]) == real(root / "secret.txt")
    # an absolute path may be in any root
    assert confine(str(outside / "secret.txt"), [str(root), str(outside)]) == real(outside / "secret.txt")


def test_no_roots_means_no_file_access(tree):
    _ = tree
    with pytest.raises(ToolError, match="disabled"):
        confine("a.txt", [])


def test_a_root_given_through_a_symlink_or_relative_path(tree, tmp_path, monkeypatch):
    root, _ = tree
    (tmp_path / "root-link").symlink_to(root)
    assert confine("a.txt", [str(tmp_path / "root-link")]) == real(root / "a.txt")
    monkeypatch.chdir(tmp_path)
    assert confine("a.txt", ["root"]) == real(root / "a.txt")
    with pytest.raises(ToolError):
        confine("../outside/secret.txt", ["root"])


def test_inside_compares_whole_components(tmp_path):
    allowed = roots([str(tmp_path / "r")])
    assert inside(str(tmp_path / "r"), allowed)
    assert inside(str(tmp_path / "r" / "x"), allowed)
    assert not inside(str(tmp_path / "rx"), allowed)
    assert not inside(str(tmp_path), allowed)
