#!/usr/bin/env bash
# Issue 13 item 5: do auscult, the diagonal clip-level Gaussian (diag) and the DCASE autoencoder
# (ae) come out in the same order on the simulator's default corpus as on the real MIMII clips?
# Runs `auscult eval` and bench/peers.py on both, on the same splits (real: 5 folds; simulated:
# its own train/test split; the autoencoder trained 25 epochs, as in BENCHMARKS.md's simulator
# tables), prints one markdown table of mean AUC / pAUC and each corpus's order by AUC, and
# exits 1 when the orders differ. About 8 minutes on 2 cores.
#
# Usage: bash bench/method_order.sh [SEED] [MIMII_DIR]   (from the repo root; builds the binary)
#   SEED       the simulator's seed (default 1, the default corpus)
#   MIMII_DIR  the real clips (default ../shared/data/mimii)
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-1}"
real="${2:-../shared/data/mimii}"
[[ -d "$real" ]] || { echo "method_order: $real: not a folder (the real MIMII clips)" >&2; exit 2; }
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/auscult"
py="$(bash scripts/python-env.sh | tail -n 1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$bin" simulate "$work/sim" --seed "$seed" >/dev/null 2>&1
"$bin" eval "$work/sim" -w 2 --json "$work/sim-eval.json" >/dev/null 2>&1
"$bin" eval "$real" --folds 5 -w 2 --json "$work/real-eval.json" >/dev/null 2>&1
for corpus in sim real; do
    dir="$work/sim"
    [[ "$corpus" == real ]] && dir="$real"
    "$py" bench/peers.py "$dir" --methods ae,diag --ae-epochs 25 --auscult-json "$work/$corpus-eval.json" \
        --json "$work/$corpus-peers.json" >/dev/null 2>"$work/$corpus-peers.err" \
        || { cat "$work/$corpus-peers.err" >&2; exit 2; }
done

"$py" - "$work" "$seed" <<'EOF'
import json, sys

def means(corpus):
    """Mean AUC and pAUC over machines: the peers' from their JSON, auscult's from its eval JSON."""
    peers = json.load(open(f"{sys.argv[1]}/{corpus}-peers.json"))["methods"]
    table = {name: (peers[name]["mean"]["auc"], peers[name]["mean"]["pauc"]) for name in ("diag", "ae")}
    auscult = json.load(open(f"{sys.argv[1]}/{corpus}-eval.json"))["mean"]
    table["auscult"] = (auscult["auc"], auscult["pauc"])
    return table

real, sim = means("real"), means("sim")
print(f"| corpus | auscult AUC / pAUC | diag AUC / pAUC | ae AUC / pAUC | order by AUC |")
print("|---|---|---|---|---|")
orders = {}
for label, table in (("real MIMII -6 dB, 5 folds", real), (f"`auscult simulate --seed {sys.argv[2]}` (6 dB)", sim)):
    order = sorted(table, key=lambda name: -table[name][0])
    orders[label] = order
    cells = " | ".join(f"{table[name][0]:.3f} / {table[name][1]:.3f}" for name in ("auscult", "diag", "ae"))
    print(f"| {label} | {cells} | {' > '.join(order)} |")
same = len({tuple(order) for order in orders.values()}) == 1
print("\nsame order on both corpora" if same else "\nTHE ORDERS DIFFER: the simulator is not telling the truth")
sys.exit(0 if same else 1)
EOF
