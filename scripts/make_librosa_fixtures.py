#!/usr/bin/env python3
"""Generate librosa reference fixtures for auscult's Rust log-mel extractor.

Run from the repository root with the project's venv:

    PY=$(bash scripts/python-env.sh)
    $PY scripts/make_librosa_fixtures.py

For every case this writes, into pipeline/tests/fixtures/librosa/:

  <case>.wav         the input audio. Synthetic cases are IEEE float32 WAV
                     (so the Rust side reads bit-identical samples); the MIMII
                     excerpt is 16-bit PCM holding the original integer samples.
  <case>.logmel.f32  librosa's log-mel of exactly the samples in the WAV, as raw
                     little-endian float32, row-major, frames x n_mels.

plus manifest.json and README.md. The reference is exactly

    librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop,
                                       n_mels=n_mels, power=2.0, center=False),
        ref=1.0, amin=1e-10, top_db=None)

with librosa's defaults otherwise (periodic 'hann' window, htk=False,
norm='slaney', fmin=0, fmax=sr/2), fed the float32 samples that soundfile
reads back from the written WAV (int16 -> float is x / 32768).

The script is deterministic: re-running it gives byte-identical files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

OUT_DIR = Path("pipeline/tests/fixtures/librosa")
MIMII_WAV = Path("../shared/data/mimii/fan/id_00/normal/00000000.wav")
HOP = 512
DEFAULT_N_FFT = 1024
DEFAULT_N_MELS = 128
SEED = 20240611

# libsndfile writes a PEAK chunk into float WAV files that carries the current
# time; turn it off so the output is byte-for-byte reproducible.
_SFC_SET_ADD_PEAK_CHUNK = 0x1050


# --------------------------------------------------------------------------
# Synthetic signals (computed in float64, stored as float32)
# --------------------------------------------------------------------------

def _t(sr: int, seconds: float) -> np.ndarray:
    return np.arange(int(round(sr * seconds)), dtype=np.float64) / sr


def tone(sr: int, seconds: float, freq: float, amp: float) -> np.ndarray:
    return amp * np.sin(2.0 * np.pi * freq * _t(sr, seconds))


def tones(sr: int, seconds: float, parts: list[tuple[float, float]]) -> np.ndarray:
    return sum(tone(sr, seconds, f, a) for f, a in parts)


def white_noise(sr: int, seconds: float, amp: float, seed: int) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(seed))
    return amp * rng.standard_normal(int(round(sr * seconds)))


def linear_chirp(sr: int, seconds: float, f0: float, f1: float, amp: float) -> np.ndarray:
    t = _t(sr, seconds)
    k = (f1 - f0) / seconds
    return amp * np.sin(2.0 * np.pi * (f0 * t + 0.5 * k * t * t))


def silence_then_tone(sr: int) -> np.ndarray:
    # 0.5 s of exact digital silence (all-zero frames -> every bin at the
    # 1e-10 floor, i.e. -100 dB), 0.25 s of a barely-there 1 kHz tone
    # (amplitude 1e-5: the tone's own bins sit above the floor, most others
    # fall below it), then 0.5 s of the same tone at amplitude 0.5.
    quiet = tone(sr, 0.25, 1000.0, 1e-5)
    loud = tone(sr, 0.5, 1000.0, 0.5)
    return np.concatenate([np.zeros(int(sr * 0.5)), quiet, loud])


def synthetic_cases() -> list[dict]:
    """Each case: name, sample rate, n_fft, n_mels, and float64 samples."""
    sr = 16000
    return [
        dict(name="tone_1k_16k", sr=sr, n_fft=DEFAULT_N_FFT, n_mels=DEFAULT_N_MELS,
             y=tone(sr, 1.0, 1000.0, 0.5)),
        dict(name="two_tone_440_3k_16k", sr=sr, n_fft=DEFAULT_N_FFT, n_mels=DEFAULT_N_MELS,
             y=tones(sr, 1.0, [(440.0, 0.3), (3000.0, 0.2)])),
        dict(name="white_noise_16k", sr=sr, n_fft=DEFAULT_N_FFT, n_mels=DEFAULT_N_MELS,
             y=white_noise(sr, 1.0, 0.1, SEED)),
        dict(name="chirp_50_7500_16k", sr=sr, n_fft=DEFAULT_N_FFT, n_mels=DEFAULT_N_MELS,
             y=linear_chirp(sr, 2.0, 50.0, 7500.0, 0.5)),
        dict(name="silence_then_tone_16k", sr=sr, n_fft=DEFAULT_N_FFT, n_mels=DEFAULT_N_MELS,
             y=silence_then_tone(sr)),
        dict(name="two_tone_22050", sr=22050, n_fft=DEFAULT_N_FFT, n_mels=DEFAULT_N_MELS,
             y=tones(22050, 1.0, [(440.0, 0.3), (5000.0, 0.2)])),
        dict(name="tones_noise_44100", sr=44100, n_fft=DEFAULT_N_FFT, n_mels=DEFAULT_N_MELS,
             y=tones(44100, 0.5, [(1000.0, 0.3), (12000.0, 0.2)])
             + white_noise(44100, 0.5, 0.01, SEED + 1)),
        dict(name="tone_noise_16k_nfft2048", sr=sr, n_fft=2048, n_mels=DEFAULT_N_MELS,
             y=tone(sr, 1.0, 1500.0, 0.4) + white_noise(sr, 1.0, 0.02, SEED + 2)),
        dict(name="chirp_16k_mels64", sr=sr, n_fft=DEFAULT_N_FFT, n_mels=64,
             y=linear_chirp(sr, 1.0, 100.0, 7000.0, 0.5)),
    ]


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def write_float_wav(path: Path, y: np.ndarray, sr: int) -> None:
    y32 = np.ascontiguousarray(y, dtype=np.float32)
    if np.max(np.abs(y32)) > 1.0:
        raise SystemExit(f"{path.name}: samples exceed [-1, 1]")
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="WAV", subtype="FLOAT") as f:
        f._check_if_closed()
        sf._snd.sf_command(f._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)  # SF_FALSE
        f.write(y32)


def write_pcm16_wav(path: Path, y: np.ndarray, sr: int) -> None:
    assert y.dtype == np.int16
    sf.write(path, y, sr, format="WAV", subtype="PCM_16")


def reference_logmel(y: np.ndarray, sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's log-mel, returned as frames x n_mels float32."""
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, hop_length=HOP, n_mels=n_mels, power=2.0, center=False
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    assert db.shape[0] == n_mels, db.shape
    expected_frames = (len(y) - n_fft) // HOP + 1
    if db.shape[1] != expected_frames:
        raise SystemExit(
            f"librosa gave {db.shape[1]} frames for {len(y)} samples, "
            f"expected floor((n - n_fft)/hop) + 1 = {expected_frames}"
        )
    return np.ascontiguousarray(db.T, dtype="<f4")


