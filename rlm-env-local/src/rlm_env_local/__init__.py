"""rlm-env-local: the "local" REPL environment of rlm.

Code runs under RestrictedPython in a worker subprocess owned by each session
(:class:`rlm_env_local.session.LocalEnvironment`), behind resource limits, an
import allowlist of module proxies, attribute/write guards and an audit hook.
This package imports nothing heavy: the kernel loads :mod:`rlm_env_local.plugin`
on every ``rlm`` invocation.
"""

__version__ = "0.1.0"
