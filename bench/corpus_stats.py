"""What separates one corpus's machines from another's, in the statistics that decide whether
frame-level or clip-level models win (issue 13 item 5: the simulator must rank methods as real
audio does).

    PY=$(bash scripts/python-env.sh | tail -n 1)
    "$PY" bench/corpus_stats.py ../shared/data/mimii /tmp/sim6      # any DCASE- or MIMII-layout folders

Per machine, on the baseline's librosa log-mel frames (bench/peers.py), then the geometric mean
over machines (a single machine's figures are in the per-machine rows):

- frame sd: a band's standard deviation over the frames of one normal clip (dB, mean over bands);
- take sd: the standard deviation of a band's clip mean over the normal clips, each clip's mean
  level over bands removed first (dB): how much recorded takes differ in spectral shape;
- peak sd: the same for the clip's peak level over its mean (GWRP r = 0.9 minus the mean);
- fault/normal, mean and peak: an anomalous clip's squared deviation from the normals, over a
  held-out normal clip's, each band in its take sd (leave one normal out; 1 means faults move the
  clip-level feature no more than another normal take does);
- mean part, full / diagonal: the AUC of a clip's mean-level distance from the normals under the
  pooled frames' Ledoit-Wolf covariance, and under its diagonal. What a frame-level Mahalanobis
  score gains from cross-band covariance: above the diagonal when faults move the spectrum in
  directions that frames rarely move in, below it when normal takes do that as much as faults;
- take z2, first 8 / next 24 / last 96: a held-out normal clip's mean-level offset from the other
  normals, projected on the principal directions of their pooled frames (Ledoit-Wolf), squared
  and divided by each direction's variance, then averaged over the directions ranked 1-8, 9-32
  and 33-128 by variance (leave one out). Near 0 when takes differ only where frames vary most
  (loudness); near the frames' own variance when a take's shape is as novel as a frame's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (the same features, layout and pooling as the peers)

SD_FLOOR_DB = 0.25
COLUMNS = [
    "frame sd",
    "take sd",
    "peak sd",
    "fault/normal mean",
    "fault/normal peak",
    "mean part full",
    "mean part diag",
    "take z2 first 8",
    "next 24",
    "last 96",
]
DIRECTION_GROUPS = [(0, 8), (8, 32), (32, None)]


def peak_level(frames: np.ndarray) -> np.ndarray:
    return peers.clip_vector(frames)[frames.shape[1]:]


def held_out_ratio(normal_values: np.ndarray, anomalous_values: np.ndarray) -> float:
    """Mean squared z of anomalous clips over that of held-out normals (one clip's feature vector
    a row), z per band in the take sd."""
    normal_z, anomalous_z = [], []
    for index, held in enumerate(normal_values):
        rest = np.delete(normal_values, index, axis=0)
        mean, sd = rest.mean(0), rest.std(0, ddof=1) + SD_FLOOR_DB
        normal_z.append(np.mean(((held - mean) / sd) ** 2))
        anomalous_z.append(np.mean(((anomalous_values[index % len(anomalous_values)] - mean) / sd) ** 2))
    return float(np.mean(anomalous_z) / np.mean(normal_z))


def mean_part_aucs(normals: list[np.ndarray], anomalies: list[np.ndarray]) -> tuple[float, float]:
    """AUC of the clip-mean distance under the frames' full and diagonal covariance (leave one out)."""
    scores: dict[str, list[float]] = {"full": [], "diag": []}
    labels = []
    for index, held in enumerate(normals):
        rest = [c for j, c in enumerate(normals) if j != index]
        model = LedoitWolf().fit(np.concatenate(rest))
        precisions = {"full": model.precision_, "diag": np.diag(1.0 / np.diag(model.covariance_))}
        tested = [(held, False)] + ([(anomalies[index], True)] if index < len(anomalies) else [])
        for clip, anomalous in tested:
            offset = clip.mean(0) - model.location_
            for name, precision in precisions.items():
                scores[name].append(float(offset @ precision @ offset))
            labels.append(anomalous)
    return roc_auc_score(labels, scores["full"]), roc_auc_score(labels, scores["diag"])


def take_direction_z2(normals: list[np.ndarray]) -> list[float]:
    """Held-out takes' squared offsets along the other takes' principal frame directions, in
    units of each direction's variance, averaged per group of directions (leave one out)."""
    sums = np.zeros(len(DIRECTION_GROUPS))
    for index, held in enumerate(normals):
        model = LedoitWolf().fit(np.concatenate([c for j, c in enumerate(normals) if j != index]))
        variances, directions = np.linalg.eigh(model.covariance_)
        order = np.argsort(variances)[::-1]
        z2 = (directions[:, order].T @ (held.mean(0) - model.location_)) ** 2 / variances[order]
        sums += [z2[start:end].mean() for start, end in DIRECTION_GROUPS]
    return list(sums / len(normals))


def machine_stats(normals: list[np.ndarray], anomalies: list[np.ndarray]) -> list[float]:
    means = np.stack([c.mean(0) for c in normals])
    levels = np.stack([peak_level(c) for c in normals])
    anomalous_means = np.stack([c.mean(0) for c in anomalies])
    anomalous_levels = np.stack([peak_level(c) for c in anomalies])
    shapes = means - means.mean(1, keepdims=True)
    full, diagonal = mean_part_aucs(normals, anomalies)
    return [
        float(np.sqrt(np.mean([c.var(0) for c in normals], 0)).mean()),
        float(shapes.std(0, ddof=1).mean()),
        float((levels - means).std(0, ddof=1).mean()),
        held_out_ratio(means, anomalous_means),
        held_out_ratio(levels, anomalous_levels),
        full,
        diagonal,
        *take_direction_z2(normals),
    ]


def corpus_stats(root: Path, clips_per_machine: int) -> list[tuple[str, list[float]]]:
    rows = []
    for (_, machine_id), files in peers.group_files(peers.walk_wavs(root)).items():
        normal_paths = [p for p, _, anomalous in files if not anomalous][:clips_per_machine]
        anomalous_paths = [p for p, _, anomalous in files if anomalous][:clips_per_machine]
        features = peers.extract_features(normal_paths + anomalous_paths)
        normals = [features[p].astype(np.float64) for p in normal_paths if p in features]
        anomalies = [features[p].astype(np.float64) for p in anomalous_paths if p in features]
        if len(normals) < 3 or not anomalies:
            peers.note(f"{machine_id}: fewer than 3 normal or no anomalous clips; left out")
            continue
        rows.append((machine_id, machine_stats(normals, anomalies)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", nargs="+", type=Path, help="DCASE- or MIMII-layout folders")
    parser.add_argument("--clips", type=int, default=10, help="normal and anomalous clips per machine (default 10)")
    parser.add_argument("--per-machine", action="store_true", help="print every machine's row too")
    args = parser.parse_args(argv)
    print("| corpus | machines | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for root in args.corpora:
        if not root.is_dir():
            print(f"{root}: not a folder", file=sys.stderr)
            return 2
        rows = corpus_stats(root, args.clips)
        if not rows:
            print(f"{root}: no machine with normal and anomalous clips", file=sys.stderr)
            return 2
        if args.per_machine:
            for machine_id, values in rows:
                print(f"| {root} {machine_id} | 1 | " + " | ".join(f"{v:.2f}" for v in values) + " |")
        summary = np.exp(np.mean(np.log([values for _, values in rows]), axis=0))
        print(f"| {root} | {len(rows)} | " + " | ".join(f"{v:.2f}" for v in summary) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
