"""``rlm mcp install``: the client configuration written, merged, refused, backed up, and working.

Through the real CLI in a subprocess, with HOME, APPDATA, XDG_CONFIG_HOME and the working directory in
tmp folders (so Claude Desktop's file and Claude Code's ``.mcp.json`` are tmp files); the configuration
written is then run as an MCP client would run it (stdin/stdout JSON-RPC).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rlm_mcp.install import claude_desktop_config, server_command

#: The ``rlm`` console script of the interpreter running the tests (the dev venv's).
RLM_SCRIPT = Path(os.path.abspath(Path(sys.executable).parent / ("rlm.exe" if os.name == "nt" else "rlm")))

pytestmark = pytest.mark.skipif(not RLM_SCRIPT.is_file(), reason="the rlm console script is not installed")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "project").mkdir()
    return tmp_path / "project"


def client_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.defpath, "HOME": str(home), "USERPROFILE": str(home),
           "APPDATA": str(home / "AppData" / "Roaming"), "XDG_CONFIG_HOME": str(home / "xdg"),
           "RLM_CACHE_DIR": str(home / "cache"), "RLM_HELP_CACHE": "0"}
    if "SYSTEMROOT" in os.environ:  # Windows needs it to start Python
        env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]
    env.update(extra)
    return env


def rlm(home: Path, cwd: Path, *args: str, module: bool = False, **env: str) -> subprocess.CompletedProcess:
    """``rlm ARGS`` (the console script; ``python -m rlm ARGS`` with ``module``) in ``cwd``."""
    argv = [sys.executable, "-m", "rlm"] if module else [str(RLM_SCRIPT)]
    return subprocess.run([*argv, *args], cwd=cwd, env=client_env(home, **env), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def desktop_file(home: Path) -> Path:
    return claude_desktop_config(environ=client_env(home), home=home)


def expected_entry(env: dict[str, str] | None = None) -> dict:
    return {"command": str(RLM_SCRIPT), "args": ["mcp-serve"], "env": env or {}}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_neither_client_is_a_usage_error_naming_both(home, project):
    result = rlm(home, project, "mcp", "install")
    assert result.returncode == 2, result.stderr
    assert "--claude-desktop" in result.stderr and "--claude-code" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (project / ".mcp.json").exists() and not desktop_file(home).exists()
    both = rlm(home, project, "mcp", "install", "--claude-desktop", "--claude-code")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_a_new_claude_desktop_file_with_env_values(home, project):
    result = rlm(home, project, "mcp", "install", "--claude-desktop", "--env", "RLM_CONFIG=/x/rlm.toml",
                 "-e", "EXTRA=a=b")
    assert result.returncode == 0, result.stderr
    path = desktop_file(home)
    if sys.platform.startswith("linux"):
        assert path == home / "xdg" / "Claude" / "claude_desktop_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    assert config == {"mcpServers": {"rlm": expected_entry({"RLM_CONFIG": "/x/rlm.toml", "EXTRA": "a=b"})}}
    command = Path(config["mcpServers"]["rlm"]["command"])
    assert command.is_absolute() and command.is_file() and os.access(command, os.X_OK)
    assert str(path) in result.stdout and "Claude Desktop" in result.stdout
    assert not path.with_name(path.name + ".bak").exists() and leftovers(path.parent) == []


def test_merge_keeps_other_servers_keys_and_permissions(home, project):
    path = project / ".mcp.json"
    original = {"theme": "dark", "mcpServers": {"other": {"command": "npx", "args": ["-y", "srv"], "env": {"K": "é"}}},
                "nested": {"list": [1, 2.5, None, True]}}
    raw = json.dumps(original, ensure_ascii=False, indent=4).encode("utf-8")
    path.write_bytes(raw)
    path.chmod(0o600)
    result = rlm(home, project, "mcp", "install", "--claude-code")
    assert result.returncode == 0, result.stderr
    merged = json.loads(path.read_text(encoding="utf-8"))
    assert merged["mcpServers"] == {"other": original["mcpServers"]["other"], "rlm": expected_entry()}
    assert {k: v for k, v in merged.items() if k != "mcpServers"} == {"theme": "dark", "nested": original["nested"]}
    assert (project / ".mcp.json.bak").read_bytes() == raw
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert leftovers(project) == [] and "Claude Code" in result.stdout


def test_dry_run_prints_the_merge_and_writes_nothing(home, project):
    fresh = rlm(home, project, "mcp", "install", "--claude-desktop", "--dry-run")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout) == {"mcpServers": {"rlm": expected_entry()}}
    assert not desktop_file(home).parent.exists()  # not even the folder
    path = project / ".mcp.json"
    raw = b'{"mcpServers": {"other": {"command": "x"}}, "keep": 1}'
    path.write_bytes(raw)
    result = rlm(home, project, "mcp", "install", "--claude-code", "--dry-run", "--name", "mine")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"mcpServers": {"other": {"command": "x"}, "mine": expected_entry()}, "keep": 1}
    assert path.read_bytes() == raw and sorted(p.name for p in project.iterdir()) == [".mcp.json"]


@pytest.mark.parametrize(("content", "says"), [
    (b'{"mcpServers": {"other": {"command": "x"},}}', "is not valid JSON"),
    (b"[1, 2]", "not an object"),
    (b'{"mcpServers": ["x"]}', '"mcpServers" is a JSON list'),
    (b'{"mcpServers": {}, "mcpServers": {"a": {}}}', "appears twice"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_an_unusable_file_is_refused_and_untouched(home, project, content, says):
    path = project / ".mcp.json"
    path.write_bytes(content)
    result = rlm(home, project, "mcp", "install", "--claude-code", "--force")
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and str(path) in result.stderr and "was not changed" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert path.read_bytes() == content and sorted(p.name for p in project.iterdir()) == [".mcp.json"]


def test_a_file_over_the_size_bound_is_refused(home, project):
    path = project / ".mcp.json"
    content = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    path.write_bytes(content)
    result = rlm(home, project, "mcp", "install", "--claude-code")
    assert result.returncode == 2 and "larger than 10 MiB" in result.stderr, result.stderr
    assert path.read_bytes() == content and not (project / ".mcp.json.bak").exists()


def test_a_differing_entry_needs_force_then_is_replaced_with_a_backup(home, project):
    path = project / ".mcp.json"
    raw = json.dumps({"mcpServers": {"rlm": {"command": "/old/rlm", "args": ["mcp-serve"]},
                                     "other": {"command": "x"}}}).encode()
    path.write_bytes(raw)
    refused = rlm(home, project, "mcp", "install", "--claude-code")
    assert refused.returncode == 2, refused.stderr
    assert "/old/rlm" in refused.stderr and json.dumps(str(RLM_SCRIPT)) in refused.stderr  # shows both
    assert "--force" in refused.stderr and path.read_bytes() == raw and not (project / ".mcp.json.bak").exists()

    forced = rlm(home, project, "mcp", "install", "--claude-code", "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(path.read_text()) == {"mcpServers": {"rlm": expected_entry(), "other": {"command": "x"}}}
    assert (project / ".mcp.json.bak").read_bytes() == raw

    written = path.read_bytes()
    again = rlm(home, project, "mcp", "install", "--claude-code")  # the same entry: nothing to do
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr
    assert path.read_bytes() == written and (project / ".mcp.json.bak").read_bytes() == raw


def test_a_symlinked_config_is_written_through_the_link(home, project, tmp_path):
    if os.name != "posix":
        pytest.skip("symbolic links")
    (tmp_path / "dotfiles").mkdir()
    real = tmp_path / "dotfiles" / "mcp.json"
    real.write_text('{"mcpServers": {}}')
    (project / ".mcp.json").symlink_to(real)
    result = rlm(home, project, "mcp", "install", "--claude-code")
    assert result.returncode == 0, result.stderr
    assert (project / ".mcp.json").is_symlink()
    assert json.loads(real.read_text()) == {"mcpServers": {"rlm": expected_entry()}}


def test_bad_env_pairs_are_usage_errors(home, project):
    for bad in ("NOVALUE", "=x"):
        result = rlm(home, project, "mcp", "install", "--claude-code", "--env", bad)
        assert result.returncode == 2 and "KEY=VALUE" in result.stderr, result.stderr
    assert not (project / ".mcp.json").exists()


# ---- which rlm is written -----------------------------------------------------------------------------------


def _script(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "rlm"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return script


@pytest.mark.skipif(os.name != "posix", reason="POSIX script names")
def test_server_command_cases(tmp_path, monkeypatch):
    script = _script(tmp_path / "a" / "bin")
    other = _script(tmp_path / "venv" / "bin")
    python = str(tmp_path / "venv" / "bin" / "python")
    # 1. argv[0] is the rlm script: that one, absolute (also when given relative)
    assert server_command(str(script), python, [str(other.parent)]) == [str(script), "mcp-serve"]
    monkeypatch.chdir(tmp_path / "a")
    assert server_command("bin/rlm", python, [str(other.parent)]) == [str(script), "mcp-serve"]
    # 2. not run as the script (python -m rlm), or argv[0] names no file: the rlm of the interpreter's folder
    assert server_command("/x/rlm/__main__.py", python, [str(other.parent)]) == [str(other), "mcp-serve"]
    assert server_command("/nowhere/rlm", python, [str(other.parent)]) == [str(other), "mcp-serve"]
    # ... by default the folder of sys.executable
    assert server_command("/x/rlm/__main__.py", python) == [str(other), "mcp-serve"]
    # 3. no rlm script there: the interpreter itself
    empty = tmp_path / "empty"
    empty.mkdir()
    assert server_command("-c", python, [str(empty)]) == [python, "-m", "rlm", "mcp-serve"]


def test_python_dash_m_rlm_writes_the_venv_script(home, project):
    result = rlm(home, project, "mcp", "install", "--claude-code", "--dry-run", module=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mcpServers"]["rlm"] == expected_entry()


def test_claude_desktop_locations():
    home = Path("/home/u")
    assert claude_desktop_config("darwin", {"XDG_CONFIG_HOME": "/xdg"}, home) == \
        home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
    assert claude_desktop_config("win32", {"APPDATA": "/appdata"}, home) == \
        Path("/appdata") / "Claude" / "claude_desktop_config.json"
    assert claude_desktop_config("win32", {}, home) == \
        home / "AppData" / "Roaming" / "Claude" / "claude_desktop_config.json"
    assert claude_desktop_config("linux", {}, home) == home / ".config" / "Claude" / "claude_desktop_config.json"
    assert claude_desktop_config("linux", {"XDG_CONFIG_HOME": "/xdg"}, home) == \
        Path("/xdg") / "Claude" / "claude_desktop_config.json"
    assert claude_desktop_config("linux", {"XDG_CONFIG_HOME": "relative"}, home) == \
        home / ".config" / "Claude" / "claude_desktop_config.json"  # the XDG spec ignores a relative one


# ---- the command in --help, with and without the help cache ----------------------------------------------------


def test_listed_in_help_and_run_with_and_without_the_help_cache(home, project):
    for cache in ("0", "1"):
        first = rlm(home, project, "--help", RLM_HELP_CACHE=cache)
        second = rlm(home, project, "--help", RLM_HELP_CACHE=cache)  # with the cache: read from it
        for result in (first, second):
            assert result.returncode == 0, result.stderr
            assert any(line.split()[:2] == ["mcp", "install"] for line in result.stdout.splitlines()), result.stdout
        run = rlm(home, project, "mcp", "install", "--claude-code", "--dry-run", RLM_HELP_CACHE=cache)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["mcpServers"]["rlm"] == expected_entry()
    cached = "\n".join(p.read_text(encoding="utf-8", errors="replace")
                       for p in (home / "cache" / "help").glob("*.txt")) if (home / "cache" / "help").is_dir() else ""
    if "\trlm_mcp.cli:serve\t" in cached:  # the cache recorded the commands (not when a file was just edited)
        assert "mcp install\trlm_mcp.install:install\t" in cached
    helped = rlm(home, project, "mcp", "install", "--help")
    assert helped.returncode == 0, helped.stderr
    text = " ".join(helped.stdout.replace("│", " ").split())
    assert ".mcp.json" in text and "claude mcp add rlm -- <path of rlm> mcp-serve" in text and "--dry-run" in text


# ---- the configuration written works ---------------------------------------------------------------------------


def _send(proc: subprocess.Popen, message: dict) -> None:
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()


def _answer(proc: subprocess.Popen, request_id: int) -> dict:
    while True:
        line = proc.stdout.readline()
        assert line, "the server closed stdout without answering"
        message = json.loads(line)
        if message.get("id") == request_id:
            return message


def test_the_written_config_starts_a_working_server(home, project, tmp_path):
    (project / "rlm.toml").write_text('[rlm]\nenvironment = "local"\n')
    result = rlm(home, project, "mcp", "install", "--claude-desktop", "--env", f"RLM_CONFIG={project / 'rlm.toml'}")
    assert result.returncode == 0, result.stderr
    entry = json.loads(desktop_file(home).read_text())["mcpServers"]["rlm"]
    # as Claude Desktop does: the command and args of the entry, its env added, started in another directory
    errlog = tmp_path / "server-stderr.log"
    with open(errlog, "w") as err:
        proc = subprocess.Popen([entry["command"], *entry["args"]], cwd=home, env={**client_env(home), **entry["env"]},
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
    guard = threading.Timer(120, proc.kill)  # a hung server fails the test instead of hanging it
    guard.start()
    try:
        _send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                     "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                "clientInfo": {"name": "rlm-install-test", "version": "0"}}})
        init = _answer(proc, 1)
        assert "result" in init, init
        assert init["result"]["protocolVersion"] and init["result"]["serverInfo"]["name"]
        _send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        _send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        tools = _answer(proc, 2)
        assert "execute_python" in {t["name"] for t in tools["result"]["tools"]}, tools
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    except BaseException as exc:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{exc!r}\n--- the server's stderr:\n{errlog.read_text()[-3000:]}") from exc
    finally:
        guard.cancel()
