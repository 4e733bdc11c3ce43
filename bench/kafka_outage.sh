#!/usr/bin/env bash
# The broker (tansu, SQLite storage) stopped for DOWN seconds while an agent streams 4 machines
# in real time and the pipeline runs live; then restarted. MODE is how it stops: `term` (SIGTERM,
# the repo's `broker.sh stop`) or `kill` (SIGKILL, a crash). Prints what the agent sent and the
# topic holds, the pipeline's CPU while the broker was away and how long it took to stop on
# SIGTERM, and compares its events and archive windows (repeats dropped) with a reference run
# over the same topic afterwards.
#
# Usage: bash bench/kafka_outage.sh [MODE] [DOWN]     (from the repo root; default term 30)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-term}"
down="${2:-30}"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/auscult"
py="$(bash scripts/python-env.sh | tail -n 1)"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; bash scripts/broker.sh stop "$work/broker" >/dev/null 2>&1 || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT
export AUSCULT_BROKER_STORAGE="sqlite://tansu.db"

broker="$(bash scripts/broker.sh start "$work/broker" | tail -n 1)"
port="${broker##*:}"
"$bin" topics --brokers "$broker" --partitions 4 >/dev/null
seconds=$((down + 110))  # the simulated faults start 120 s in (20 s of learning + 100 s)
"$bin" agent --brokers "$broker" --simulate 4 --duration "$seconds" --speed 1 2>"$work/agent.log" &
agent=$!
"$bin" run --brokers "$broker" -w 2 --learning-s 20 --group live --events "$work/live.jsonl" \
    --archive "$work/live-archive" --summary-json "$work/live.json" 2>"$work/live.log" &
pipeline=$!
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sleep 20
ticks_before="$(cpu "$pipeline")"
if [[ "$mode" == kill ]]; then
    kill -9 "$(cat "$work/broker/broker.pid")"
else
    bash scripts/broker.sh stop "$work/broker"
fi
sleep "$down"
ticks_after="$(cpu "$pipeline")"
kill -0 "$pipeline" || { echo "the pipeline exited while the broker was away" >&2; exit 1; }
bash scripts/broker.sh start "$work/broker" "$port" >/dev/null
agent_status=0
wait "$agent" || agent_status=$?
sleep 15
stop_started="$(date +%s.%N)"
kill -TERM "$pipeline"
wait "$pipeline"
stop_s="$(echo "$(date +%s.%N) - $stop_started" | bc)"
"$bin" run --brokers "$broker" -w 2 --learning-s 20 --group reference --stop-when-idle 5 \
    --events "$work/reference.jsonl" --archive "$work/reference-archive" 2>"$work/reference.log"
hz="$(getconf CLK_TCK)"

"$py" - "$work" "$broker" "$mode" "$down" "$agent_status" "$stop_s" "$ticks_before" "$ticks_after" "$hz" <<'PY'
import json, struct, sys
import duckdb
from kafka import KafkaConsumer
work, broker, mode, down, agent_status, stop_s, before, after, hz = sys.argv[1:]
cpu_share = (int(after) - int(before)) / int(hz) / int(down)
consumer = KafkaConsumer("auscult.audio", bootstrap_servers=broker, auto_offset_reset="earliest",
                         consumer_timeout_ms=5000)
chunks = []
for record in consumer:
    length = struct.unpack("<I", record.value[6:10])[0]
    header = json.loads(record.value[10:10 + length])
    chunks.append((header["machine_id"], header["sequence"]))
distinct = set(chunks)
expected = {(m, s) for m, _ in distinct for s in range(max(q for n, q in distinct if n == m) + 1)}
rows = lambda folder: duckdb.sql(
    f"select machine_id, window_start::varchar, score from read_parquet('{work}/{folder}/**/*.parquet', hive_partitioning=true)"
).fetchall()
live, reference = rows("live-archive"), rows("reference-archive")
live_keys = {(m, t) for m, t, _ in live}
reference_keys = {(m, t) for m, t, _ in reference}
events = lambda path: {json.loads(line)["event_id"] for line in open(path)}
live_events, reference_events = events(f"{work}/live.jsonl"), events(f"{work}/reference.jsonl")
sent = next(line.strip() for line in open(f"{work}/agent.log") if line.startswith("auscult agent:") and "chunks sent" in line)
print(f"broker stopped by {'SIGTERM' if mode == 'term' else 'SIGKILL'} for {down} s; agent exit {agent_status}: {sent}")
print()
print("| | |")
print("|---|---|")
print(f"| chunks in the topic | {len(chunks)} ({len(chunks) - len(distinct)} repeats), {len(expected - distinct)} of {len(expected)} missing |")
print(f"| pipeline CPU while the broker was away | {cpu_share:.1%} of a core |")
print(f"| pipeline stop on SIGTERM | {float(stop_s):.1f} s |")
print(f"| archive windows, live run | {len(live)} rows, {len(live_keys)} windows ({len(live) - len(live_keys)} repeats) |")
print(f"| archive windows, reference run | {len(reference_keys)}; live missing {len(reference_keys - live_keys)}, extra {len(live_keys - reference_keys)} |")
print(f"| events, live / reference | {len(live_events)} / {len(reference_events)}; equal: {live_events == reference_events} |")
PY
