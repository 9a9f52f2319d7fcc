"""Structured logging for rlm: structlog, always to stderr, imported lazily.

Modules take a logger with :func:`get_logger`; structlog itself is imported
on the first log call, so ``rlm --help`` does not pay for it.  Unless the
application configured structlog itself, the first log call sends our logs
to stderr (stdout may be a protocol stream, as with ``rlm mcp-serve``).
Set the level with ``RLM_LOG_LEVEL`` (debug, info, warning, error).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_default_level = "warning"


def _level_from_env(default: str) -> int:
    name = os.environ.get("RLM_LOG_LEVEL", default).strip().lower()
    return _LEVELS.get(name, _LEVELS[default])


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at each write (a test's capture, a redirected stream), never the
    one that was there when logging was configured (it may be closed since)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())


def configure(*, level: str = "warning", stream: Any = None) -> None:
    """Send structlog output to ``stream`` (default: the current stderr) at ``level``
    (``RLM_LOG_LEVEL`` wins)."""
    import structlog

    out = stream if stream is not None else _CurrentStderr()
    colors = out.isatty() and "NO_COLOR" not in os.environ if hasattr(out, "isatty") else False
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level_from_env(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def set_default_level(level: str) -> None:
    """The level used when rlm configures logging lazily (the CLI's ``--verbose`` sets ``info``)."""
    global _default_level
    _default_level = level


def ensure_configured() -> None:
    """Configure stderr logging unless structlog was configured already."""
    import structlog

    if not structlog.is_configured():
        configure(level=_default_level)


_LAZY_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


def _drop(*args: Any, **kwargs: Any) -> None:
    return None


class _LazyLogger:
    """A stand-in for a structlog logger that imports structlog on first use."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        # Until something imports structlog, a call below the level we would configure
        # is dropped without importing it (``rlm --help`` with plugins installed).
        if method in _LAZY_LEVELS and "structlog" not in sys.modules:
            if _LAZY_LEVELS[method] < _level_from_env(_default_level):
                return _drop
        import structlog

        ensure_configured()
        return getattr(structlog.get_logger(self._name), method)


def get_logger(name: str) -> Any:
    """A logger for module ``name``: ``log.info("event_name", key=value)``."""
    return _LazyLogger(name)
