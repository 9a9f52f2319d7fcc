"""Install hints that cannot mislead: only first-party distributions that exist, else "did you mean".

A name the user typed (``--env dokcer``, ``--backend nosuch``) must never become a
``pip install rlm-env-dokcer`` hint: nobody publishes that package, and anyone
could (typosquatting).  :func:`missing_plugin_fix` names a distribution only
when it is one of ours (:data:`FIRST_PARTY`); otherwise it suggests the closest
registered or first-party name, or lists what is installed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Literal

Kind = Literal["backend", "environment"]

#: The plugins this repository publishes: kind -> plugin name -> distribution on PyPI.
FIRST_PARTY: dict[str, dict[str, str]] = {
    "backend": {
        "litellm": "rlm-backend-litellm",
        "openai": "rlm-backend-openai",
        "anthropic": "rlm-backend-anthropic",
        "local": "rlm-backend-local",
    },
    "environment": {
        "local": "rlm-env-local",
        "docker": "rlm-env-docker",
        "wasm": "rlm-env-wasm",
    },
}

_FLAG = {"backend": "--backend", "environment": "--env"}


def missing_plugin_fix(kind: Kind, name: str, installed: Iterable[str]) -> str:
    """The fix for "``kind`` ``name`` is not installed": a pip command for one of ours, a close
    name for a typo, or the installed choices -- never a package made up from ``name``."""
    have = sorted(installed)
    flag = _FLAG[kind]
    ours = FIRST_PARTY[kind]
    if name in ours:
        return f"pip install {ours[name]} (or rlm-runtime), or choose an installed {kind} with {flag}"
    close = difflib.get_close_matches(name, sorted({*have, *ours}), n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {close[0]!r}? ({flag} {close[0]}"
        if close[0] not in have:
            hint += f", after pip install {ours[close[0]]}"
        return hint + ")"
    return f"choose an installed {kind} with {flag} (`rlm plugins` lists them; rlm's own: {', '.join(sorted(ours))})"
