"""``file_read``: a window of the file, read by seeking; byte offsets, negative ones from the end."""

from __future__ import annotations

import asyncio
import resource
from types import SimpleNamespace

import pytest

from rlm.errors import ToolError
from rlm.standard_tools import MAX_READ_CHARS, file_read


def read(tmp_path, path, **kwargs):
    ctx = SimpleNamespace(config=SimpleNamespace(allowed_paths=(str(tmp_path),)))
    return asyncio.run(file_read.handler(path=path, ctx=ctx, **kwargs))


def test_reads_a_window_and_says_where_to_go_on(tmp_path):
    (tmp_path / "a.txt").write_text("0123456789")
    first = read(tmp_path, "a.txt", max_chars=4)
    assert first == {"path": "a.txt", "content": "0123", "offset": 0, "next_offset": 4, "size": 10, "truncated": True}
    rest = read(tmp_path, "a.txt", offset=first["next_offset"])
    assert rest["content"] == "456789" and rest["truncated"] is False and rest["next_offset"] == 10


def test_negative_offsets_count_from_the_end(tmp_path):
    (tmp_path / "a.txt").write_text("0123456789")
    assert read(tmp_path, "a.txt", offset=-3)["content"] == "789"
    assert read(tmp_path, "a.txt", offset=-3)["offset"] == 7
    assert read(tmp_path, "a.txt", offset=-100)["content"] == "0123456789"  # more than the file: from 0


def test_offset_past_the_end_is_a_clean_tool_error(tmp_path):
    (tmp_path / "a.txt").write_text("abc")
    with pytest.raises(ToolError, match="past the end") as info:
        read(tmp_path, "a.txt", offset=4)
    assert "0 to 3" in (info.value.fix or "")
    at_end = read(tmp_path, "a.txt", offset=3)
    assert at_end["content"] == "" and at_end["truncated"] is False
    (tmp_path / "empty.txt").write_text("")
    assert read(tmp_path, "empty.txt")["content"] == ""


def test_offsets_inside_a_character_move_to_the_next_one(tmp_path):
    (tmp_path / "u.txt").write_text("é€😀x", encoding="utf-8")  # 2 + 3 + 4 + 1 bytes
    whole = read(tmp_path, "u.txt", max_chars=2)
    assert whole["content"] == "é€" and whole["next_offset"] == 5
    inside = read(tmp_path, "u.txt", offset=6)  # inside the emoji
    assert inside["content"] == "x" and inside["offset"] == 9


def test_invalid_utf8_is_replaced_and_counted_exactly(tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"ab\xffcd\xfe")
    first = read(tmp_path, "bad.bin", max_chars=3)
    assert first["content"] == "ab\ufffd" and first["next_offset"] == 3
    assert read(tmp_path, "bad.bin", offset=3)["content"] == "cd\ufffd"


def test_max_chars_is_capped(tmp_path):
    (tmp_path / "big.txt").write_text("x" * (MAX_READ_CHARS + 10))
    got = read(tmp_path, "big.txt", max_chars=10 ** 9)
    assert len(got["content"]) == MAX_READ_CHARS and got["truncated"] is True


def test_a_1_gib_file_at_a_large_offset_costs_no_memory(tmp_path):
    big = tmp_path / "huge.txt"
    with open(big, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB of zero bytes
        fh.seek((1 << 30) - 5)
        fh.write(b"tail!")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    got = read(tmp_path, "huge.txt", offset=(1 << 30) - 1_000_000)
    got_end = read(tmp_path, "huge.txt", offset=-5)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert got_end["content"] == "tail!" and got["size"] == 1 << 30
    assert len(got["content"]) == MAX_READ_CHARS
    assert grown_mib < 50, f"reading a window grew the process by {grown_mib:.0f} MiB"


def test_non_integer_offsets_are_refused(tmp_path):
    (tmp_path / "a.txt").write_text("abc")
    with pytest.raises(ToolError, match="offset must be an integer"):
        read(tmp_path, "a.txt", offset="1")
