"""rlm-eval's hooks: the ``eval`` command, registered as a string (``rlm --help`` imports none of it)."""

from __future__ import annotations

import subprocess
import sys

from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_eval import plugin
from rlm_eval.command import eval_command


def test_registers_the_eval_command_as_a_string():
    pm = create_plugin_manager(entry_points=False)
    pm.register(plugin, name="eval")
    found = collect(pm, "command")
    assert found["eval"].target == "rlm_eval.command:eval_command"
    assert found["eval"].load() is eval_command


def test_rlm_help_lists_eval_and_imports_none_of_it():
    code = ("import sys, contextlib, io\nfrom rlm import cli\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n    cli.main(['--help'])\n"
            "print('eval' in out.getvalue(), any(m.startswith('rlm_eval.') and m != 'rlm_eval.plugin' "
            "for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["True", "False"], done.stdout + done.stderr
