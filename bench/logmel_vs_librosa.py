#!/usr/bin/env python3
"""Peer comparison for the log-mel extractor's speed: auscult (Rust) vs librosa.

Run from the repository root:

    PY=$(bash scripts/python-env.sh)
    $PY bench/logmel_vs_librosa.py                                  # librosa + cargo bench
    $PY bench/logmel_vs_librosa.py --skip-cargo --auscult-ns 450000 # no cargo

It
  1. loads a 10 s, 16 kHz clip (../shared/data/mimii/fan/id_00/normal/00000000.wav
     as float32 via soundfile; a seeded synthetic noise+tones clip if it is absent),
  2. times librosa in-process on it:
         power_to_db(melspectrogram(y, sr, n_fft=1024, hop_length=512, n_mels=128,
                                    power=2.0, center=False),
                     ref=1.0, amin=1e-10, top_db=None)
     after a warm-up, as the median of many repetitions (>= --min-seconds in total),
  3. runs `cargo bench -p auscult-pipeline --bench logmel -- --output-format bencher logmel/`
     and parses ns/iter of every `test logmel/...` line; the first one whose name contains
     `nfft1024_mels128` is the comparison point (other n_fft / n_mels lines are compared
     with librosa timed at the same settings),
  4. prints markdown tables (implementation, ms per clip, x real time, ratio vs librosa),
     the machine and the library versions.

BLAS/OpenMP thread pools are pinned to --threads (default 1) before numpy is imported,
so that librosa's mel projection runs on one core like the Rust extractor does.
Exits non-zero with a message if the cargo run or the parsing of its output fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLIP = Path("../shared/data/mimii/fan/id_00/normal/00000000.wav")
SR = 16000
CLIP_SECONDS = 10.0
HOP = 512
BASE_N_FFT = 1024
BASE_N_MELS = 128
BASE_KEY = f"nfft{BASE_N_FFT}_mels{BASE_N_MELS}"
CARGO_CMD = [
    "cargo", "bench", "-p", "auscult-pipeline", "--bench", "logmel",
    "--", "--output-format", "bencher", "logmel/",
]
# criterion's bencher format: "test <id> ... bench:     412,345 ns/iter (+/- 1,234)"
BENCH_LINE = re.compile(
    r"^test\s+(logmel/\S+)\s+\.\.\.\s+bench:\s+([\d,]+(?:\.\d+)?)\s+ns/iter\s+\(\+/-\s+([\d,]+(?:\.\d+)?)\)"
)
CONFIG_IN_NAME = re.compile(r"nfft(\d+)_mels(\d+)")


class BenchError(Exception):
    pass


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-cargo", action="store_true",
                   help="do not run cargo bench (use --auscult-ns for the Rust figure)")
    p.add_argument("--auscult-ns", type=float, default=None,
                   help="auscult's ns per 10 s clip at n_fft 1024 / n_mels 128 (with --skip-cargo)")
    p.add_argument("--min-seconds", type=float, default=3.0,
                   help="minimum total time spent timing librosa per configuration (default 3)")
    p.add_argument("--min-reps", type=int, default=30,
                   help="minimum number of timed librosa repetitions (default 30)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP threads for numpy (default 1; 0 leaves the library default)")
    p.add_argument("--cargo-output", type=Path, default=None,
                   help="parse this saved cargo bench stdout instead of running cargo")
    args = p.parse_args()
    if args.skip_cargo and args.cargo_output is not None:
        p.error("--skip-cargo and --cargo-output are exclusive")
    if args.skip_cargo and args.auscult_ns is None:
        p.error("--skip-cargo needs --auscult-ns N")
    if not args.skip_cargo and args.auscult_ns is not None:
        p.error("--auscult-ns is only used with --skip-cargo")
    if args.auscult_ns is not None and not args.auscult_ns > 0:
        p.error("--auscult-ns must be positive")
    return args


def pin_threads(n: int) -> None:
    if n > 0:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[var] = str(n)


# --------------------------------------------------------------------------
# Clip
# --------------------------------------------------------------------------

def load_clip():
    import numpy as np
    import soundfile as sf

    if CLIP.is_file():
        y, sr = sf.read(CLIP, dtype="float32", always_2d=False)
        if y.ndim > 1:
            y = np.ascontiguousarray(y[:, 0])
        return y, sr, f"MIMII fan id_00 normal/00000000.wav ({len(y) / sr:.2f} s, {sr} Hz)", "mimii_fan"
    # Seeded synthetic stand-in: noise plus a few tones, 10 s at 16 kHz.
    rng = np.random.Generator(np.random.PCG64(20240611))
    t = np.arange(int(SR * CLIP_SECONDS)) / SR
    y = 0.05 * rng.standard_normal(t.size)
    for f, a in ((120.0, 0.2), (1000.0, 0.1), (3150.0, 0.05)):
        y += a * np.sin(2 * np.pi * f * t)
    return y.astype(np.float32), SR, f"synthetic noise+tones ({CLIP_SECONDS:.0f} s, {SR} Hz; {CLIP} not found)", "synthetic"


# --------------------------------------------------------------------------
# librosa timing
# --------------------------------------------------------------------------

def time_librosa(y, sr: int, n_fft: int, n_mels: int, min_seconds: float, min_reps: int) -> dict:
    import librosa

    def run():
        mel = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=n_fft, hop_length=HOP, n_mels=n_mels, power=2.0, center=False
        )
        return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)

    out = run()  # warm-up (imports, caches, page faults)
    expected_frames = (len(y) - n_fft) // HOP + 1
    if out.shape != (n_mels, expected_frames):
        raise BenchError(f"librosa output shape {out.shape}, expected {(n_mels, expected_frames)}")
    for _ in range(2):
        run()

    samples = []
    start = time.perf_counter()
    while len(samples) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter_ns()
        run()
        samples.append(time.perf_counter_ns() - t0)
    return {
        "median_ns": statistics.median(samples),
        "min_ns": min(samples),
        "reps": len(samples),
        "frames": expected_frames,
    }


# --------------------------------------------------------------------------
# cargo bench
# --------------------------------------------------------------------------

def repo_root() -> Path:
    root = Path.cwd()
    if not (root / "Cargo.toml").is_file() or not (root / "pipeline").is_dir():
        raise BenchError("run this from the auscult repository root (Cargo.toml and pipeline/ not found)")
    return root


def run_cargo_bench(root: Path) -> str:
    print(f"running: {' '.join(CARGO_CMD)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(CARGO_CMD, cwd=root, stdout=subprocess.PIPE, stderr=None, text=True)
    except FileNotFoundError as e:
        raise BenchError("cargo not found on PATH (use --skip-cargo --auscult-ns N to skip it)") from e
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        raise BenchError(f"cargo bench exited with status {proc.returncode}")
    return proc.stdout


def parse_bencher(stdout: str) -> list[dict]:
    rows = []
    for line in stdout.splitlines():
        m = BENCH_LINE.match(line.strip())
        if not m:
            continue
        name = m.group(1)
        cfg = CONFIG_IN_NAME.search(name)
        rows.append({
            "name": name,
            "ns": float(m.group(2).replace(",", "")),
            "pm_ns": float(m.group(3).replace(",", "")),
            "config": (int(cfg.group(1)), int(cfg.group(2))) if cfg else None,
        })
    if not rows:
        tail = "\n".join(stdout.splitlines()[-15:])
        raise BenchError(
            "found no `test logmel/... bench: N ns/iter` line in cargo bench output; last lines were:\n"
            + (tail or "(empty)")
        )
    if not any(BASE_KEY in r["name"] for r in rows):
        raise BenchError(
            f"no bench line whose name contains `{BASE_KEY}`; parsed: "
            + ", ".join(r["name"] for r in rows)
        )
    return rows


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def machine() -> str:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                model = value.strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    logical = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = logical
    cores = f"{logical} logical cores" + (f" ({usable} usable)" if usable != logical else "")
    return f"{model}, {cores}, {platform.system()} {platform.release()}"


def fmt_row(impl: str, ns: float, clip_s: float, librosa_ns: float, note: str = "") -> str:
    ms = ns / 1e6
    xrt = clip_s / (ns / 1e9)
    ratio = librosa_ns / ns
    return f"| {impl} | {ms:,.3f} | {xrt:,.0f}x | {ratio:.2f}x{note} |"


def main() -> int:
    args = parse_args()
    pin_threads(args.threads)
    try:
        root = repo_root()
        os.chdir(root)

        import librosa
        import numpy as np
        import soundfile as sf

        y, sr, clip_desc, clip_tag = load_clip()
        clip_s = len(y) / sr

        # The Rust figures, first, so a failed build fails fast.
        if args.skip_cargo:
            rows = [{"name": f"logmel/(given)_{BASE_KEY}", "ns": float(args.auscult_ns), "pm_ns": None,
                     "config": (BASE_N_FFT, BASE_N_MELS)}]
            rust_source = "given with --auscult-ns (cargo skipped)"
        elif args.cargo_output is not None:
            rows = parse_bencher(args.cargo_output.read_text())
            rust_source = f"parsed from {args.cargo_output}"
        else:
            rows = parse_bencher(run_cargo_bench(root))
            rust_source = "`" + " ".join(CARGO_CMD) + "` (criterion)"
        base = next(r for r in rows if BASE_KEY in r["name"])

        configs = [(BASE_N_FFT, BASE_N_MELS)]
        for r in rows:
            if r["config"] and r["config"] not in configs:
                configs.append(r["config"])
        lib = {}
        for n_fft, n_mels in configs:
            print(f"timing librosa n_fft={n_fft} n_mels={n_mels} ...", file=sys.stderr, flush=True)
            lib[(n_fft, n_mels)] = time_librosa(y, sr, n_fft, n_mels, args.min_seconds, args.min_reps)
    except BenchError as e:
        print(f"logmel_vs_librosa: error: {e}", file=sys.stderr)
        return 1

    lb = lib[(BASE_N_FFT, BASE_N_MELS)]
    out = []
    out.append(f"## Log-mel extraction: auscult vs librosa ({clip_s:.0f} s clip, {sr} Hz, "
               f"n_fft {BASE_N_FFT}, hop {HOP}, {BASE_N_MELS} mels, center=False)")
    out.append("")
    out.append(f"| implementation | time per {clip_s:.0f} s clip (ms) | x real time | ratio vs librosa |")
    out.append("| --- | ---: | ---: | ---: |")
    out.append(fmt_row(f"librosa {librosa.__version__} (numpy {np.__version__})", lb["median_ns"], clip_s, lb["median_ns"]))
    out.append(fmt_row(f"auscult `{base['name']}`", base["ns"], clip_s, lb["median_ns"], " faster" if base["ns"] < lb["median_ns"] else " (slower)"))
    out.append("")

    others = [r for r in rows if r is not base and r["config"]]
    if others:
        out.append("Other settings (librosa timed at the same n_fft / n_mels):")
        out.append("")
        out.append("| auscult bench | auscult (ms) | librosa (ms) | auscult x real time | ratio vs librosa |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        for r in others:
            l = lib[r["config"]]
            out.append(f"| `{r['name']}` | {r['ns'] / 1e6:,.3f} | {l['median_ns'] / 1e6:,.3f} | "
                       f"{clip_s / (r['ns'] / 1e9):,.0f}x | {l['median_ns'] / r['ns']:.2f}x |")
        out.append("")

    threads = str(args.threads) if args.threads > 0 else "library default"
    out.append(f"- machine: {machine()}")
    out.append(f"- clip: {clip_desc}")
    out.append(f"- librosa: {librosa.__version__}, numpy {np.__version__}, soundfile {sf.__version__}; "
               f"Python {platform.python_version()}; BLAS/OpenMP threads: {threads}")
    out.append(f"- librosa timing: median of {lb['reps']} runs after warm-up "
               f"(min {lb['min_ns'] / 1e6:.3f} ms), melspectrogram + power_to_db, {lb['frames']} frames")
    out.append(f"- auscult timing: {rust_source}"
               + (f", +/- {base['pm_ns'] / 1e6:.3f} ms" if base.get("pm_ns") is not None else ""))
    if not args.skip_cargo and clip_tag not in base["name"]:
        out.append(f"- WARNING: the Rust bench's clip (`{base['name']}`) is not the clip librosa ran on ({clip_tag})")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
