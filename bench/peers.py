#!/usr/bin/env python3
"""Peer baselines for `auscult eval`: the same corpus, the same split, the published methods.

`auscult eval DIR` reports anomaly-detection AUC and pAUC per machine. To know whether those
numbers are good, this script runs the published peer baselines on the same labelled corpus
with the same train/test split, using librosa features, and prints their table next to
auscult's, with the wall time of each method.

Run from the repository root:

    PY=$(bash scripts/python-env.sh | tail -n 1)
    "$PY" bench/peers.py DIR                                   # peers only, own split
    auscult eval DIR --json eval.json
    "$PY" bench/peers.py DIR --auscult-json eval.json          # split taken from auscult's JSON
    "$PY" bench/peers.py DIR --auscult-json eval.json --auscult-time 0.4 --json peers.json
    "$PY" bench/peers.py DIR --folds 5                         # 5-fold cross-validation, own folds
    auscult eval DIR --folds 5 --json eval.json
    "$PY" bench/peers.py DIR --auscult-json eval.json          # folds taken from auscult's JSON

Corpus layouts (as `auscult eval` reads them):
  - DCASE 2020 Task 2: TYPE/train/normal_id_XX_*.wav (train), TYPE/test/{normal,anomaly}_id_XX_*.wav
    (test);
  - MIMII: TYPE/id_XX/{normal,abnormal}/*.wav, possibly below a `<snr>_dB_<type>` folder. Per machine
    the files are sorted by path; the test set is every abnormal clip plus the first K normal clips
    (K = number of abnormal clips), the remaining normals train.
Folders named `original_8ch` and WAV files that fit neither layout are skipped with a note on
stderr. With --auscult-json, each machine found there uses that JSON's `train_files` and
`clips[].path/anomalous` as its split (authoritative); other machines use the split above.

Cross-validation (--folds K, K >= 2; for unsplit MIMII corpora): per machine, the unsplit normal
clips sorted by path (n of them) are dealt into K folds: fold k tests the normals with index i
(0-based) where i*K//n == k, plus every abnormal clip, and trains on the other normals. Each method
is fitted and scored once per fold. A machine in the DCASE layout has a fixed split; it gets that
same split in every fold (noted on stderr). When the --auscult-json rows carry a `fold` field (as
`auscult eval --folds K --json` writes them: one row per machine and fold, and `"folds": K` at the
top level), the folds are taken from the JSON: each (machine, fold) row gives that fold's split
(authoritative) and auscult's AUC/pAUC for it; K is the JSON's, and --folds, if given, must agree.
A machine or fold missing from the JSON uses the folds above. Fold results are aggregated as:
per machine, the mean and standard deviation over folds; per type and over all machines, the mean
over machines of their fold means, and the standard deviation over folds of the per-fold means
over those machines. Standard deviations are population ones (ddof=0). A fold whose AUC is
undefined (e.g. no test normal when n < K) is left out of its means.

Features (the DCASE 2020 Task 2 baseline's): channel 0 at the file's own rate,
librosa.feature.melspectrogram(n_fft=1024, hop_length=512, n_mels=128, power=2.0),
10*log10(mel + float eps); extracted once per clip and shared by the methods.

Peers (--methods, default all three):
  ae    the DCASE 2020 Task 2 baseline autoencoder, one model per machine type on 5-frame (640-dim)
        vectors: Dense 640-128-128-128-128-8-128-128-128-128-640, BatchNorm + ReLU after every hidden
        layer, MSE, Adam(1e-3), 100 epochs, batch 512, shuffled, last 10% held out for validation
        (keras' validation_split). NumPy float32 (PyTorch is not available). Clip score = mean over
        its vectors of the mean squared reconstruction error.
  maha  per machine, Ledoit-Wolf mean and precision of the single 128-mel log frames; clip score =
        mean squared Mahalanobis distance of its frames.
  diag  the diagonal clip-level Gaussian: per clip one 256-dim vector, [per band, the mean of its
        log-mel frames; per band, the GWRP-pooled level: the band's values over the clip sorted
        descending, weighted r^rank (rank 0 first, r = 0.9) and divided by the sum of weights].
        Per machine, the mean and standard deviation (ddof=0) of the training clips' vectors, each
        standard deviation plus 0.5 dB; clip score = mean over the 256 dims of ((x - mean) / sd)^2.

Metrics: sklearn roc_auc_score (AUC) and roc_auc_score(max_fpr=0.1) (pAUC, McClish-standardized,
as DCASE and auscult report it). Output: markdown tables on stdout (per machine; mean per type and
over all machines; wall time: feature extraction, each method's fit+score, and auscult's time when
given), progress on stderr, optionally JSON (--json). With folds, the machine and mean tables show
mean ± std over folds, a further table gives each fold's mean over machines, the wall times are
summed over folds, and the JSON holds every fold's rows and the aggregates. Features are extracted
once per clip whatever the number of folds. BLAS runs on --threads threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

# The DCASE 2020 Task 2 baseline's feature parameters.
N_FFT = 1024
HOP = 512
N_MELS = 128
POWER = 2.0
FRAMES = 5
PAUC_MAX_FPR = 0.1
METHODS = ("ae", "maha", "diag")
GWRP_R = 0.9
DIAG_SD_FLOOR_DB = 0.5
SKIPPED_FOLDER = "original_8ch"
SNR_FOLDER = re.compile(r"^-?\d+_dB_(.+)$")
DCASE_NAME = re.compile(r"^(normal|anomaly)_id_([^_]+)_.+$")


@dataclass
class Machine:
    """One machine's split; `machine_id` is spelled as auscult spells it (`TYPE-id_XX`)."""

    machine_type: str
    machine_id: str
    train: list[Path]
    test: list[tuple[Path, bool]]
    auscult: dict | None = None
    fold: int | None = None


