"""The hook implementations of rlm-env-wasm (imported on every ``rlm`` run: keep it cheap).

The environment factory is a ``"module:attr"`` string, so wasmtime and the
session machinery are imported only when a wasm session starts; the doctor
check lives in :mod:`rlm_env_wasm.doctor`, imported only by ``rlm doctor``.
"""

from __future__ import annotations

from rlm import hookimpl


@hookimpl
def rlm_register_environments(register):
    register("wasm", "rlm_env_wasm.session:WasmEnvironment",
             description="CPython 3.12 compiled to WASI under wasmtime: no network, no processes, "
                         "host files only from allowed_paths (read-only); bounded time, memory and output")


@hookimpl
def rlm_register_config_sections(register):
    register("env-wasm", "rlm_env_wasm.config:WasmEnvConfig", description="the wasm (wasmtime) environment")


@hookimpl
def rlm_register_doctor_checks(register):
    register("env-wasm", "rlm_env_wasm.doctor:check")


@hookimpl
def rlm_register_commands(register):
    register("env wasm warm", "rlm_env_wasm.commands:warm",
             help="Compile the wasm environment's interpreter now and cache it (wasm env).")
