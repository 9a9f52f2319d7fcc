"""The hook implementations of rlm-backend-anthropic (cheap to import: no SDK, no kernel types).

- ``rlm_register_backends``: the ``anthropic`` backend, as a ``"module:attr"``
  string (the SDK is imported only when the backend is used);
- ``rlm_resolve_backend`` (tryfirst): claims ``anthropic/<model>`` strings;
- ``rlm_register_config_sections``: ``[plugins.backend-anthropic]``;
- ``rlm_register_doctor_checks``: is the SDK installed, is a key set.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rlm import hookimpl

from rlm_backend_anthropic.options import AnthropicOptions

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.doctor import Check

NAME = "anthropic"
SECTION = "backend-anthropic"
PREFIX = "anthropic/"
FACTORY = "rlm_backend_anthropic.backend:AnthropicBackend"


@hookimpl
def rlm_register_backends(register):
    register(NAME, FACTORY, description="Anthropic Messages API via the official anthropic SDK (model anthropic/<name>)")


@hookimpl(tryfirst=True)
def rlm_resolve_backend(model, config):
    """``anthropic/<model>`` is ours; anything else is left to other backends."""
    return NAME if isinstance(model, str) and model.startswith(PREFIX) else None


@hookimpl
def rlm_register_config_sections(register):
    register(SECTION, AnthropicOptions, description="the Anthropic backend")


@hookimpl
def rlm_register_doctor_checks(register):
    register(SECTION, "rlm_backend_anthropic.plugin:check")


def check(config: RLMConfig) -> Iterator[Check]:
    """The SDK is installed (found without importing it) and a key or a local api_base is set."""
    from rlm.doctor import Check

    if importlib.util.find_spec("anthropic") is None:
        yield Check(status="fail", summary="anthropic backend: the anthropic SDK is not installed",
                    fix="pip install 'anthropic>=2,<3'")
        return
    yield Check(status="ok", summary="anthropic backend: anthropic SDK installed")
    if os.environ.get("ANTHROPIC_API_KEY"):
        yield Check(status="ok", summary="anthropic backend: ANTHROPIC_API_KEY is set")
    elif config.api_base:
        yield Check(status="ok", summary=f"anthropic backend: no key needed for api_base {config.api_base}")
    else:
        yield Check(status="warn", summary="anthropic backend: ANTHROPIC_API_KEY is not set",
                    fix="export ANTHROPIC_API_KEY=sk-ant-... to use anthropic/ models")
