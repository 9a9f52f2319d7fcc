"""``rlm init``: write a commented rlm.toml and a .env.example into the current directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

HEADER = """\
# rlm configuration.  Precedence: command-line/keyword > RLM_* environment > ./.env > this file > default.
# Every key is optional: uncomment what you want to change.
# Provider keys (OPENAI_API_KEY, ANTHROPIC_API_KEY) belong in the environment or ./.env (see .env.example),
# not here.

"""

ENV_EXAMPLE_NAME = ".env.example"

ENV_EXAMPLE = """\
# Copy this file to .env and fill in what you use; keep .env out of version control.
# rlm reads the .env of the directory it runs in (not of the folders above it) and puts its
# variables into the environment; a variable the environment already has is never replaced.
# Precedence: command-line option > environment variable > .env > rlm.toml > default.
# RLM_DOTENV=0 in the environment skips .env.

# Provider keys (other litellm providers' keys go by their usual names too)
# OPENAI_API_KEY=sk-...
# ANTHROPIC_API_KEY=sk-ant-...

# Any [rlm] key of rlm.toml as RLM_<KEY>
# RLM_MODEL=gpt-4o-mini
# RLM_MAX_DEPTH=4
# RLM_COST_LIMIT=0.50
# RLM_LOG_DIR=logs
"""


def init(
    directory: Path | None = None,
    /,
    *,
    force: Annotated[bool, Parameter(name=["--force", "-f"])] = False,
    path: Path | None = None,
    no_snipara: Annotated[bool, Parameter(name=["--no-snipara"], negative="")] = False,
) -> int:
    """Write a commented rlm.toml listing every setting with its default, and a .env.example
    (provider keys and RLM_* examples, all commented) beside it: in the current directory, or in
    DIRECTORY (made when missing, as rlm-runtime 2.x's `rlm init DIR` took it).

    An existing rlm.toml is an error and an existing .env.example is left as it is, unless --force.
    Exit codes: 0 written, 2 the file exists or cannot be written.

    Parameters
    ----------
    directory: Path
        The folder to write rlm.toml and .env.example into (default: the current directory).
    force: bool
        Overwrite existing files.
    path: Path
        Where to write rlm.toml, as a file path (.env.example goes in the same folder); not with DIRECTORY.
    no_snipara: bool
        Leave out the [plugins.snipara] section even when rlm-snipara is installed.
    """
    from rlm.config import to_toml_comment_block
    from rlm.errors import ConfigError

    if directory is not None and path is not None:
        raise ConfigError(f"both a directory ({directory}) and --path ({path}) were given",
                          fix="give one: `rlm init DIR` writes DIR/rlm.toml, --path names the file itself")
    if path is None:
        path = (directory if directory is not None else Path(".")) / "rlm.toml"
    if directory is not None and directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not a directory",
                          fix="give a folder, or --path FILE to name the rlm.toml itself")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", fix="edit it, or pass --force to overwrite it")
    if directory is not None and not directory.exists():
        try:
            directory.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(f"{directory}: cannot create the directory: {exc.strerror}",
                              fix="check that its parent is writable") from exc
        print(f"created {directory}/", file=sys.stderr)
    body = HEADER + to_toml_comment_block() + _plugin_sections(skip={"snipara"} if no_snipara else set())
    try:
        path.write_text(body, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}", fix="check the folder exists and is writable") from exc
    print(f"wrote {path}", file=sys.stderr)
    example = path.parent / ENV_EXAMPLE_NAME
    if example.exists() and not force:
        print(f"kept {example} as it is (pass --force to overwrite it)", file=sys.stderr)
        return 0
    try:
        example.write_text(ENV_EXAMPLE, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{example}: cannot write: {exc.strerror}", fix="check the folder is writable") from exc
    print(f"wrote {example}", file=sys.stderr)
    return 0


def _plugin_sections(skip: frozenset[str] | set[str] = frozenset()) -> str:
    import attrs

    from rlm.cli import plugin_manager
    from rlm.config import _toml_value
    from rlm.registry import collect

    chunks = []
    for name, reg in sorted(collect(plugin_manager(), "config_section", strict=False).items()):
        if name in skip:
            continue
        cls = reg.load()
        lines = [f"\n# {reg.description or 'from plugin ' + reg.plugin}", f"# [plugins.{name}]"]
        for f in attrs.fields(cls):
            default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default
            if f.metadata.get("help"):
                lines.append(f"# {f.metadata['help']}")
            lines.append(f"# {f.name} = {_toml_value(default) if default is not None else ''}")
        chunks.append("\n".join(lines) + "\n")
    return "".join(chunks)