@dataclass
class AeConfig:
    """The DCASE 2020 baseline's keras training parameters."""

    epochs: int = 100
    batch_size: int = 512
    validation_split: float = 0.1
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-7
    bn_momentum: float = 0.99
    bn_eps: float = 1e-3
    hidden: tuple[int, ...] = (128, 128, 128, 128, 8, 128, 128, 128, 128)


@dataclass
class MethodResult:
    """Per-machine rows of one method and its fit+score wall time."""

    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Corpus discovery and split (mirrors connectors/src/layout.rs and pipeline/src/eval/mod.rs)
# ---------------------------------------------------------------------------------------------


def walk_wavs(root: Path) -> list[Path]:
    """Every .wav below root, sorted, following folder links once; original_8ch is skipped."""
    wavs: list[Path] = []
    visited: set[str] = set()
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            note(f"{folder}: a link to a folder already walked; not entered again")
            dirnames[:] = []
            continue
        visited.add(real)
        kept = []
        for name in sorted(dirnames):
            if name == SKIPPED_FOLDER:
                note(f"{Path(folder) / name}: skipped: multi-channel originals (the mono copies are used)")
            else:
                kept.append(name)
        dirnames[:] = kept
        wavs.extend(Path(folder) / name for name in filenames if name.lower().endswith(".wav"))
    return sorted(wavs)


def identify(path: Path) -> tuple[str, str, str, bool] | None:
    """(type, machine id, split, anomalous) from a path; split is train, test or unsplit."""
    folder = path.parent.name
    if folder in ("train", "test"):
        match = DCASE_NAME.match(path.stem)
        machine_type = path.parent.parent.name
        if not match or not machine_type:
            return None
        return machine_type, f"{machine_type}-id_{match.group(2)}", folder, match.group(1) == "anomaly"
    if folder in ("normal", "abnormal"):
        id_folder = path.parent.parent.name
        type_folder = path.parent.parent.parent.name
        if not id_folder.startswith("id_") or len(id_folder) == 3 or not type_folder:
            return None
        snr = SNR_FOLDER.match(type_folder)
        machine_type = snr.group(1) if snr else type_folder
        return machine_type, f"{machine_type}-{id_folder}", "unsplit", folder == "abnormal"
    return None


def group_files(wavs: list[Path]) -> dict[tuple[str, str], list[tuple[Path, str, bool]]]:
    """Files by (type, machine id), each machine's sorted by path: (path, split, anomalous)."""
    by_machine: dict[tuple[str, str], list[tuple[Path, str, bool]]] = defaultdict(list)
    unfit: dict[Path, int] = defaultdict(int)
    for path in wavs:
        found = identify(path)
        if found is None:
            unfit[path.parent] += 1
            continue
        machine_type, machine_id, split, anomalous = found
        by_machine[(machine_type, machine_id)].append((path, split, anomalous))
    for folder, count in sorted(unfit.items()):
        note(f"{folder}: {count} .wav file(s) fit neither the DCASE nor the MIMII layout; skipped")
    for files in by_machine.values():
        files.sort(key=lambda item: item[0])
    return dict(sorted(by_machine.items()))


def split_machines(wavs: list[Path]) -> list[Machine]:
    """Groups files by machine and splits them exactly as `auscult eval` does."""
    machines = []
    for (machine_type, machine_id), files in group_files(wavs).items():
        normals_for_test = sum(1 for _, split, anomalous in files if split == "unsplit" and anomalous)
        train: list[Path] = []
        test: list[tuple[Path, bool]] = []
        for path, split, anomalous in files:
            if split == "train" and not anomalous:
                train.append(path)
            elif split in ("train", "test") or anomalous:
                test.append((path, anomalous))
            elif normals_for_test > 0:
                normals_for_test -= 1
                test.append((path, False))
            else:
                train.append(path)
        machines.append(Machine(machine_type, machine_id, train, test))
    return machines


def fold_machines(wavs: list[Path], folds: int) -> list[list[Machine]]:
    """K cross-validation splits: per machine, fold k tests the unsplit normals with index i
    (sorted by path, n of them) where i*K//n == k, plus every anomalous clip; the other normals
    train. DCASE train/test files keep their fixed split in every fold."""
    splits: list[list[Machine]] = [[] for _ in range(folds)]
    fixed = []
    for (machine_type, machine_id), files in group_files(wavs).items():
        n = sum(1 for _, split, anomalous in files if split == "unsplit" and not anomalous)
        if any(split != "unsplit" for _, split, _ in files):
            fixed.append(machine_id)
        for k in range(folds):
            train: list[Path] = []
            test: list[tuple[Path, bool]] = []
            i = 0
            for path, split, anomalous in files:
                if split == "train" and not anomalous:
                    train.append(path)
                elif split in ("train", "test") or anomalous:
                    test.append((path, anomalous))
                else:
                    if i * folds // n == k:
                        test.append((path, False))
                    else:
                        train.append(path)
                    i += 1
            splits[k].append(Machine(machine_type, machine_id, train, test, fold=k))
        if 0 < n < folds:
            note(f"{machine_id}: {n} unsplit normal clip(s) for {folds} folds; folds without a test normal have no AUC")
    if fixed:
        note(f"{len(fixed)} machine(s) in the DCASE layout ({', '.join(fixed)}): their fixed split is used in every fold")
    return splits


def id_key(machine_type: str, machine_id: str) -> tuple[str, str]:
    """Matches `fan-id_00` and `id_00` alike."""
    prefix = f"{machine_type}-"
    return machine_type, machine_id[len(prefix):] if machine_id.startswith(prefix) else machine_id


