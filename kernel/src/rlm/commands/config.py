"""``rlm config show`` and the ``--config/-c FILE`` option of ``rlm run``, ``rlm agent`` and ``rlm batch``.

``--config FILE`` reads FILE instead of the rlm.toml found from the current directory (as ``RLM_CONFIG``
does, for this command only).  A file written for rlm-runtime 2.x is read like any rlm.toml: its ``[rlm]``
names that rlm has under another name are mapped, one with no equivalent is an error naming it and what
to use instead (:mod:`rlm.compat`, applied by :func:`rlm.config.load_config`).

``rlm config show`` prints the effective configuration and where each value came from (a default,
rlm.toml, an ``RLM_*`` variable, ./.env); secrets are masked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

@contextlib.contextmanager
def config_option(path: str | None) -> Iterator[Path | None]:
    """While the command runs, read ``path`` (a ``--config`` file) instead of the rlm.toml found from the
    current directory: through ``RLM_CONFIG``, restored afterwards (an rlm-runtime 2.x file is read as any
    rlm.toml is: :func:`rlm.config.load_config` maps its names).  Yields the file given (None when ``path``
    is None: nothing changes)."""
    if path is None:
        yield None
        return
    from rlm.errors import ConfigError

    given = Path(path).expanduser()
    if not given.is_file():
        what = "is a directory" if given.is_dir() else "no such file"
        raise ConfigError(f"--config {path}: {what}", fix="give the path of an rlm.toml (rlm init writes one)")
    previous = os.environ.get("RLM_CONFIG")
    os.environ["RLM_CONFIG"] = str(given.resolve())
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
