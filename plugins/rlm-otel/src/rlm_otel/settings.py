"""The configuration of rlm-otel: ``[plugins.otel]`` (``RLM_PLUGINS__OTEL__<KEY>`` in the environment).

Where the spans go is not configured here: the OpenTelemetry SDK reads the standard ``OTEL_*``
environment variables itself (endpoint, headers, service name, exporter, sampler...).
``RLM_OTEL_CAPTURE_CONTENT=1`` (or ``0``) overrides ``capture_content``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from rlm.config import RLMConfig

#: This plugin's table: ``[plugins.otel]`` in rlm.toml.
SECTION = "otel"
#: Turns prompt and response capture on (``1``) or off (``0``) whatever ``[plugins.otel]`` says.
CAPTURE_ENV = "RLM_OTEL_CAPTURE_CONTENT"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _at_least(low: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{attribute.name} must be a whole number of at least {low}, got {value!r}")
    return check


def _seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
        raise ValueError(f"{attribute.name} must be a number of seconds more than 0 and at most 60, got {value!r}")


@attrs.define(frozen=True, kw_only=True)
class OtelSettings:
    """``[plugins.otel]``, validated by the kernel (unknown keys are errors)."""

    capture_content: bool = attrs.field(default=False, metadata={
        "help": "put prompts, responses, tool arguments and results, and REPL code and output in the spans "
                "(off: only sizes, names, models, tokens and costs leave the machine); RLM_OTEL_CAPTURE_CONTENT=1 "
                "turns it on too"})
    max_content_chars: int = attrs.field(default=4096, validator=_at_least(64), metadata={
        "help": "the most characters of one content attribute; longer content is cut, saying how much was left out"})
    flush_timeout: float = attrs.field(default=3.0, validator=_seconds, metadata={
        "help": "seconds a run waits at its end for its spans to be sent; the run never fails for them"})


def capture_from_env(env: Mapping[str, str], default: bool) -> bool:
    """``RLM_OTEL_CAPTURE_CONTENT`` when set, else ``default``; a value that is not a yes or a no is an error."""
    raw = env.get(CAPTURE_ENV)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    from rlm.errors import ConfigError

    raise ConfigError(f"{CAPTURE_ENV}={raw!r} is neither on nor off", fix=f"set {CAPTURE_ENV}=1 or {CAPTURE_ENV}=0")


def settings_from(config: RLMConfig, env: Mapping[str, str] | None = None) -> OtelSettings:
    """This plugin's settings (defaults when the config was built without our section), with
    ``RLM_OTEL_CAPTURE_CONTENT`` applied."""
    settings = config.plugin(SECTION) or OtelSettings()
    capture = capture_from_env(os.environ if env is None else env, settings.capture_content)
    return settings if capture == settings.capture_content else attrs.evolve(settings, capture_content=capture)
