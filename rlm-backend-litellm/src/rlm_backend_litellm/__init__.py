"""rlm-backend-litellm: rlm's default LLM backend, reaching 100+ providers through litellm.

Model strings are litellm's (``gpt-4o-mini``, ``anthropic/claude-...``,
``ollama/llama3``...).  The hook implementations live in
:mod:`rlm_backend_litellm.plugin` (cheap to import); litellm itself, which
takes seconds to import, is imported by :mod:`rlm_backend_litellm.loader`
only when a call is made.
"""

__version__ = "0.1.0"
