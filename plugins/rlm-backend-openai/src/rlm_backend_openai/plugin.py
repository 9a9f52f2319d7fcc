"""The hook implementations of rlm-backend-openai (cheap to import: no SDK, no kernel types).

- ``rlm_register_backends``: the ``openai`` backend, as a ``"module:attr"``
  string (the SDK is imported only when the backend is used);
- ``rlm_resolve_backend`` (tryfirst): claims ``openai/<model>`` strings;
- ``rlm_register_config_sections``: ``[plugins.backend-openai]``;
- ``rlm_register_doctor_checks``: is the SDK installed, is a key set.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rlm import hookimpl

from rlm_backend_openai.options import OpenAIOptions

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.doctor import Check

NAME = "openai"
SECTION = "backend-openai"
PREFIX = "openai/"
FACTORY = "rlm_backend_openai.backend:OpenAIBackend"


@hookimpl
def rlm_register_backends(register):
    register(NAME, FACTORY, description="OpenAI Chat Completions via the official openai SDK (model openai/<name>)")


@hookimpl(tryfirst=True)
def rlm_resolve_backend(model, config):
    """``openai/<model>`` is ours; anything else is left to other backends."""
    return NAME if isinstance(model, str) and model.startswith(PREFIX) else None


@hookimpl
def rlm_register_config_sections(register):
    register(SECTION, OpenAIOptions, description="the OpenAI backend")


@hookimpl
def rlm_register_doctor_checks(register):
    register(SECTION, "rlm_backend_openai.plugin:check")


def check(config: RLMConfig) -> Iterator[Check]:
    """The SDK is installed (found without importing it) and a key or a local api_base is set."""
    from rlm.doctor import Check

    if importlib.util.find_spec("openai") is None:
        yield Check(status="fail", summary="openai backend: the openai SDK is not installed",
                    fix="pip install 'openai>=2,<4'")
        return
    yield Check(status="ok", summary="openai backend: openai SDK installed")
    if os.environ.get("OPENAI_API_KEY"):
        yield Check(status="ok", summary="openai backend: OPENAI_API_KEY is set")
    elif config.api_base:
        yield Check(status="ok", summary=f"openai backend: no key needed for api_base {config.api_base}")
    else:
        yield Check(status="warn", summary="openai backend: OPENAI_API_KEY is not set",
                    fix="export OPENAI_API_KEY=sk-... to use openai/ models")
