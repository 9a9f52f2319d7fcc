"""Configuration: rlm.toml, ``RLM_*`` environment variables, ./.env and keyword arguments.

Precedence, highest first: keyword argument > environment variable > ./.env >
rlm.toml > default (:func:`load_dotenv` puts the current directory's .env into
``os.environ`` without replacing a variable already set).  ``[rlm]`` holds the kernel's keys (those of the product
text and a few more); ``[plugins.<section>]`` holds each plugin's own table,
validated against the attrs class the plugin declared through
``rlm_register_config_sections``; ``[pricing."<model>"]`` overrides prices.

cattrs is used only here, at the edge, through one private Converter (made on
first use) that rejects unknown keys; its errors are rewritten to name the key
and where it came from, with a suggestion for typos.
"""

from __future__ import annotations

import codecs
import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import attrs
from attrs import define, field

from rlm.budget import HARD_CAPS, cap_text
from rlm.errors import ConfigError

if TYPE_CHECKING:
    import cattrs

CONFIG_FILENAME = "rlm.toml"
ENV_PREFIX = "RLM_"

Protocol = Literal["auto", "tools", "repl"]


def _help(text: str, **kw: Any) -> dict[str, Any]:
    return {"help": text, **kw}


@define(frozen=True, kw_only=True)
class ModelPricing:
    """USD per million tokens for one model (``[pricing."name"]``)."""

    input_per_mtok: float
    output_per_mtok: float


