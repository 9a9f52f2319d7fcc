"""Which sampling options the litellm backend sends: a seed only to providers that take one (litellm raises
UnsupportedParamsError for a seed Anthropic or Gemini has no field for), so the kernel leaves its own
repetition seed out for them and refuses a user's before any request."""

from __future__ import annotations

import pytest

from rlm.core import check_sampling
from rlm.config import RLMConfig
from rlm.errors import ConfigError
from rlm_backend_litellm.backend import LiteLLMBackend


@pytest.mark.parametrize(("model", "seed"), [
    ("gpt-4o-mini", True),                      # the map says openai
    ("openai/gpt-4o", True),
    ("some-model-behind-api-base", True),       # unknown and bare: OpenAI-compatible
    ("claude-sonnet-4-5", False),               # the map says anthropic
    ("anthropic/claude-3-5-haiku-20241022", False),
    ("gemini/gemini-1.5-pro", False),
])
def test_a_seed_is_listed_only_for_providers_that_take_one(model, seed):
    sampling = LiteLLMBackend().capabilities(model).sampling
    assert {"temperature", "top_p"} <= sampling
    assert ("seed" in sampling) is seed


def test_a_users_seed_for_an_anthropic_model_is_refused_before_any_request():
    caps = LiteLLMBackend().capabilities("claude-sonnet-4-5")
    with pytest.raises(ConfigError, match="does not send seed"):
        check_sampling(RLMConfig(seed=3), "litellm", caps)
    check_sampling(RLMConfig(temperature=0.5, top_p=0.9), "litellm", caps)  # those it sends
