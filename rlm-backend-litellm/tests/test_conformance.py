"""rlm-testing's BackendConformance suite through the real litellm, OpenAI protocol, against the scripted server.

``gpt-4o-mini`` is a model litellm knows (provider ``openai``), so it is
sent as is to ``api_base``; ``TestLiteLLMUnknownModelConformance`` runs the
suite again with a model litellm does not know, which goes out with
``custom_llm_provider="openai"``.
"""

from __future__ import annotations

from typing import Any

import pytest
from rlm_backend_litellm.backend import LiteLLMBackend
from rlm_backend_litellm.options import LiteLLMOptions
from rlm_testing.backend_suite import BackendConformance
from rlm_testing.server import ScriptedLLMServer

FAST = LiteLLMOptions(retry_base_delay=0.01, retry_max_delay=0.05)
#: litellm's own pydantic deprecation noise
QUIET = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@QUIET
class TestLiteLLMConformance(BackendConformance):
    keeps_connections_alive = True
    protocol = "openai"
    model = "gpt-4o-mini"

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> LiteLLMBackend:
        settings.setdefault("options", FAST)
        return LiteLLMBackend(settings=self.backend_settings(server, **settings))


@QUIET
class TestLiteLLMUnknownModelConformance(TestLiteLLMConformance):
    model = "scripted-model"
