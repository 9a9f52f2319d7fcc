"""Where a model's price comes from (README, "Cost"): ``[pricing."model"]`` in rlm.toml first, then the
price the backend declares for the model, then litellm's bundled cost map -- read from disk next to
the installed litellm package, never fetched, and without importing litellm.

The order is checked on what a run is charged: the same model, priced differently in each place, and
a scripted backend reporting a fixed usage, so the run's cost names the price that was used.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rlm import hookimpl
from rlm.backend import BackendCapabilities, LLMResponse
from rlm.config import ModelPricing, RLMConfig
from rlm.plugins import create_plugin_manager
from rlm.pricing import _COST_MAP_FILE, cost_of, litellm_cost_map, price_for
from rlm.types import Message, Usage

USAGE = (1_000, 500)  # input, output tokens of every scripted reply
TOML_PRICE = (1.0, 2.0)
BACKEND_PRICE = (30.0, 40.0)


def _cost(price: tuple[float, float]) -> float:
    return (USAGE[0] * price[0] + USAGE[1] * price[1]) / 1e6


def _real_map_price(model: str) -> tuple[float, float]:
    """The price of ``model`` in the installed litellm's bundled JSON, read here independently."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    if spec is None:
        pytest.skip("litellm is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / _COST_MAP_FILE
    entry = json.loads(path.read_text(encoding="utf-8"))[model]
    return entry["input_cost_per_token"] * 1e6, entry["output_cost_per_token"] * 1e6


class PricedBackend:
    """Answers "ok" with a fixed usage; declares ``price`` for every model (None: no price)."""

    name = "priced"

    def __init__(self, price: tuple[float, float] | None) -> None:
        self.price = price
        self.requests: list[Any] = []

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(pricing_per_mtok=self.price)

    async def complete(self, request: Any) -> LLMResponse:
        self.requests.append(request)
        return LLMResponse(message=Message.assistant("ok"),
                           usage=Usage(input_tokens=USAGE[0], output_tokens=USAGE[1], cost_usd=None),
                           finish_reason="stop", model=request.model)

    async def stream(self, request: Any):  # pragma: no cover - not used: no streaming here
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class Plugin:
    def __init__(self, backend: PricedBackend) -> None:
        self.backend = backend

    @hookimpl
    def rlm_register_backends(self, register):
        register("priced", lambda settings: self.backend, description="fixed usage and price (tests)")

    @hookimpl
    def rlm_register_environments(self, register):
        register("unused", Unused, description="never started: no code runs here (tests)")


class Unused:
    def __init__(self, **_: Any) -> None:
        raise AssertionError("no environment is started in these tests")


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch, tmp_path):
    """No RLM_* settings or keys, cwd in tmp (its rlm.toml only), and no socket may connect anywhere."""
    for key in list(os.environ):
        if key.startswith(("RLM_", "LITELLM_")) or key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a network connection was attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _toml(tmp_path: Path, model: str, price: tuple[float, float]) -> None:
    (tmp_path / "rlm.toml").write_text(
        f'[pricing."{model}"]\ninput_per_mtok = {price[0]}\noutput_per_mtok = {price[1]}\n', encoding="utf-8")


def _run(tmp_path: Path, model: str, backend_price: tuple[float, float] | None, **settings: Any):
    from rlm import RLM

    backend = PricedBackend(backend_price)
    pm = create_plugin_manager(entry_points=False)
    pm.register(Plugin(backend), name="priced-plugin")
    rlm = RLM(model=model, backend="priced", environment="unused", plugin_manager=pm, sub_calls=False,
              log_dir=str(tmp_path / "logs"), **settings)
    result = rlm.completion_sync("price me")
    assert result.success, result.error
    assert len(backend.requests) == 1
    return rlm, result


# --- the bundled cost map -----------------------------------------------------------------------------


def test_the_cost_map_is_litellms_bundled_file_read_from_disk():
    expected = _real_map_price("gpt-4o-mini")
    litellm_cost_map.cache_clear()
    try:
        table = litellm_cost_map()  # sockets refused (fixture): nothing is fetched
    finally:
        litellm_cost_map.cache_clear()
    entry = table["gpt-4o-mini"]
    assert (entry["input_cost_per_token"] * 1e6, entry["output_cost_per_token"] * 1e6) == expected
    price = price_for("gpt-4o-mini", RLMConfig())
    assert price == ModelPricing(input_per_mtok=expected[0], output_per_mtok=expected[1])
    assert price_for("openai/gpt-4o-mini", RLMConfig()) == price  # a provider prefix is looked up without it
    assert price_for("surely-no-such-model-xyz", RLMConfig()) is None


