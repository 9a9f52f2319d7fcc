"""rlm-backend-anthropic: the Anthropic Messages backend of rlm, built on the official ``anthropic`` SDK.

Claims ``anthropic/<model>`` model strings and sends ``<model>``.  The hook
implementations live in :mod:`rlm_backend_anthropic.plugin` (cheap to
import); the backend in :mod:`rlm_backend_anthropic.backend` imports the SDK
only when it is first used.
"""

__version__ = "0.1.0"
