"""The paper-style protocol's text format: code blocks in, FINAL markers out.

The model writes Python in ```repl (or ```python) fenced blocks and ends with
``FINAL(answer)`` or ``FINAL_VAR(name)`` on a line of its own, outside code
(Zhang & Khattab, Recursive Language Models).
"""

from __future__ import annotations

import re

from attrs import define

_FENCE = re.compile(r"```[ \t]*(repl|python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
#: Words and an ``=`` that make a block without a language tag read as code rather than prose.
_CODE_HINT = re.compile(r"\b(?:print|import|def|for|while|return|len)\b|=")
# Any case, and a full stop after the parenthesis: small models write "Final(42)." as often as FINAL(42).
_FINAL_VAR = re.compile(r"^\s*FINAL_VAR\(\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?\s*\)\.?\s*$",
                        re.MULTILINE | re.IGNORECASE)
_FINAL = re.compile(r"^\s*FINAL\((.*)\)\.?\s*$", re.MULTILINE | re.DOTALL | re.IGNORECASE)
#: "Final answer: X" as the reply's last line, which models write for FINAL(X) (the label is not the answer).
_FINAL_ANSWER_LINE = re.compile(r"\A\s*(?:\*\*)?final answer(?:\*\*)?\s*:\s*(?:\*\*)?\s*(\S.*?)\s*\Z", re.IGNORECASE)
#: A whole reply that is a code block whose fences the model left out: the tag alone on the first line.
_UNFENCED = re.compile(r"\A\s*(?:repl|python|py|python3)[ \t]*\n(.*\S.*)\Z", re.DOTALL | re.IGNORECASE)
#: A reply that starts like that but does close its block (only the opening fence is missing).
_HALF_FENCED = re.compile(r"\A\s*(?:repl|python|py|python3)[ \t]*\n(.*?)\n[ \t]*```[ \t]*(?:\n|\Z)",
                          re.DOTALL | re.IGNORECASE)


@define(frozen=True, kw_only=True)
class FinalMarker:
    """A FINAL/FINAL_VAR found in the model's text."""

    kind: str  # "final" or "final_var"
    value: str


def code_blocks(text: str) -> list[str]:
    """The code of every ```repl/```python block, in order (other languages ignored).

    Small models sometimes drop the fences and write the tag alone on the first line
    (``repl\nimport csv\n...``): a reply without any fence that starts like that and reads as
    Python is one block (otherwise its ``FINAL(len(rows))`` would be taken as a literal answer).
    """
    blocks = []
    for match in _FENCE.finditer(text):
        lang = (match.group(1) or "").lower()
        if lang or looks_like_code(match.group(2)):
            code = match.group(2).strip("\n")
            if code.strip():
                blocks.append(code)
    if not blocks:
        unfenced = _UNFENCED.match(text if "```" not in text else "")
        half = None if unfenced else _HALF_FENCED.match(text)
        code = unfenced.group(1) if unfenced else half.group(1) if half else None
        if code is not None and "```" not in code and looks_like_code(code):
            blocks.append(code.strip("\n"))
    return blocks


def looks_like_code(text: str) -> bool:
    """Whether an untagged block reads as code (a keyword or an assignment), not as prose."""
    return _CODE_HINT.search(text) is not None


def strip_code(text: str) -> str:
    if "```" not in text and _UNFENCED.match(text) and code_blocks(text):
        return ""
    half = _HALF_FENCED.match(text)
    if half and "```" not in half.group(1) and code_blocks(text):
        return _FENCE.sub("", text[half.end():])
    return _FENCE.sub("", text)


def find_final(text: str) -> FinalMarker | None:
    """FINAL_VAR(name) or FINAL(answer) outside code blocks (or a last line "Final answer: X"), or None."""
    prose = strip_code(text)
    match = _FINAL_VAR.search(prose)
    if match:
        return FinalMarker(kind="final_var", value=match.group(1))
    match = _FINAL.search(prose)
    if match:
        return FinalMarker(kind="final", value=_unquote(match.group(1).strip()))
    lines = [line for line in prose.splitlines() if line.strip()]
    match = _FINAL_ANSWER_LINE.match(lines[-1]) if lines else None
    if match:
        return FinalMarker(kind="final", value=_unquote(match.group(1).strip()))
    return None


def _unquote(value: str) -> str:
    """The answer inside ``FINAL(...)`` without its quotes: triple quotes (checked first, or the
    single-quote case would leave two on each side), then single ones; anything else as written."""
    for quote in ('"""', "'''"):
        if len(value) >= 6 and value.startswith(quote) and value.endswith(quote):
            return value[3:-3]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
