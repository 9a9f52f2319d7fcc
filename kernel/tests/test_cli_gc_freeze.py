"""``gc.freeze()`` in ``rlm`` CLI processes that make model calls (rlm.cli.freeze_gc), never in a library user's.

Each case runs in a fresh interpreter: a frozen object is never collected, so the test process itself stays
unfrozen.
"""

from __future__ import annotations

import pytest

CODE = """
import gc, sys
from rlm import cli
{call}
print("FROZEN", gc.get_freeze_count() > 0, cli._gc_freeze_on)
"""


@pytest.mark.parametrize(("call", "frozen"), [
    ("sys.argv = ['rlm', 'run', '--help']; cli.main()", True),  # the process's own `rlm run`
    ("sys.argv = ['rlm', 'batch', '--help']; cli.main()", True),
    ("sys.argv = ['rlm', 'version']; cli.main()", False),  # makes no model call
    ("cli.main(['run', '--help'])", False),  # a caller's main([...]), e.g. a test or a wrapper
    ("cli.freeze_gc()", False),  # without main(): a library user decides
])
def test_only_the_cli_commands_that_call_models_freeze(run_python, call, frozen):
    result = run_python(CODE.format(call=call))
    assert f"FROZEN {frozen} {frozen}" in result.stdout, result.stdout + result.stderr
