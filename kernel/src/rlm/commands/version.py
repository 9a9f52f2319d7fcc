"""``rlm version``: the kernel's version and those of the loaded plugins."""

from __future__ import annotations

import platform


def version() -> int:
    """Show the versions of rlm-kernel, Python and every installed plugin."""
    from rlm import __version__
    from rlm.cli import plugin_manager

    print(f"rlm-kernel {__version__} (Python {platform.python_version()})")
    for record in plugin_manager().records:
        if record.status != "builtin":
            dist = f"{record.distribution} {record.version}" if record.distribution else record.module
            print(f"  {record.name}: {dist} [{record.status}]")
    return 0
