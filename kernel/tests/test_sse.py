"""rlm.sse: events of a server-sent event stream, fed whole or in pieces, bounded."""

from __future__ import annotations

import json

import pytest
from rlm.sse import Event, SSEError, SSEParser, parse


def test_one_event_per_blank_line_with_its_name_and_id():
    body = b'event: message_start\nid: 7\ndata: {"a": 1}\n\ndata: two\n\n'
    assert parse(body) == [Event(data='{"a": 1}', event="message_start", id="7"), Event(data="two", id="7")]


def test_multi_line_data_is_joined_by_newlines_and_one_leading_space_is_dropped():
    assert parse("data: first\ndata:second\ndata:  third\ndata\n\n") == [Event(data="first\nsecond\n third\n")]


def test_comments_retry_unknown_fields_and_events_without_data_are_skipped():
    body = ": ping\nretry: 100\nfoo: bar\n\nevent: lonely\n\n:\ndata: x\n\n"
    assert parse(body) == [Event(data="x")]  # the name of an event without data does not carry over


def test_crlf_line_ends():
    assert parse(b"event: e\r\ndata: a\r\ndata: b\r\n\r\n") == [Event(data="a\nb", event="e")]


def test_a_stream_split_anywhere_gives_the_same_events():
    body = 'data: {"text": "caf\u00e9"}\r\n\r\n: c\ndata: [DONE]\n\n'.encode()
    whole = parse(body)
    for size in (1, 2, 3, 7):
        parser = SSEParser()
        got = [e for i in range(0, len(body), size) for e in parser.feed(body[i:i + size])] + parser.finish()
        assert got == whole
    assert json.loads(whole[0].data) == {"text": "caf\u00e9"}


def test_done_is_data_the_caller_stops_at():
    events = parse("data: {}\n\ndata: [DONE]\n\n")
    assert [e.data for e in events] == ["{}", "[DONE]"]


def test_an_event_the_stream_ends_in_is_returned_by_finish():
    parser = SSEParser()
    assert parser.feed("data: a\n\ndata: b") == [Event(data="a")]
    assert parser.finish() == [Event(data="b")]
    assert parser.finish() == []


def test_an_oversize_event_is_a_clear_error():
    with pytest.raises(SSEError, match="larger than 64 bytes"):
        parse("data: " + "x" * 40 + "\ndata: " + "y" * 40 + "\n\n", max_event=64)


def test_a_line_that_never_ends_is_an_error_before_it_fills_memory():
    parser = SSEParser(max_event=100)
    parser.feed("data: " + "x" * 50)
    with pytest.raises(SSEError, match="larger than 100 bytes"):
        parser.feed("x" * 60)


def test_small_events_of_a_long_stream_are_each_within_the_bound():
    events = parse("".join(f"data: {i:040d}\n\n" for i in range(100)), max_event=64)
    assert len(events) == 100


def test_a_line_that_is_not_utf8_is_an_error():
    with pytest.raises(SSEError, match="not UTF-8"):
        parse(b"data: \xff\xfe\n\n")
