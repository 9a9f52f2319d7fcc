"""rlm-env-docker: the "docker" REPL environment of rlm.

Each session is one long-lived, hardened container (no network, read-only root
filesystem, non-root user, no capabilities, pids/memory/CPU limits) running
the shared guest REPL server of rlm-repl (:mod:`rlm_repl.repl_server`); the host drives
it over the container's attached stdin/stdout with :class:`rlm_repl.client.GuestClient`.
The docker SDK is imported only when a session starts or a docker command runs.
"""

__version__ = "0.1.0"
