"""Errors that reach users.  Each names the cause and the fix.

The CLI prints ``str(error)`` on one line (no traceback) and exits with
``error.exit_code``.  Plugins raise these, never raw third-party exceptions.
"""

from __future__ import annotations


class RLMError(Exception):
    """Base of every rlm error: ``message`` says what went wrong, ``fix`` what to do."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}: {self.fix}" if self.fix else self.message


class ConfigError(RLMError):
    """rlm.toml, an environment variable or a keyword argument is wrong."""

    exit_code = 2


class PluginError(RLMError):
    """A plugin failed to load, or two plugins claim the same name."""

    exit_code = 3


class BackendError(RLMError):
    """An LLM provider call failed for good (after retries)."""

    exit_code = 4
    #: True when retrying later cannot help (bad key, unknown model).
    permanent = False


class NoProvidersConfigured(BackendError):
    permanent = True


class AuthenticationError(BackendError):
    permanent = True


class ModelNotFoundError(BackendError):
    permanent = True


class ContextTooLongError(BackendError):
    permanent = True


class RateLimitError(BackendError):
    pass


class ProviderUnavailableError(BackendError):
    pass


class SandboxError(RLMError):
    """An execution environment cannot start or has died (not an error in user code)."""

    exit_code = 5


class BudgetExceeded(RLMError):
    """A token, cost, depth or time budget does not allow the requested work."""

    exit_code = 6

    def __init__(self, message: str, *, limit: str, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.limit = limit


class InputError(RLMError):
    """The input of a run (the prompt, the system prompt) cannot be used as given: not valid text."""

    exit_code = 2


class ToolError(RLMError):
    """A tool refused its arguments (path outside allowed paths, bad input...)."""
