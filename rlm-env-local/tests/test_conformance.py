"""The local environment passes the shared environment conformance suite of rlm-testing."""

from __future__ import annotations

import os
import signal

from rlm_env_local.session import LocalEnvironment
from rlm_testing.environment_suite import EnvironmentConformance


class TestLocalConformance(EnvironmentConformance):
    supports_memory_limit = True
    timeout_s = 1.0

    def make_environment(self, settings, callbacks):
        return LocalEnvironment(settings=settings, callbacks=callbacks)

    def kill_session(self, env):
        os.kill(env.pid, signal.SIGKILL)
