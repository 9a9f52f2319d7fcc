"""The hook implementations of rlm-plugin-example-name.

The kernel imports this module on every ``rlm`` invocation (it is what the
``rlm`` entry point names), so keep its import cheap: register commands and
factories and configuration classes as ``"module:attr"`` strings, and import
heavy SDKs - and even ``rlm.types``/``rlm.config``, which cost tens of
milliseconds - inside the functions that use them, never at module top.

Each ``rlm_register_*`` hook gets a ``register`` callback bound to this
plugin; a name that another plugin registers too is an error naming both.
Keep the hooks you need and delete the rest.  The full contract of each hook
is in :mod:`rlm.hookspecs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from rlm import hookimpl

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.doctor import Check
    from rlm.types import ToolSpec


# --- configuration -------------------------------------------------------------------------


@hookimpl
def rlm_register_config_sections(register):
    """Declare ``[plugins.example-name]``: the kernel validates it into ``ExampleSettings``.

    The class is named by a ``"module:attr"`` string (it lives in ``settings.py``), so neither
    it nor attrs is imported until a configuration is built: ``rlm --help`` does not pay for it.
    A class object is accepted too, but then this module must import it.
    """
    register("example-name", "rlm_plugin_example_name.settings:ExampleSettings", description="the example plugin")


# --- tools ---------------------------------------------------------------------------------


def make_greet_tool(greeting: str) -> ToolSpec:
    """A tool the model may call.  Handlers are async and return JSON-ready values."""
    from rlm.types import ToolSpec

    async def greet(name: str) -> dict[str, str]:
        return {"message": f"{greeting}, {name}!"}

    return ToolSpec(
        name="example_greet",
        description="Greet someone by name.",
        parameters={
            "type": "object",
            "properties": {"name": {"type": "string", "description": "who to greet"}},
            "required": ["name"],
        },
        handler=greet,
    )


@hookimpl
def rlm_register_tools(register, config):
    """Offer tools for this run; decide from ``config`` whether they apply."""
    from rlm_plugin_example_name.settings import settings_from

    settings = settings_from(config)
    if settings.enabled:
        register(make_greet_tool(settings.greeting))


# --- CLI commands --------------------------------------------------------------------------


@hookimpl
def rlm_register_commands(register):
    """Add ``rlm example-hello``.  The target is a string: imported only when the command runs."""
    register("example-hello", "rlm_plugin_example_name.plugin:hello", help="Say hello (example plugin).")


def hello(name: str = "world") -> int:
    """Say hello.

    Parameters
    ----------
    name: str
        Who to greet.
    """
    print(f"Hello, {name}! (from rlm-plugin-example-name)")
    return 0


# --- doctor checks -------------------------------------------------------------------------


@hookimpl
def rlm_register_doctor_checks(register):
    """Contribute to ``rlm doctor``: "warn" for optional things missing, "fail" for real problems."""
    register("example-name", "rlm_plugin_example_name.plugin:check")


def check(config: RLMConfig) -> Iterator[Check]:
    from rlm.doctor import Check

    from rlm_plugin_example_name.settings import settings_from

    settings = settings_from(config)
    yield Check(status="ok", summary=f"example plugin: example_greet tool {'on' if settings.enabled else 'off'}")


# --- other hooks: uncomment and fill in what your plugin provides --------------------------
#
# An LLM backend.  The factory is called as factory(settings=rlm.backend.BackendSettings) and
# returns an rlm.backend.Backend; import the provider SDK inside it.
#
# @hookimpl
# def rlm_register_backends(register):
#     register("example", "rlm_plugin_example_name.backend:ExampleBackend", description="...")
#
# Which backend serves a model string (first answer wins; return None for models you do not know).
#
# @hookimpl(tryfirst=True)
# def rlm_resolve_backend(model, config):
#     return "example" if model.startswith("example/") else None
#
# A REPL environment: factory(settings=rlm.environment.EnvironmentSettings, callbacks=...)
# returns an rlm.environment.Environment.
#
# @hookimpl
# def rlm_register_environments(register):
#     register("example", "rlm_plugin_example_name.environment:ExampleEnvironment")
#
# A budget policy named in [rlm] budget_policies: factory(config=RLMConfig) (see rlm.budget).
#
# @hookimpl
# def rlm_register_budget_policies(register):
#     register("example", "rlm_plugin_example_name.budget:ExamplePolicy")
#
# A trajectory sink named in [rlm] trajectory_sinks: factory(config=RLMConfig) returns an object
# with write(event) and close().
#
# @hookimpl
# def rlm_register_trajectory_sinks(register):
#     register("example", "rlm_plugin_example_name.sink:ExampleSink")
#
# See every trajectory event of every run (quick, must not raise).
#
# @hookimpl
# def rlm_trajectory_event(event):
#     ...


__all__ = ["check", "hello", "make_greet_tool"]