@define(frozen=True, kw_only=True)
class RLMConfig:
    """The kernel's effective configuration.  Every field can be set in
    ``[rlm]`` of rlm.toml, as ``RLM_<FIELD>`` in the environment, or as a
    keyword argument."""

    backend: str | None = field(default=None, metadata=_help(
        "LLM backend plugin; unset: chosen from the model string and the keys present"))
    model: str = field(default="gpt-4o-mini", metadata=_help("model name, as the backend names it"))
    sub_model: str | None = field(default=None, metadata=_help(
        "model of the sub-calls (rlm_sub_complete, llm_query...), e.g. a cheaper one; unset: the model"))
    sub_backend: str | None = field(default=None, metadata=_help(
        "backend plugin of the sub-calls; unset: chosen from sub_model like the model's"))
    temperature: float | None = field(default=None, metadata=_help(
        "sampling temperature sent with every model call (unset: the provider's default)"))
    top_p: float | None = field(default=None, metadata=_help(
        "nucleus sampling: the probability mass to sample from, 0 to 1 (unset: the provider's default)"))
    seed: int | None = field(default=None, metadata=_help(
        "sampling seed, for providers that can repeat an answer (unset: none)"))
    max_output_tokens: int | None = field(default=None, metadata=_help(
        "output tokens one model call may write (unset: 4096, less when a budget leaves less)"))
    direct_below_tokens: int = field(default=0, metadata=_help(
        "answer an input shorter than this many tokens with one plain model call, no REPL or tools "
        "(0: never, as short prompts often need tools to read files; see README)"))
    environment: str = field(default="local", metadata=_help('REPL environment: "local", "docker" or "wasm"'))
    protocol: Protocol = field(default="auto", metadata=_help(
        '"tools" (native tool calls), "repl" (code blocks + FINAL, any model) or "auto" (ask the backend)'))
    max_depth: int = field(default=4, metadata=_help(
        f"nesting of sub-LLM calls (hard cap {cap_text('max_depth')})"))
    max_turns: int = field(default=20, metadata=_help("model turns within one call before it must answer"))
    max_subcalls: int = field(default=12, metadata=_help("sub-LLM calls one turn may start"))
    sub_calls: bool = field(default=True, metadata=_help("let the model delegate to sub-LLM calls"))
    max_parallel: int = field(default=8, metadata=_help("tool calls run at once"))
    token_budget: int | None = field(default=100_000, metadata=_help("tokens one run may spend"))
    cost_limit: float | None = field(default=None, metadata=_help(
        f"USD one run may spend (unset: no limit; cap {cap_text('cost_limit')})"))
    session_cost_cap: float | None = field(default=None, metadata=_help("USD all runs of one process may spend"))
    timeout: float = field(default=300.0, metadata=_help(
        f"wall-clock seconds for one run (cap {HARD_CAPS['timeout']:g})"))
    env_timeout: float = field(default=30.0, metadata=_help("seconds one code execution may take"))
    env_memory_mb: int = field(default=512, metadata=_help("memory cap of the REPL, MiB"))
    env_write_quota_mb: float = field(default=100.0, metadata=_help(
        "MiB one REPL session may add under its writable paths (new files plus growth)"))
    env_write_quota_files: int = field(default=1000, metadata=_help(
        "files one REPL session may create under its writable paths"))
    env_writable_paths: tuple[str, ...] = field(default=(), metadata=_help(
        "paths the REPL may also write (within the write quotas; unset: none)"))
    env_cpu_limit_s: float | None = field(default=None, metadata=_help(
        "CPU seconds one code execution may use (unset: same as env_timeout)"))
    env_workdir: str | None = field(default=None, metadata=_help(
        "working directory of the REPL session (unset: the current directory)"))
    allowed_paths: tuple[str, ...] = field(default=(".",), metadata=_help(
        "paths file tools and the REPL may read"))
    context_window: int | None = field(default=None, metadata=_help(
        "the model's context window in tokens (unset: from the backend or litellm's map, else 32000)"))
    log_dir: str = field(default="logs", metadata=_help("where JSONL trajectories are written"))
    trajectory_sinks: tuple[str, ...] = field(default=("jsonl",), metadata=_help("trajectory sinks to write to"))
    budget_policies: tuple[str, ...] = field(default=("default",), metadata=_help("budget policies to enforce"))
    cache: str | None = field(default=None, metadata=_help(
        'response cache plugin, e.g. "sqlite" (rlm-cache-sqlite): identical LLM requests are answered from it '
        "(unset: no caching)"))
    api_base: str | None = field(default=None, metadata=_help("base URL of an OpenAI/Anthropic-compatible server"))
    max_retries: int = field(default=3, metadata=_help(
        "times a failed provider request (rate limit, overload, connection) is tried again"))
    verbose: bool = field(default=False, metadata=_help("log progress to stderr"))
    docker_image: str = field(default="python:3.11-slim", metadata=_help("image of the docker environment"))
    docker_cpus: float = field(default=1.0, metadata=_help("CPUs of the docker environment"))
    docker_memory: str = field(default="512m", metadata=_help("memory of the docker environment"))
    snipara_api_key: str | None = field(default=None, repr=False, metadata=_help(
        "Snipara API key (rlm_...); also SNIPARA_API_KEY", env="SNIPARA_API_KEY"))
    snipara_project_slug: str | None = field(default=None, metadata=_help(
        "Snipara project; also SNIPARA_PROJECT_SLUG", env="SNIPARA_PROJECT_SLUG"))
    memory_enabled: bool = field(default=False, metadata=_help("agent memory tools (rlm_remember/rlm_recall)"))
    executor: str = field(default="local", metadata=_help(
        'where the items of `rlm batch` run: "local" (this process) or "ray" (a Ray cluster: rlm-executor-ray)'))
    context_provider: str | None = field(default=None, metadata=_help(
        'context provider plugin for rlm_sub_complete(context_query=...) and AgentRunner(auto_context=True), '
        'e.g. "snipara" (rlm-snipara); unset: the only one installed, none when several are'))
    pricing: Mapping[str, ModelPricing] = field(factory=dict, metadata=_help("", table="pricing"))
    plugins: Mapping[str, Any] = field(factory=dict, metadata=_help("", table="plugins"))
    source: str | None = field(default=None, metadata=_help("", internal=True))
    #: The ``[rlm]`` keys the user set (rlm.toml, RLM_* variables, keyword arguments and flags), as
    #: opposed to defaults: e.g. a model the user named is never stood in for by a fallback.
    explicit: frozenset[str] = field(factory=frozenset, eq=False, metadata=_help("", internal=True))

    def plugin(self, section: str) -> Any:
        """The validated ``[plugins.<section>]`` object (None when not declared)."""
        return self.plugins.get(section)


#: Names of the ``[rlm]`` keys, in declaration order.
KEYS: tuple[str, ...] = tuple(
    f.name for f in attrs.fields(RLMConfig) if not f.metadata.get("table") and not f.metadata.get("internal")
)


# --- the one private converter -------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected true or false, got {value!r}")


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


#: Appended to the error of a nan/inf value (every float setting needs a finite number).
NOT_FINITE_FIX = "nan and inf are not allowed: give a finite number, or leave the key unset for its default"


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    number: float | None = None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
    if number is None:
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(number):  # nan turns every comparison false, inf switches a cap off
        raise ValueError(f"must be a finite number, got {value!r} ({NOT_FINITE_FIX})")
    return number


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def _structure_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _structure_literal(value: Any, literal: Any) -> Any:
    choices = get_args(literal)
    if value in choices:
        return value
    raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")


def _make_converter() -> cattrs.Converter:
    import cattrs

    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_str_tuple)
    conv.register_structure_hook_func(lambda t: get_origin(t) is Literal, _structure_literal)
    return conv


_converters: list[cattrs.Converter] = []  # made on first use: `rlm mcp-serve` reads its transport without it


def _converter() -> cattrs.Converter:
    if not _converters:
        _converters.append(_make_converter())
    return _converters[0]


