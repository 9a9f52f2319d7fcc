"""``rlm init``: write a commented rlm.toml into the current directory."""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = """\
# rlm configuration.  Precedence: command-line/keyword > RLM_* environment > this file > default.
# Every key is optional: uncomment what you want to change.
# Provider keys (OPENAI_API_KEY, ANTHROPIC_API_KEY) belong in the environment, not here.

"""


def init(*, force: bool = False, path: Path = Path("rlm.toml")) -> int:
    """Write a commented rlm.toml listing every setting with its default.

    Parameters
    ----------
    force: bool
        Overwrite an existing file.
    path: Path
        Where to write it.
    """
    from rlm.config import to_toml_comment_block
    from rlm.errors import ConfigError

    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", fix="edit it, or pass --force to overwrite it")
    body = HEADER + to_toml_comment_block() + _plugin_sections()
    try:
        path.write_text(body, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}", fix="check the folder exists and is writable") from exc
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _plugin_sections() -> str:
    import attrs

    from rlm.cli import plugin_manager
    from rlm.config import _toml_value
    from rlm.registry import collect

    chunks = []
    for name, reg in sorted(collect(plugin_manager(), "config_section", strict=False).items()):
        cls = reg.load()
        lines = [f"\n# {reg.description or 'from plugin ' + reg.plugin}", f"# [plugins.{name}]"]
        for f in attrs.fields(cls):
            default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default
            if f.metadata.get("help"):
                lines.append(f"# {f.metadata['help']}")
            lines.append(f"# {f.name} = {_toml_value(default) if default is not None else ''}")
        chunks.append("\n".join(lines) + "\n")
    return "".join(chunks)
