"""The settings every retrying backend's ``[plugins.<section>]`` has (attrs only: cheap to import).

A backend plugin's options class subclasses :class:`RetryOptions` and adds its own fields; the kernel's
config machinery reads inherited fields and their ``help`` like any other, and
:class:`rlm_backend_kit.sdk_backend.RetryingBackend` reads these three.
"""

from __future__ import annotations

import math
from typing import Any

import attrs


def positive_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number of seconds > 0 (or unset)."""
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a number of seconds > 0, got {value!r}")


@attrs.define(frozen=True, kw_only=True)
class RetryOptions:
    """How a backend retries and how long one attempt waits (see :mod:`rlm_backend_kit.retry`)."""

    retry_base_delay: float = attrs.field(
        default=0.5, metadata={"help": "seconds before the first retry (doubled each retry, with jitter)"}
    )
    retry_max_delay: float = attrs.field(default=30.0, metadata={"help": "longest wait between two retries, seconds"})
    read_timeout: float | None = attrs.field(
        default=None, validator=positive_seconds,
        metadata={"help": "seconds to wait for the provider's next bytes (for an answer that is not streamed: the "
                          "whole answer) before the attempt is abandoned and retried; unset: 120, never more "
                          "than the run's timeout"},
    )