def _suggest(key: str, choices: Any) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(sorted(choices))}"


def structure_section(data: Mapping[str, Any], cls: type, *, where: str, sources: Mapping[str, str] | None = None) -> Any:
    """Validate ``data`` into the attrs class ``cls``; errors name the key and its source.

    ``where`` names the table (``"rlm.toml: [rlm]"``); ``sources`` maps a key to
    a label for where its value came from when that is not the table
    (``"environment variable RLM_MAX_DEPTH"``, ``"keyword argument max_depth"``).
    """
    sources = sources or {}

    def label(key: str) -> str:
        return sources.get(key, f"{where} {key}")

    known = {f.name for f in attrs.fields(cls)}
    secret = {f.name for f in attrs.fields(cls) if f.repr is False}

    def leaf(key: str, exc: BaseException) -> str:  # a secret's value is never echoed
        message = _leaf_message(exc)
        return message.split(", got ")[0] + " (value not shown)" if key in secret else message

    def validator_message(text: str) -> str:  # an attrs validator's message starts with the field's name
        key = next((k for k in data if text.startswith((f"{k} ", f"{k}:", f"'{k}'"))), None)
        return f"{label(key)}: {text}" if key is not None else f"{where}: {text}"

    for key in data:
        if key not in known:
            raise ConfigError(f"{label(key)}: unknown key{_suggest(key, known)}")
    import cattrs

    try:
        return _converter().structure(dict(data), cls)
    except cattrs.ClassValidationError as exc:
        with_notes, others = exc.group_exceptions()
        messages = [f"{label(note.name)}: {leaf(note.name, sub)}" for sub, note in with_notes]
        messages += [validator_message(_leaf_message(sub)) for sub in others]
        raise ConfigError("; ".join(messages)) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(validator_message(str(exc))) from exc


def _leaf_message(exc: BaseException) -> str:
    """The message of the innermost error (cattrs nests groups for unions and collections)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, KeyError):
        return f"missing required key {exc.args[0]!r}" if exc.args else "missing required key"
    return str(exc) or type(exc).__name__


# --- layers ---------------------------------------------------------------------------------


def find_config_file(start: str | os.PathLike[str] | None = None) -> Path | None:
    """``RLM_CONFIG`` if set, else the nearest rlm.toml from ``start`` (cwd) upwards,
    stopping at a repository root or the home directory."""
    explicit = os.environ.get("RLM_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"RLM_CONFIG={explicit}: no such file", fix="point RLM_CONFIG at an rlm.toml or unset it")
        return path
    here = Path(start or os.getcwd()).resolve()
    home = Path.home().resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists() or directory == home:
            break
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse ``path``; syntax and encoding errors become a ConfigError naming file and line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    raw = raw.removeprefix(codecs.BOM_UTF8)  # what some Windows editors write; harmless
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            what = "is UTF-16 text, not UTF-8"
        else:
            what = f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} on line {line})"
        raise ConfigError(f"{path}: {what}", fix="save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", fix="fix the syntax (see https://toml.io)") from exc


def _env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _from_environment(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    fields = {f.name: f for f in attrs.fields(RLMConfig)}
    for key in KEYS:
        names = [_env_name(key)]
        alias = fields[key].metadata.get("env")
        if alias:
            names.append(alias)
        for name in names:
            if name in env:
                values[key] = env[name]
                sources[key] = f"environment variable {name}"
                break
    _legacy_environment(env, values, sources)
    return values, sources


#: rlm-runtime 2.x's ``RLM_*`` variables already reported (a warning once per process and name).
_reported_2x_env: set[str] = set()


def _legacy_environment(env: Mapping[str, str], values: dict[str, Any], sources: dict[str, str]) -> None:
    """rlm-runtime 2.x's ``RLM_*`` names (``RLM_TIMEOUT_SECONDS``...): a renamed one is taken for rlm's
    setting when rlm's own variable is not set; one with no counterpart is reported with what to do (a
    variable can be left over in a shell, so it is a warning, not an error).  Each is said once."""
    found = [name for name in env if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX):].isupper()
             and name[len(ENV_PREFIX):].lower() in _LEGACY_NAMES]
    if not found:
        return
    from rlm.compat import REFUSED_SETTINGS, RENAMED_SETTINGS, SAME_AS_OURS
    from rlm.logging import get_logger

    log = get_logger(__name__)
    for name in found:
        old = name[len(ENV_PREFIX):].lower()
        ours = RENAMED_SETTINGS.get(old)
        if ours is not None and ours not in values:
            values[ours] = env[name]
            sources[ours] = f"environment variable {name}"
        if name in _reported_2x_env:
            continue
        _reported_2x_env.add(name)
        if ours is not None:
            log.warning("config_2x_names", variable=name, read_as=f"{_env_name(ours)}",
                        fix=f"rename it {_env_name(ours)}")
        elif old in SAME_AS_OURS and str(env[name]).strip().lower() in {str(SAME_AS_OURS[old][0]).lower()}:
            continue
        else:
            log.warning("config_2x_ignored", variable=name, why="an rlm-runtime 2.x setting rlm does not have",
                        fix=REFUSED_SETTINGS[old])


#: rlm-runtime 2.x's setting names as ``RLM_*`` variables: :data:`rlm.compat.LEGACY_SETTINGS` without
#: ``log_level`` (``RLM_LOG_LEVEL`` is rlm's own too), written out so that reading the environment imports
#: nothing when none is set (a test keeps the two equal).
_LEGACY_NAMES = frozenset({"timeout_seconds", "docker_timeout", "sub_calls_enabled", "sub_calls_max_per_turn",
                           "sub_calls_budget_inheritance", "docker_network_disabled", "api_key", "tool_budget",
                           "parallel_tools", "trust_level", "snipara_base_url", "sub_calls_max_cost_per_session"})


def _plugin_env(env: Mapping[str, str]) -> dict[str, dict[str, tuple[str, str]]]:
    """``RLM_PLUGINS__ENV_DOCKER__IMAGE=x`` -> {"env_docker": {"image": (x, name)}}."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    prefix = ENV_PREFIX + "PLUGINS__"
    for name, value in env.items():
        if not name.startswith(prefix):
            continue
        section, _, key = name[len(prefix):].partition("__")
        if section and key:
            out.setdefault(section.lower(), {})[key.lower()] = (value, name)
    return out


