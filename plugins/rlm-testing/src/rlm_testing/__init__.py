"""rlm-testing: what rlm plugin authors need to test against the kernel.

- :mod:`rlm_testing.server`: a scripted OpenAI/Anthropic-compatible LLM server.
- :mod:`rlm_testing.pytest_plugin`: fixtures (``scripted_llm``, ``rlm_pm``).
- :mod:`rlm_testing.environment_suite` / :mod:`rlm_testing.backend_suite`:
  conformance base classes every environment / backend plugin subclasses.
"""
