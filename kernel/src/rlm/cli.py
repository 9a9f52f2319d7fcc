"""The ``rlm`` command line: a cyclopts App assembled from the installed plugins.

Commands arrive through ``rlm_register_commands`` as ``"module:attr"`` strings,
so ``rlm --help`` imports no command body and no plugin dependency; while the
help cache (:mod:`rlm.cli_help`) is valid, ``rlm COMMAND`` is dispatched from
the commands it recorded, and the plugins are imported only when the command
asks for the plugin manager (:func:`plugin_manager`).  User
mistakes end with one line on stderr naming the cause and the fix, never a
traceback; the exit code says what kind of failure it was.

Exit codes: 0 success; 1 failure (doctor found problems, run failed);
2 usage or configuration error; 3 plugin error; 4 LLM backend error;
5 sandbox error; 6 no answer because of a limit; 130 interrupted (README: Exit codes).
"""

from __future__ import annotations

import contextvars
import sys

from rlm import __version__
from rlm.errors import RLMError

TYPE_CHECKING = False  # typing is not imported on the path of `rlm --help`
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from rlm.plugins import RLMPluginManager
    from rlm.registry import Registration

_current_pm: contextvars.ContextVar[RLMPluginManager | None] = contextvars.ContextVar("rlm_cli_pm", default=None)


def create_plugin_manager(**kwargs: Any) -> RLMPluginManager:
    """:func:`rlm.plugins.create_plugin_manager`, imported on first use (``rlm --help`` may not need it)."""
    from rlm.plugins import create_plugin_manager as create

    return create(**kwargs)


def _log() -> Any:
    from rlm.logging import get_logger

    return get_logger(__name__)


HELP = """rlm: run Recursive Language Models.

An LLM decomposes a task, runs Python in a sandboxed REPL and delegates
sub-problems to sub-LLM calls under budgets.  Commands come from the
installed plugins: `rlm plugins` shows which."""


def plugin_manager() -> RLMPluginManager:
    """The plugin manager of this CLI invocation (made on first use outside ``main``)."""
    pm = _current_pm.get()
    if pm is None:
        pm = create_plugin_manager()
        _current_pm.set(pm)
    return pm


class UsageError(RLMError):
    """The command line names no such command."""

    exit_code = 2


def registered_commands(pm: RLMPluginManager) -> dict[str, Registration]:
    """The commands the plugins of ``pm`` registered (a clash is fatal only with ``RLM_STRICT_PLUGINS``)."""
    from rlm.plugins import strict_from_env
    from rlm.registry import collect

    return collect(pm, "command", strict=strict_from_env())


class CachedCommand:
    """A command as the help cache recorded it (:func:`rlm.cli_help.load_commands`): what
    :func:`build_app` needs of a :class:`rlm.registry.Registration`, without a plugin manager."""

    __slots__ = ("name", "target", "description", "plugin")

    def __init__(self, name: str, target: str, description: str, plugin: str) -> None:
        self.name, self.target, self.description, self.plugin = name, target, description, plugin

    def load(self) -> Any:
        from rlm.entrypoints import load_value

        return load_value(self.target)


