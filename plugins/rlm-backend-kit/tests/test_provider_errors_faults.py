"""The failures of answers that arrived but are none: one line each, cause and fix, retried or not."""

from __future__ import annotations

import json

import pytest
from rlm_backend_kit.provider_errors import (
    classify,
    describe_body,
    empty_answer,
    malformed_stream,
    not_an_api_body,
    timed_out_failure,
    truncated_stream,
)

URL = "http://127.0.0.1:8000/v1"


def one_line(failure) -> str:
    text = str(failure.error)
    assert "\n" not in text and "Traceback" not in text, text
    assert failure.error.fix, "every fault names its fix"
    return text


def test_truncated_stream_is_retryable_and_names_the_missing_marker():
    failure = truncated_stream("OpenAI", URL, "finish_reason")
    assert failure.retryable and not failure.error.permanent
    assert one_line(failure) == (
        f"OpenAI at {URL} ended the stream before the answer was complete (no finish_reason): try again; if it "
        "persists, check the network and any proxy between rlm and the provider"
    )


def test_malformed_stream_is_retryable():
    try:
        json.loads('{"choices": [{"delta": {"content": "bro')
    except ValueError as exc:
        failure = malformed_stream("Anthropic", None, exc)
    assert failure.retryable
    text = one_line(failure)
    assert text.startswith("Anthropic sent a stream event that is not valid JSON (Unterminated string")
    assert "Anthropic-compatible server" in text


def test_empty_answer_is_retried_unless_a_filter_stopped_it():
    failure = empty_answer("OpenAI", URL, "content: null, no tool call", finish_reason="stop")
    assert failure.retryable
    assert one_line(failure).startswith(
        f"OpenAI at {URL} sent an answer with no content (content: null, no tool call, finish_reason 'stop'): "
        "try again"
    )
    filtered = empty_answer("Anthropic", None, "content: []", finish_reason="content_filter")
    assert not filtered.retryable
    assert "rephrase the prompt" in one_line(filtered)
    named = empty_answer("openai (via litellm)", URL, "content: null", compatible="OpenAI")
    assert "an OpenAI-compatible server" in str(named.error)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>", "text/html",
         "an HTML page ('Sign in')"),
        ("<html><body>nope</body></html>", None, "an HTML page"),
        ("<p>gateway</p>", "text/html; charset=utf-8", "an HTML page"),
        ("502 Bad Gateway\n\nnginx", "text/plain", "text/plain that is not JSON ('502 Bad Gateway nginx')"),
        ("", None, "an empty body"),
    ],
)
def test_describe_body(body, content_type, expected):
    assert describe_body(body, content_type) == expected


def test_an_html_page_is_not_retried_and_points_at_api_base():
    failure = not_an_api_body("Anthropic", "http://proxy", "<html><title>Log in &amp; go</title></html>")
    assert not failure.retryable
    assert one_line(failure) == (
        "Anthropic at http://proxy sent an HTML page ('Log in & go') instead of an API response: check that "
        "api_base points at an Anthropic-compatible API, not at a web page or a proxy's login"
    )


def test_a_timeout_names_the_setting_to_raise():
    failure = timed_out_failure("OpenAI", f" at {URL}", 0.5, "[plugins.backend-openai] read_timeout")
    assert failure.retryable
    assert one_line(failure) == (
        f"OpenAI at {URL} did not answer within the 0.5s timeout (request timed out): try again later, or raise "
        "[plugins.backend-openai] read_timeout"
    )


def test_classify_passes_the_timeout_setting_on():
    class APITimeoutError(Exception):
        pass

    failure = classify(APITimeoutError("Request timed out."), model="m", provider="OpenAI", key_env="K",
                       timeout=2.0, timeout_fix="[plugins.backend-openai] read_timeout")
    assert failure is not None and failure.retryable
    assert str(failure.error).endswith("raise [plugins.backend-openai] read_timeout")
    plain = classify(APITimeoutError("Request timed out."), model="m", provider="OpenAI", key_env="K", timeout=2.0)
    assert str(plain.error).endswith("raise the timeout")
