"""What rlm's LLM backends share, so that each backend plugin says only what is its provider's.

- :mod:`rlm_backend_kit.retry`: the one retry policy (backoff with jitter, ``Retry-After``, no retry past
  a request's deadline, one read timeout per backend);
- :mod:`rlm_backend_kit.provider_errors`: a provider's HTTP status or exception as an rlm error, and the
  faults an SDK lets through (an HTML page, an empty answer, a stream cut short);
- :mod:`rlm_backend_kit.openai_format`: rlm's requests and answers in the OpenAI Chat Completions format;
- :mod:`rlm_backend_kit.sdk_backend`: :class:`~rlm_backend_kit.sdk_backend.RetryingBackend` and
  :class:`~rlm_backend_kit.sdk_backend.SDKBackend`, the base of a backend over an official SDK;
- :mod:`rlm_backend_kit.http_transport`: a lean keep-alive HTTP/1.1 transport for the SDKs' httpx clients
  (bounded, timed reads), one SSL context per process, and SDK clients shared across runs and event loops;
- :mod:`rlm_backend_kit.backend_options`: the retry settings every backend's ``[plugins.backend-<name>]`` has;
- :mod:`rlm_backend_kit.backend_plugin`: the hooks every backend plugin has, as one object.

The kernel defines what a backend is (:mod:`rlm.backend`); this distribution holds what only backends use,
so the kernel stays small and a backend that speaks its own protocol need not install it.  Importing this
package imports nothing: a plugin's hook module imports only the two cheap modules (options, plugin).
"""
