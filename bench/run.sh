#!/usr/bin/env bash
# Side-by-side benchmark of rlm against rlm-runtime 2.1.3 (see bench/compare.py and bench/RESULTS.md).
#   bash bench/run.sh            # full run, prints a markdown table
#   bash bench/run.sh --quick    # fewer repeats
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$here/../.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3.11 || command -v python3)"
exec "$py" "$here/compare.py" "$@"
