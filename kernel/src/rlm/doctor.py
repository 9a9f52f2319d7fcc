"""``rlm doctor``'s checks: the Check value type and the kernel's own checks.

Plugins add checks through ``rlm_register_doctor_checks``.  A check returns
Check values: ``ok``, ``warn`` (an optional piece is missing; exit 0) or
``fail`` (a real problem; exit 1), each with the fix when not ok.  A
configuration that cannot be loaded is one ``fail`` (:func:`config_problem`)
naming the file, the error and its line, and the fix: fix or delete that file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from attrs import define

from rlm.config import RLMConfig
from rlm.hints import missing_plugin_fix

if TYPE_CHECKING:
    from rlm.errors import RLMError

Status = Literal["ok", "warn", "fail"]

#: Environment variables that configure an LLM provider (their values are never shown).
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
#: The backend of the embedded local model (rlm-backend-local): a provider that needs no key.
LOCAL_BACKEND = "local"


@define(frozen=True, kw_only=True)
class Check:
    """One line of the doctor's report."""

    status: Status
    summary: str
    fix: str | None = None


def check_python(config: RLMConfig) -> Iterator[Check]:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= (3, 11):
        yield Check(status="ok", summary=f"Python {version} ({sys.executable})")
    else:
        yield Check(status="fail", summary=f"Python {version} is too old", fix="use Python 3.11 or newer")


def check_config(config: RLMConfig) -> Iterator[Check]:
    if config.source:
        yield Check(status="ok", summary=f"config file {config.source}")
    else:
        yield Check(status="warn", summary="no rlm.toml found (defaults in use)", fix="run `rlm init` to write one")
    yield from _dotenv_checks()
    yield Check(status="ok", summary=f"model {config.model!r}, environment {config.environment!r}")


def _dotenv_checks() -> Iterator[Check]:
    """The line on ./.env: loaded (the names it set, and those the real environment kept), or
    present but switched off by RLM_DOTENV; nothing when there is none.  Never a value."""
    from rlm.config import DOTENV_FILENAME, DOTENV_SWITCH, dotenv_enabled, last_dotenv

    loaded = last_dotenv()
    if loaded is not None:
        names = ", ".join(loaded.applied) or "nothing"
        kept = f"; the environment already sets {', '.join(loaded.kept)}" if loaded.kept else ""
        yield Check(status="ok", summary=f".env loaded: {loaded.path.absolute()} (sets {names}{kept})")
        return
    try:
        switched_off = not dotenv_enabled() and os.path.isfile(DOTENV_FILENAME)
    except Exception:  # noqa: BLE001 - a bad switch value is the config check's failure
        return
    if switched_off:
        yield Check(status="ok", summary=f".env not read ({DOTENV_SWITCH}={os.environ[DOTENV_SWITCH]})")


def check_plugins(config: RLMConfig) -> Iterator[Check]:
    from rlm.cli import plugin_manager
    from rlm.registry import collect

    pm = plugin_manager()
    for record in pm.records:
        if record.status == "broken":
            yield Check(
                status="fail",
                summary=f"plugin {record.name} is broken: {record.error}",
                fix=f"reinstall {record.distribution or record.name}, or set RLM_DISABLE_PLUGINS={record.name}",
            )
        elif record.status == "disabled":
            yield Check(status="warn", summary=f"plugin {record.name} is disabled (RLM_DISABLE_PLUGINS)")
    loaded = [r.name for r in pm.records if r.status == "loaded"]
    yield Check(status="ok", summary=f"{len(loaded)} plugin(s) loaded: {', '.join(loaded) or 'none'}")

    backends = collect(pm, "backend", strict=False)
    if backends:
        yield Check(status="ok", summary=f"LLM backends: {', '.join(sorted(backends))}")
    else:
        yield Check(status="warn", summary="no LLM backend installed",
                    fix="pip install rlm-backend-litellm (or rlm-runtime)")
    environments = collect(pm, "environment", strict=False)
    if config.environment in environments:
        yield Check(status="ok", summary=f"environment {config.environment!r} is installed")
    else:
        have = ", ".join(sorted(environments)) or "none"
        yield Check(
            status="fail" if environments else "warn",
            summary=f"environment {config.environment!r} is not installed (installed: {have})",
            fix=missing_plugin_fix("environment", config.environment, environments),
        )


def check_providers(config: RLMConfig) -> Iterator[Check]:
    """Which provider serves the runs: the keys that are set; else an ``api_base`` endpoint; else the
    embedded local model when its backend would serve the configured model (ready or not, as its own
    plugin's checks say); else a warning that no provider is configured."""
    present = [name for name in PROVIDER_KEYS if os.environ.get(name)]
    if present:
        from rlm.config import _dotenv_origin

        shown = [f"{n} (from .env)" if _dotenv_origin(n, os.environ) else n for n in present]
        yield Check(status="ok", summary=f"provider keys set: {', '.join(shown)}")
        return
    if config.api_base:
        yield Check(status="ok", summary="no provider key set; [rlm] api_base names the endpoint runs use")
        return
    served = _backend_for(config)
    if served is not None and served.name == LOCAL_BACKEND:
        yield _local_provider(config, served)
        return
    from rlm.cli import plugin_manager
    from rlm.registry import collect

    if LOCAL_BACKEND in collect(plugin_manager(), "backend", strict=False):
        local = "or use the embedded local model (a local/... model, or no model setting)"
    else:
        local = "or use a local model: pip install rlm-backend-local"
    yield Check(status="warn", summary="No providers configured",
                fix=f"set OPENAI_API_KEY or ANTHROPIC_API_KEY, {local}")


