"""``[plugins.snipara]`` of rlm.toml and the choice of provider.

The key and the project live in the kernel's ``[rlm]`` table
(``snipara_api_key`` / ``SNIPARA_API_KEY``, ``snipara_project_slug`` /
``SNIPARA_PROJECT_SLUG``) and ``memory_enabled`` gates the memory tools;
this table holds the rest.  :func:`choose_provider` is the single place
that decides what registers: it is used by the tools hook and explained by
``rlm doctor``.  Cheap to import (attrs only).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from attrs import define, field, validators

if TYPE_CHECKING:
    from rlm.config import RLMConfig

SECTION = "snipara"
DEFAULT_BASE_URL = "https://api.snipara.com"
KEY_PREFIX = "rlm_"
_KEY_RE = re.compile(r"^rlm_[A-Za-z0-9_\-]{4,}$")

ProviderName = Literal["auto", "snipara", "local"]


@define(frozen=True, kw_only=True)
class SniparaConfig:
    """Settings of the context tools (``[plugins.snipara]``)."""

    provider: ProviderName = field(default="auto", metadata={
        "help": '"snipara" (hosted; needs key + project), "local" (offline index of `docs`) or "auto" '
                "(hosted when a key and project are set, else local when docs are set, else no tools)"})
    docs: tuple[str, ...] = field(default=(), converter=tuple, metadata={
        "help": "files and directories the local provider indexes (relative to rlm.toml's folder)"})
    shared: tuple[str, ...] = field(default=(), converter=tuple, metadata={
        "help": "files/directories holding team conventions, for shared_context (local provider; "
                "they are indexed too)"})
    db_path: str = field(default="", metadata={
        "help": "SQLite file of the local index and memories (empty: a file under the user cache dir)"})
    base_url: str = field(default=DEFAULT_BASE_URL, metadata={"help": "base URL of the hosted Snipara API"})
    timeout: float = field(default=30.0, validator=validators.gt(0), metadata={
        "help": "seconds one request to the hosted API may take"})
    max_tokens: int = field(default=5000, validator=validators.ge(100), metadata={
        "help": "default token budget of one query's results"})
    legacy_tool_names: bool = field(default=False, metadata={
        "help": "show the tools under their rlm-runtime 2.x names and arguments (rlm_context_query, rlm_search, "
                "rlm_sections, rlm_shared_context; hosted: also rlm_read, rlm_memories, rlm_forget) instead of "
                "ours, for prompts written for 2.x"})


@define(frozen=True, kw_only=True)
class ProviderChoice:
    """What the tools hook will do, and why (``rlm doctor`` prints ``reason`` and ``fix``)."""

    provider: Literal["snipara", "local"] | None
    reason: str
    fix: str | None = None


def settings_of(config: RLMConfig) -> SniparaConfig:
    """The ``[plugins.snipara]`` settings (defaults when the section was not loaded)."""
    value = config.plugin(SECTION) if hasattr(config, "plugin") else None
    return value if isinstance(value, SniparaConfig) else SniparaConfig()


def key_looks_valid(key: str | None) -> bool:
    """True when ``key`` has the shape of a Snipara key (``rlm_`` + at least 4 characters)."""
    return bool(key) and bool(_KEY_RE.match(key or ""))


_ENABLE = ('set SNIPARA_API_KEY and SNIPARA_PROJECT_SLUG (hosted Snipara), or list documentation in '
           'rlm.toml: [plugins.snipara] docs = ["docs/", "README.md"] (offline, no account)')


def choose_provider(config: RLMConfig) -> ProviderChoice:
    """Decide which provider serves the context tools for ``config`` (None: register nothing)."""
    settings = settings_of(config)
    has_key, has_slug = bool(config.snipara_api_key), bool(config.snipara_project_slug)
    hosted_ready = has_key and has_slug
    missing = [name for name, ok in (("SNIPARA_API_KEY", has_key), ("SNIPARA_PROJECT_SLUG", has_slug)) if not ok]
    if settings.provider == "snipara":
        if hosted_ready:
            return ProviderChoice(provider="snipara", reason=f"hosted Snipara, project {config.snipara_project_slug!r}")
        return ProviderChoice(provider=None, reason=f'[plugins.snipara] provider = "snipara" but {" and ".join(missing)} '
                              "not set: no snipara tools are active",
                              fix=f"set {' and '.join(missing)} (or [rlm] snipara_api_key / snipara_project_slug)")
    if settings.provider == "local":
        if settings.docs:
            return ProviderChoice(provider="local", reason=f"local index of {', '.join(settings.docs)}")
        return ProviderChoice(provider=None, reason='[plugins.snipara] provider = "local" but no docs are listed: '
                              "no snipara tools are active",
                              fix='add [plugins.snipara] docs = ["docs/", "README.md"] to rlm.toml')
    if hosted_ready:
        return ProviderChoice(provider="snipara", reason=f"hosted Snipara, project {config.snipara_project_slug!r}")
    if settings.docs:
        reason = f"local index of {', '.join(settings.docs)}"
        if has_key or has_slug:
            reason += f" ({' and '.join(missing)} not set, so not the hosted service)"
        return ProviderChoice(provider="local", reason=reason)
    if has_key or has_slug:
        return ProviderChoice(provider=None, reason=f"{' and '.join(missing)} not set and no [plugins.snipara] docs: "
                              "no snipara tools are active", fix=f"set {' and '.join(missing)}, or " + _ENABLE)
    return ProviderChoice(provider=None, reason="no snipara tools are active (no Snipara key/project, no local docs)",
                          fix=_ENABLE)


def base_dir(config: RLMConfig) -> Path:
    """Where relative ``docs`` / ``db_path`` are taken from: rlm.toml's folder, else the working directory."""
    if config.source:
        return Path(config.source).resolve().parent
    return Path.cwd().resolve()


def cache_dir() -> Path:
    """``snipara`` in rlm's cache directory (:func:`rlm.dirs.cache_dir`: ``$RLM_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/rlm``, else the platform's, e.g. ``~/.cache/rlm`` on Linux)."""
    from rlm.dirs import cache_dir as rlm_cache_dir

    return rlm_cache_dir("snipara")


def db_path(config: RLMConfig) -> Path:
    """The local provider's SQLite file (configured, or one per project under :func:`cache_dir`)."""
    settings = settings_of(config)
    base = base_dir(config)
    if settings.db_path:
        path = Path(os.path.expanduser(settings.db_path))
        return path if path.is_absolute() else base / path
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:16]
    return cache_dir() / f"{base.name or 'root'}-{digest}.sqlite3"
