"""The configuration of rlm-plugin-example-name: ``[plugins.example-name]``.

Kept out of ``plugin.py`` on purpose: ``plugin.py`` registers this class as the
string ``"rlm_plugin_example_name.settings:ExampleSettings"``, so the kernel
imports this module (and attrs) only when it builds or validates a
configuration, never for ``rlm --help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from rlm.config import RLMConfig

#: This plugin's table: ``[plugins.example-name]`` in rlm.toml,
#: ``RLM_PLUGINS__EXAMPLE_NAME__<KEY>`` in the environment.
SECTION = "example-name"


@attrs.define(frozen=True, kw_only=True)
class ExampleSettings:
    """``[plugins.example-name]``, validated by the kernel (unknown keys are errors).

    ``metadata={"help": ...}`` is the comment ``rlm init`` writes above the key.
    """

    enabled: bool = attrs.field(default=False, metadata={"help": "offer the example_greet tool to the model"})
    greeting: str = attrs.field(default="Hello", metadata={"help": "what example_greet says"})


def settings_from(config: RLMConfig) -> ExampleSettings:
    """This plugin's settings (defaults when the config was built without our section)."""
    return config.plugin(SECTION) or ExampleSettings()
