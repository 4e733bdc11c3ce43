#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv that auscult's tests, fixture
# generators and peer benchmarks use, from the pinned scripts/requirements.txt.
#
# Usage:   PY=$(bash scripts/python-env.sh)
#
# The venv lives at ${AUSCULT_VENV:-$HOME/.cache/auscult/venv-<hash>}, where
# <hash> is the first 12 hex digits of sha256(requirements.txt), so a changed
# requirements file gets a fresh venv. A marker file is written only after a
# successful install; when it is present the venv is reused without touching
# the network. All progress goes to stderr; the LAST line of stdout is the
# absolute path of the venv's python interpreter.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQ="${SCRIPT_DIR}/requirements.txt"
PYTHON_BOOTSTRAP="${AUSCULT_PYTHON:-python3}"

if [[ ! -f "$REQ" ]]; then
    echo "python-env: requirements file not found: $REQ" >&2
    exit 1
fi

REQ_HASH="$(sha256sum "$REQ" | cut -c1-12)"
VENV="${AUSCULT_VENV:-${HOME}/.cache/auscult/venv-${REQ_HASH}}"
MARKER="${VENV}/.auscult-installed"
VPY="${VENV}/bin/python"

# Reuse: the marker records the hash of the requirements it was built from.
if [[ -f "$MARKER" && -x "$VPY" ]] && [[ "$(cat "$MARKER")" == "$REQ_HASH" ]]; then
    # Resolve to an absolute path without following the interpreter symlink.
    echo "$(cd "$(dirname "$VPY")" && pwd)/python"
    exit 0
fi

if ! command -v "$PYTHON_BOOTSTRAP" >/dev/null 2>&1; then
    echo "python-env: '$PYTHON_BOOTSTRAP' not found on PATH" >&2
    exit 1
fi

{
    echo "python-env: building venv at $VENV (requirements sha256 ${REQ_HASH})"
    if [[ -e "$VENV" ]]; then
        if [[ -f "$VENV/pyvenv.cfg" ]]; then
            echo "python-env: removing incomplete or stale venv at $VENV"
            rm -rf "$VENV"
        else
            echo "python-env: $VENV exists and is not a venv; refusing to overwrite it" >&2
            exit 1
        fi
    fi
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON_BOOTSTRAP" -m venv "$VENV"
    "$VPY" -m pip install --disable-pip-version-check --no-input --quiet --upgrade pip
    "$VPY" -m pip install --disable-pip-version-check --no-input -r "$REQ"
    # Fail here, not in a test, if an import is broken.
    "$VPY" -c "import numpy, scipy, librosa, soundfile, pyarrow, duckdb, jsonschema, sklearn"
} 1>&2

echo "$REQ_HASH" > "$MARKER"
echo "python-env: ready" >&2
echo "$(cd "$(dirname "$VPY")" && pwd)/python"
