"""Built-in plugin: the kernel's CLI commands and doctor checks, registered as strings."""

from __future__ import annotations

from rlm.hookspecs import hookimpl


@hookimpl
def rlm_register_commands(register):
    register("init", "rlm.commands.init:init", help="Write a commented rlm.toml (in the current directory or DIR).")
    register("plugins", "rlm.commands.plugins:plugins", help="List installed, broken and disabled plugins.")
    register("doctor", "rlm.commands.doctor:doctor", help="Check Python, plugins, configuration and keys.")
    register("version", "rlm.commands.version:version", help="Show the versions of rlm and its plugins.")
    register("run", "rlm.commands.run:run", help="Run a prompt: code, tools and sub-LLM calls; answer on stdout.")
    register("agent", "rlm.commands.agent:agent", help="Run an autonomous agent until it calls FINAL.")
    register("batch", "rlm.commands.batch:batch", help="Answer every prompt of a JSONL file; results to a JSONL file.")
    register("logs", "rlm.commands.logs:logs", help="List trajectories, or show one as a tree.")
    register("cache stats", "rlm.commands.cache:stats", help="Show the response cache: entries, size, location.")
    register("cache clear", "rlm.commands.cache:clear", help="Remove every entry of the response cache.")
    register("config show", "rlm.commands.config:show",
             help="Print the effective configuration and where each value came from.")


@hookimpl
def rlm_register_doctor_checks(register):
    register("python", "rlm.doctor:check_python")
    register("config", "rlm.doctor:check_config")
    register("plugins", "rlm.doctor:check_plugins")
    register("providers", "rlm.doctor:check_providers")
