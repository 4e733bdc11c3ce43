#!/usr/bin/env python3
"""Writes the hand-made seed corpora of the fuzz targets (issue 10): fuzz/corpus/*/seed-*.

Small, deterministic, synthetic files (no recorded audio): valid chunks and WAV files in each
sample format the readers take, plus a few damaged ones, so AFL starts from the interesting
shapes. Files AFL found later (afl-*) are left alone. Run: python3 fuzz/make_seeds.py
"""
import json
import math
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent


def chunk(fmt, channels, payload, rate=16000, machine_id="fan-07", machine_type="fan", sequence=42):
    header = json.dumps({"machine_id": machine_id, "machine_type": machine_type, "sequence": sequence,
                         "capture_start_us": 1795000000000000, "sample_rate_hz": rate, "channels": channels,
                         "sample_format": fmt}, separators=(",", ":")).encode()
    return b"AUSC" + struct.pack("<HI", 1, len(header)) + header + payload


def s16(samples):
    return b"".join(struct.pack("<h", s) for s in samples)


def f32(samples):
    return b"".join(struct.pack("<f", s) for s in samples)


def tone(n, scale=1.0):
    return [math.sin(i * 0.3) * scale for i in range(n)]


def riff(chunks):
    body = b"WAVE" + b"".join(tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
                              for tag, data in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt_chunk(tag, channels, rate, bits, block_align=None, extra=b""):
    block_align = block_align or channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits) + extra


KSDATAFORMAT_SUBTYPE_PCM = bytes.fromhex("0100000000001000800000aa00389b71")


def wav(tag, channels, bits, data, rate=16000, block_align=None, extra=b""):
    return riff([(b"fmt ", fmt_chunk(tag, channels, rate, bits, block_align, extra)), (b"data", data)])


def main():
    pcm16 = s16(int(v * 32767) for v in tone(64))
    chunks = {
        "seed-s16le-mono": chunk("s16le", 1, pcm16),
        "seed-s16le-stereo": chunk("s16le", 2, pcm16, rate=48000, sequence=0),
        "seed-f32le-mono": chunk("f32le", 1, f32(tone(32, 0.5))),
        "seed-f32le-8ch": chunk("f32le", 8, f32(tone(64, 0.25)), machine_id="pump_id_02", machine_type="pump"),
        "seed-u8": chunk("u8", 1, bytes(range(100, 164))),
        "seed-s24le": chunk("s24le", 2, bytes(range(48))),
        "seed-s32le": chunk("s32le", 1, bytes(range(64))),
        # Damaged: a NaN sample, a ragged payload, a header length past the end, a bad version.
        "seed-bad-nan": chunk("f32le", 1, f32([0.5, float("nan"), 0.25, 0.0])),
        "seed-bad-ragged": chunk("s16le", 1, pcm16[:-1]),
        "seed-bad-header-len": b"AUSC" + struct.pack("<HI", 1, 4000) + b'{"machine_id":"x"}',
        "seed-bad-version": b"AUSC" + struct.pack("<HI", 2, 2) + b"{}",
    }
    stereo16 = s16(int(v * 20000) for v in tone(48))
    float32 = f32(tone(40, 0.75))
    extensible_24_in_32 = struct.pack("<HHI", 22, 24, 0x3) + KSDATAFORMAT_SUBTYPE_PCM
    wavs = {
        "seed-pcm16-mono.wav": wav(1, 1, 16, pcm16),
        "seed-pcm16-stereo.wav": wav(1, 2, 16, stereo16, rate=44100),
        "seed-float32-mono.wav": wav(3, 1, 32, float32),
        "seed-pcm8-mono.wav": wav(1, 1, 8, bytes(range(96, 160)), rate=8000),
        "seed-pcm24-stereo.wav": wav(1, 2, 24, bytes(range(120))),
        "seed-extensible-24in32.wav": wav(0xFFFE, 2, 32, bytes(range(64)), extra=extensible_24_in_32),
        "seed-list-chunk.wav": riff([(b"fmt ", fmt_chunk(1, 1, 16000, 16)), (b"LIST", b"INFOISFT\x04\0\0\0sox\0"),
                                     (b"data", pcm16[:32])]),
        # An odd-length chunk before the data, with its pad byte (hound does not skip the pad).
        "seed-odd-chunk.wav": riff([(b"fmt ", fmt_chunk(1, 1, 16000, 16)), (b"note", b"odd"), (b"data", pcm16[:32])]),
        # Damaged: a data chunk that says more than the file holds, a NaN, an A-law file.
        "seed-bad-truncated.wav": wav(1, 1, 16, pcm16)[:-40],
        "seed-bad-nan.wav": wav(3, 1, 32, f32([0.1, 0.2, float("nan"), 0.3])),
        "seed-bad-alaw.wav": wav(6, 1, 8, bytes(32), rate=8000),
    }
    for folder, files in (("chunk_decode", chunks), ("wav_read", wavs)):
        out = HERE / "corpus" / folder
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
