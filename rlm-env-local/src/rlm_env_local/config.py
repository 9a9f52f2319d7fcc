"""``[plugins.env-local]`` of rlm.toml: the local environment's own settings.

The limits every environment shares (timeout, memory, paths...) live in
:class:`rlm.environment.EnvironmentSettings`; this holds what is specific to
the local sandbox.
"""

from __future__ import annotations

import sys

from attrs import define, field, validators

from rlm_env_local.allowlist import check_extra_module

SECTION = "env-local"


def _check_modules(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    for name in value:
        check_extra_module(name)


@define(frozen=True, kw_only=True)
class LocalEnvConfig:
    """Settings of the local (RestrictedPython) environment."""

    python: str = field(default="", metadata={
        "help": "Python interpreter of the worker process (empty: the one running rlm; it needs RestrictedPython)"})
    extra_modules: tuple[str, ...] = field(default=(), converter=tuple, validator=_check_modules, metadata={
        "help": "more modules code may import (their public API only); os, sys, subprocess... are always refused"})
    max_file_size_mb: int = field(default=64, validator=validators.ge(1), metadata={
        "help": "largest file code may write, MiB"})
    startup_timeout: float = field(default=30.0, validator=validators.gt(0), metadata={
        "help": "seconds the worker process may take to start"})
    spare_workers: int = field(default=1, validator=[validators.instance_of(int), validators.ge(0),
                                                     validators.le(8)], metadata={
        "help": "workers kept started ahead (imports done, OS jail entered), each claimed by one new session "
                "only; 0 starts every worker when its session starts"})
    require_os_sandbox: bool = field(default=sys.platform == "linux", metadata={
        "help": "refuse to run when an OS layer of the jail (namespaces, landlock, seccomp) is unavailable "
                "(default true on Linux); false runs with the layers this machine has and says which"})
