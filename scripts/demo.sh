#!/usr/bin/env bash
# Set up .venv and restore the bundled samples. Extra arguments go to demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
python demo.py --task "${TASK:-Deblurring}" --input_dir samples/input --result_dir samples/output "$@"