def test_price_for_takes_rlm_toml_before_the_cost_map():
    mine = ModelPricing(input_per_mtok=TOML_PRICE[0], output_per_mtok=TOML_PRICE[1])
    config = RLMConfig(pricing={"gpt-4o-mini": mine})
    assert price_for("gpt-4o-mini", config) == mine
    assert price_for("openai/gpt-4o-mini", config) == mine
    assert cost_of(price_for("gpt-4o-mini", config), *USAGE) == pytest.approx(_cost(TOML_PRICE))


FAKE_LITELLM_CHECK = textwrap.dedent(
    """
    import json, socket, sys

    def refuse(*args, **kwargs):
        raise AssertionError("network: " + repr(args[1:]))

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    from rlm.config import RLMConfig
    from rlm.pricing import litellm_cost_map, price_for

    price = price_for("rlm-test-only-model", RLMConfig())
    print(json.dumps({
        "price": None if price is None else [price.input_per_mtok, price.output_per_mtok],
        "litellm_imported": any(m == "litellm" or m.startswith("litellm.") for m in sys.modules),
        "models": sorted(litellm_cost_map()),
    }))
    """
)


def test_the_cost_map_is_found_next_to_the_litellm_package_without_importing_it(tmp_path):
    """A litellm package whose import would fail, first on the path: its bundled file is still read
    (found with ``find_spec``, which imports nothing), in a process where no socket may connect."""
    package = tmp_path / "fake" / "litellm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('litellm must not be imported to price a model')\n")
    (package / _COST_MAP_FILE).write_text(json.dumps({
        "rlm-test-only-model": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
        "sample_spec": {"input_cost_per_token": 0, "output_cost_per_token": 0},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "LITELLM_"))}
    env["PYTHONPATH"] = str(tmp_path / "fake")
    done = subprocess.run([sys.executable, "-c", FAKE_LITELLM_CHECK], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["price"] == pytest.approx([2.5, 10.0])
    assert report["models"] == ["rlm-test-only-model", "sample_spec"]  # this file, not the real one
    assert report["litellm_imported"] is False


# --- the order, on what a run is charged ---------------------------------------------------------------------


def test_a_model_priced_everywhere_costs_the_rlm_toml_price(tmp_path):
    _toml(tmp_path, "gpt-4o-mini", TOML_PRICE)
    rlm, result = _run(tmp_path, "gpt-4o-mini", BACKEND_PRICE)
    assert rlm.pricing == ModelPricing(input_per_mtok=TOML_PRICE[0], output_per_mtok=TOML_PRICE[1])
    assert result.total_cost_usd == pytest.approx(_cost(TOML_PRICE))
    calls = [e for e in result.events if e["type"] == "llm_call"]
    assert [e["cost"] for e in calls] == [pytest.approx(_cost(TOML_PRICE))]


def test_without_rlm_toml_the_backends_price_beats_the_cost_map(tmp_path):
    assert _real_map_price("gpt-4o-mini") != BACKEND_PRICE  # the map prices it too, differently
    _rlm, result = _run(tmp_path, "gpt-4o-mini", BACKEND_PRICE)
    assert result.total_cost_usd == pytest.approx(_cost(BACKEND_PRICE))


def test_a_free_local_model_is_free_even_when_the_cost_map_prices_its_name(tmp_path):
    _rlm, result = _run(tmp_path, "gpt-4o-mini", (0.0, 0.0), cost_limit=1.0)
    assert result.total_cost_usd == 0.0


def test_without_rlm_toml_and_backend_price_the_cost_map_prices_the_run(tmp_path):
    expected = _real_map_price("gpt-4o-mini")
    _rlm, result = _run(tmp_path, "gpt-4o-mini", None)
    assert result.total_cost_usd == pytest.approx(_cost(expected))
    assert result.total_cost_usd != pytest.approx(_cost(BACKEND_PRICE))


def test_a_cost_limit_with_the_cost_maps_price_is_enforced_not_refused(tmp_path):
    # the map's price counts as a known price: the limit is accepted (no ConfigError) and the run is charged
    price = _real_map_price("gpt-4o-mini")  # skips where litellm (its map) is not installed
    _rlm, result = _run(tmp_path, "gpt-4o-mini", None, cost_limit=1.0)
    assert result.total_cost_usd == pytest.approx(_cost(price))


def test_rlm_toml_wins_for_a_provider_prefixed_model_too(tmp_path):
    _toml(tmp_path, "gpt-4o-mini", TOML_PRICE)
    _rlm, result = _run(tmp_path, "openai/gpt-4o-mini", BACKEND_PRICE)
    assert result.total_cost_usd == pytest.approx(_cost(TOML_PRICE))
