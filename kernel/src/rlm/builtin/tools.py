"""Built-in plugin: registers the kernel's standard tools (see :mod:`rlm.standard_tools`).

``execute_code``, ``file_read``, ``list_files`` always; ``rlm_sub_complete``
and ``rlm_batch_complete`` when sub-calls are on.  The tool module is
imported only when tools are collected, keeping ``rlm --help`` fast.
"""

from __future__ import annotations

from rlm.hookspecs import hookimpl


@hookimpl
def rlm_register_tools(register, config):
    from rlm import standard_tools as t

    register(t.execute_code)
    register(t.file_read)
    register(t.list_files)
    if config.sub_calls:
        register(t.rlm_sub_complete)
        register(t.rlm_batch_complete)