def emit_case(name: str, wav: Path, sr: int, n_fft: int, n_mels: int) -> dict:
    # Feed librosa exactly what the Rust side will read: the file's samples.
    y, file_sr = sf.read(wav, dtype="float32", always_2d=False)
    assert file_sr == sr and y.ndim == 1, (file_sr, y.shape)
    logmel = reference_logmel(y, sr, n_fft, n_mels)
    expected = OUT_DIR / f"{name}.logmel.f32"
    expected.write_bytes(logmel.tobytes(order="C"))
    if not np.all(np.isfinite(logmel)):
        raise SystemExit(f"{name}: non-finite values in reference")
    return {
        "name": name,
        "wav": wav.name,
        "expected": expected.name,
        "sample_rate_hz": sr,
        "n_fft": n_fft,
        "hop_length": HOP,
        "n_mels": n_mels,
        "frames": int(logmel.shape[0]),
        "n_samples": int(len(y)),
    }


def readme_text(manifest: dict) -> str:
    return f"""# librosa reference fixtures for the log-mel extractor

Generated by `{manifest["generated_by"]}` with librosa {manifest["librosa_version"]}
and numpy {manifest["numpy_version"]} (soundfile {sf.__version__}, libsndfile
{sf.__libsndfile_version__}). Do not edit by hand; regenerate from the repo root:

```sh
PY=$(bash scripts/python-env.sh); $PY scripts/make_librosa_fixtures.py
```

The output is deterministic (a re-run gives byte-identical files).

Reference for each case (librosa defaults otherwise: periodic `hann` window,
`htk=False`, `norm='slaney'`, `fmin=0`, `fmax=sr/2`):

```python
librosa.power_to_db(
    librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=512,
                                   n_mels=n_mels, power=2.0, center=False),
    ref=1.0, amin=1e-10, top_db=None)
```

`y` is the float32 content of `<case>.wav` as soundfile reads it (16-bit PCM is
divided by 32768). For float32 input librosa windows and FFTs each frame in
float64, stores the STFT as complex64, and does the power, the mel projection
(float32 basis) and the dB in float32. A float64 re-implementation (periodic
Hann, `center=False` framing, `librosa.filters.mel`) agrees with these files to
within 1e-5 dB everywhere, floor included, so the rounding in the reference
itself is far below any sensible test tolerance.

The 1 kHz tone at 16 kHz / n_fft 1024 is bin-centred (exactly 64 cycles per
frame), so apart from bins 63-65 its periodic-Hann spectrum is zero and most of
its mel bands sit at the floor (-100 dB); `silence_then_tone_16k` starts with
0.5 s of exact zeros (whole frames at -100 dB) followed by a 1e-5-amplitude tone.

Files (paths in `manifest.json` are relative to this folder):

- `<case>.wav`: input. Synthetic cases are mono IEEE float32 WAV (format tag 3);
  the MIMII fan excerpt (first 1.0 s of `shared/data/mimii/fan/id_00/normal/00000000.wav`)
  is mono 16-bit PCM with the original integer samples.
- `<case>.logmel.f32`: raw little-endian float32, row-major `frames x n_mels`,
  where `frames = floor((n_samples - n_fft) / 512) + 1` (`center=False`).
- `manifest.json`: versions and, per case, `name`, `wav`, `expected`,
  `sample_rate_hz`, `n_fft`, `hop_length`, `n_mels`, `frames`, `n_samples`.
"""


