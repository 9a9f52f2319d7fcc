"""serve.py, the server process: its command line, ``--set``, the parameters it gives llama.cpp, its exit codes.

The unit tests call ``serve`` in-process with a stand-in xllamacpp module
(tests/stub_xllamacpp); the last tests run the real command line
(``python .../serve.py --model=... --set=...``) through ``LlamaServer``, with
the stand-in on PYTHONPATH, so serve.py itself starts the (fake) server.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from rlm.errors import BackendError
from rlm_backend_local import serve
from rlm_backend_local import server as server_module
from rlm_backend_local.server import SERVE_SCRIPT, LlamaServer, ServerSpec

STUB_XLLAMACPP = Path(__file__).parent / "stub_xllamacpp"


@pytest.fixture(scope="module")
def xlc():
    """The stand-in xllamacpp as a module object (not registered as ``xllamacpp``)."""
    spec = importlib.util.spec_from_file_location("stub_xllamacpp_for_tests", STUB_XLLAMACPP / "xllamacpp" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARGS = ["--model=/m/q.gguf", "--alias=qwen", "--port=4321", "--api-key=k3y"]


def _params(xlc, *extra: str):
    return serve.build_params(serve.parse_args([*ARGS, *extra]), xlc)


@pytest.fixture
def no_signal_handlers(monkeypatch):
    """main() installs SIGTERM/SIGINT handlers: record them instead of replacing pytest's."""
    installed = {}
    monkeypatch.setattr(serve.signal, "signal", lambda sig, handler: installed.setdefault(sig, handler))
    return installed


# --- the command line ----------------------------------------------------------------------------


def test_parse_args_defaults_and_values():
    args = serve.parse_args(ARGS)
    assert (args.model, args.alias, args.host, args.port, args.api_key) == ("/m/q.gguf", "qwen", "127.0.0.1", 4321, "k3y")
    assert (args.n_ctx, args.n_threads, args.set) == (8192, 0, [])
    args = serve.parse_args([*ARGS, "--host=0.0.0.0", "--n-ctx=2048", "--n-threads=3", "--set=n_batch=256",
                             "--set=ctx_shift=true"])
    assert (args.host, args.n_ctx, args.n_threads, args.set) == ("0.0.0.0", 2048, 3, ["n_batch=256", "ctx_shift=true"])


def test_values_beginning_with_a_dash_stay_values():
    args = serve.parse_args(["--model=-m.gguf", "--alias=-qwen", "--port=1", "--api-key=-secret"])
    assert (args.model, args.alias, args.api_key) == ("-m.gguf", "-qwen", "-secret")


def test_the_argv_of_server_spec_is_what_serve_parses():
    spec = ServerSpec(model_path="-m.gguf", alias="-qwen", n_ctx=4096, n_threads=2, python="/py",
                      extra_args=("n_batch=256", "chat_template=chatml"))
    argv = spec.argv(1234, "-secret")
    assert argv[:2] == ["/py", SERVE_SCRIPT]
    args = serve.parse_args(argv[2:])
    assert (args.model, args.alias, args.host, args.port, args.api_key, args.n_ctx, args.n_threads) == (
        "-m.gguf", "-qwen", "127.0.0.1", 1234, None, 4096, 2)  # the key comes by environment
    assert args.set == ["n_batch=256", "chat_template=chatml"]


@pytest.mark.parametrize("argv", [
    [],  # nothing
    ["--model=m", "--alias=a", "--port=1"],  # no key
    [*ARGS, "--port=x"],
    [*ARGS, "--bogus"],
])
def test_bad_arguments_exit_2(argv, capsys):
    assert serve.main(argv) == 2
    assert "rlm-local-serve" in capsys.readouterr().err  # argparse's usage line names the program


# --- the parameters ------------------------------------------------------------------------------


def test_build_params_sets_the_command_line_and_switches_off_what_rlm_does_not_use(xlc):
    params = _params(xlc, "--n-ctx=2048", "--n-threads=3")
    assert params.model.path == "/m/q.gguf" and params.model_alias == {"qwen"}
    assert (params.hostnames, params.port, params.api_keys) == (["127.0.0.1"], 4321, ["k3y"])
    assert (params.n_ctx, params.n_parallel) == (2048, 1)
    assert params.cpuparams.n_threads == params.cpuparams_batch.n_threads == 3
    assert params.use_jinja is True
    # only rlm talks to it: no web UI, no slots/metrics/props endpoints, no CORS, no downloads
    assert params.ui is False
    assert (params.endpoint_slots, params.endpoint_metrics, params.endpoint_props) == (False, False, False)
    assert params.cors_origins == ""
    assert params.offline is True


