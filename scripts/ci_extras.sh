#!/usr/bin/env bash
# Install the optional extras into the active virtual environment: the web page (gradio,
# selenium), ONNX export (onnx, onnxscript, onnxruntime) and, where apt-get is available and
# we are root, Debian's chromium and chromium-driver for the browser test (tests/test_app.py).
# Without a browser that test is skipped with the reason; nothing here downloads a browser
# build of its own. Run from anywhere, after activating the venv:
#
#   source .venv/bin/activate && bash scripts/ci_extras.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    echo "error: activate the virtual environment first (source .venv/bin/activate)" >&2
    exit 2
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q -e '.[app,onnx]'

have_browser() {
    { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } && command -v chromedriver >/dev/null
}

if have_browser; then
    exit 0
fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "note: no chromium/chromedriver and no root apt-get here; the browser test will be skipped" >&2
    exit 0
fi
install_browser() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
}
if ! install_browser; then
    echo "note: installing chromium failed; updating the package lists and trying again" >&2
    apt-get update -q >/dev/null
    install_browser || echo "note: chromium could not be installed; the browser test will be skipped" >&2
fi