def build_app(pm: RLMPluginManager | None, argv: Sequence[str] = (),
              commands: Mapping[str, Registration | CachedCommand] | None = None):
    """The cyclopts App with every registered command (bodies not imported).

    ``commands``: those of :func:`registered_commands` (default) or of the help cache.
    When ``argv`` names a command, that command's target is imported first:
    an unknown command or one whose plugin cannot be imported is an
    :class:`RLMError` (one line, no traceback) instead of a cyclopts crash
    while it lists the commands.
    """
    from cyclopts import App

    if commands is None:
        commands = registered_commands(pm)
    invoked = None  # the command argv names: its own docstring is its `--help` (the others are not imported)
    if argv and argv[0].startswith("-") and argv[0] not in ("--help", "-h", "--version"):
        raise UsageError(f"unknown option {argv[0]!r} before the command", fix="run `rlm --help` to see the commands")
    if len(argv) > 1 and argv[0] in ("--help", "-h") and not argv[1].startswith("-"):
        argv = [*argv[1:], argv[0]]  # `rlm --help run` shows what `rlm run --help` shows
    if argv and not argv[0].startswith("-"):
        words = [w for w in argv if not w.startswith("-")]
        reg = next((commands[" ".join(words[:n])] for n in range(len(words), 0, -1)
                    if " ".join(words[:n]) in commands), None)
        if reg is None and argv[0] not in _groups(commands):
            import difflib

            if argv[0] in RUNTIME_2X_COMMANDS:
                instead, what = RUNTIME_2X_COMMANDS[argv[0]]
                raise UsageError(f"unknown command {argv[0]!r}: rlm-runtime 2.x's {argv[0]} is {what}",
                                 fix=f"run `{instead}`")
            close = difflib.get_close_matches(argv[0], [n.split()[0] for n in commands], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"unknown command {argv[0]!r}{hint}", fix="run `rlm --help` to see the commands")
        if reg is not None:
            target = reg.load()
            invoked = reg if getattr(target, "__doc__", None) else None  # no docstring: the registered help
    app = App(name="rlm", help=HELP, version=__version__, version_flags=["--version"], help_format="plaintext")
    groups: dict[str, App] = {}
    for reg in commands.values():
        if not isinstance(reg.target, str):
            _log().warning("command_not_lazy", command=reg.name, plugin=reg.plugin)
        *path, leaf = reg.name.split()
        parent = app
        for depth in range(len(path)):  # "env docker": the kernel owns the group "env"
            key = " ".join(path[: depth + 1])
            if key not in groups:
                groups[key] = App(name=path[depth], help=_group_help(key, commands), help_format="plaintext")
                parent.command(groups[key])
            parent = groups[key]
        # The registered help is the one line of a command list; the command that runs shows its whole docstring
        # in `rlm CMD --help` (its exit codes, its details), as cyclopts renders it from the imported function.
        parent.command(reg.target, name=leaf, help=None if reg is invoked else (reg.description or None))
    return app


def _groups(commands: Mapping[str, Registration]) -> dict[str, list[str]]:
    """Command groups formed by multi-word names: ``{"env": ["docker", "wasm"]}``."""
    groups: dict[str, list[str]] = {}
    for name in commands:
        head, _, rest = name.partition(" ")
        if rest:
            groups.setdefault(head, []).append(rest)
    return groups


def _group_help(key: str, commands: Mapping[str, Registration]) -> str:
    subs = sorted(n[len(key) + 1:].split()[0] for n in commands if n.startswith(key + " "))
    return f"Commands of the installed plugins: {', '.join(subs)}."


def top_level_help(pm: RLMPluginManager, registered: Mapping[str, Registration] | None = None) -> str:
    """The text of ``rlm --help``, built from the registrations alone (``registered``: those of
    :func:`registered_commands`, collected when not given).

    Rendered without cyclopts (whose import and rich rendering cost more
    than everything else ``rlm --help`` does); ``rlm COMMAND --help`` is
    cyclopts' own.
    """
    if registered is None:
        registered = registered_commands(pm)
    rows = {r.name: r.description for r in registered.values() if " " not in r.name}
    for head, subs in _groups(registered).items():
        rows.setdefault(head, f"{', '.join(sorted(subs))} (run `rlm {head} --help`)")
    width = max([len(name) for name in rows] + [len("--help, -h")]) + 3
    lines = ["Usage: rlm COMMAND [ARGS]", "", HELP.replace("`", ""), "", "Commands:"]
    lines += [f"  {name.ljust(width)}{rows[name]}" for name in sorted(rows)]
    lines += ["", "Options:", f"  {'--help, -h'.ljust(width)}Show this message and exit.",
              f"  {'--version'.ljust(width)}Show the version and exit.", "",
              "Run `rlm COMMAND --help` for the options of a command."]
    broken = [r.name for r in pm.records if r.status == "broken"]
    if broken:
        lines += ["", f"Broken plugins (see `rlm plugins`): {', '.join(broken)}"]
    return "\n".join(lines)


