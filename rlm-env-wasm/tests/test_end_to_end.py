"""A whole completion through the kernel with environment="wasm" and a scripted fake backend."""

from __future__ import annotations

from rlm import hookimpl
from rlm.backend import BackendCapabilities, LLMRequest, LLMResponse
from rlm.core import RLM
from rlm.plugins import create_plugin_manager
from rlm.types import Message, Usage
from rlm_env_wasm import plugin

FIRST_TURN = (
    "Let me look.\n```repl\n"
    "lines = context.splitlines()\n"
    "answer = llm_query('sub question: ' + lines[0]).upper() + f' ({len(lines)} lines)'\n"
    "FINAL_VAR('answer')\n```"
)


class FakeBackend:
    """Answers sub-LLM calls with their text; the root call writes one repl block."""

    name = "fake"

    def __init__(self, *, settings=None) -> None:
        self.requests: list[LLMRequest] = []

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(native_tools=False, preferred_protocol="repl", pricing_per_mtok=(0.0, 0.0))

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        last = request.messages[-1].text
        text = "sub answer" if "sub question" in last else FIRST_TURN
        return LLMResponse(message=Message.assistant(text), usage=Usage(input_tokens=10, output_tokens=5),
                           model=request.model)

    def stream(self, request: LLMRequest):
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class FakeBackendPlugin:
    @hookimpl
    def rlm_register_backends(self, register):
        register("fake", FakeBackend)


def test_a_completion_runs_its_code_in_the_wasm_sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pm = create_plugin_manager(entry_points=False)
    pm.register(plugin, name="env-wasm")
    pm.register(FakeBackendPlugin(), name="fake-backend")
    rlm = RLM(model="fake-model", environment="wasm", backend="fake", plugin_manager=pm,
              log_dir=str(tmp_path / "logs"))
    result = rlm.completion_sync("How many lines?", context="first line\nsecond\nthird", protocol="repl")
    assert result.error is None, result.error
    assert result.response == "SUB ANSWER (3 lines)"
    assert result.answer_source == "final_var"