def _norm(section: str) -> str:
    return section.replace("-", "_").lower()


def peek_plugin_setting(section: str, key: str) -> Any:
    """The raw value of ``[plugins.<section>] <key>`` as :func:`load_config` reads it (its environment
    variable, ./.env, rlm.toml), unvalidated; None when unset.  For a decision that must come before
    the whole configuration is loaded (``rlm mcp-serve`` takes stdio before); raises the ConfigError
    :func:`load_config` would raise for a file it cannot read."""
    load_dotenv()  # before rlm.toml is looked for: RLM_CONFIG may come from .env
    from_env = _plugin_env(os.environ).get(_norm(section), {}).get(key.lower())
    if from_env is not None:
        return from_env[0]
    path = find_config_file()
    plugins = read_toml(path).get("plugins", {}) if path is not None else {}
    table = plugins.get(section) if isinstance(plugins, dict) else None
    return table.get(key) if isinstance(table, dict) else None


# --- ./.env ---------------------------------------------------------------------------------

DOTENV_FILENAME = ".env"
#: A .env longer than this is refused unread (a file of settings is a few lines).
DOTENV_MAX_BYTES = 1024 * 1024
#: ``RLM_DOTENV=0`` (false, no, off) in the real environment: never read ./.env.
DOTENV_SWITCH = "RLM_DOTENV"
_DOTENV_FIX = f"write NAME=value lines (quote a value with spaces or #), or set {DOTENV_SWITCH}=0 to skip .env"


class DotenvError(ConfigError):
    """./.env cannot be read or parsed; ``path`` is that file."""

    def __init__(self, path: Path, message: str, *, fix: str | None = None) -> None:
        super().__init__(f"{path}: {message}", fix=fix)
        self.path = path


@define(frozen=True, kw_only=True)
class DotenvLoad:
    """What :func:`load_dotenv` did: the file, the variables it ``applied`` to ``os.environ`` and those it
    left as they were because the environment already had them (names only, never values)."""

    path: Path
    applied: tuple[str, ...]
    kept: tuple[str, ...]


#: name -> (value, file) of every variable a .env put into os.environ in this process.
_dotenv_set: dict[str, tuple[str, Path]] = {}
_last_dotenv: DotenvLoad | None = None


def dotenv_enabled(env: Mapping[str, str] | None = None) -> bool:
    """False when ``RLM_DOTENV`` is 0/false/no/off; a ConfigError for another value."""
    raw = (os.environ if env is None else env).get(DOTENV_SWITCH)
    if raw is None:
        return True
    try:
        return _structure_bool(raw, bool)
    except ValueError:
        raise ConfigError(f"environment variable {DOTENV_SWITCH}: expected 1 or 0, got {raw!r}",
                          fix="set it to 0 to skip ./.env, or unset it") from None


def last_dotenv() -> DotenvLoad | None:
    """What the latest :func:`load_dotenv` of this process loaded (None: no .env was read)."""
    return _last_dotenv


