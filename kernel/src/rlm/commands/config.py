"""``rlm config show`` and the ``--config/-c FILE`` option of ``rlm run``, ``rlm agent`` and ``rlm batch``.

``--config FILE`` reads FILE instead of the rlm.toml found from the current directory (as ``RLM_CONFIG``
does, for this command only).  A file written for rlm-runtime 2.x is read too: its ``[rlm]`` keys that have
another name here are renamed (``timeout_seconds`` -> ``timeout``...; :data:`RENAMED_2X`), those that mean
what rlm does anyway are accepted, and one that has no equivalent is an error naming it and what to use
instead (:data:`UNSUPPORTED_2X`), never silently dropped.

``rlm config show`` prints the effective configuration and where each value came from (a default,
rlm.toml, an ``RLM_*`` variable, ./.env); secrets are masked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

#: 2.x ``[rlm]`` keys that rlm names otherwise: 2.x name -> our name (same meaning).
RENAMED_2X: dict[str, str] = {
    "timeout_seconds": "timeout",
    "sub_calls_enabled": "sub_calls",
    "sub_calls_max_per_turn": "max_subcalls",
    "docker_timeout": "env_timeout",
}

#: 2.x keys accepted when their value is what rlm does anyway: key -> (that value, what rlm does).
SAME_AS_OURS_2X: dict[str, tuple[Any, str]] = {
    "sub_calls_budget_inheritance": (0.5, "a sub-call always gets at most half of what its parent has left"),
    "docker_network_disabled": (True, "the docker environment has no network unless [plugins.env-docker] network "
                                      "says otherwise"),
}

#: 2.x keys with no equivalent here: key -> what to do instead.
UNSUPPORTED_2X: dict[str, str] = {
    "api_key": "put the provider's key in the environment or ./.env (OPENAI_API_KEY, ANTHROPIC_API_KEY), "
               "never in rlm.toml",
    "tool_budget": "bound the rounds of one call with max_turns instead",
    "parallel_tools": "tool calls of one turn always run concurrently; set max_parallel = 1 to run them one at a "
                      "time",
    "log_level": "set RLM_LOG_LEVEL (debug, info, warning, error) in the environment",
    "trust_level": 'choose the sandbox with environment = "local", "docker" or "wasm"',
    "snipara_base_url": "set base_url in [plugins.snipara] (rlm-snipara), without the /mcp suffix 2.x had",
    "sub_calls_max_cost_per_session": "cap the spending of a whole process with session_cost_cap (all calls, "
                                      "not only sub-calls), or of one run with cost_limit",
    "sub_calls_budget_inheritance": "remove it: a sub-call always gets at most half of what its parent has left",
    "docker_network_disabled": 'set network = "bridge" in [plugins.env-docker] to give the container a network',
}


def translate_2x(doc: Mapping[str, Any], *, where: str) -> tuple[dict[str, Any], list[str]]:
    """``doc`` (a parsed rlm.toml) with its 2.x ``[rlm]`` keys renamed, and one note per key translated.

    A 2.x key without an equivalent, or one renamed onto a key the file also sets to another value, is a
    :class:`~rlm.errors.ConfigError` naming ``where`` and the key."""
    from rlm.errors import ConfigError

    table = doc.get("rlm")
    if not isinstance(table, dict):
        return dict(doc), []
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in table.items():
        if key in SAME_AS_OURS_2X and value == SAME_AS_OURS_2X[key][0]:
            notes.append(f"{key} = {_show(value)}: {SAME_AS_OURS_2X[key][1]}")
            continue
        if key in UNSUPPORTED_2X:
            raise ConfigError(f"{where} [rlm] {key}: an rlm-runtime 2.x setting rlm does not have",
                              fix=UNSUPPORTED_2X[key])
        ours = RENAMED_2X.get(key)
        if ours is None:
            out[key] = value
            continue
        if ours in table and table[ours] != value:
            raise ConfigError(f"{where} [rlm] {key} = {_show(value)} and {ours} = {_show(table[ours])}: "
                              f"{key} is rlm-runtime 2.x's name of {ours}", fix=f"keep only {ours}")
        out[ours] = value
        notes.append(f"{key} -> {ours}")
    return {**doc, "rlm": out}, notes


def _show(value: Any) -> str:
    from rlm.config import _toml_value

    return _toml_value(value)


def to_toml(doc: Mapping[str, Any]) -> str:
    """TOML text of a parsed rlm.toml (tables of scalars and lists, nested tables as ``[a."b"]``)."""
    from rlm.config import _toml_value

    lines: list[str] = []

    def key_text(key: str) -> str:
        return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _toml_value(key)

    def table(path: list[str], data: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
        if path and (scalars or not data):
            lines.append(f"[{'.'.join(key_text(p) for p in path)}]")
        lines.extend(f"{key_text(k)} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in data.items():
            if isinstance(v, dict):
                table([*path, k], v)

    table([], doc)
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def config_option(path: str | None) -> Iterator[Path | None]:
    """While the command runs, read ``path`` (a ``--config`` file) instead of the rlm.toml found from the
    current directory: through ``RLM_CONFIG``, restored afterwards.  A 2.x file is translated
    (:func:`translate_2x`) into a temporary copy, removed afterwards, and stderr says what was renamed.
    Yields the file given (None when ``path`` is None: nothing changes)."""
    if path is None:
        yield None
        return
    import tempfile

    from rlm.config import read_toml
    from rlm.errors import ConfigError

    given = Path(path).expanduser()
    if not given.is_file():
        what = "is a directory" if given.is_dir() else "no such file"
        raise ConfigError(f"--config {path}: {what}", fix="give the path of an rlm.toml (rlm init writes one)")
    doc = read_toml(given)
    translated, notes = translate_2x(doc, where=f"--config {path}:")
    previous = os.environ.get("RLM_CONFIG")
    with contextlib.ExitStack() as stack:
        target = given
        if notes:
            print(f"rlm: read {path} as an rlm-runtime 2.x file: {'; '.join(notes)}", file=sys.stderr)
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rlm-config-")))
            target = folder / "rlm.toml"  # errors name "rlm.toml", as for the file itself
            target.write_text(to_toml(translated), encoding="utf-8")
        os.environ["RLM_CONFIG"] = str(target.resolve())
        try:
            yield given
        finally:
            if previous is None:
                os.environ.pop("RLM_CONFIG", None)
            else:
                os.environ["RLM_CONFIG"] = previous


def with_config_option(func: Callable[..., int]) -> Callable[..., int]:
    """Run a command whose keyword-only ``config`` parameter is the ``--config/-c`` file under
    :func:`config_option` (the signature, docstring and help stay the command's own)."""

    @functools.wraps(func)
    def command(*args: Any, config: str | None = None, **kwargs: Any) -> int:
        with config_option(config):
            return func(*args, config=config, **kwargs)

    return command


#: Shown instead of a secret's value.
HIDDEN = "(set, hidden)"


def show(
    *,
    config: Annotated[str | None, Parameter(name=["--config", "-c"])] = None,
    json_output: Annotated[bool, Parameter(name=["--json"])] = False,
) -> int:
    """Print the effective configuration: every [rlm] setting, each plugin's [plugins.NAME] table and the
    [pricing] overrides, with where each value came from (default, rlm.toml, an RLM_* variable, ./.env).

    Secrets (API keys, a password in a URL) are masked.  The output is valid TOML (the sources are
    comments); --json gives {"file", "rlm": {key: {"value", "source"}}, "plugins", "pricing"}.
    Exit codes: 0 shown, 2 the configuration has an error (the line says which key and where), 3 a
    plugin failed to load.

    Parameters
    ----------
    config: str
        Read this rlm.toml (or an rlm-runtime 2.x one) instead of the one found from the current directory.
    json_output: bool
        Print JSON instead of TOML.
    """
    with config_option(config) as given:
        data = effective(given)
    if json_output:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    print(render(data))
    return 0


def effective(given: Path | None = None) -> dict[str, Any]:
    """The effective configuration as :func:`show` prints it (``given``: the ``--config`` file, named as
    the user gave it instead of a translated copy)."""
    from rlm.cli import plugin_manager
    from rlm.config import load_config, setting_sources
    from rlm.registry import collect

    sections = {name: reg.load() for name, reg in collect(plugin_manager(), "config_section").items()}
    config = load_config(sections=sections)
    file_label = str(given) if given is not None else config.source
    sources = setting_sources(config, sections=sections, file_label=file_label)
    return {
        "file": file_label,
        "rlm": {key: {"value": _masked(value, secret), "source": source}
                for key, (value, source, secret) in sources["rlm"].items()},
        "plugins": {name: {key: {"value": _masked(value, secret), "source": source}
                           for key, (value, source, secret) in table.items()}
                    for name, table in sources["plugins"].items()},
        "pricing": {model: {"input_per_mtok": price.input_per_mtok, "output_per_mtok": price.output_per_mtok}
                    for model, price in config.pricing.items()},
    }


def _masked(value: Any, secret: bool) -> Any:
    if value is None:
        return None
    if secret:
        return HIDDEN
    if isinstance(value, str) and "://" in value and "@" in value.partition("://")[2].partition("/")[0]:
        scheme, _, rest = value.partition("://")
        return f"{scheme}://{HIDDEN}@{rest.partition('@')[2]}"  # user:password in a URL
    if isinstance(value, tuple):
        return list(value)
    return value


def render(data: Mapping[str, Any]) -> str:
    """The TOML text of :func:`effective`'s data: ``key = value  # source``; an unset key is commented out."""
    from rlm.config import _toml_value

    lines = [f"# effective configuration; file: {data['file'] or 'none (no rlm.toml found)'}"]

    def rows(header: str, table: Mapping[str, Mapping[str, Any]]) -> None:
        lines.extend(["", header])
        width = max((len(k) for k in table), default=0)
        for key, item in table.items():
            value, source = item["value"], item["source"]
            if value is None:
                lines.append(f"# {key.ljust(width)} = (unset)  # {source}")
            else:
                shown = f'"{value}"' if value == HIDDEN or (isinstance(value, str) and HIDDEN in value) \
                    else _toml_value(value)
                lines.append(f"{key.ljust(width)} = {shown}  # {source}")

    rows("[rlm]", data["rlm"])
    for name, table in data["plugins"].items():
        rows(f"[plugins.{name}]", table)
    for model, price in data["pricing"].items():
        lines.extend(["", f"[pricing.{_toml_value(model)}]",
                      f"input_per_mtok = {price['input_per_mtok']!r}",
                      f"output_per_mtok = {price['output_per_mtok']!r}"])
    return "\n".join(lines)
