"""The paper-style protocol's text format: code blocks in, FINAL markers out.

The model writes Python in ```repl (or ```python) fenced blocks and ends with
``FINAL(answer)`` or ``FINAL_VAR(name)`` on a line of its own, outside code
(Zhang & Khattab, Recursive Language Models).
"""

from __future__ import annotations

import re

from attrs import define

_FENCE = re.compile(r"```[ \t]*(repl|python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_FINAL_VAR = re.compile(r"^\s*FINAL_VAR\(\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?\s*\)\s*$", re.MULTILINE)
_FINAL = re.compile(r"^\s*FINAL\((.*)\)\s*$", re.MULTILINE | re.DOTALL)


@define(frozen=True, kw_only=True)
class FinalMarker:
    """A FINAL/FINAL_VAR found in the model's text."""

    kind: str  # "final" or "final_var"
    value: str


def code_blocks(text: str) -> list[str]:
    """The code of every ```repl/```python block, in order (other languages ignored)."""
    blocks = []
    for match in _FENCE.finditer(text):
        lang = (match.group(1) or "").lower()
        if lang or _looks_like_python(match.group(2)):
            code = match.group(2).strip("\n")
            if code.strip():
                blocks.append(code)
    return blocks


def _looks_like_python(code: str) -> bool:
    return bool(re.search(r"\b(print|import|def|for|len|=)\b|=", code))


def strip_code(text: str) -> str:
    return _FENCE.sub("", text)


def find_final(text: str) -> FinalMarker | None:
    """FINAL_VAR(name) or FINAL(answer) outside code blocks, or None."""
    prose = strip_code(text)
    match = _FINAL_VAR.search(prose)
    if match:
        return FinalMarker(kind="final_var", value=match.group(1))
    match = _FINAL.search(prose)
    if match:
        return FinalMarker(kind="final", value=_unquote(match.group(1).strip()))
    return None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    if value.startswith('"""') and value.endswith('"""') and len(value) >= 6:
        return value[3:-3]
    return value
