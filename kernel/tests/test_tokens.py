"""The one token estimate (rlm.tokens) and its users."""

from __future__ import annotations

from rlm.tokens import CHARS_PER_TOKEN, estimate_tokens, text_chars, tokens_for_chars
from rlm.types import Message


def test_text_is_four_characters_a_token():
    assert CHARS_PER_TOKEN == 4
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("abcde") == 1
    assert tokens_for_chars(-3) == 0


def test_messages_of_every_shape_count_their_text():
    openai_style = [{"role": "user", "content": "a" * 8},
                    {"role": "user", "content": [{"type": "text", "text": "b" * 8}, {"type": "image_url"}]},
                    {"role": "assistant", "content": None}]
    assert text_chars(openai_style) == 16
    assert estimate_tokens(openai_style) == 4
    assert estimate_tokens(openai_style, per_message=4) == 4 + 3 * 4
    assert estimate_tokens(iter(openai_style), per_message=4) == 16  # a generator is read once
    kernel = [Message.user("x" * 12), Message.assistant("y" * 4)]
    assert estimate_tokens(kernel) == 4
    assert estimate_tokens(kernel[0], per_message=2) == 3 + 2
    assert estimate_tokens(None, per_message=4) == 0


def test_orchestrator_and_local_backend_use_it():
    from rlm.orchestrator import estimate_tokens as prompt_estimate

    messages = [Message.user("z" * 400)]
    # the orchestrator's prompt estimate: the shared rate over the prompt's measured characters, plus 8
    from rlm.orchestrator import prompt_size

    assert prompt_estimate(messages) == tokens_for_chars(prompt_size(messages)[0]) + 8
    try:
        from rlm_backend_local.convert import estimate_prompt_tokens
    except ImportError:  # the plugin is not installed in this environment
        return
    body = {"messages": [{"role": "user", "content": "q" * 40}, {"role": "system", "content": "s" * 4}]}
    assert estimate_prompt_tokens(body) == estimate_tokens(body["messages"], per_message=4) == 11 + 8
