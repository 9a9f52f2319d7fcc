"""Import hygiene: ``import rlm``, ``import rlm.cli`` and ``rlm --help`` stay cheap.

Each check runs in a fresh interpreter and inspects ``sys.modules``: no
provider SDK, sandbox or UI library is imported, and top-level help imports
neither structlog nor cyclopts (nor ``importlib.metadata``) - also with a
well-behaved plugin installed.  Installed third-party plugins are hidden as
in the CLI tests (see ``conftest.py``).
"""

from __future__ import annotations

import json

import pytest

HEAVY = ("litellm", "openai", "anthropic", "docker", "wasmtime", "streamlit", "mcp")
HELP_ALSO_AVOIDS = ("structlog", "cyclopts", "rich", "cattrs", "importlib.metadata")

DUMP = "import json, sys; sys.__stdout__.write('\\nMODULES=' + json.dumps(sorted(sys.modules)))"


def _modules(result) -> set[str]:
    assert result.returncode == 0, result.stderr
    marker = result.stdout.rindex("MODULES=")
    return set(json.loads(result.stdout[marker + len("MODULES="):]))


def _imported(modules: set[str], names) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("statement", ["import rlm", "import rlm.cli", "import rlm.hookspecs, rlm.plugins"])
def test_importing_rlm_imports_nothing_heavy(run_python, statement):
    modules = _modules(run_python(f"{statement}\n{DUMP}"))
    assert "rlm" in modules
    assert _imported(modules, HEAVY) == []
    assert _imported(modules, ("structlog", "cyclopts", "cattrs")) == []


def _help_code(launcher: str) -> str:
    # the hermetic launcher with main(["--help"]) run in-process and sys.modules dumped after it
    return launcher.replace("sys.exit(main(sys.argv[1:]))", f"code = main(['--help'])\n{DUMP}\nsys.exit(code)")


def test_top_level_help_imports_nothing_heavy(run_python, hermetic_launcher):
    result = run_python(_help_code(hermetic_launcher))
    assert result.stdout.startswith("Usage: rlm COMMAND")
    modules = _modules(result)
    assert _imported(modules, HEAVY) == []
    assert _imported(modules, HELP_ALSO_AVOIDS) == []
    assert not any(m.startswith("rlm.commands.") for m in modules)  # command bodies stay unimported


def test_top_level_help_with_a_plugin_installed_imports_nothing_heavy(run_python, hermetic_launcher, subprocess_site):
    subprocess_site.add("rlm-light", {"light": "light_plugin_mod"}, {"light_plugin_mod": """
        from rlm import hookimpl

        @hookimpl
        def rlm_register_commands(register):
            register("light", "light_plugin_body:main", help="A light command.")

        @hookimpl
        def rlm_register_backends(register):
            register("light", "light_plugin_body:backend")

        @hookimpl
        def rlm_register_environments(register):
            register("light", "light_plugin_body:environment", isolation="light_plugin_body:isolation")
        """, "light_plugin_body": "import openai  # heavy, but only imported when used\n"})
    result = run_python(_help_code(hermetic_launcher), plugin_dirs=[subprocess_site.root])
    assert "A light command." in result.stdout
    modules = _modules(result)
    assert "light_plugin_mod" in modules and "light_plugin_body" not in modules
    assert _imported(modules, HEAVY) == []
    assert _imported(modules, HELP_ALSO_AVOIDS) == []


def test_version_flag_imports_no_cli_framework(run_python, hermetic_launcher):
    code = hermetic_launcher.replace("sys.exit(main(sys.argv[1:]))", f"code = main(['--version'])\n{DUMP}\nsys.exit(code)")
    modules = _modules(run_python(code))
    assert _imported(modules, HEAVY + HELP_ALSO_AVOIDS) == []
