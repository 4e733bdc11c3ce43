#!/usr/bin/env bash
# A real Kafka-protocol broker for auscult's tests and for trying auscult without Docker:
# tansu (a Kafka-compatible broker written in Rust), installed once from crates.io and
# reused on later runs.
#
# Usage:
#   bash scripts/broker.sh install          # build tansu once (about 15 min on 2 cores); prints its path
#   bash scripts/broker.sh start DIR [PORT] # start a broker on PORT or a free loopback port; prints
#                                           # HOST:PORT (its pid, port and log go into DIR)
#   bash scripts/broker.sh stop DIR         # stop the broker started in DIR
#
# tansu lives at ${AUSCULT_TOOLS:-$HOME/.cache/auscult/tools}/bin/tansu. Storage is in memory
# unless AUSCULT_BROKER_STORAGE is set: sqlite://local/tansu.db keeps the records in DIR/tansu.db
# over a restart (tansu opens the path relative to its working folder, which is DIR).
# Progress goes to stderr; the last line of stdout is the answer.
set -euo pipefail

TANSU_VERSION="0.6.0"
TOOLS="${AUSCULT_TOOLS:-$HOME/.cache/auscult/tools}"
TANSU="$TOOLS/bin/tansu"

die() { echo "broker.sh: $*" >&2; exit 1; }

install() {
    # One install at a time: test binaries that start at once all wait here for the first,
    # then find its tansu (an unlocked second build would delete the first one's target dir).
    mkdir -p "$TOOLS"
    exec 9>"$TOOLS/install.lock"
    flock 9
    if [[ -x "$TANSU" ]] && "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
        echo "broker.sh: reusing $TANSU" >&2
    else
        echo "broker.sh: building tansu $TANSU_VERSION into $TOOLS (once; about 15 minutes)" >&2
        # Its own target dir, so that auscult's builds are not invalidated.
        CARGO_TARGET_DIR="$TOOLS/target" cargo install tansu --locked --version "$TANSU_VERSION" \
            --features dynostore,libsql --root "$TOOLS" >&2
        rm -rf "$TOOLS/target"
    fi
    flock -u 9
    echo "$TANSU"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir="${1:?start needs a directory for the pid, port and log}"
    mkdir -p "$dir"
    [[ -x "$TANSU" ]] || install >/dev/null
    local port storage
    port="${2:-}"
    [[ -n "$port" ]] || port="$(free_port)"
    storage="${AUSCULT_BROKER_STORAGE:-memory://tansu/}"
    dir="$(cd "$dir" && pwd)"
    (cd "$dir" && exec "$TANSU" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "$storage") >>"$dir/broker.log" 2>&1 &
    echo $! >"$dir/broker.pid"
    echo "$port" >"$dir/broker.port"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "127.0.0.1:$port"
            return 0
        fi
        kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null || die "tansu exited at start; see $dir/broker.log"
        sleep 0.1
    done
    die "tansu did not listen on 127.0.0.1:$port within 10 s; see $dir/broker.log"
}

stop() {
    local dir="${1:?stop needs the directory given to start}"
    [[ -f "$dir/broker.pid" ]] || die "no broker was started in $dir"
    local pid
    pid="$(cat "$dir/broker.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/broker.pid"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" "${3:-}" ;;
    stop) stop "${2:-}" ;;
    *) die "usage: broker.sh install | start DIR | stop DIR" ;;
esac
