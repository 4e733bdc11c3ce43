#!/usr/bin/env bash
# How many machines streaming 16 kHz audio in real time one machine sustains through the broker
# (agents, broker and pipeline all here), and the latency from the capture of a scored window's
# last sample to its score. Prints one markdown row for BENCHMARKS.md.
#
# Usage: bash bench/kafka_fleet.sh [MACHINES] [SECONDS]     (from the repo root; default 500 40)
#        STATE=1 bash bench/kafka_fleet.sh ...   also checkpoints every machine's state every 10 s
set -euo pipefail
cd "$(dirname "$0")/.."
machines="${1:-500}"
seconds="${2:-40}"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/auscult"
work="$(mktemp -d)"
trap 'bash scripts/broker.sh stop "$work" >/dev/null 2>&1 || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT

# Live settings: 250 ms chunks and epochs; a short learning span so most windows are scored.
checkpoint_s=60
state_args=()
if [[ -n "${STATE:-}" ]]; then
    checkpoint_s=10
    state_args=(--state "$work/state")
fi
printf '[stream]\nchunk_ms = 250\nepoch_ms = 250\ncheckpoint_s = %s\n[model]\nlearning_s = 10.0\n' "$checkpoint_s" >"$work/live.toml"
broker="$(bash scripts/broker.sh start "$work" | tail -n 1)"
"$bin" topics --brokers "$broker" --partitions 4 >/dev/null
"$bin" --config "$work/live.toml" run --brokers "$broker" -w 2 --stop-when-idle 120 "${state_args[@]}" \
    --events "$work/events.jsonl" --summary-json "$work/summary.json" 2>"$work/run.log" &
pipeline=$!
sleep 1
"$bin" --config "$work/live.toml" agent --brokers "$broker" --simulate "$machines" --duration "$seconds" \
    --speed 1 2>"$work/agent.log"
# The agent is done: give the pipeline a moment for the last chunks, then stop it cleanly.
sleep 3
kill -TERM "$pipeline"
wait "$pipeline"
grep '^auscult agent: [0-9]' "$work/agent.log" >&2
python3 - "$work/summary.json" "$machines" "$seconds" <<'PY'
import json, sys
totals = json.load(open(sys.argv[1]))["totals"]
machines, seconds = int(sys.argv[2]), float(sys.argv[3])
expected = machines * seconds * 4
print("| machines | checkpoints | chunks expected | chunks processed | audio s | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|---|")
print(f"| {machines} | {totals['checkpoints_written']} | {expected:.0f} | {totals['chunks_read']} | {totals['audio_s']:.0f} | "
      f"{totals['latency_p50_ms']:.0f} | {totals['latency_p99_ms']:.0f} |")
PY
