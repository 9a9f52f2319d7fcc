"""rlm-testing's BackendConformance suite, run through the real openai SDK against the scripted server."""

from __future__ import annotations

from typing import Any

from rlm_backend_openai.backend import OpenAIBackend
from rlm_backend_openai.options import OpenAIOptions
from rlm_testing.backend_suite import BackendConformance
from rlm_testing.server import ScriptedLLMServer

#: Tiny backoff so that retries without Retry-After stay fast.
FAST = OpenAIOptions(retry_base_delay=0.01, retry_max_delay=0.05)


class TestOpenAIConformance(BackendConformance):
    keeps_connections_alive = True
    protocol = "openai"
    model = "gpt-4o-mini"

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> OpenAIBackend:
        settings.setdefault("options", FAST)
        return OpenAIBackend(settings=self.backend_settings(server, **settings))
