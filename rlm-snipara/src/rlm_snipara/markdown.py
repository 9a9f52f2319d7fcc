"""Splitting documents into sections by their Markdown headings.

ATX headings (``#`` to ``######``) outside fenced code blocks start a
section; text before the first heading is a section titled after the file.
Each section keeps the path of headings above it (``Guide > Auth > Tokens``)
and its first line number.  Very long sections are cut into parts, so a
token budget can take the relevant part of a long page.
"""

from __future__ import annotations

import re

from attrs import define
from rlm.tokens import CHARS_PER_TOKEN, estimate_tokens

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
#: Sections above this many tokens are cut into parts of about this size.
MAX_SECTION_TOKENS = 1500
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")


@define(frozen=True, kw_only=True)
class Section:
    """One section of one document."""

    title: str
    heading_path: str
    level: int
    line: int
    body: str


def split_sections(text: str, *, name: str, markdown: bool = True) -> list[Section]:
    """The sections of ``text`` (a document called ``name``), in order."""
    lines = text.splitlines()
    raw: list[tuple[str, str, int, int, list[str]]] = []
    stack: list[tuple[int, str]] = []
    title, path, level, start, body = name, name, 0, 1, []
    fence: str | None = None
    for number, line in enumerate(lines, start=1):
        fence_match = _FENCE.match(line) if markdown else None
        if fence_match:
            marker = fence_match.group(1)
            fence = None if fence == marker else (fence or marker)
        heading = _HEADING.match(line) if markdown and fence is None and not fence_match else None
        if heading:
            raw.append((title, path, level, start, body))
            level = len(heading.group(1))
            title = heading.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            path = " > ".join(t for _, t in stack)
            start, body = number, [line]
        else:
            body.append(line)
    raw.append((title, path, level, start, body))
    sections: list[Section] = []
    for title, path, level, start, body in raw:
        while body and not body[0].strip():  # keep line numbers right when leading blank lines go
            body, start = body[1:], start + 1
        content = "\n".join(body).rstrip()
        if not content.strip():
            continue
        sections.extend(_cut(Section(title=title, heading_path=path, level=level, line=start, body=content)))
    return sections


def _cut(section: Section) -> list[Section]:
    """``section``, or its parts when it is longer than :data:`MAX_SECTION_TOKENS`."""
    if estimate_tokens(section.body) <= MAX_SECTION_TOKENS:
        return [section]
    parts: list[Section] = []
    chunk: list[str] = []
    chunk_start = section.line
    size = 0
    for offset, line in enumerate(section.body.split("\n")):
        cost = estimate_tokens(line) + 1
        if chunk and size + cost > MAX_SECTION_TOKENS:
            parts.append((chunk_start, chunk))
            chunk, size, chunk_start = [], 0, section.line + offset
        while cost > MAX_SECTION_TOKENS:  # one enormous line: hard-wrap it
            piece, line = line[:MAX_SECTION_TOKENS * CHARS_PER_TOKEN], line[MAX_SECTION_TOKENS * CHARS_PER_TOKEN:]
            parts.append((section.line + offset, [piece]))
            cost = estimate_tokens(line) + 1
        chunk.append(line)
        size += cost
    if chunk:
        parts.append((chunk_start, chunk))
    total = len(parts)
    return [
        Section(title=section.title if total == 1 else f"{section.title} (part {i}/{total})",
                heading_path=section.heading_path, level=section.level, line=start, body="\n".join(body))
        for i, (start, body) in enumerate(parts, start=1)
    ]