def main() -> int:
    if not (Path("Cargo.toml").is_file() and Path("scripts/make_librosa_fixtures.py").is_file()):
        print("make_librosa_fixtures.py: run this from the auscult repository root", file=sys.stderr)
        return 2
    if not MIMII_WAV.is_file():
        print(f"make_librosa_fixtures.py: MIMII clip not found at {MIMII_WAV} "
              "(expected shared/ beside the repo)", file=sys.stderr)
        return 2

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    cases = []

    for c in synthetic_cases():
        wav = OUT_DIR / f"{c['name']}.wav"
        write_float_wav(wav, c["y"], c["sr"])
        cases.append(emit_case(c["name"], wav, c["sr"], c["n_fft"], c["n_mels"]))

    # Real excerpt: the first 1.0 s of a MIMII fan clip, original int16 samples.
    info = sf.info(MIMII_WAV)
    if info.channels != 1 or info.subtype != "PCM_16":
        raise SystemExit(f"{MIMII_WAV}: expected mono PCM_16, got {info.channels} ch {info.subtype}")
    pcm, sr = sf.read(MIMII_WAV, dtype="int16", frames=info.samplerate, always_2d=False)
    name = "mimii_fan_id00_00000000_1s"
    wav = OUT_DIR / f"{name}.wav"
    write_pcm16_wav(wav, pcm, sr)
    back = sf.read(wav, dtype="float32")[0]
    if not np.array_equal(back, pcm.astype(np.float32) / np.float32(32768.0)):
        raise SystemExit("soundfile's int16 -> float32 conversion is not x / 32768")
    cases.append(emit_case(name, wav, sr, DEFAULT_N_FFT, DEFAULT_N_MELS))

    manifest = {
        "librosa_version": librosa.__version__,
        "numpy_version": np.__version__,
        "generated_by": "scripts/make_librosa_fixtures.py",
        "cases": cases,
    }
    (OUT_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (OUT_DIR / "README.md").write_text(readme_text(manifest))

    # Drop leftovers of cases that no longer exist.
    keep = {"manifest.json", "README.md"}
    keep |= {c["wav"] for c in cases} | {c["expected"] for c in cases}
    for p in OUT_DIR.iterdir():
        if p.is_file() and p.name not in keep and (p.suffix == ".wav" or p.name.endswith(".logmel.f32")):
            p.unlink()

    total = sum(p.stat().st_size for p in OUT_DIR.iterdir() if p.is_file())
    for c in cases:
        print(f"{c['name']:32s} sr={c['sample_rate_hz']:5d} n_fft={c['n_fft']:4d} "
              f"n_mels={c['n_mels']:3d} samples={c['n_samples']:6d} frames={c['frames']:3d}")
    print(f"wrote {len(cases)} cases to {OUT_DIR}/ ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
