"""Model prices: ``[pricing."model"]`` in rlm.toml first, then the price the backend
declares for the model (a local model: free), then litellm's bundled cost map read
from disk (never fetched, and without importing litellm).

Prices are USD per million tokens.  :func:`price_for` returns None for a
model of unknown price; a cost limit with such a model is refused at start.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from typing import Any

from rlm.config import ModelPricing, RLMConfig

_COST_MAP_FILE = "model_prices_and_context_window_backup.json"


@functools.lru_cache(maxsize=1)
def litellm_cost_map() -> dict[str, Any]:
    """litellm's bundled price table, or {} when litellm is not installed."""
    try:
        spec = importlib.util.find_spec("litellm")  # finds the package without importing it
    except (ImportError, ValueError):
        return {}
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(location, _COST_MAP_FILE)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
    return {}


def _candidates(model: str) -> list[str]:
    names = [model]
    if "/" in model:
        names.append(model.split("/", 1)[1])
    return names


def price_for(model: str, config: RLMConfig,
              declared: tuple[float, float] | None = None) -> ModelPricing | None:
    """The price of ``model``: rlm.toml first (also for a provider-prefixed name), then ``declared`` (the
    backend's (input, output) USD per million tokens), then litellm's map."""
    for name in _candidates(model):
        if name in config.pricing:
            return config.pricing[name]
    if declared is not None:
        return ModelPricing(input_per_mtok=declared[0], output_per_mtok=declared[1])
    table = litellm_cost_map()
    for name in _candidates(model):
        entry = table.get(name)
        if isinstance(entry, dict) and "input_cost_per_token" in entry and "output_cost_per_token" in entry:
            return ModelPricing(
                input_per_mtok=float(entry["input_cost_per_token"]) * 1e6,
                output_per_mtok=float(entry["output_cost_per_token"]) * 1e6,
            )
    return None


def cost_of(pricing: ModelPricing | None, input_tokens: int, output_tokens: int) -> float | None:
    """USD for the given tokens, or None when the price is unknown."""
    if pricing is None:
        return None
    return (input_tokens * pricing.input_per_mtok + output_tokens * pricing.output_per_mtok) / 1e6
