"""Built-in plugin: the ``local`` batch executor (asyncio tasks in this process)."""

from __future__ import annotations

from rlm.hookspecs import hookimpl


@hookimpl
def rlm_register_executors(register):
    register("local", "rlm.executors:LocalExecutor", description="asyncio tasks in this process (the default)")
