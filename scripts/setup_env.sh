#!/usr/bin/env bash
# Sourced by the other scripts: make .venv usable, activate it and install the project's
# dependencies from pyproject.toml, with the extras named in MPRNET_EXTRAS (e.g. dev).
#
# A .venv that cannot serve is rebuilt rather than trusted: a link (dangling or
# pointing elsewhere: it would be shared with another checkout), a folder
# without a working python, or a venv made by another Python version than the
# one chosen here (PYTHON, else python3.11, else python3).
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ -z "$PY" ]; then
    echo "error: no python3 found; install Python 3.11 (or set PYTHON=/path/to/python3)" >&2
    return 2 2>/dev/null || exit 2
fi
want=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
reason=""
if [ -L .venv ]; then
    reason="it is a link ($(readlink .venv)), not a folder of this checkout"
elif [ -e .venv ] && ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    reason="its python does not run"
elif [ -e .venv ]; then
    have=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$have" = "$want" ] || reason="it was made by Python $have, this set-up uses $want ($PY)"
fi
if [ -n "$reason" ]; then
    echo "note: rebuilding .venv: $reason" >&2
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# An editable install: the dependencies come from pyproject.toml (their one list), and the
# installed modules are this checkout's files, so an edit needs no reinstall. The scripts would
# run from the checkout without it; it also makes `import MPRNet` work from any folder in .venv.
python -m pip install -q -e ".${MPRNET_EXTRAS:+[$MPRNET_EXTRAS]}"
