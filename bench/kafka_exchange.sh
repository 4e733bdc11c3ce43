#!/usr/bin/env bash
# How much audio the pipeline's workers pass to each other after reading it from Kafka, and how
# fast a backlog replays. A backlog (MACHINES simulated machines x SECONDS, 1 s chunks) is loaded
# into a 4-partition topic first; then it is read to its end by one process of 2 workers and by 2
# processes of 1 worker (timely's cluster mode, one hostfile). Prints a markdown table for
# BENCHMARKS.md.
#
# Usage: bash bench/kafka_exchange.sh [MACHINES] [SECONDS]     (from the repo root; default 16 120)
set -euo pipefail
cd "$(dirname "$0")/.."
machines="${1:-16}"
seconds="${2:-120}"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/auscult"
work="$(mktemp -d)"
trap 'bash scripts/broker.sh stop "$work" >/dev/null 2>&1 || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT

printf '[model]\nlearning_s = 30.0\n' >"$work/bench.toml"
broker="$(bash scripts/broker.sh start "$work" | tail -n 1)"
"$bin" topics --brokers "$broker" --partitions 4 >/dev/null
"$bin" --config "$work/bench.toml" agent --brokers "$broker" --simulate "$machines" --duration "$seconds" \
    --speed 0 --start-time 2026-01-01T00:00:00Z 2>"$work/agent.log"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run() { # NAME GROUP ARGS...
    local name="$1" group="$2"
    shift 2
    "$bin" --config "$work/bench.toml" run --brokers "$broker" --group "$group" --stop-when-idle 3 \
        --events "$work/$name.jsonl" --summary-json "$work/$name.json" "$@" 2>>"$work/$name.log"
}

start=$(date +%s.%N)
run one-process g1 -w 2
one_wall=$(python3 -c "import time; print(time.time() - $start)")

printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$(free_port)" "$(free_port)" >"$work/hosts.txt"
start=$(date +%s.%N)
run two-processes-1 g2 -w 1 --processes 2 --process 1 --hostfile "$work/hosts.txt" >/dev/null &
second=$!
run two-processes-0 g2 -w 1 --processes 2 --process 0 --hostfile "$work/hosts.txt"
wait "$second"
two_wall=$(python3 -c "import time; print(time.time() - $start)")

python3 - "$work" "$machines" "$seconds" "$one_wall" "$two_wall" <<'PY'
import json, sys
work, machines, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
walls = {"1 process x 2 workers": float(sys.argv[4]), "2 processes x 1 worker": float(sys.argv[5])}
runs = {"1 process x 2 workers": ["one-process"], "2 processes x 1 worker": ["two-processes-0", "two-processes-1"]}
print(f"{machines} machines x {seconds:.0f} s, 4 partitions, backlog loaded first")
print()
print("| layout | chunks read | chunks exchanged | MB exchanged | MB between processes | audio MB | wall s | x real time |")
print("|---|---|---|---|---|---|---|---|")
for layout, names in runs.items():
    totals = [json.load(open(f"{work}/{name}.json"))["totals"] for name in names]
    read = sum(t["chunks_read"] for t in totals)
    chunks = sum(t["chunks_exchanged"] for t in totals)
    exchanged = sum(t["bytes_exchanged"] for t in totals) / 1e6
    between = sum(t["bytes_exchanged_between_processes"] for t in totals) / 1e6
    audio = machines * seconds * 16000 * 2 / 1e6
    wall = walls[layout]
    print(f"| {layout} | {read} | {chunks} | {exchanged:.1f} | {between:.1f} | {audio:.1f} | {wall:.1f} | {machines * seconds / wall:.0f} |")
PY
