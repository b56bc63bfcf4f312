#!/usr/bin/env bash
# Create .venv (once), install the project with its dev extra, run the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
MPRNET_EXTRAS=dev
source scripts/setup_env.sh
python -m pytest -q "$@"