def test_no_thread_count_leaves_llama_cpp_s_default(xlc):
    params = _params(xlc)
    assert params.cpuparams.n_threads == params.cpuparams_batch.n_threads == -1


def test_set_coerces_to_the_parameter_s_type(xlc):
    params = _params(xlc, "--set=n_batch=256", "--set=ctx_shift=on", "--set=ui=yes", "--set=rope_freq_base=1e4",
                     "--set=chat_template=chatml", "--set=antiprompt=User:,,###", "--set=n_pl=")
    assert params.n_batch == 256 and isinstance(params.n_batch, int)
    assert params.ctx_shift is True and params.ui is True  # a --set wins over serve.py's own choice
    assert params.rope_freq_base == 10000.0 and isinstance(params.rope_freq_base, float)
    assert params.chat_template == "chatml"
    assert params.antiprompt == ["User:", "###"]  # comma-separated, empty items dropped
    assert params.n_pl == []
    params = _params(xlc, "--set=ctx_shift=1", "--set=ui=Off", "--set=chat_template=a=b")
    assert (params.ctx_shift, params.ui, params.chat_template) == (True, False, "a=b")  # only the first '=' splits


@pytest.mark.parametrize(("item", "message"), [
    ("nonsense=1", "unknown server parameter 'nonsense' (in --set 'nonsense=1')"),
    ("n_batch", "unknown server parameter 'n_batch' (in --set 'n_batch')"),  # no '='
    ("=1", "unknown server parameter ''"),
    ("_n_pl=1", "unknown server parameter '_n_pl'"),
    ("ctx_shift=maybe", ("bad value for server parameter 'ctx_shift' (in --set 'ctx_shift=maybe'): "
                         "expected true or false, got 'maybe'")),
    ("n_batch=lots", "bad value for server parameter 'n_batch' (in --set 'n_batch=lots'): invalid literal"),
    ("rope_freq_base=high", "bad value for server parameter 'rope_freq_base'"),
    ("n_pl=1,2", "bad value for server parameter 'n_pl' (in --set 'n_pl=1,2'): an integer is required"),
    ("model_tags=a", ("bad value for server parameter 'model_tags' (in --set 'model_tags=a'): "
                      "parameters of type set cannot be set from the command line")),
    ("model=x.gguf", "parameters of type CommonParamsModel cannot be set"),
])
def test_a_bad_set_exits_2_naming_it(xlc, monkeypatch, capsys, no_signal_handlers, item, message):
    with pytest.raises(ValueError, match="server parameter"):
        _params(xlc, f"--set={item}")
    monkeypatch.setitem(sys.modules, "xllamacpp", xlc)
    assert serve.main([*ARGS, f"--set={item}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlm-local-serve: ") and message in err, err
    assert not no_signal_handlers  # it stopped before starting anything


# --- exit codes ----------------------------------------------------------------------------------


def test_missing_xllamacpp_exits_3_with_the_pip_command(monkeypatch, capsys, no_signal_handlers):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # `import xllamacpp` raises ImportError
    assert serve.main(ARGS) == 3
    err = capsys.readouterr().err
    assert "No module named 'xllamacpp'" in err
    assert f"install it: {sys.executable} -m pip install xllamacpp" in err


def test_a_model_that_does_not_load_exits_4(xlc, monkeypatch, capsys, no_signal_handlers):
    monkeypatch.setitem(sys.modules, "xllamacpp", xlc)
    assert serve.main(["--model=/m/corrupt.gguf", "--alias=a", "--port=1", "--api-key=k"]) == 4
    err = capsys.readouterr().err
    assert "rlm-local-serve: failed to load model /m/corrupt.gguf: Failed to init server" in err
    assert set(no_signal_handlers) == {signal.SIGTERM, signal.SIGINT}


# --- end to end: the real command line, through LlamaServer ----------------------------------------


def _get(url: str, key: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_py_runs_the_server_end_to_end(stub_xllamacpp, monkeypatch, pid_alive):
    """`python serve.py --model=... --api-key=<key beginning with '-'> --set=...` through LlamaServer: it
    starts, answers the health check with its key (and only with it), got the parameters from the command
    line, and stops cleanly (exit 0) on SIGTERM.  The stand-in xllamacpp imports http.server: serve.py,
    run by path, must not let the package's http.py shadow the standard library's."""
    monkeypatch.setattr(server_module, "new_api_key", lambda: "-Zq_leading-dash-key")
    spec = ServerSpec(model_path="/models/m.gguf", alias="qwen", n_ctx=1024, n_threads=2, python=sys.executable,
                      extra_args=("n_batch=256", "ctx_shift=true"))
    server = LlamaServer(spec, startup_timeout=20)
    try:
        url = server.ensure_started()
        assert url == f"http://127.0.0.1:{server.port}/v1"
        assert server._healthy(), "the server did not accept its own key"
        base = f"http://127.0.0.1:{server.port}"
        assert _get(f"{base}/health") == (200, {"status": "ok"})  # public
        assert _get(f"{base}/v1/models")[0] == 401  # no key
        assert _get(f"{base}/v1/models", "wrong")[0] == 401
        status, models = _get(f"{base}/v1/models", server.api_key)
        assert status == 200 and [m["id"] for m in models["data"]] == ["qwen"]
        assert "listening on" in server.log_tail()

        params = json.loads(stub_xllamacpp.read_text())
        assert params["model"]["path"] == "/models/m.gguf" and params["model_alias"] == ["qwen"]
        assert (params["port"], params["api_keys"], params["n_ctx"]) == (server.port, ["-Zq_leading-dash-key"], 1024)
        assert params["cpuparams"]["n_threads"] == params["cpuparams_batch"]["n_threads"] == 2
        assert (params["ui"], params["endpoint_slots"], params["endpoint_metrics"], params["endpoint_props"],
                params["cors_origins"]) == (False, False, False, False, "")
        assert (params["n_batch"], params["ctx_shift"]) == (256, True)  # server_args, as --set

        proc = server._proc
        pid = server.pid
        # the key travels by environment: other local users read command lines in /proc, not environments
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}/cmdline").exists() else b""
        assert b"leading-dash-key" not in cmdline
    finally:
        server.stop()
    assert proc.returncode == 0, "serve.py did not stop cleanly on SIGTERM"
    assert not pid_alive(pid)


def test_a_model_that_does_not_load_is_a_clear_error(stub_xllamacpp):
    spec = ServerSpec(model_path="/models/corrupt.gguf", alias="m", n_ctx=512, n_threads=1)
    with pytest.raises(BackendError) as info:
        LlamaServer(spec, startup_timeout=20).ensure_started()
    message = str(info.value)
    assert "exited with code 4 while starting" in message
    assert "failed to load model, '/models/corrupt.gguf'" in message  # llama.cpp's own output
    assert "unreadable or corrupt" in message and info.value.permanent


def test_a_bad_server_arg_is_a_clear_error(stub_xllamacpp):
    spec = ServerSpec(model_path="/models/m.gguf", alias="m", n_ctx=512, n_threads=1, extra_args=("n_batch=lots",))
    with pytest.raises(BackendError) as info:
        LlamaServer(spec, startup_timeout=20).ensure_started()
    message = str(info.value)
    assert "exited with code 2 while starting" in message
    assert "bad value for server parameter 'n_batch'" in message
    assert "fix [plugins.backend-local] server_args" in message


def test_a_python_without_xllamacpp_is_a_clear_error(tmp_path, monkeypatch):
    broken = tmp_path / "no-xllamacpp" / "xllamacpp.py"  # stands for a Python where it is not installed
    broken.parent.mkdir()
    broken.write_text("raise ModuleNotFoundError(\"No module named 'xllamacpp'\", name='xllamacpp')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))
    spec = ServerSpec(model_path="/models/m.gguf", alias="m", n_ctx=512, n_threads=1)
    with pytest.raises(BackendError) as info:
        LlamaServer(spec, startup_timeout=20).ensure_started()
    message = str(info.value)
    assert "exited with code 3 while starting" in message
    assert "No module named 'xllamacpp'" in message
    assert "install the server runtime: " in message and "pip install 'xllamacpp==2026.10.11549'" in message


def test_the_key_comes_from_the_environment_and_leaves_it(xlc, monkeypatch, capsys, no_signal_handlers):
    monkeypatch.setitem(sys.modules, "xllamacpp", xlc)
    monkeypatch.setattr(xlc, "Server", lambda params: (_ for _ in ()).throw(RuntimeError("stop here")))
    keyless = [a for a in ARGS if not a.startswith("--api-key")]
    monkeypatch.delenv(serve.API_KEY_ENV, raising=False)
    assert serve.main(keyless) == 2
    assert "no API key" in capsys.readouterr().err
    seen = {}
    monkeypatch.setenv(serve.API_KEY_ENV, "from-env")
    real_build = serve.build_params
    monkeypatch.setattr(serve, "build_params", lambda args, x: seen.setdefault("key", args.api_key) and real_build(args, x))
    assert serve.main(keyless) == 4  # got as far as loading the model
    assert seen["key"] == "from-env" and serve.API_KEY_ENV not in os.environ  # the child's code cannot read it
