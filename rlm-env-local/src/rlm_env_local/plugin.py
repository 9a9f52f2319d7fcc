"""The hook implementations of rlm-env-local (imported on every ``rlm`` run: keep it cheap).

The environment factory, its isolation report and the doctor check are
registered as ``"module:attr"`` strings, so the worker machinery and
RestrictedPython are imported only when a session starts.
"""

from __future__ import annotations

from rlm import hookimpl


@hookimpl
def rlm_register_environments(register):
    register("local", "rlm_env_local.session:LocalEnvironment",
             description="RestrictedPython in a worker jailed by Landlock, seccomp and namespaces",
             isolation="rlm_env_local.report:isolation")


@hookimpl
def rlm_register_config_sections(register):
    register("env-local", "rlm_env_local.config:LocalEnvConfig")


@hookimpl
def rlm_register_doctor_checks(register):
    register("env-local", "rlm_env_local.report:doctor_check")