def _backend_for(config: RLMConfig) -> Any:
    """The registration of the backend that would serve ``config.model`` (None: none, or unknown)."""
    from rlm.cli import plugin_manager
    from rlm.registry import collect

    pm = plugin_manager()
    backends = collect(pm, "backend", strict=False)
    try:
        name = config.backend
        if not name:
            # a resolver may say on stderr that it stands in for the model: the doctor's report says it
            with contextlib.redirect_stderr(io.StringIO()):
                name = pm.hook.rlm_resolve_backend(model=config.model, config=config)
        if name is None and len(backends) == 1:
            name = next(iter(backends))
    except Exception:  # noqa: BLE001 - a resolver that fails is reported by the run, not here
        return None
    return backends.get(name) if name else None


def _local_provider(config: RLMConfig, registration: Any) -> Check:
    """The provider line when the embedded local model serves the runs; ready or not, as the checks
    of the plugin that registered it say (their own lines follow in the report)."""
    from rlm.cli import plugin_manager
    from rlm.registry import collect

    why = "no provider key set" if config.backend != LOCAL_BACKEND else "[rlm] backend = \"local\""
    summary = f"provider: the embedded local model serves model {config.model!r} ({why})"
    problems: list[Check] = []
    for reg in collect(plugin_manager(), "doctor_check", strict=False).values():
        if reg.plugin != registration.plugin:
            continue
        try:
            problems.extend(c for c in reg.load()(config=config) if c.status != "ok")
        except Exception as exc:  # noqa: BLE001 - its own line in the report says it crashed
            problems.append(Check(status="fail", summary=f"check {reg.name!r} crashed: {exc}"))
    if not problems:
        return Check(status="ok", summary=f"{summary}; it is installed and ready")
    first = problems[0].summary.removeprefix("local model: ")
    return Check(status="warn", summary=f"{summary}, but it is not ready: {first}",
                 fix="follow the fix of the 'local model' lines below, or set OPENAI_API_KEY or ANTHROPIC_API_KEY")


def config_problem(error: RLMError, *, env: Mapping[str, str] | None = None) -> Check:
    """The report's line for a configuration that cannot be loaded (never raises).

    A bad ``RLM_*`` variable: that variable and "fix or unset" it.  A broken rlm.toml (TOML syntax,
    a wrong type or value, an unknown key, bytes that are not UTF-8): the file's full path, the error
    with its line when it can be found, and "fix or delete" the file -- never "run `rlm init`", which
    would refuse to overwrite it.
    """
    message, fix = error.message, error.fix
    from rlm.config import DotenvError

    if isinstance(error, DotenvError):  # ./.env, not rlm.toml
        shown = str(error.path.absolute())
        return Check(status="fail", summary=message, fix=f"fix or delete {shown}" + (f"; {fix}" if fix else ""))
    variable = re.search(r"\benvironment variable ([A-Z][A-Z0-9_]*)", message)
    if variable is not None:
        return Check(status="fail", summary=message,
                     fix=f"fix or unset {variable.group(1)}" + (f"; {fix}" if fix else ""))
    if message.startswith("RLM_CONFIG="):
        return Check(status="fail", summary=message, fix=fix or "point RLM_CONFIG at an rlm.toml or unset it")
    path = _config_path(env)
    if path is None:
        return Check(status="fail", summary=message, fix=fix or "fix rlm.toml or the RLM_* variables")
    shown = str(path)
    if message.startswith(f"{shown}:"):
        summary = message
    elif message.startswith(f"{path.name}:"):
        summary = shown + message[len(path.name):]
    else:
        summary = f"{shown}: {message}"
    if not re.search(r"\bline \d+", summary):
        line = _line_of(path, message)
        if line is not None:
            summary += f" (line {line})"
    return Check(status="fail", summary=summary, fix=f"fix or delete {shown}" + (f"; {fix}" if fix else ""))


def _config_path(env: Mapping[str, str] | None) -> Path | None:
    """The rlm.toml the configuration was read from (None: none, or it cannot be told)."""
    from rlm.config import find_config_file

    environ = os.environ if env is None else env
    try:
        if environ.get("RLM_CONFIG"):
            return Path(environ["RLM_CONFIG"]).expanduser().absolute()
        found = find_config_file()
    except Exception:  # noqa: BLE001 - the report names what it can
        return None
    return found.absolute() if found is not None else None


_KEY_IN_TABLE = re.compile(r"\[([^\]]+)\] ([A-Za-z0-9_.-]+):")
_UNKNOWN_TABLE = re.compile(r"\[([^\]]+)\]: unknown table")
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")


def _line_of(path: Path, message: str) -> int | None:
    """The line of ``path`` that ``message`` (``rlm.toml: [rlm] max_turns: ...``) is about, if found."""
    key_match = _KEY_IN_TABLE.search(message)
    table_match = key_match or _UNKNOWN_TABLE.search(message)
    if table_match is None:
        return None
    table = _table_name(table_match.group(1))
    key = key_match.group(2) if key_match else None
    try:
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    current = ""
    for number, line in enumerate(lines, start=1):
        header = _HEADER.match(line)
        if header is not None:
            current = _table_name(header.group(1))
            if key is None and current == table:
                return number
            continue
        if key is not None and current == table and re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return number
    return None


def _table_name(text: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in text.split("."))


def worst(checks: Iterable[Check]) -> Status:
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"