def machine_from_row(row: dict, fold: int | None = None) -> Machine:
    """One row of `auscult eval --json`: its machine, split and auscult's AUC / pAUC."""
    return Machine(
        str(row["machine_type"]),
        str(row["machine_id"]),
        [Path(p) for p in row.get("train_files", [])],
        [(Path(c["path"]), bool(c["anomalous"])) for c in row.get("clips", [])],
        {"auc": row.get("auc"), "pauc": row.get("pauc")},
        fold=fold,
    )


def apply_auscult_split(machines: list[Machine], document: dict, source: Path) -> list[Machine]:
    """Machines in auscult's JSON take its split and metrics; the others keep their own."""
    rows = document.get("rows")
    if not isinstance(rows, list):
        raise SystemExit(f"{source}: not an `auscult eval --json` file (no `rows` list)")
    by_key = {id_key(m.machine_type, m.machine_id): m for m in machines}
    own = set(by_key)
    for row in rows:
        machine_type, machine_id = str(row["machine_type"]), str(row["machine_id"])
        machine = machine_from_row(row)
        key = id_key(machine_type, machine_id)
        if key not in by_key:
            note(f"{source}: machine {machine_id} is not in the corpus folder; evaluated from the JSON's paths")
        by_key[key] = machine
        own.discard(key)
    note(f"{source}: auscult's split for {len(rows)} machine(s); {len(own)} other(s) keep the corpus split")
    return [by_key[key] for key in sorted(by_key)]


def auscult_fold_count(document: dict, source: Path) -> int | None:
    """K when the JSON's rows carry `fold` (auscult eval --folds K); None for a single split."""
    rows = document.get("rows")
    if not isinstance(rows, list):
        raise SystemExit(f"{source}: not an `auscult eval --json` file (no `rows` list)")
    with_fold = [row for row in rows if "fold" in row]
    if not with_fold:
        return None
    if len(with_fold) != len(rows):
        raise SystemExit(f"{source}: {len(with_fold)} of {len(rows)} rows carry a `fold`; expected all or none")
    folds = [row["fold"] for row in rows]
    if not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in folds):
        raise SystemExit(f"{source}: every row's `fold` must be a non-negative integer")
    top = document.get("folds")
    if top is None:
        count = max(folds) + 1
        note(f"{source}: no top-level `folds`; {count} folds from the rows' `fold` fields")
    elif not isinstance(top, int) or isinstance(top, bool) or top < 2:
        raise SystemExit(f"{source}: `folds` must be an integer of at least 2, not {top!r}")
    else:
        count = top
    if max(folds) >= count:
        raise SystemExit(f"{source}: a row's `fold` {max(folds)} is out of range for {count} folds")
    return count


def resolved(paths) -> set[str]:
    return {os.path.realpath(p) for p in paths}


def apply_auscult_folds(splits: list[list[Machine]], document: dict, source: Path) -> list[list[Machine]]:
    """Each (machine, fold) row of auscult's JSON gives that fold's split and metrics."""
    folds = len(splits)
    by_key = [{id_key(m.machine_type, m.machine_id): m for m in split} for split in splits]
    own = [set(keys) for keys in by_key]
    seen: set[tuple[str, str, int]] = set()
    from_json: set[tuple[str, str]] = set()
    for row in document["rows"]:
        machine_type, machine_id, k = str(row["machine_type"]), str(row["machine_id"]), int(row["fold"])
        key = id_key(machine_type, machine_id)
        if (*key, k) in seen:
            raise SystemExit(f"{source}: two rows for machine {machine_id} fold {k}")
        seen.add((*key, k))
        from_json.add(key)
        machine = machine_from_row(row, fold=k)
        mine = by_key[k].get(key)
        if mine is None:
            note(f"{source}: machine {machine_id} is not in the corpus folder; evaluated from the JSON's paths")
        elif resolved(mine.train) != resolved(machine.train) or resolved(p for p, _ in mine.test) != resolved(
            p for p, _ in machine.test
        ):
            note(f"{source}: machine {machine_id} fold {k}: auscult's split differs from this script's; auscult's is used")
        by_key[k][key] = machine
        own[k].discard(key)
    for key in sorted(from_json):
        missing = [k for k in range(folds) if (*key, k) not in seen]
        if missing:
            note(f"{source}: machine {key[0]} {key[1]} has no row for fold(s) {missing}; those use this script's folds")
    others = set().union(*own) - from_json
    note(
        f"{source}: auscult's folds for {len(from_json)} machine(s) ({len(seen)} rows, {folds} folds); "
        f"{len(others)} other(s) keep this script's folds"
    )
    return [[keys[key] for key in sorted(keys)] for keys in by_key]


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


class UnreadableClip(Exception):
    pass


def log_mel(path: Path) -> np.ndarray:
    """The baseline's log-mel frames of channel 0, shape (frames, 128), float32."""
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, ValueError) as error:
        raise UnreadableClip(f"{path}: cannot read the WAV file: {error}") from error
    y = np.ascontiguousarray(audio[:, 0])
    if not np.all(np.isfinite(y)):
        raise UnreadableClip(f"{path}: the audio holds non-finite samples")
    if 1 + len(y) // HOP < FRAMES:
        raise UnreadableClip(f"{path}: {len(y)} samples are fewer than {FRAMES} frames of hop {HOP}")
    try:
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, power=POWER)
    except (librosa.ParameterError, ValueError) as error:
        raise UnreadableClip(f"{path}: cannot compute the mel spectrogram: {error}") from error
    frames = (20.0 / POWER * np.log10(mel + sys.float_info.epsilon)).T.astype(np.float32)
    return np.ascontiguousarray(frames)


