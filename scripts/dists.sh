#!/usr/bin/env bash
# Prints the repository's distributions (folders with a pyproject.toml), kernel first, rlm-testing second.
# The root meta-distribution and the copy-to-start template are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
echo kernel
echo plugins/rlm-testing
for f in */pyproject.toml plugins/*/pyproject.toml; do
  d=$(dirname "$f")
  case "$d" in
    .|kernel|plugins/rlm-testing|plugins/_template) ;;
    *) echo "$d" ;;
  esac
done
