"""RetryOptions: the retry settings every backend section inherits, validated and read like its own."""

from __future__ import annotations

import math

import attrs
import pytest
from rlm_backend_kit.backend_options import RetryOptions
from rlm.config import load_config
from rlm.errors import ConfigError


@attrs.define(frozen=True, kw_only=True)
class DemoOptions(RetryOptions):
    model_hint: str | None = attrs.field(default=None, metadata={"help": "a setting of the demo backend's own"})


def test_defaults():
    assert (RetryOptions().retry_base_delay, RetryOptions().retry_max_delay, RetryOptions().read_timeout) == (
        0.5, 30.0, None)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "7"])
def test_read_timeout_is_a_number_of_seconds_above_zero(bad):
    with pytest.raises(ValueError, match="read_timeout must be a number of seconds > 0"):
        DemoOptions(read_timeout=bad)


def test_inherited_fields_have_their_help_and_come_from_the_environment():
    fields = {f.name: f for f in attrs.fields(DemoOptions)}
    assert {"retry_base_delay", "retry_max_delay", "read_timeout", "model_hint"} <= set(fields)
    assert all(f.metadata.get("help") for f in fields.values())
    env = {"RLM_PLUGINS__BACKEND_DEMO__READ_TIMEOUT": "7", "RLM_PLUGINS__BACKEND_DEMO__RETRY_MAX_DELAY": "3",
           "RLM_PLUGINS__BACKEND_DEMO__MODEL_HINT": "small"}
    config = load_config(use_file=False, env=env, sections={"backend-demo": DemoOptions})
    assert config.plugin("backend-demo") == DemoOptions(read_timeout=7.0, retry_max_delay=3.0, model_hint="small")


def test_a_bad_inherited_value_is_a_config_error_naming_where_it_came_from(tmp_path):
    with pytest.raises(ConfigError, match=r"^environment variable RLM_PLUGINS__BACKEND_DEMO__READ_TIMEOUT: "
                                          r"read_timeout must be a number of seconds > 0"):
        load_config(use_file=False, env={"RLM_PLUGINS__BACKEND_DEMO__READ_TIMEOUT": "-1"},
                    sections={"backend-demo": DemoOptions})
    (tmp_path / "rlm.toml").write_text("[plugins.backend-demo]\nread_timeout = -1\n")
    with pytest.raises(ConfigError, match=r"\[plugins.backend-demo\] read_timeout: read_timeout must be a number"):
        load_config(path=tmp_path / "rlm.toml", env={}, sections={"backend-demo": DemoOptions})
