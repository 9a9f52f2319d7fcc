"""A stand-in for the ``xllamacpp`` package in tests: put its parent directory on PYTHONPATH.

``CommonParams`` has the attributes serve.py sets, with llama.cpp's defaults
(so a test sees what serve.py changed), plus a few of each type for
``--set``; ``n_pl`` refuses a list that is not of integers, as the real
one does.  ``Server(params)`` runs tests/fake_llama_server.py's HTTP server
in a thread on ``params.port`` with ``params.api_keys[0]``, after writing
the parameters as JSON to ``$FAKE_XLLAMACPP_RECORD`` when that is set; a
model path containing ``corrupt`` fails to load the way xllamacpp does
(llama.cpp's log lines, then a RuntimeError).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for fake_llama_server

import fake_llama_server


class CommonParamsModel:
    def __init__(self) -> None:
        self.path = ""


class CpuParams:
    def __init__(self) -> None:
        self.n_threads = -1


class CommonParams:
    def __init__(self) -> None:
        self.model = CommonParamsModel()
        self.model_alias: set[str] = set()
        self.hostnames = ["127.0.0.1"]
        self.port = 0
        self.api_keys: list[str] = []
        self.n_ctx = 0
        self.n_parallel = 1
        self.n_batch = 2048
        self.cpuparams = CpuParams()
        self.cpuparams_batch = CpuParams()
        self.use_jinja = True
        self.ui = True
        self.endpoint_slots = True
        self.endpoint_metrics = False
        self.endpoint_props = False
        self.cors_origins = "*"
        self.offline = False
        self.cache_ram_mib = 8192
        self.verbosity = 3
        self.ctx_shift = False
        self.rope_freq_base = 0.0
        self.chat_template = ""
        self.antiprompt: list[str] = []
        self.model_tags: set[str] = set()
        self._n_pl: list[int] = []

    @property
    def n_pl(self) -> list[int]:
        return list(self._n_pl)

    @n_pl.setter
    def n_pl(self, value: list[int]) -> None:
        if not all(isinstance(v, int) for v in value):
            raise TypeError("an integer is required")
        self._n_pl = list(value)


def snapshot(params: CommonParams) -> dict[str, object]:
    """The parameters as JSON-able values (sets as sorted lists, nested objects as dicts)."""
    out: dict[str, object] = {}
    for name, value in vars(params).items():
        name = name.lstrip("_")
        if isinstance(value, set):
            value = sorted(value)
        elif isinstance(value, (CommonParamsModel, CpuParams)):
            value = vars(value)
        out[name] = value
    return out


class Server:
    def __init__(self, params: CommonParams) -> None:
        record = os.environ.get("FAKE_XLLAMACPP_RECORD")
        if record:
            Path(record).write_text(json.dumps(snapshot(params)))
        if "corrupt" in params.model.path:
            print(f"llama_model_load_from_file_impl: failed to load model\n"
                  f"srv    load_model: failed to load model, '{params.model.path}'", file=sys.stderr, flush=True)
            raise RuntimeError("Failed to init server, please check the input params.")
        alias = min(params.model_alias) if params.model_alias else "fake"
        self._http = fake_llama_server.make_server(params.port, params.api_keys[0], alias=alias)
        self._address = f"http://{params.hostnames[0]}:{params.port}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    @property
    def listening_address(self) -> str:
        return self._address
