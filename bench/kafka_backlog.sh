#!/usr/bin/env bash
# The Kafka path on its own: a backlog (MACHINES simulated machines x SECONDS of 1 s chunks) is
# loaded into a 6-partition topic first, then read to its end by each layout in turn: P
# processes (timely's cluster mode, one hostfile) of W workers each, all on this machine, each
# with its state in the changelog topic (`--state kafka`, a topic of its own per layout) and
# its own consumer group. Prints a markdown table for BENCHMARKS.md: x real time, and the
# audio the workers exchanged, within and between processes.
#
# Usage: bash bench/kafka_backlog.sh [MACHINES] [SECONDS]     (from the repo root; default 200 600)
#        LAYOUTS="1x2 2x1" bash bench/kafka_backlog.sh 16 120  other layouts (PxW; default "1x1 1x2 2x1 3x1")
set -euo pipefail
cd "$(dirname "$0")/.."
machines="${1:-200}"
seconds="${2:-600}"
layouts="${LAYOUTS:-1x1 1x2 2x1 3x1}"
idle_s=3
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/auscult"
work="$(mktemp -d)"
trap 'bash scripts/broker.sh stop "$work" >/dev/null 2>&1 || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT

printf '[model]\nlearning_s = 30.0\n' >"$work/bench.toml"
broker="$(bash scripts/broker.sh start "$work" | tail -n 1)"
"$bin" topics --brokers "$broker" --partitions 6 >/dev/null
load_start=$(date +%s.%N)
"$bin" --config "$work/bench.toml" agent --brokers "$broker" --simulate "$machines" --duration "$seconds" \
    --speed 0 --start-time 2026-01-01T00:00:00Z 2>"$work/agent.log"
load_wall=$(python3 -c "import time; print(f'{time.time() - $load_start:.0f}')")
echo "backlog loaded in ${load_wall} s: $(grep '^auscult agent: [0-9]' "$work/agent.log")" >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for layout in $layouts; do
    processes="${layout%x*}"
    workers="${layout#*x}"
    export AUSCULT_KAFKA__STATE_TOPIC="auscult.state.$layout"
    "$bin" topics --brokers "$broker" --partitions 6 >/dev/null
    : >"$work/hosts-$layout.txt"
    for _ in $(seq "$processes"); do echo "127.0.0.1:$(free_port)" >>"$work/hosts-$layout.txt"; done
    start=$(date +%s.%N)
    pids=()
    for process in $(seq 0 $((processes - 1))); do
        "$bin" --config "$work/bench.toml" run --brokers "$broker" --group "g-$layout" --stop-when-idle "$idle_s" \
            --state kafka -w "$workers" --processes "$processes" --process "$process" \
            --hostfile "$work/hosts-$layout.txt" --events "$work/$layout-$process.jsonl" \
            --summary-json "$work/$layout-$process.json" 2>"$work/$layout-$process.log" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    python3 -c "import time; print(time.time() - $start)" >"$work/$layout.wall"
    echo "$layout: done" >&2
done

python3 - "$work" "$machines" "$seconds" "$idle_s" $layouts <<'PY'
import glob, json, sys
work, machines, seconds, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
audio_mb = machines * seconds * 16000 * 2 / 1e6
print(f"{machines} machines x {seconds:.0f} s ({audio_mb:.0f} MB of audio), 6 partitions, backlog loaded first, --state kafka")
print()
print("| processes x workers | chunks read | MB exchanged | MB between processes | wall s | x real time |")
print("|---|---|---|---|---|---|")
for layout in sys.argv[5:]:
    totals = [json.load(open(path))["totals"] for path in sorted(glob.glob(f"{work}/{layout}-*.json"))]
    read = sum(t["chunks_read"] for t in totals)
    exchanged = sum(t["bytes_exchanged"] for t in totals) / 1e6
    between = sum(t["bytes_exchanged_between_processes"] for t in totals) / 1e6
    # The wall time without the idle wait at the end.
    wall = float(open(f"{work}/{layout}.wall").read()) - idle
    print(f"| {layout} | {read} | {exchanged:.1f} | {between:.1f} | {wall:.1f} | {machines * seconds / wall:.0f} |")
PY