def _help_text() -> str:
    """The text of ``rlm --help``: from the help cache when nothing it depends on changed
    (:mod:`rlm.cli_help`), else built from the plugins (and cached unless a plugin is broken)."""
    from rlm import cli_help

    if not cli_help.enabled():
        return top_level_help(create_plugin_manager())
    text = cli_help.load()
    if text is None:
        snap = cli_help.snapshot()  # before the plugins are imported: a change meanwhile is seen next time
        pm = create_plugin_manager()
        registered = registered_commands(pm)
        text = top_level_help(pm, registered)
        _store_help(snap, pm, registered, text)
    return text


def _store_help(snap: Any, pm: RLMPluginManager, registered: Mapping[str, Registration], text: str | None = None
                ) -> None:
    """Cache the help text and the commands (:func:`rlm.cli_help.store`) unless a plugin is broken; the
    commands are left out when one of them is not a ``"module:attr"`` string."""
    from rlm import cli_help

    if any(r.status == "broken" for r in pm.records):
        return
    rows = [(r.name, r.target, r.description or "", r.plugin) for r in registered.values()]
    table = rows if all(isinstance(row[1], str) for row in rows) else None
    cli_help.store(snap, top_level_help(pm, registered) if text is None else text, table)


def _cached_app(args: Sequence[str]) -> Any:
    """The App of :func:`build_app` from the commands of the help cache, without importing the plugins (a
    command then makes the plugin manager when it needs it); None when the cache has none valid, or when
    the command named no longer imports (the plugin manager then says why)."""
    from rlm import cli_help

    rows = cli_help.load_commands() if cli_help.enabled() else None
    if rows is None:
        return None
    try:
        return build_app(None, args, {name: CachedCommand(name, target, description, plugin)
                                      for name, target, description, plugin in rows})
    except RLMError:
        raise
    except Exception:  # noqa: BLE001 - reported by the plugin manager's path
        return None


#: The commands that make model calls, often hundreds in one process: :func:`main` turns :func:`freeze_gc` on for
#: them.
GC_FREEZE_COMMANDS = frozenset({"run", "agent", "batch", "mcp-serve"})
_gc_freeze_on = False


def enable_gc_freeze() -> None:
    """Turn :func:`freeze_gc` on for the rest of the process, and freeze what is alive now."""
    global _gc_freeze_on
    _gc_freeze_on = True
    freeze_gc()


