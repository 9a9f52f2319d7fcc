"""Importing litellm once, quietly, and reading its model map without importing it.

litellm takes seconds to import, may fetch its model cost map from the
network, and prints to stdout (debug hints, and log records below WARNING
through its own handler).  stdout may be a protocol stream (``rlm
mcp-serve``), so :func:`load_litellm`:

- sets ``LITELLM_LOCAL_MODEL_COST_MAP=True`` first (the bundled map is used,
  nothing is fetched);
- imports it with stdout pointed at stderr;
- turns off its debug hints (``suppress_debug_info``), verbose prints and
  telemetry, and its retries (rlm retries itself);
- sends its loggers to stderr only, at WARNING unless ``LITELLM_LOG`` says
  otherwise.

:func:`model_info` reads the bundled model map (context window, what a
model supports) straight from the JSON file, so ``capabilities()`` does not
import litellm.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from rlm.errors import PluginError

SDK_REQUIREMENT = "litellm>=1.100,!=1.107.0,<2"
INSTALL_HINT = f"pip install '{SDK_REQUIREMENT}'  (or: pip install rlm-backend-litellm)"
LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")

_lock = threading.Lock()
_litellm: Any = None


class StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is at the time of the record."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def require_litellm() -> None:
    """Raise a PluginError naming the pip command when litellm is not installed (without importing it)."""
    try:
        found = importlib.util.find_spec("litellm") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PluginError("the litellm backend needs litellm, which is not installed", fix=INSTALL_HINT)


def quiet(litellm: Any) -> None:
    """Keep litellm off stdout: no debug hints, no verbose prints, no telemetry, logs to stderr."""
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    litellm.telemetry = False
    level_name = os.environ.get("LITELLM_LOG", "").strip().upper()
    level = getattr(logging, level_name, None) if level_name else logging.WARNING
    if not isinstance(level, int):
        level = logging.WARNING
    for name in LOGGERS:
        logger = logging.getLogger(name)
        filters: list[Any] = []
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                filters.extend(handler.filters)
                logger.removeHandler(handler)
        ours = StderrHandler()
        ours.setLevel(level)
        for f in filters:
            if f not in ours.filters:
                ours.addFilter(f)
        logger.addHandler(ours)
        logger.setLevel(level)
        logger.propagate = False


def load_litellm() -> Any:
    """The ``litellm`` module, imported on first use (seconds) with nothing fetched or printed."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    module = importlib.import_module("litellm")
            except ImportError as exc:
                raise PluginError(f"litellm cannot be imported ({exc})", fix=INSTALL_HINT) from exc
            quiet(module)
            _litellm = module
            from rlm_backend_kit.sdk_backend import after_sdk_import

            after_sdk_import()  # `rlm run` & co.: litellm's ~360k objects out of the collector's reach
    return _litellm


@functools.lru_cache(maxsize=1)
def cost_map() -> dict[str, Any]:
    """litellm's bundled model map (prices, context windows, capabilities), or {} without litellm.

    litellm's own copy once it is imported, else the kernel's (:func:`rlm.pricing.litellm_cost_map`,
    read from disk without importing litellm).
    """
    if _litellm is not None and isinstance(getattr(_litellm, "model_cost", None), dict):
        return _litellm.model_cost
    from rlm.pricing import litellm_cost_map

    return litellm_cost_map()


def model_info(model: str, provider: str | None = None) -> Mapping[str, Any] | None:
    """The model map's entry for ``model`` (as given, with ``provider/``, or without its prefix)."""
    table = cost_map()
    names = [model]
    if provider and not model.startswith(provider + "/"):
        names.append(f"{provider}/{model}")
    if "/" in model:
        names.append(model.split("/", 1)[1])
    for name in names:
        entry = table.get(name)
        if isinstance(entry, Mapping):
            return entry
    return None
