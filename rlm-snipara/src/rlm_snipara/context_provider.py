"""rlm-snipara as the kernel's context provider (``rlm_register_context_providers``).

``rlm_sub_complete(..., context_query=...)`` and ``AgentRunner(auto_context=True)``
ask it for text on a query.  It answers with the same search as the
``context_query`` tool: the offline index of ``[plugins.snipara] docs`` or the
hosted project (chosen by :func:`rlm_snipara.config.choose_provider`), the
sections formatted as text and packed into the token budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rlm.errors import ConfigError

from rlm_snipara.budget import cut_to_tokens
from rlm_snipara.config import choose_provider

if TYPE_CHECKING:
    from rlm.config import RLMConfig

#: Keys under which a result lists its sections (the local index: ``results``).
_LISTS = ("results", "sections", "chunks")
#: Keys holding a section's text.
_TEXTS = ("content", "text", "body")


class SniparaContextProvider:
    """Context for a query from the local index or the hosted project (whichever the tools would use)."""

    def __init__(self, *, config: RLMConfig) -> None:
        choice = choose_provider(config)
        if choice.provider is None:
            raise ConfigError(f"rlm-snipara has nothing to search: {choice.reason}", fix=choice.fix)
        from rlm_snipara.providers import build_provider

        self.source = choice.provider  # "local" | "snipara"
        self._provider = build_provider(choice, config)

    async def context(self, query: str, *, max_tokens: int) -> str:
        """The sections best matching ``query`` as text, at most ``max_tokens`` tokens; "" when none match."""
        if max_tokens < 1 or not query.strip():
            return ""
        result = await self._provider.context_query(query, max_tokens)
        text = format_context(result)
        return cut_to_tokens(text, max_tokens) if text else ""


def _section_text(item: Mapping[str, Any]) -> str | None:
    body = next((item[k] for k in _TEXTS if isinstance(item.get(k), str)), None)
    if body is None:
        return None
    where = " — ".join(str(item[k]) for k in ("file", "section") if item.get(k))
    if where and item.get("line") is not None:
        where += f" (line {item['line']})"
    return f"## {where}\n{body.strip()}" if where else body.strip()


def format_context(result: Any) -> str:
    """A ``context_query`` result as text: one ``## file — section (line n)`` block per section
    (local index and hosted answers alike); a plain string as is; anything else as JSON."""
    if result is None:
        return ""
    if isinstance(result, str):
        return result.strip()
    if isinstance(result, Mapping):
        for key in _LISTS:
            items = result.get(key)
            if isinstance(items, list):
                blocks = [t for t in (_section_text(i) for i in items if isinstance(i, Mapping)) if t]
                if blocks or not items:
                    return "\n\n".join(blocks)
        for key in ("context", "result", *_TEXTS):
            if isinstance(result.get(key), str):
                return result[key].strip()
    return json.dumps(result, ensure_ascii=False)