def load_dotenv(directory: str | os.PathLike[str] | None = None) -> DotenvLoad | None:
    """Put the variables of ``<directory>/.env`` (default: the current directory's; never searched
    upwards) into ``os.environ``, leaving every variable the environment already has as it is
    (python-dotenv's ``override=False``): the real environment always wins.

    None when there is no such file (a directory named .env, such as a virtualenv, is not one) or
    ``RLM_DOTENV`` is off.  A file that cannot be read, is not UTF-8 or has a line that is not
    ``NAME=value`` is a :class:`DotenvError` naming the file and the line (never its values).
    python-dotenv is imported only when the file exists.
    """
    global _last_dotenv
    if not dotenv_enabled():
        _last_dotenv = None
        return None
    path = Path(directory if directory is not None else os.getcwd()) / DOTENV_FILENAME
    try:
        exists = path.is_file()
    except OSError:  # a folder we may not look into
        exists = False
    if not exists:
        _last_dotenv = None
        return None
    values, lines = _read_dotenv(path)
    for name, value in values.items():  # checked before any is applied: all of the file or none
        if "\0" in name or (value is not None and "\0" in value):  # the value itself is never shown
            raise DotenvError(path, f"line {lines.get(name, '?')}: a NUL character cannot go into the environment",
                              fix=_DOTENV_FIX)
    was_set: list[str] = []
    kept: list[str] = []
    for name, value in values.items():
        if value is None:  # a bare NAME line sets nothing
            continue
        current = os.environ.get(name)
        ours = _dotenv_set.get(name)
        if current is not None and not (ours is not None and ours[0] == current):
            kept.append(name)  # the real environment wins
            continue
        os.environ[name] = value
        _dotenv_set[name] = (value, path)
        was_set.append(name)
    _last_dotenv = DotenvLoad(path=path, applied=tuple(was_set), kept=tuple(kept))
    return _last_dotenv


