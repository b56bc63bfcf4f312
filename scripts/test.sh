#!/usr/bin/env bash
# Create .venv (once), install the requirements, run the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
python -m pip install -q -r requirements-dev.txt
python -m pytest -q "$@"
