#!/usr/bin/env bash
# The pipeline killed with SIGKILL at 5 random moments of one live run (`--state`), restarted
# after each, against a run that never crashed on the same audio. Prints what was sent, what
# came out, and the repeats consumers must drop (events by `event_id`, archive rows by
# machine and window start). Prints a markdown table for BENCHMARKS.md.
#
# Usage: bash bench/kafka_crashes.sh [KILLS] [SEED]     (from the repo root; default 5 1)
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-5}"
seed="${2:-1}"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/auscult"
py="$(bash scripts/python-env.sh | tail -n 1)"
work="$(mktemp -d)"
trap 'bash scripts/broker.sh stop "$work" >/dev/null 2>&1 || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT

broker="$(bash scripts/broker.sh start "$work" | tail -n 1)"
"$bin" topics --brokers "$broker" --partitions 4 >/dev/null
# Four machines for eight minutes at 20x real time (24 s of sending); faults start at 400 s.
"$bin" agent --brokers "$broker" --simulate 4 --duration 480 --speed 20 --start-time 2026-01-01T00:00:00Z \
    2>"$work/agent.log" &
agent=$!
crashing=(run --brokers "$broker" -w 2 --learning-s 20 --group crashing --state "$work/state" --archive "$work/archive")
RANDOM="$seed"
moments=()
for ((kill = 1; kill <= kills; kill++)); do
    "$bin" "${crashing[@]}" 2>>"$work/crashing.log" &
    running=$!
    moment="$((2 + RANDOM % 4)).$((RANDOM % 10))"
    moments+=("$moment")
    sleep "$moment"
    kill -9 "$running"
    wait "$running" 2>/dev/null || true
done
wait "$agent"
"$bin" "${crashing[@]}" --stop-when-idle 3 --summary-json "$work/final.json" 2>>"$work/crashing.log"
"$bin" run --brokers "$broker" -w 2 --learning-s 20 --group reference --stop-when-idle 3 \
    --events "$work/reference.jsonl" --archive "$work/reference-archive" 2>"$work/reference.log"

"$py" - "$work" "$broker" "${moments[*]}" <<'PY'
import json, sys
import duckdb
from kafka import KafkaConsumer
work, broker, moments = sys.argv[1], sys.argv[2], sys.argv[3]
consumer = KafkaConsumer("auscult.anomalies", bootstrap_servers=broker, auto_offset_reset="earliest",
                         consumer_timeout_ms=5000)
crash_events = [json.loads(record.value) for record in consumer]
reference = [json.loads(line) for line in open(f"{work}/reference.jsonl")]
by_id = {}
for event in crash_events:
    earlier = by_id.setdefault(event["event_id"], event)
    assert earlier == event, "a repeated event id with other content"
same_events = {e["event_id"]: e for e in reference} == by_id
rows = lambda folder: duckdb.sql(
    f"select machine_id, window_start::varchar, score from read_parquet('{work}/{folder}/**/*.parquet', hive_partitioning=true)"
).fetchall()
crash_rows, reference_rows = rows("archive"), rows("reference-archive")
same_rows = set(crash_rows) == set(reference_rows) and len(set(crash_rows)) == len(reference_rows)
keys = lambda rows: {(machine, start) for machine, start, _ in rows}
missing = keys(reference_rows) - keys(crash_rows)
extra = keys(crash_rows) - keys(reference_rows)
reference_score = {(machine, start): score for machine, start, score in reference_rows}
other_score = {(m, t) for m, t, score in crash_rows if (m, t) in reference_score and reference_score[(m, t)] != score}
sent = next(line for line in open(f"{work}/agent.log") if "chunks sent" in line and line.startswith("auscult agent:"))
print(f"kills at {moments} s after each start; agent: {sent.strip()}")
print()
print("| | reference run | killed 5 times, restarted | repeats to drop | equal after dropping them |")
print("|---|---|---|---|---|")
print(f"| anomaly events | {len(reference)} | {len(crash_events)} | {len(crash_events) - len(by_id)} | {same_events} |")
print(f"| archive rows | {len(reference_rows)} | {len(crash_rows)} | {len(crash_rows) - len(set(crash_rows))} | {same_rows} |")
print()
print(f"archive windows missing after the crashes: {len(missing)}, not in the reference: {len(extra)}, "
      f"scored differently: {len(other_score)}")
for machine, start in sorted(missing)[:5]:
    print(f"  missing: {machine} {start}")
PY
