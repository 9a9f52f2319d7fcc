"""The hook implementations of rlm-env-local (imported on every ``rlm`` run: keep it cheap).

The environment factory is registered as a ``"module:attr"`` string, so the
worker machinery and RestrictedPython are imported only when a session starts.
"""

from __future__ import annotations

from rlm import hookimpl
from rlm_env_local.config import SECTION, LocalEnvConfig


@hookimpl
def rlm_register_environments(register):
    register("local", "rlm_env_local.session:LocalEnvironment",
             description="RestrictedPython in a resource-limited worker process (trusted input)")


@hookimpl
def rlm_register_config_sections(register):
    register(SECTION, LocalEnvConfig)
