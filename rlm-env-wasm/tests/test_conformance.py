"""The shared Environment conformance suite, run against the wasm environment."""

from __future__ import annotations

from rlm_env_wasm.session import WasmEnvironment
from rlm_testing.environment_suite import GUEST_FORGE, GUEST_FORGE_RAW, EnvironmentConformance


class TestWasmConformance(EnvironmentConformance):
    supports_memory_limit = True
    forge_code = GUEST_FORGE
    forge_raw_code = GUEST_FORGE_RAW

    def make_environment(self, settings, callbacks):
        return WasmEnvironment(settings=settings, callbacks=callbacks)

    def kill_session(self, env):
        env._guest.kill("killed from outside by the test")
