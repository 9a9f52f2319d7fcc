"""rlm-backend-openai: the OpenAI Chat Completions backend of rlm, built on the official ``openai`` SDK.

Claims ``openai/<model>`` model strings and sends ``<model>``.  The hook
implementations live in :mod:`rlm_backend_openai.plugin` (cheap to import);
the backend in :mod:`rlm_backend_openai.backend` imports the SDK only when
it is first used.
"""

__version__ = "0.1.0"
