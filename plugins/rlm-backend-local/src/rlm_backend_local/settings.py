"""``[plugins.backend-local]``: the settings of the embedded local model.

Set in rlm.toml or as ``RLM_PLUGINS__BACKEND_LOCAL__<KEY>`` in the
environment; the kernel validates them into :class:`LocalSettings`
(unknown keys are errors).
"""

from __future__ import annotations

from typing import Any

import attrs
from rlm_backend_kit.backend_options import RetryOptions, positive_seconds

#: This plugin's config table: ``[plugins.backend-local]``.
SECTION = "backend-local"
#: The catalog model used unless ``model``/``model_path`` say otherwise.
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"


def _at_least(minimum: float) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value < minimum:
            raise ValueError(f"{attribute.name} must be at least {minimum:g}, got {value!r}")

    return check


def _name_values(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for item in value:
        name, sep, _ = str(item).partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"{attribute.name} entries are NAME=VALUE (e.g. n_batch=1024), got {item!r}")


@attrs.define(frozen=True, kw_only=True)
class LocalSettings(RetryOptions):
    """``[plugins.backend-local]``, validated by the kernel: the retry settings every backend has
    (``retry_base_delay``, ``retry_max_delay``; ``read_timeout`` with its own default), then the model's."""

    model: str = attrs.field(default=DEFAULT_MODEL, metadata={
        "help": "catalog model assembled from its PyPI wheels (see `rlm doctor`)"})
    model_path: str | None = attrs.field(default=None, metadata={
        "help": "a GGUF file to serve instead of the catalog model (any llama.cpp chat model)"})
    n_ctx: int = attrs.field(default=8192, validator=_at_least(512), metadata={
        "help": "context window of the server, tokens"})
    n_threads: int | None = attrs.field(default=None, validator=_at_least(1), metadata={
        "help": "CPU threads for inference (unset: all cores)"})
    max_tokens: int = attrs.field(default=1024, validator=_at_least(16), metadata={
        "help": "most tokens generated per call (small models ramble; this bounds a turn)"})
    temperature: float = attrs.field(default=0.0, validator=_at_least(0.0), metadata={
        "help": "sampling temperature when the request gives none (0: greedy, reproducible)"})
    startup_timeout: float = attrs.field(default=120.0, validator=_at_least(1.0), metadata={
        "help": "seconds to wait for the llama.cpp server to answer /v1/models"})
    read_timeout: float | None = attrs.field(default=None, validator=positive_seconds, metadata={
        "help": "seconds to wait for the server's next bytes (not streamed: the whole answer) before the "
                "attempt is abandoned and retried; unset: the run's timeout (a small CPU model can take minutes)"})
    default_when_no_key: bool = attrs.field(default=True, metadata={
        "help": "serve every model string with the local model when no provider key is set"})
    python: str | None = attrs.field(default=None, metadata={
        "help": "Python that runs the llama.cpp server, with xllamacpp installed (unset: the one running rlm)"})
    server_args: tuple[str, ...] = attrs.field(default=(), converter=tuple, validator=_name_values, metadata={
        "help": "extra llama.cpp server parameters, each NAME=VALUE (xllamacpp CommonParams attributes, "
                "e.g. n_batch=1024)"})


def settings_from(options: Any) -> LocalSettings:
    """The plugin settings from ``config.plugin(SECTION)`` / ``BackendSettings.options`` (defaults if None)."""
    return options if isinstance(options, LocalSettings) else LocalSettings()
