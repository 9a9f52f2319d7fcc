"""The local environment passes the shared environment conformance suite of rlm-testing."""

from __future__ import annotations

import os
import signal

from rlm_env_local.session import LocalEnvironment
from rlm_testing.environment_suite import GUEST_FORGE, GUEST_FORGE_RAW, EnvironmentConformance


class TestLocalConformance(EnvironmentConformance):
    supports_memory_limit = True
    timeout_s = 1.0
    # with the RestrictedPython layer off (make_lying_environment), raw Python in the jailed worker
    # reaches the channel as it does in docker and wasm: the host's own checks are tested alone
    forge_code = GUEST_FORGE
    forge_raw_code = GUEST_FORGE_RAW

    def make_environment(self, settings, callbacks):
        return LocalEnvironment(settings=settings, callbacks=callbacks)

    def make_lying_environment(self, settings, callbacks):
        return LocalEnvironment(settings=settings, callbacks=callbacks, disable_layers={"python-guards"})

    def kill_session(self, env):
        os.kill(env.pid, signal.SIGKILL)