def _read_dotenv(path: Path) -> tuple[dict[str, str | None], dict[str, int]]:
    """The variables of a .env (python-dotenv's parser, ``${VAR}`` expanded) and each one's line."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(DOTENV_MAX_BYTES + 1)
    except OSError as exc:
        raise DotenvError(path, f"cannot read: {exc.strerror}",
                          fix=f"make it readable, or set {DOTENV_SWITCH}=0 to skip it") from None
    if len(raw) > DOTENV_MAX_BYTES:
        raise DotenvError(path, f"is larger than {DOTENV_MAX_BYTES // 1024} KiB: not a file of settings",
                          fix=f"keep only NAME=value lines in it, or set {DOTENV_SWITCH}=0 to skip it")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DotenvError(path, f"is not valid UTF-8 (line {line})", fix="save the file as UTF-8") from None
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    lines: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        source = binding.original.string  # it may start with the blank lines before the statement
        line = binding.original.line + source[: len(source) - len(source.lstrip())].count("\n")
        if binding.error:
            raise DotenvError(path, f"line {line}: cannot parse this line", fix=_DOTENV_FIX)
        if binding.key is not None:
            lines[binding.key] = line
    return dict(dotenv_values(stream=io.StringIO(text))), lines


def _dotenv_origin(name: str, env: Mapping[str, str]) -> Path | None:
    """The .env that set variable ``name`` to its current value (None: the real environment did)."""
    ours = _dotenv_set.get(name)
    return ours[1] if ours is not None and env.get(name) == ours[0] else None


def load_config(
    *,
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, type] | None = None,
    use_file: bool = True,
    dotenv: bool = True,
    **overrides: Any,
) -> RLMConfig:
    """Build the effective configuration.

    :param path: an rlm.toml to read (default: :func:`find_config_file`).
    :param env: the environment (default ``os.environ``, after :func:`load_dotenv` has put the
        current directory's .env into it; a mapping given here is used as it is, without .env).
    :param sections: ``[plugins.<name>]`` classes declared by plugins.
    :param use_file: False to ignore rlm.toml entirely.
    :param dotenv: False to ignore ./.env (so does ``RLM_DOTENV=0`` in the environment).
    :param overrides: keyword arguments; None values are ignored.
    """
    if env is None:
        if dotenv:
            load_dotenv()  # before rlm.toml is looked for: RLM_CONFIG may come from .env
        env = os.environ
    sections = dict(sections or {})
    file_path = Path(path) if path is not None else (find_config_file() if use_file else None)
    doc = read_toml(file_path) if file_path is not None else {}
    where_file = f"{file_path.name if file_path else CONFIG_FILENAME}:"

    unknown_tables = [k for k in doc if k not in {"rlm", "plugins", "pricing"}]
    if unknown_tables:
        key = unknown_tables[0]
        raise ConfigError(f"{where_file} [{key}]: unknown table{_suggest(key, ['rlm', 'plugins', 'pricing'])}")

    rlm_table = doc.get("rlm", {})
    if not isinstance(rlm_table, dict):
        raise ConfigError(f"{where_file} rlm: must be a table ([rlm])")
    rlm_table = _file_settings(rlm_table, file_path, where=f"{where_file} [rlm]")
    merged: dict[str, Any] = dict(rlm_table)
    sources: dict[str, str] = {}

    env_values, env_sources = _from_environment(env)
    for key, label in env_sources.items():  # an error names the .env a bad value came from
        origin = _dotenv_origin(label.rpartition(" ")[2], env)
        if origin is not None:
            env_sources[key] = f"{label} (from {origin})"
    merged.update(env_values)
    sources.update(env_sources)

    for key, value in overrides.items():
        if value is None:
            continue
        if key not in KEYS and key not in {"pricing", "plugins"}:
            raise ConfigError(f"keyword argument {key}: unknown setting{_suggest(key, KEYS)}")
        merged[key] = value
        sources[key] = f"keyword argument {key}"

    pricing_table = doc.get("pricing", {})
    if not isinstance(pricing_table, dict):
        raise ConfigError(f'{where_file} pricing: must be tables ([pricing."<model>"])')
    pricing = {}
    for model, table in pricing_table.items():
        if not isinstance(table, dict):
            raise ConfigError(f'{where_file} [pricing."{model}"]: must be a table with input_per_mtok and output_per_mtok')
        pricing[model] = structure_section(table, ModelPricing, where=f'{where_file} [pricing."{model}"]')
    if "pricing" in merged:
        pricing.update(_given_pricing(merged.pop("pricing")))

    plugins = _load_plugin_sections(doc.get("plugins", {}), env, sections, where_file, merged.pop("plugins", None))

    base = structure_section({k: v for k, v in merged.items()}, RLMConfig, where=f"{where_file} [rlm]", sources=sources)
    config = attrs.evolve(base, pricing=pricing, plugins=plugins, source=str(file_path) if file_path else None,
                          explicit=frozenset(merged))
    validate(config, sources, where=f"{where_file} [rlm]")
    return config


#: (path, mtime_ns) of the rlm.toml files whose rlm-runtime 2.x names were already reported.
_reported_2x: set[tuple[str, int]] = set()


def _file_settings(table: dict[str, Any], file_path: Path | None, *, where: str,
                   report: bool = True) -> dict[str, Any]:
    """An rlm.toml's ``[rlm]`` table with rlm-runtime 2.x's names mapped onto rlm's (:mod:`rlm.compat`):
    renamed ones taken (a warning says so, once per file), those with no counterpart refused."""
    from rlm.compat import LEGACY_SETTINGS

    if not any(key in LEGACY_SETTINGS for key in table):
        return table
    from rlm.compat import translate_settings

    translated, notes = translate_settings(table, where=where)
    if notes and report and file_path is not None:
        try:
            key = (str(file_path), file_path.stat().st_mtime_ns)
        except OSError:
            key = (str(file_path), 0)
        if key not in _reported_2x:
            _reported_2x.add(key)
            from rlm.logging import get_logger

            get_logger(__name__).warning("config_2x_names", file=str(file_path), read_as="; ".join(notes),
                                         fix="rename them in the file (`rlm config show` lists rlm's names)")
    return translated


def setting_sources(
    config: RLMConfig,
    *,
    sections: Mapping[str, type] | None = None,
    env: Mapping[str, str] | None = None,
    file_label: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Where each value of ``config`` (made by :func:`load_config` without keyword arguments) came from, by
    the same precedence: ``{"rlm": {key: (value, source, secret)}, "plugins": {section: {key: (...)}}}``.

    ``source`` is ``"environment variable RLM_X"`` (``"... (from /dir/.env)"`` when a .env set it), the
    file (``file_label``, default ``config.source``) or ``"default"``; ``secret`` is True for a field
    declared ``repr=False`` (its value must not be shown).  Reads the file again; changes nothing.
    """
    from rlm.compat import RENAMED_SETTINGS

    env = os.environ if env is None else env
    doc = read_toml(Path(config.source)) if config.source else {}
    where = file_label or config.source or CONFIG_FILENAME
    table = doc.get("rlm") if isinstance(doc.get("rlm"), dict) else {}
    table = _file_settings(table, None, where=f"{where} [rlm]", report=False)

    def from_env(names: list[str]) -> str | None:
        for name in names:
            if name in env:
                origin = _dotenv_origin(name, env)
                return f"environment variable {name}" + (f" (from {origin})" if origin is not None else "")
        return None

    fields = {f.name: f for f in attrs.fields(RLMConfig)}
    rlm: dict[str, Any] = {}
    for key in KEYS:
        alias = fields[key].metadata.get("env")
        legacy = [_env_name(old) for old, ours in RENAMED_SETTINGS.items() if ours == key]  # RLM_TIMEOUT_SECONDS...
        source = from_env([_env_name(key), *([alias] if alias else []), *legacy]) or \
            (where if key in table else "default")
        rlm[key] = (getattr(config, key), source, fields[key].repr is False)
    plugin_tables = doc.get("plugins") if isinstance(doc.get("plugins"), dict) else {}
    env_tables = _plugin_env(env)
    plugins: dict[str, Any] = {}
    for name in sections or {}:
        value = config.plugin(name)
        if value is None or not attrs.has(type(value)):
            continue
        in_file = plugin_tables.get(name) if isinstance(plugin_tables.get(name), dict) else {}
        in_env = env_tables.get(_norm(name), {})
        rows: dict[str, Any] = {}
        for f in attrs.fields(type(value)):
            if f.name in in_env:
                source = from_env([in_env[f.name][1]]) or "environment"
            else:
                source = where if f.name in in_file else "default"
            rows[f.name] = (getattr(value, f.name), source, f.repr is False)
        plugins[name] = rows
    return {"rlm": rlm, "plugins": plugins}


def _given_pricing(given: Any) -> dict[str, ModelPricing]:
    """``RLM(pricing=...)``: model name -> a :class:`ModelPricing` or a mapping with its fields, validated
    like a ``[pricing."<model>"]`` table."""
    fix = 'e.g. pricing={"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}'
    if not isinstance(given, Mapping):
        raise ConfigError("keyword argument pricing: must map model names to prices", fix=fix)
    out: dict[str, ModelPricing] = {}
    for model, price in given.items():
        where = f"keyword argument pricing[{model!r}]:"
        if isinstance(price, ModelPricing):
            out[str(model)] = price
        elif isinstance(price, Mapping):
            out[str(model)] = structure_section(dict(price), ModelPricing, where=where)
        else:
            raise ConfigError(f"{where} must be a mapping with input_per_mtok and output_per_mtok", fix=fix)
    return out


def _load_plugin_sections(
    tables: Mapping[str, Any],
    env: Mapping[str, str],
    sections: Mapping[str, type],
    where_file: str,
    given: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if not isinstance(tables, dict):
        raise ConfigError(f"{where_file} plugins: must be a table ([plugins.<name>])")
    by_norm = {_norm(name): name for name in sections}
    env_tables = _plugin_env(env)
    result: dict[str, Any] = {}
    for name in tables:
        if name not in sections:
            hint = _suggest(name, sections) if sections else "; no installed plugin declares a config section"
            raise ConfigError(
                f"{where_file} [plugins.{name}]: no installed plugin reads this table{hint}",
                fix="install the plugin or remove the table",
            )
    for name, cls in sections.items():
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where_file} plugins.{name}: must be a table ([plugins.{name}])")
        data = dict(table)
        srcs: dict[str, str] = {}
        for key, (value, var) in env_tables.get(_norm(name), {}).items():
            data[key] = value
            srcs[key] = f"environment variable {var}"
        result[name] = structure_section(data, cls, where=f"{where_file} [plugins.{name}]", sources=srcs)
    for norm_name in env_tables:
        if norm_name not in by_norm:
            var = next(iter(env_tables[norm_name].values()))[1]
            raise ConfigError(f"environment variable {var}: no installed plugin reads section {norm_name!r}")
    if given:
        result.update(given)
    return result


def validate(config: RLMConfig, sources: Mapping[str, str] | None = None, *, where: str = "rlm.toml: [rlm]") -> None:
    """Range checks the types cannot express."""
    sources = sources or {}

    def fail(key: str, message: str) -> None:
        origin = sources.get(key, f"{where} {key}")
        raise ConfigError(f"{origin}: {message}")

    for f in attrs.fields(RLMConfig):  # a config built in Python skipped the converter's check
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            fail(f.name, f"must be a finite number, got {value!r} ({NOT_FINITE_FIX})")
    if config.max_depth < 0:
        fail("max_depth", "must be 0 or more")
    if config.max_retries < 0:
        fail("max_retries", "must be 0 or more (0: never retry)")
    for key in ("max_turns", "max_subcalls", "max_parallel", "env_memory_mb", "env_write_quota_files"):
        if getattr(config, key) < 1:
            fail(key, "must be at least 1")
    for key in ("timeout", "env_timeout"):
        if not getattr(config, key) > 0:  # "not >": nan fails too
            fail(key, "must be more than 0 seconds")
    if config.env_cpu_limit_s is not None and not config.env_cpu_limit_s > 0:
        fail("env_cpu_limit_s", "must be more than 0 seconds (leave it unset for the same as env_timeout)")
    if config.env_workdir is not None and not config.env_workdir.strip():
        fail("env_workdir", "must name a directory (leave it unset for the current directory)")
    if any(not path.strip() for path in config.env_writable_paths):
        fail("env_writable_paths", "must not contain an empty path")
    if not math.isfinite(config.env_write_quota_mb) or config.env_write_quota_mb <= 0:
        fail("env_write_quota_mb", "must be a finite number of MiB more than 0")
    if config.token_budget is not None and config.token_budget < 1:
        fail("token_budget", "must be at least 1")
    for key in ("cost_limit", "session_cost_cap"):
        value = getattr(config, key)
        if value is not None and not value > 0:
            fail(key, "must be more than 0 USD (leave it unset for no limit)")
    if not config.docker_cpus > 0:
        fail("docker_cpus", "must be more than 0 CPUs")
    if config.temperature is not None and not 0 <= config.temperature <= 2:
        fail("temperature", "must be between 0 and 2 (leave it unset for the provider's default)")
    if config.top_p is not None and not 0 < config.top_p <= 1:
        fail("top_p", "must be more than 0 and at most 1 (leave it unset for the provider's default)")
    if config.max_output_tokens is not None and config.max_output_tokens < 1:
        fail("max_output_tokens", "must be at least 1 (leave it unset for the default)")
    if config.direct_below_tokens < 0:
        fail("direct_below_tokens", "must be 0 (never) or more")
    if config.context_window is not None and config.context_window < 1:
        fail("context_window", "must be at least 1 token (leave it unset to look it up)")
    for key in _TEXT_KEYS:
        value = getattr(config, key)
        if isinstance(value, str):
            bad = first_surrogate(value)
            if bad is not None:
                fail(key, f"is not valid UTF-8 text ({bad}): set it as UTF-8 text")
    for model, price in config.pricing.items():
        for name in ("input_per_mtok", "output_per_mtok"):
            value = getattr(price, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                table = where.removesuffix(" [rlm]")
                raise ConfigError(f'{table} [pricing."{model}"] {name}: must be a finite number of USD, 0 or more, '
                                  f"got {value!r}", fix="give the price per million tokens, e.g. 0.15")


#: ``[rlm]`` keys whose value is sent to providers or shown as text: no undecodable bytes.
#: (Paths such as log_dir may be non-UTF-8 names on disk and are left alone.)
_TEXT_KEYS = ("backend", "model", "sub_model", "sub_backend", "environment", "api_base", "docker_image", "docker_memory",
              "snipara_project_slug")


def first_surrogate(text: str) -> str | None:
    """None when ``text`` is valid Unicode text; else where and what its first bad character is.

    A lone surrogate U+DC80..U+DCFF is how Python decodes an undecodable byte
    (command-line arguments, environment variables, file names); any other
    one came from a broken escape such as ``"\\ud800"``.
    """
    if text.isascii():
        return None
    for index, char in enumerate(text):
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            if 0xDC80 <= code <= 0xDCFF:
                return f"an undecodable byte 0x{code - 0xDC00:02x} at character {index}"
            return f"a lone surrogate U+{code:04X} at character {index}"
    return None


#: The fix shown for a bad number flag (others get a generic one).
_FLAG_FIX = {
    "timeout": f"give seconds, e.g. --timeout 60 (at most {HARD_CAPS['timeout']:g})",
    "cost_limit": "give USD, e.g. --cost-limit 0.5, or leave the flag out for no limit",
    "token_budget": "give tokens, e.g. --token-budget 20000",
}


def check_cli_numbers(**values: float | None) -> None:
    """Refuse a number flag that is nan, inf or not more than 0 (``max_depth``: less than 0),
    naming the flag as typed (``--cost-limit inf``); None means the flag was not given."""
    for key, value in values.items():
        if value is None or isinstance(value, bool):
            continue
        flag = "--" + key.replace("_", "-")
        least_inclusive = key == "max_depth"
        finite = not isinstance(value, float) or math.isfinite(value)
        if finite and (value >= 0 if least_inclusive else value > 0):
            continue
        rule = "0 or more" if least_inclusive else "more than 0"
        what = "a finite number" if isinstance(value, float) else "a whole number"
        raise ConfigError(f"{flag} {value}: must be {what} {rule}",
                          fix=_FLAG_FIX.get(key, f"give a number, e.g. {flag} {1 if not least_inclusive else 0}"))


def to_toml_comment_block() -> str:
    """A commented rlm.toml listing every [rlm] key with its default and help (for ``rlm init``)."""
    lines = ["[rlm]"]
    for f in attrs.fields(RLMConfig):
        if f.name not in KEYS:
            continue
        default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default  # type: ignore[misc]
        lines.append(f"# {f.metadata.get('help', '')}")
        lines.append(f"# {f.name} = {_toml_value(default)}" if default is not None else f"# {f.name} = ")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
