"""rlm-testing's backend conformance suite, run against the scripted LLM server (the ``api_base`` mode).

With ``[rlm] api_base`` set, the local backend talks to that OpenAI-compatible
server instead of starting llama.cpp; the suite checks the wire format,
streaming, retries and error mapping of its HTTP client.  Tool tests skip
(``native_tools=False``); JSON Schema goes out in llama.cpp's form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

pytest.importorskip("rlm_testing.backend_suite")

from rlm_backend_local.backend import LocalBackend
from rlm_testing.backend_suite import BackendConformance


class TestLocalBackendConformance(BackendConformance):
    protocol = "openai"
    model = "scripted-model"  # with api_base the name goes to the server as given (a local/ prefix is dropped)

    def make_backend(self, server, **settings):
        return LocalBackend(settings=self.backend_settings(server, **settings))

    def assert_schema_sent(self, body: Mapping[str, Any], name: str, schema: Mapping[str, Any]) -> None:
        # llama.cpp turns {"type": "json_object", "schema": ...} into a grammar; it rejects "json_schema"
        assert body.get("response_format") == {"type": "json_object", "schema": dict(schema)}
