#!/usr/bin/env bash
# A real S3-API server on loopback for auscult's object-store tests and for trying an
# `s3://` archive without a cloud account: moto's server mode, from the pinned Python venv
# (scripts/python-env.sh). Objects live in the server's memory.
#
# Usage:
#   bash scripts/s3-server.sh start DIR [PORT]   # start on PORT or a free loopback port; prints
#                                                # http://127.0.0.1:PORT (pid and log go into DIR)
#   bash scripts/s3-server.sh stop DIR           # stop the server started in DIR
#
# Any access key and secret are accepted; point clients at the printed endpoint, e.g.
#   AWS_ENDPOINT=http://127.0.0.1:PORT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
#   AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test auscult run ... --archive s3://bucket/prefix
# Progress goes to stderr; the last line of stdout is the answer.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "s3-server.sh: $*" >&2; exit 1; }

python_path() {
    if [[ -n "${AUSCULT_TEST_PYTHON:-}" ]]; then
        echo "$AUSCULT_TEST_PYTHON"
    else
        bash "$SCRIPT_DIR/python-env.sh" | tail -n 1
    fi
}

start() {
    local dir="${1:?start needs a directory for the pid and log}"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local python port
    python="$(python_path)"
    port="${2:-}"
    [[ -n "$port" ]] || port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$python" -m moto.server -H 127.0.0.1 -p "$port" >>"$dir/s3.log" 2>&1 &
    echo $! >"$dir/s3.pid"
    for _ in $(seq 1 100); do
        if "$python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            echo "http://127.0.0.1:$port"
            return 0
        fi
        kill -0 "$(cat "$dir/s3.pid")" 2>/dev/null || die "the server exited; see $dir/s3.log"
        sleep 0.1
    done
    die "no server on port $port after 10 s; see $dir/s3.log"
}

stop() {
    local dir="${1:?stop needs the directory given to start}"
    [[ -f "$dir/s3.pid" ]] || return 0
    kill "$(cat "$dir/s3.pid")" 2>/dev/null || true
    rm -f "$dir/s3.pid"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) die "usage: s3-server.sh start DIR [PORT] | stop DIR" ;;
esac
