#!/usr/bin/env bash
# The GPU check of issue 15 on a machine with torch and Lightning installed and nothing else
# (no project install, no downloads): the bench table at 20M rows, determinism and export on the
# GPU, quality under the batch rule if time allows. Under 10 minutes on one H200.
#   bench/gpu_check.sh                  # defaults: 20M GPU rows, 1M CPU rows
#   bench/gpu_check.sh --rows 5000000   # any option of bench/gpu_check.py
#   PYTHON=python3.12 bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."   # the repository root: `python -m` puts it on sys.path
exec timeout 590 "${PYTHON:-python3}" -m bench.gpu_check "$@"