def extract_features(paths: list[Path]) -> dict[Path, np.ndarray]:
    """Log-mel frames of every readable clip; each unreadable one is named on stderr."""
    features = {}
    for path in paths:
        try:
            features[path] = log_mel(path)
        except UnreadableClip as error:
            note(f"skipped: {error}")
    return features


def readable(machine: Machine, features: dict[Path, np.ndarray]) -> Machine:
    """The machine's split without the clips whose features could not be computed."""
    return Machine(
        machine.machine_type,
        machine.machine_id,
        [p for p in machine.train if p in features],
        [(p, a) for p, a in machine.test if p in features],
        machine.auscult,
        machine.fold,
    )


def stacked_starts(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All clips' frames end to end, and the first-frame index of every 5-frame vector."""
    frames = np.concatenate(clips) if clips else np.zeros((0, N_MELS), np.float32)
    starts, offset = [], 0
    for clip in clips:
        starts.append(offset + np.arange(len(clip) - FRAMES + 1))
        offset += len(clip)
    return frames, (np.concatenate(starts) if starts else np.zeros(0, np.int64))


def gather_vectors(frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The baseline's vector_array rows: frame t of each vector at columns [128 t, 128 (t + 1))."""
    return frames[starts[:, None] + np.arange(FRAMES)].reshape(len(starts), FRAMES * N_MELS)


# ---------------------------------------------------------------------------------------------
# The DCASE 2020 autoencoder, in NumPy
# ---------------------------------------------------------------------------------------------


class Autoencoder:
    """Dense layers with BatchNorm + ReLU after each hidden one (keras semantics), Adam, MSE."""

    def __init__(self, input_dim: int, config: AeConfig, rng: np.random.Generator):
        self.config = config
        dims = [input_dim, *config.hidden, input_dim]
        self.weights = [self._glorot(rng, a, b) for a, b in zip(dims[:-1], dims[1:])]
        self.biases = [np.zeros(b, np.float32) for b in dims[1:]]
        hidden = dims[1:-1]
        self.gammas = [np.ones(d, np.float32) for d in hidden]
        self.betas = [np.zeros(d, np.float32) for d in hidden]
        self.moving_means = [np.zeros(d, np.float32) for d in hidden]
        self.moving_vars = [np.ones(d, np.float32) for d in hidden]
        self.params = self.weights + self.biases + self.gammas + self.betas
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.step = 0

    @staticmethod
    def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Inference mode: BatchNorm uses the moving averages."""
        h = x
        eps = self.config.bn_eps
        for i in range(len(self.gammas)):
            z = h @ self.weights[i] + self.biases[i]
            z = (z - self.moving_means[i]) / np.sqrt(self.moving_vars[i] + eps) * self.gammas[i] + self.betas[i]
            h = np.maximum(z, 0.0)
        return h @ self.weights[-1] + self.biases[-1]

    def train_step(self, x: np.ndarray) -> float:
        """One Adam step on a batch (training-mode BatchNorm); returns the batch's MSE."""
        cfg = self.config
        n = len(x)
        caches = []
        h = x
        for i in range(len(self.gammas)):
            z = h @ self.weights[i] + self.biases[i]
            batch_mean = z.mean(axis=0)
            var = z.var(axis=0)
            inv_std = 1.0 / np.sqrt(var + cfg.bn_eps)
            z_hat = (z - batch_mean) * inv_std
            a = z_hat * self.gammas[i] + self.betas[i]
            active = a > 0
            caches.append((h, z_hat, inv_std, active))
            # keras: the moving variance takes the unbiased batch variance
            unbiased = var * (n / max(n - 1.0, 1.0))
            self.moving_means[i] = self.moving_means[i] * cfg.bn_momentum + batch_mean * (1.0 - cfg.bn_momentum)
            self.moving_vars[i] = self.moving_vars[i] * cfg.bn_momentum + unbiased * (1.0 - cfg.bn_momentum)
            h = np.where(active, a, 0.0)
        out = h @ self.weights[-1] + self.biases[-1]
        diff = out - x
        loss = float(np.mean(np.square(diff, dtype=np.float64)))
        grad_out = (2.0 / diff.size) * diff
        gw = [np.empty(0)] * len(self.weights)
        gb = [np.empty(0)] * len(self.biases)
        ggamma = [np.empty(0)] * len(self.gammas)
        gbeta = [np.empty(0)] * len(self.betas)
        gw[-1] = h.T @ grad_out
        gb[-1] = grad_out.sum(axis=0)
        grad_h = grad_out @ self.weights[-1].T
        for i in reversed(range(len(self.gammas))):
            h_in, z_hat, inv_std, active = caches[i]
            grad_a = np.where(active, grad_h, 0.0)
            ggamma[i] = (grad_a * z_hat).sum(axis=0)
            gbeta[i] = grad_a.sum(axis=0)
            grad_zhat = grad_a * self.gammas[i]
            grad_z = (inv_std / n) * (
                n * grad_zhat - grad_zhat.sum(axis=0) - z_hat * (grad_zhat * z_hat).sum(axis=0)
            )
            gw[i] = h_in.T @ grad_z
            gb[i] = grad_z.sum(axis=0)
            if i > 0:
                grad_h = grad_z @ self.weights[i].T
        self._adam(gw + gb + ggamma + gbeta)
        return loss

    def _adam(self, grads: list[np.ndarray]) -> None:
        """keras' Adam: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); p -= lr_t m / (sqrt(v) + eps)."""
        cfg = self.config
        self.step += 1
        lr_t = cfg.lr * math.sqrt(1.0 - cfg.beta2**self.step) / (1.0 - cfg.beta1**self.step)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= cfg.beta1
            m += (1.0 - cfg.beta1) * g
            v *= cfg.beta2
            v += (1.0 - cfg.beta2) * np.square(g)
            p -= lr_t * m / (np.sqrt(v) + cfg.adam_eps)


def vector_mse(model: Autoencoder, frames: np.ndarray, starts: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Mean squared reconstruction error of each vector (inference mode)."""
    errors = []
    for begin in range(0, len(starts), batch):
        x = gather_vectors(frames, starts[begin : begin + batch])
        errors.append(np.mean(np.square(x - model.predict(x)), axis=1))
    return np.concatenate(errors) if errors else np.zeros(0, np.float32)


def train_autoencoder(label: str, clips: list[np.ndarray], config: AeConfig, rng: np.random.Generator) -> Autoencoder:
    """keras `fit(x, x, epochs, batch_size, shuffle=True, validation_split)` on the clips' vectors."""
    frames, starts = stacked_starts(clips)
    split_at = int(len(starts) * (1.0 - config.validation_split))
    train, validation = starts[:split_at], starts[split_at:]
    model = Autoencoder(FRAMES * N_MELS, config, rng)
    note(f"{label}: ae training on {len(train)} vectors ({len(validation)} held out), {config.epochs} epochs")
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(train)
        total = 0.0
        for begin in range(0, len(order), config.batch_size):
            batch = order[begin : begin + config.batch_size]
            total += model.train_step(gather_vectors(frames, batch)) * len(batch)
        if epoch in (1, config.epochs) or epoch % 25 == 0:
            val = float(np.mean(vector_mse(model, frames, validation))) if len(validation) else float("nan")
            note(f"{label}: ae epoch {epoch}/{config.epochs} loss {total / max(len(order), 1):.3f} val_loss {val:.3f}")
    return model


def run_autoencoder(machines: list[Machine], features: dict[Path, np.ndarray], config: AeConfig, seed: int) -> list[dict]:
    """One model per machine type on all its machines' training clips; clip scores per machine."""
    by_type: dict[str, list[Machine]] = defaultdict(list)
    for machine in machines:
        by_type[machine.machine_type].append(machine)
    rows = []
    for machine_type, group in sorted(by_type.items()):
        # The baseline reads TYPE/train/*.wav in sorted order; validation is the last 10 %.
        train_paths = sorted({p for machine in group for p in machine.train})
        model = None
        if train_paths:
            entropy = [seed, zlib.crc32(machine_type.encode())]
            fold = group[0].fold
            rng = np.random.default_rng(entropy if fold is None else [*entropy, fold])
            model = train_autoencoder(machine_type, [features[p] for p in train_paths], config, rng)
        else:
            note(f"{machine_type}: ae: no training clip; not evaluated")
        for machine in group:
            scores = None
            if model is not None:
                scores = []
                for path, _ in machine.test:
                    frames, starts = stacked_starts([features[path]])
                    scores.append(float(np.mean(vector_mse(model, frames, starts))))
            rows.append(result_row(machine, scores))
    return rows


# ---------------------------------------------------------------------------------------------
# Mahalanobis (Ledoit-Wolf) on single log-mel frames
# ---------------------------------------------------------------------------------------------


def run_mahalanobis(machines: list[Machine], features: dict[Path, np.ndarray]) -> list[dict]:
    rows = []
    for machine in machines:
        scores = None
        if machine.train:
            train = np.concatenate([features[p] for p in machine.train]).astype(np.float64)
            model = LedoitWolf().fit(train)
            scores = [float(np.mean(model.mahalanobis(features[p].astype(np.float64)))) for p, _ in machine.test]
        else:
            note(f"{machine.machine_id}: maha: no training clip; not evaluated")
        rows.append(result_row(machine, scores))
    return rows


# ---------------------------------------------------------------------------------------------
# Diagonal Gaussian on clip-level vectors (band means and GWRP-pooled band levels)
# ---------------------------------------------------------------------------------------------


def clip_vector(frames: np.ndarray) -> np.ndarray:
    """[per-band mean over the frames, per-band GWRP level (r = 0.9)]: 2 x 128 values, float64."""
    x = frames.astype(np.float64)
    descending = -np.sort(-x, axis=0)
    weights = GWRP_R ** np.arange(len(x), dtype=np.float64)
    gwrp = weights @ descending / weights.sum()
    return np.concatenate([x.mean(axis=0), gwrp])


def run_diagonal(machines: list[Machine], features: dict[Path, np.ndarray]) -> list[dict]:
    rows = []
    for machine in machines:
        scores = None
        if machine.train:
            train = np.stack([clip_vector(features[p]) for p in machine.train])
            mu = train.mean(axis=0)
            sd = train.std(axis=0, ddof=0) + DIAG_SD_FLOOR_DB
            scores = [float(np.mean(np.square((clip_vector(features[p]) - mu) / sd))) for p, _ in machine.test]
        else:
            note(f"{machine.machine_id}: diag: no training clip; not evaluated")
        rows.append(result_row(machine, scores))
    return rows


# ---------------------------------------------------------------------------------------------
# Metrics and reporting
# ---------------------------------------------------------------------------------------------


def auc_pauc(labels: list[bool], scores: list[float]) -> tuple[float | None, float | None]:
    """DCASE's AUC and pAUC (max FPR 0.1); None without both classes or with non-finite scores."""
    if len(set(labels)) < 2 or not np.all(np.isfinite(scores)):
        return None, None
    y = np.asarray(labels, dtype=int)
    return float(roc_auc_score(y, scores)), float(roc_auc_score(y, scores, max_fpr=PAUC_MAX_FPR))


def result_row(machine: Machine, scores: list[float] | None) -> dict:
    labels = [anomalous for _, anomalous in machine.test]
    auc, pauc = auc_pauc(labels, scores) if scores is not None else (None, None)
    fold = {} if machine.fold is None else {"fold": machine.fold}
    return {
        "machine_type": machine.machine_type,
        "machine_id": machine.machine_id,
        **fold,
        "train_clips": len(machine.train),
        "test_normal": labels.count(False),
        "test_anomalous": labels.count(True),
        "auc": auc,
        "pauc": pauc,
        "clips": [
            {"path": str(path), "anomalous": anomalous, "score": score}
            for (path, anomalous), score in zip(machine.test, scores or [])
        ],
    }


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_wall_times(
    results: dict, features_s: float, warm_up_s: float, auscult_s: float | None, folds: int | None
) -> None:
    """The wall-time table: features once, then each method's fit+score (per fold too, with folds)."""
    over = f", {folds} folds" if folds else ""
    print("| method | wall s |")
    print("|---|---:|")
    print(f"| librosa warm-up (first call only, not in the rows below) | {warm_up_s:.2f} |")
    print(f"| features (librosa log-mel, every clip once{' for all folds' if folds else ''}) | {features_s:.2f} |")
    for name, result in results.items():
        print(f"| {name} fit+score{over} | {result.seconds:.2f} |")
    if folds:
        for name, result in results.items():
            print(f"| {name} fit+score per fold (mean) | {result.seconds / folds:.2f} |")
    for name, result in results.items():
        print(f"| {name} total (features + fit+score{over}) | {features_s + result.seconds:.2f} |")
    if auscult_s is not None:
        print(f"| auscult eval (end to end, given) | {auscult_s:.2f} |")


def print_tables(
    machines: list[Machine],
    results: dict[str, MethodResult],
    features_s: float,
    warm_up_s: float,
    auscult_s: float | None,
) -> None:
    columns = list(results)
    with_auscult = any(m.auscult is not None for m in machines)
    if with_auscult:
        columns.append("auscult")
    metrics: dict[str, dict[tuple[str, str], dict]] = {
        name: {(r["machine_type"], r["machine_id"]): r for r in result.rows} for name, result in results.items()
    }
    if with_auscult:
        metrics["auscult"] = {(m.machine_type, m.machine_id): m.auscult or {} for m in machines}
    header = "| type | id | train | test | " + " | ".join(f"{c} AUC | {c} pAUC" for c in columns) + " |"
    print(header)
    print("|---|---|---:|---:|" + "---:|---:|" * len(columns))
    for m in machines:
        key = (m.machine_type, m.machine_id)
        cells = []
        for c in columns:
            row = metrics[c].get(key, {})
            cells += [fmt(row.get("auc")), fmt(row.get("pauc"))]
        display_id = id_key(m.machine_type, m.machine_id)[1]
        print(f"| {m.machine_type} | {display_id} | {len(m.train)} | {len(m.test)} | " + " | ".join(cells) + " |")
    print()
    print("| mean over | machines | " + " | ".join(f"{c} AUC | {c} pAUC" for c in columns) + " |")
    print("|---|---:|" + "---:|---:|" * len(columns))
    groups = defaultdict(list)
    for m in machines:
        groups[m.machine_type].append((m.machine_type, m.machine_id))
    for label, keys in [*sorted(groups.items()), ("**all machines**", [k for g in groups.values() for k in g])]:
        cells = []
        for c in columns:
            cells += [fmt(mean([metrics[c].get(k, {}).get(metric) for k in keys])) for metric in ("auc", "pauc")]
        print(f"| {label} | {len(keys)} | " + " | ".join(cells) + " |")
    print()
    print_wall_times(results, features_s, warm_up_s, auscult_s, folds=None)


def write_json(path: Path, results: dict[str, MethodResult], features_s: float, warm_up_s: float) -> None:
    document = {
        "methods": {
            name: {
                "rows": result.rows,
                "mean": {
                    "auc": mean([r["auc"] for r in result.rows]),
                    "pauc": mean([r["pauc"] for r in result.rows]),
                },
                "seconds": result.seconds,
            }
            for name, result in results.items()
        },
        "features_seconds": features_s,
        "warm_up_seconds": warm_up_s,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Cross-validation folds: aggregation and reporting
# ---------------------------------------------------------------------------------------------

MachineKey = tuple[str, str]
FoldMetrics = dict[MachineKey, dict[int, dict]]


def std(values: list[float | None]) -> float | None:
    """Population standard deviation (ddof=0) of the present values."""
    present = [v for v in values if v is not None]
    return float(np.std(present)) if present else None


def fmt_pm(value: float | None, spread: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if spread is None else f"{value:.4f} ± {spread:.4f}"


def fold_metrics(splits: list[list[Machine]], results: dict[str, MethodResult]) -> dict[str, FoldMetrics]:
    """Per column (each method, and auscult when its JSON gave metrics): machine -> fold -> row."""
    columns: dict[str, FoldMetrics] = {}
    for name, result in results.items():
        table: FoldMetrics = defaultdict(dict)
        for row in result.rows:
            table[id_key(row["machine_type"], row["machine_id"])][row["fold"]] = row
        columns[name] = table
    if any(m.auscult is not None for split in splits for m in split):
        table = defaultdict(dict)
        for split in splits:
            for m in split:
                if m.auscult is not None:
                    table[id_key(m.machine_type, m.machine_id)][m.fold] = m.auscult
        columns["auscult"] = table
    return columns


def aggregate(table: FoldMetrics, keys: list[MachineKey], folds: int) -> dict:
    """Mean over machines of their fold means; std over folds of the per-fold means over machines."""
    out: dict = {}
    for metric in ("auc", "pauc"):
        per_machine = [mean([table.get(k, {}).get(f, {}).get(metric) for f in range(folds)]) for k in keys]
        per_fold = [mean([table.get(k, {}).get(f, {}).get(metric) for k in keys]) for f in range(folds)]
        out[metric] = mean(per_machine)
        out[f"{metric}_std"] = std(per_fold)
        out[f"{metric}_per_fold"] = per_fold
    return out


def machine_keys(splits: list[list[Machine]]) -> dict[MachineKey, list[Machine]]:
    """Every machine of any fold, sorted, with its per-fold splits."""
    found: dict[MachineKey, list[Machine]] = defaultdict(list)
    for split in splits:
        for m in split:
            found[id_key(m.machine_type, m.machine_id)].append(m)
    return dict(sorted(found.items()))


def count_range(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def print_fold_tables(
    splits: list[list[Machine]],
    results: dict[str, MethodResult],
    features_s: float,
    warm_up_s: float,
    auscult_s: float | None,
) -> None:
    folds = len(splits)
    metrics = fold_metrics(splits, results)
    columns = list(metrics)
    machines = machine_keys(splits)
    print(f"{folds}-fold cross-validation: mean ± std over folds (std: ddof=0)")
    print()
    header = " | ".join(f"{c} AUC | {c} pAUC" for c in columns)
    print(f"| type | id | folds | train | test | {header} |")
    print("|---|---|---:|---:|---:|" + "---:|---:|" * len(columns))
    for key, per_fold in machines.items():
        cells = []
        for c in columns:
            agg = aggregate(metrics[c], [key], folds)
            cells += [fmt_pm(agg["auc"], agg["auc_std"]), fmt_pm(agg["pauc"], agg["pauc_std"])]
        train = count_range([len(m.train) for m in per_fold])
        test = count_range([len(m.test) for m in per_fold])
        print(f"| {key[0]} | {key[1]} | {len(per_fold)} | {train} | {test} | " + " | ".join(cells) + " |")
    print()
    print("mean over machines of their fold means ± std over folds of the per-fold mean")
    print()
    print(f"| mean over | machines | {header} |")
    print("|---|---:|" + "---:|---:|" * len(columns))
    groups: dict[str, list[MachineKey]] = defaultdict(list)
    for key in machines:
        groups[key[0]].append(key)
    for label, keys in [*sorted(groups.items()), ("**all machines**", list(machines))]:
        cells = []
        for c in columns:
            agg = aggregate(metrics[c], keys, folds)
            cells += [fmt_pm(agg["auc"], agg["auc_std"]), fmt_pm(agg["pauc"], agg["pauc_std"])]
        print(f"| {label} | {len(keys)} | " + " | ".join(cells) + " |")
    print()
    print("per fold, mean over all machines")
    print()
    print(f"| fold | {header} |")
    print("|---:|" + "---:|---:|" * len(columns))
    overall = {c: aggregate(metrics[c], list(machines), folds) for c in columns}
    for f in range(folds):
        cells = []
        for c in columns:
            cells += [fmt(overall[c]["auc_per_fold"][f]), fmt(overall[c]["pauc_per_fold"][f])]
        print(f"| {f} | " + " | ".join(cells) + " |")
    print()
    print_wall_times(results, features_s, warm_up_s, auscult_s, folds=folds)


def write_fold_json(
    path: Path, splits: list[list[Machine]], results: dict[str, MethodResult], features_s: float, warm_up_s: float
) -> None:
    folds = len(splits)
    metrics = fold_metrics(splits, results)
    machines = list(machine_keys(splits))
    groups: dict[str, list[MachineKey]] = defaultdict(list)
    for key in machines:
        groups[key[0]].append(key)

    def summary(table: FoldMetrics) -> dict:
        per_machine = []
        for key in machines:
            agg = aggregate(table, [key], folds)
            per_machine.append({"machine_type": key[0], "machine_id": key[1], **agg})
        overall = aggregate(table, machines, folds)
        return {
            "per_machine": per_machine,
            "per_type": {t: aggregate(table, keys, folds) for t, keys in sorted(groups.items())},
            "per_fold": [
                {"fold": f, "auc": overall["auc_per_fold"][f], "pauc": overall["pauc_per_fold"][f]} for f in range(folds)
            ],
            "mean": {k: overall[k] for k in ("auc", "auc_std", "pauc", "pauc_std")},
        }

    document: dict = {
        "folds": folds,
        "std": "population (ddof=0) over folds",
        "methods": {
            name: {"rows": result.rows, **summary(metrics[name]), "seconds": result.seconds}
            for name, result in results.items()
        },
        "features_seconds": features_s,
        "warm_up_seconds": warm_up_s,
    }
    if "auscult" in metrics:
        document["auscult"] = summary(metrics["auscult"])
    path.write_text(json.dumps(document, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="corpus root (DCASE 2020 Task 2 or MIMII layout)")
    parser.add_argument("--auscult-json", type=Path, help="`auscult eval --json` output: its split and AUC/pAUC")
    parser.add_argument("--auscult-time", type=float, help="auscult's wall time in seconds (default: the JSON's elapsed_s)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of: {','.join(METHODS)}")
    parser.add_argument("--folds", type=int, help="K-fold cross-validation of the unsplit normals (K >= 2)")
    parser.add_argument("--ae-epochs", type=int, default=100, help="autoencoder epochs (baseline: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the autoencoder's init and shuffling")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--json", type=Path, help="write the peers' results here")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: unknown or empty: {','.join(unknown)} (choose from {','.join(METHODS)})")
    if args.ae_epochs < 1:
        parser.error("--ae-epochs must be at least 1")
    if args.folds is not None and args.folds < 2:
        parser.error("--folds must be at least 2")
    return args


def load_machines(args: argparse.Namespace) -> tuple[list[list[Machine]], bool, float | None]:
    """The splits (one per fold; a single one without folds), whether they are folds, auscult's time."""
    if not args.dir.is_dir():
        raise SystemExit(f"{args.dir}: not a folder")
    wavs = walk_wavs(args.dir)
    auscult_s = args.auscult_time
    document = None
    json_folds = None
    if args.auscult_json:
        try:
            document = json.loads(args.auscult_json.read_text())
        except (OSError, ValueError) as error:
            raise SystemExit(f"{args.auscult_json}: cannot read: {error}") from error
        if not isinstance(document, dict):
            raise SystemExit(f"{args.auscult_json}: not an `auscult eval --json` file (not a JSON object)")
        json_folds = auscult_fold_count(document, args.auscult_json)
        if auscult_s is None and isinstance(document.get("elapsed_s"), (int, float)):
            auscult_s = float(document["elapsed_s"])
    if document is not None and args.folds is not None and json_folds is None:
        raise SystemExit(
            f"{args.auscult_json}: holds a single split (no `fold` in its rows) but --folds {args.folds} was given; "
            "drop --folds or run `auscult eval --folds K --json`"
        )
    if json_folds is not None and args.folds is not None and json_folds != args.folds:
        raise SystemExit(f"{args.auscult_json}: holds {json_folds} folds but --folds {args.folds} was given")
    folds = json_folds if json_folds is not None else args.folds
    if folds is None:
        machines = split_machines(wavs)
        if document is not None:
            machines = apply_auscult_split(machines, document, args.auscult_json)
        splits = [machines]
    else:
        splits = fold_machines(wavs, folds)
        if document is not None:
            splits = apply_auscult_folds(splits, document, args.auscult_json)
    if not any(splits):
        raise SystemExit(f"{args.dir}: no labelled clips in the DCASE or MIMII layout")
    return splits, folds is not None, auscult_s


def warm_up(machines: list[Machine]) -> float:
    """librosa's first call compiles and caches (numba, filter banks); that one-off cost is timed apart."""
    started = time.perf_counter()
    for path in [p for m in machines for p in m.train] + [p for m in machines for p, _ in m.test]:
        try:
            log_mel(path)
            break
        except UnreadableClip:
            continue
    elapsed = time.perf_counter() - started
    note(f"librosa warm-up (first clip, untimed below) in {elapsed:.2f} s")
    return elapsed


def run_method(name: str, group: list[Machine], features: dict[Path, np.ndarray], config: AeConfig, seed: int) -> list[dict]:
    if name == "ae":
        return run_autoencoder(group, features, config, seed)
    if name == "maha":
        return run_mahalanobis(group, features)
    return run_diagonal(group, features)


def evaluate(
    splits: list[list[Machine]], args: argparse.Namespace
) -> tuple[list[list[Machine]], dict[str, MethodResult], float, float]:
    """Per machine type: extract its clips' features once (for every fold), then run each method
    on each fold's split.

    Returns the splits without their unreadable clips, each method's result (rows of every fold,
    time summed over folds), the feature extraction time and librosa's one-off warm-up time.
    """
    results = {name: MethodResult() for name in args.methods}
    evaluated: list[list[Machine]] = [[] for _ in splits]
    features_s = 0.0
    by_type: dict[str, list[list[Machine]]] = defaultdict(lambda: [[] for _ in splits])
    for k, split in enumerate(splits):
        for machine in split:
            by_type[machine.machine_type][k].append(machine)
    config = AeConfig(epochs=args.ae_epochs)
    warm_up_s = warm_up([m for split in splits for m in split])
    for machine_type, groups in sorted(by_type.items()):
        everyone = [m for group in groups for m in group]
        paths = sorted({p for m in everyone for p in m.train} | {p for m in everyone for p, _ in m.test})
        started = time.perf_counter()
        features = extract_features(paths)
        elapsed = time.perf_counter() - started
        features_s += elapsed
        note(f"{machine_type}: features of {len(features)}/{len(paths)} clips in {elapsed:.2f} s")
        for k, group in enumerate(groups):
            if not group:
                continue
            group = [readable(m, features) for m in group]
            evaluated[k].extend(group)
            where = machine_type if len(splits) == 1 and group[0].fold is None else f"{machine_type} fold {k}"
            for name, result in results.items():
                started = time.perf_counter()
                rows = run_method(name, group, features, config, args.seed)
                elapsed = time.perf_counter() - started
                result.seconds += elapsed
                result.rows.extend(rows)
                note(f"{where}: {name} fit+score in {elapsed:.2f} s")
    return evaluated, results, features_s, warm_up_s


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    splits, folded, auscult_s = load_machines(args)
    count = len(machine_keys(splits))
    note(f"{args.dir}: {count} machines" + (f", {len(splits)} folds" if folded else ""))
    with threadpool_limits(limits=args.threads):
        splits, results, features_s, warm_up_s = evaluate(splits, args)
    if folded:
        print_fold_tables(splits, results, features_s, warm_up_s, auscult_s)
    else:
        print_tables(splits[0], results, features_s, warm_up_s, auscult_s)
    if args.json:
        if folded:
            write_fold_json(args.json, splits, results, features_s, warm_up_s)
        else:
            write_json(args.json, results, features_s, warm_up_s)
        note(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
