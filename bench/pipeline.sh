#!/usr/bin/env bash
# The whole offline pipeline (WAV files in, events and Parquet archive out) on a simulated
# corpus, with 1 and 2 workers, in x real time. Prints a markdown table for BENCHMARKS.md.
#
# Usage: bash bench/pipeline.sh [REPEATS]     (from the repo root; builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
repeats="${1:-3}"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/auscult"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 4 types x 8 ids x (20 train + 5 + 5 test) clips of 10 s = 9,600 s of 16 kHz audio, 32 machines.
"$bin" simulate "$work/corpus" --snr 0 --seed 11 --ids 8 --train 20 --test-normal 5 --test-anomaly 5 >/dev/null 2>&1
audio_files=$(find "$work/corpus" -name '*.wav' | wc -l)

best() { sort -g | head -n 1; }
declare -A wall
for workers in 1 2; do
    times=()
    for _ in $(seq "$repeats"); do
        rm -rf "$work/archive" "$work/events.jsonl"
        "$bin" run --input "$work/corpus" -w "$workers" --events "$work/events.jsonl" \
            --archive "$work/archive" --summary-json "$work/summary-$workers.json" 2>/dev/null
        times+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["wall_s"])' "$work/summary-$workers.json")")
    done
    wall[$workers]=$(printf '%s\n' "${times[@]}" | best)
done
audio_s=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["audio_s"])' "$work/summary-1.json")
rows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["archive_rows"])' "$work/summary-1.json")

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; corpus: $audio_files WAV files, ${audio_s} s of audio, ${rows} archive rows; best of $repeats"
echo
echo "| workers | wall s | x real time | speed-up vs 1 worker |"
echo "|---|---|---|---|"
for workers in 1 2; do
    python3 - "$audio_s" "${wall[$workers]}" "${wall[1]}" "$workers" <<'PY'
import sys
audio, wall, wall1, workers = map(float, sys.argv[1:5])
print(f"| {int(workers)} | {wall:.3f} | {audio / wall:,.0f} | {wall1 / wall:.2f}x |")
PY
done