def freeze_gc() -> None:
    """``gc.freeze()`` when :func:`main` runs one of :data:`GC_FREEZE_COMMANDS` in this process (else nothing):
    every object alive now leaves the cyclic collector's reach for good.

    Called by main() before the command (:func:`enable_gc_freeze`), and by the backends right after they
    import their SDK (:func:`rlm_backend_kit.sdk_backend.after_sdk_import`): the openai SDK leaves ~70k objects
    behind it, litellm ~360k, alive as long as the process, and each full collection traversed them all -- a
    fan-out of sub-calls spent about a third of its CPU there (bench/subcalls.py --gc-freeze).  No
    ``gc.collect()`` first: after litellm's import one takes ~0.3 s, and what it would free is the imports'
    few cycles, kept instead.  Library users (no main()) decide for themselves."""
    if _gc_freeze_on:
        import gc

        gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlm`` script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args in ([], ["--help"], ["-h"]):
            print(_help_text())
            return 0
        if args == ["--version"]:
            print(__version__)
            return 0
        token = _current_pm.set(None)  # made on first use by plugin_manager()
        try:
            app = _cached_app(args)
            if app is None:
                from rlm import cli_help

                snap = cli_help.snapshot() if cli_help.enabled() else None  # before the plugins are imported
                pm = create_plugin_manager()
                _current_pm.set(pm)
                registered = registered_commands(pm)
                app = build_app(pm, args, registered)
                if snap is not None:
                    _store_help(snap, pm, registered)
            if argv is None and next((a for a in args if not a.startswith("-")), None) in GC_FREEZE_COMMANDS:
                enable_gc_freeze()  # the process's own command line (not a caller's main([...]))
            result = app(args, result_action="return_value", print_error=False, exit_on_error=False)
        finally:
            _current_pm.reset(token)
    except RLMError as exc:
        print(f"rlm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        usage = _usage_error(exc, args)
        if usage is None:
            raise
        print(usage, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlm: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # cyclopts usage errors and --help
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    if isinstance(result, bool):
        return 0 if result else 1
    return result if isinstance(result, int) else 0


#: Commands of rlm-runtime 2.x that rlm has under another name: what the unknown-command error says.
RUNTIME_2X_COMMANDS = {  # 2.x command -> (the command to run, what the error says it became)
    "snipara-status": ("rlm doctor", "part of `rlm doctor` here, which reports rlm-snipara's state"),
}

#: Options of rlm-runtime 2.x that rlm has under another command: what a usage error naming one says.
RUNTIME_2X_HINTS = {
    "--show-config": "rlm-runtime 2.x's --show-config is `rlm config show` here (add -c FILE for another file)",
}


def _usage_error(exc: Exception, args: Sequence[str]) -> str | None:
    """One line for a command-line mistake cyclopts found (None: not one of those)."""
    from cyclopts import CycloptsError

    if not isinstance(exc, CycloptsError):
        return None
    missing = _missing_positional(exc, args)
    if missing is not None:
        return missing
    message = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    head, sep, guess = message.partition(". Did you mean ")
    if sep:  # "Unknown option: --bogus. Did you mean --verbose?" -> one clause
        message = f"{head} (did you mean {guess.rstrip('?')}?)"
    hint = next((text for option, text in RUNTIME_2X_HINTS.items()
                 if any(a == option or a.startswith(option + "=") for a in args) and option in message), None)
    if hint is not None:
        message = f"{head if sep else message}: {hint}"
    return f"rlm: error: {message}: see `{_help_command(exc, args)} --help`"


def _help_command(exc: Exception, args: Sequence[str]) -> str:
    """The command whose ``--help`` explains a usage error: the subcommand the mistake was made in
    (``rlm cache stats``, not the group ``rlm cache``; cyclopts' command chain), else the words of ``args``
    before the first option, else ``rlm``."""
    chain = [word for word in (getattr(exc, "command_chain", None) or ()) if word and word != "rlm"]
    if not chain:
        for word in args:
            if word.startswith("-"):
                break
            chain.append(word)
        chain = chain[:1]  # what follows may be a positional argument, not a subcommand
    return " ".join(["rlm", *chain])


def _missing_positional(exc: Exception, args: Sequence[str]) -> str | None:
    """The line for a command run without a required positional argument (``rlm run`` with no
    prompt), which names the argument and shows the call, not the ``--prompt`` option cyclopts
    would name; None for any other mistake (an option given without its value among them)."""
    import inspect

    from cyclopts import MissingArgumentError

    argument = getattr(exc, "argument", None)
    if not isinstance(exc, MissingArgumentError) or argument is None:
        return None
    info = getattr(argument, "field_info", None)
    if info is None or info.kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                         inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return None
    options = [n for n in (getattr(argument.parameter, "name", None) or ()) if n.startswith("-")]
    if any(a == o or a.startswith(o + "=") for a in args for o in options):
        return None  # the user typed the option itself (``rlm run --prompt``): cyclopts' message fits
    name = (info.names[0] if info.names else argument.name).strip("-").replace("-", "_")
    words = name.replace("_", " ")
    chain = " ".join(getattr(exc, "command_chain", None) or ()) or next((a for a in args if not a.startswith("-")), "")
    command = f"rlm {chain}".rstrip()
    placeholder = f'"your {words}"' if info.annotation is str else name.upper()
    return f"{command}: missing the {words}: {command} {placeholder} (see `{command} --help`)"


def run() -> None:  # pragma: no cover - console script shim
    for stream in (sys.stdout, sys.stderr):  # a lone surrogate in an answer is escaped, never a crash
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `rlm ... | head`: the reader left; that is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
