"""The public API around the loop: structured output, streaming, multimodal input, config."""

from __future__ import annotations

import asyncio

from rlm import RLMConfig
from rlm.types import ImagePart, TextPart

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


def test_structured_output_valid(make_rlm):
    rlm, backend = make_rlm(['```json\n{"name": "Bob", "age": 30}\n```'])
    result = rlm.completion_sync("who", response_format={"name": "person", "schema": SCHEMA})
    assert result.success and result.parsed == {"name": "Bob", "age": 30}
    assert backend.requests[0].response_format == {"name": "person", "schema": SCHEMA}


def test_structured_output_invalid_gets_one_repair_then_a_clear_error(make_rlm):
    rlm, backend = make_rlm(['{"name": "Bob"}', '{"name": "Bob", "age": "thirty"}'])
    result = rlm.completion_sync("who", response_format=SCHEMA)
    assert not result.success and result.parsed is None
    assert result.error.startswith("Structured output invalid: /age: expected integer")
    assert "missing required property 'age'" in backend.requests[1].messages[-1].text


def test_structured_output_repaired(make_rlm):
    rlm, _ = make_rlm(["not json", '{"name": "Ann", "age": 5}'])
    result = rlm.completion_sync("who", response_format=SCHEMA)
    assert result.success and result.parsed == {"name": "Ann", "age": 5}


def test_stream_yields_text_as_it_arrives(make_rlm):
    rlm, _ = make_rlm(["hello streaming world"])

    async def consume():
        return [chunk async for chunk in rlm.stream("hi")]

    chunks = asyncio.run(consume())
    assert len(chunks) == 3 and "".join(chunks).strip() == "hello streaming world"
    assert rlm.last_result.response == "hello streaming world"


def test_multimodal_content_reaches_the_backend(make_rlm):
    rlm, backend = make_rlm(["a cat"])
    parts = [TextPart(text="what is this?"), ImagePart(data=b"\x89PNG...", media_type="image/png")]
    rlm.completion_sync(parts)
    content = backend.requests[0].messages[-1].content
    assert isinstance(content, tuple) and isinstance(content[1], ImagePart)


def test_config_object_model_is_used_unless_overridden(make_rlm, tmp_path):
    from rlm.core import RLM

    rlm, _ = make_rlm(["x"])
    cfg = RLMConfig(model="from-config", max_turns=7)
    assert RLM(config=cfg, plugin_manager=rlm.pm).config.model == "from-config"
    overridden = RLM(config=cfg, model="kw-model", plugin_manager=rlm.pm)
    assert overridden.config.model == "kw-model" and overridden.config.max_turns == 7
