"""The hook implementations of rlm-backend-litellm (cheap to import: litellm is not imported here).

- ``rlm_register_backends``: the ``litellm`` backend, as a ``"module:attr"``
  string (litellm is imported only when a call is made);
- ``rlm_resolve_backend`` (trylast): the catch-all, answering ``litellm``
  for any model string no other backend claimed;
- ``rlm_register_config_sections``: ``[plugins.backend-litellm]``;
- ``rlm_register_doctor_checks``: is litellm installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rlm import hookimpl

from rlm_backend_litellm.options import LiteLLMOptions

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.doctor import Check

NAME = "litellm"
SECTION = "backend-litellm"
FACTORY = "rlm_backend_litellm.backend:LiteLLMBackend"


@hookimpl
def rlm_register_backends(register):
    register(NAME, FACTORY, description="100+ providers through litellm (model strings as litellm names them)")


@hookimpl(trylast=True)
def rlm_resolve_backend(model, config):
    """The default backend: any model string the other backends left unclaimed."""
    return NAME


@hookimpl
def rlm_register_config_sections(register):
    register(SECTION, LiteLLMOptions, description="the litellm backend")


@hookimpl
def rlm_register_doctor_checks(register):
    register(SECTION, "rlm_backend_litellm.plugin:check")


def check(config: RLMConfig) -> Iterator[Check]:
    """litellm is installed (found without importing it: the import takes seconds)."""
    from rlm.doctor import Check

    if importlib.util.find_spec("litellm") is None:
        yield Check(status="fail", summary="litellm backend: litellm is not installed",
                    fix="pip install 'litellm>=1.100,!=1.107.0,<2'")
    else:
        yield Check(status="ok", summary="litellm backend: litellm installed")
