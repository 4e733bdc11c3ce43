#!/usr/bin/env bash
# Coverage-guided fuzzing of the chunk decoder and the WAV reader with cargo-afl (AFL++), issue 10.
#
#   fuzz/run.sh [SECONDS]     fuzz each target for SECONDS (default 600), one after the other
#                             (AUSCULT_FUZZ_TARGETS="wav_read" for a subset)
#
# Installs cargo-afl once under ~/.cache/auscult/tools (reused when present; cargo-afl builds its
# bundled AFL++ with gcc/make at install, no LLVM plugins: instrumentation is rustc's own
# sancov pass on the stable toolchain). The targets build in their own target dir,
# ~/.cache/auscult/fuzz-target: an instrumented build has its own RUSTFLAGS and cannot share the
# main workspace's target dir without rebuilding everything there, both ways.
# Seeds come from fuzz/corpus/<target>/ (kept in the repo); AFL's output goes to
# $CARGO_TARGET_DIR/afl-out/<target>/. At the end the queue is minimised (afl-cmin) into
# afl-out/<target>/cmin; AUSCULT_FUZZ_UPDATE_CORPUS=1 also replaces fuzz/corpus/<target>/afl-*
# with the minimised inputs (at most 2 KiB each, named afl-<sha1 prefix>).
# Prints a table of the figures per target and exits non-zero if any target crashed.
# Everything runs under `nice -n 10`: the machine has 2 cores and other work on it.
set -euo pipefail

FUZZ_SECONDS=${1:-600}
HERE=$(cd "$(dirname "$0")" && pwd)
TOOLS=${AUSCULT_TOOLS_DIR:-$HOME/.cache/auscult/tools}
AFL_VERSION=0.18.2
read -r -a TARGETS <<<"${AUSCULT_FUZZ_TARGETS:-chunk_decode wav_read}"  # or a subset
export PATH="$TOOLS/bin:$PATH"
export CARGO_TARGET_DIR=${AUSCULT_FUZZ_TARGET_DIR:-$HOME/.cache/auscult/fuzz-target}
OUT="$CARGO_TARGET_DIR/afl-out"

if ! command -v cargo-afl >/dev/null 2>&1; then
    echo "== installing cargo-afl $AFL_VERSION into $TOOLS"
    CARGO_TARGET_DIR="$TOOLS/afl-build-target" nice -n 10 cargo install cargo-afl --locked --version "$AFL_VERSION" --root "$TOOLS"
    rm -rf "$TOOLS/afl-build-target"
fi
# cargo-afl builds AFL++ at install; build it here if that was skipped or the toolchain changed.
if ! config_out=$(nice -n 10 cargo afl config --build 2>&1); then
    grep -q "already built" <<<"$config_out" || { echo "$config_out" >&2; exit 1; }
fi

echo "== building ${TARGETS[*]} (instrumented, $CARGO_TARGET_DIR)"
(cd "$HERE" && nice -n 10 cargo afl build --release --locked --bins)

# This container: no CPU frequency governor to read, no core dump pattern to set, no UI, and
# no core binding (the other core may be busy with builds).
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1

for target in "${TARGETS[@]}"; do
    echo "== fuzzing $target for ${FUZZ_SECONDS}s"
    rm -rf "${OUT:?}/$target"
    mkdir -p "$OUT/$target"
    nice -n 10 cargo afl fuzz -V "$FUZZ_SECONDS" -t 1000 -i "$HERE/corpus/$target" -o "$OUT/$target" \
        "$CARGO_TARGET_DIR/release/$target" >"$OUT/$target/afl.log" 2>&1 || {
        echo "afl-fuzz failed for $target; the end of its log:" >&2
        tail -30 "$OUT/$target/afl.log" >&2
        exit 1
    }
done

afl_stat() { sed -n "s/^$2 *: *//p" "$OUT/$1/default/fuzzer_stats"; }
# `cargo afl cmin` runs AFL++'s Python afl-cmin, which here finds "0 unique tuples" in every file
# and writes nothing; AFL++'s afl-cmin.bash, built beside afl-fuzz, works. -e: edges only, not
# hit counts, so the kept set stays small.
afl_bin=$(ls -d "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-"$(rustc -V | cut -d' ' -f2)"-*/afl.rs-*/afl/bin | tail -1)
crashed=0
for target in "${TARGETS[@]}"; do
    rm -rf "${OUT:?}/$target/cmin"
    PATH="$afl_bin:$PATH" nice -n 10 "$afl_bin/afl-cmin.bash" -e -t 1000 -i "$OUT/$target/default/queue" \
        -o "$OUT/$target/cmin" -- "$CARGO_TARGET_DIR/release/$target" >"$OUT/$target/cmin.log" 2>&1 ||
        echo "cmin failed for $target, see $OUT/$target/cmin.log" >&2
    if [[ ${AUSCULT_FUZZ_UPDATE_CORPUS:-0} == 1 && -n $(ls -A "$OUT/$target/cmin" 2>/dev/null) ]]; then
        # The queue grew from the whole corpus, so its minimised set replaces the old afl-* files;
        # the hand-made seed-* files stay, and inputs equal to one of them are not copied.
        rm -f "$HERE/corpus/$target"/afl-*
        seeds=$(sha1sum "$HERE/corpus/$target"/seed-* | cut -d' ' -f1)
        for input in "$OUT/$target/cmin"/*; do
            sum=$(sha1sum "$input" | cut -d' ' -f1)
            if [[ $(wc -c <"$input") -le 2048 ]] && ! grep -q "$sum" <<<"$seeds"; then
                cp "$input" "$HERE/corpus/$target/afl-${sum:0:16}"
            fi
        done
    fi
done

printf '\n%-13s %8s %12s %9s %7s %7s %8s %6s\n' target seconds execs execs/s corpus cmin crashes hangs
for target in "${TARGETS[@]}"; do
    crashes=$(afl_stat "$target" saved_crashes)
    minimised=$(find "$OUT/$target/cmin" -type f 2>/dev/null | wc -l)
    printf '%-13s %8s %12s %9s %7s %7s %8s %6s\n' "$target" "$(afl_stat "$target" run_time)" \
        "$(afl_stat "$target" execs_done)" "$(afl_stat "$target" execs_per_sec)" "$(afl_stat "$target" corpus_count)" \
        "$minimised" "$crashes" "$(afl_stat "$target" saved_hangs)"
    if [[ $crashes != 0 ]]; then
        crashed=1
        echo "   $target crashed; inputs in $OUT/$target/default/crashes/" >&2
    fi
done
printf '\nfuzz/corpus: %s files, %s bytes\n' "$(find "$HERE/corpus" -type f | wc -l)" \
    "$(find "$HERE/corpus" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')"
exit "$crashed"
