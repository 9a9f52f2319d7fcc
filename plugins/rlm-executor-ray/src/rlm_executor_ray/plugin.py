"""The hook implementations of rlm-executor-ray (cheap to import: attrs only, never ray).

Registers the ``ray`` executor as a ``"module:attr"`` string and its ``[plugins.executor-ray]`` settings.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from rlm import hookimpl

#: ``[plugins.executor-ray]`` in rlm.toml, ``RLM_PLUGINS__EXECUTOR_RAY__<KEY>`` in the environment.
SECTION = "executor-ray"


def _address(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not value.strip() or any(ord(c) < 32 for c in value)):
        raise ValueError(f"{attribute.name} must be auto, host:port or ray://host:10001 (unset: a local cluster)")


def _cpus(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be a number of CPUs more than 0, got {value!r}")


def _whole_cpus(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name} must be a whole number of CPUs, at least 1, got {value!r}")


def _retries(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise ValueError(f"{attribute.name} must be a whole number from 0 to 10, got {value!r}")


@attrs.define(frozen=True, kw_only=True)
class RayOptions:
    """``[plugins.executor-ray]``, validated by the kernel (unknown keys are errors)."""

    address: str | None = attrs.field(default=None, validator=_address, metadata={
        "help": "the Ray cluster (auto, host:6379, ray://host:10001); --address wins; unset: a local "
                "cluster started for the batch and stopped after it"})
    num_cpus: int | None = attrs.field(default=None, validator=_whole_cpus, metadata={
        "help": "CPUs of the local cluster rlm starts (unset: all of this machine's)"})
    task_cpus: float = attrs.field(default=1.0, validator=_cpus, metadata={
        "help": "CPUs one actor of the pool holds (the pool has up to cluster CPUs / task_cpus actors, each "
                "running several items at once)"})
    max_item_retries: int = attrs.field(default=2, validator=_retries, metadata={
        "help": "times an item is tried again when the worker running it dies (or stops answering)"})
    forward_env: bool = attrs.field(default=True, metadata={
        "help": "send this machine's provider keys and endpoints (*_API_KEY, *_BASE_URL...) with each item, "
                "for clusters whose workers do not have them"})


@hookimpl
def rlm_register_executors(register):
    register("ray", "rlm_executor_ray.executor:RayExecutor",
             description="Ray tasks on a local or remote Ray cluster (--address)")


@hookimpl
def rlm_register_config_sections(register):
    register(SECTION, "rlm_executor_ray.plugin:RayOptions", description="the Ray batch executor (rlm batch --executor ray)")
