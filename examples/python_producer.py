#!/usr/bin/env python3
"""An edge agent in Python: send a WAV file to auscult's audio topic with kafka-python.

auscult's own agent (`auscult agent`) does this in Rust; this script shows that any producer
that follows `schemas/audio-chunk.md` is accepted by the pipeline. It cuts a 16-bit PCM WAV file
into 1 s chunks and produces each one keyed by the machine id, with the wire encoding as value
and the documented headers, from the idempotent-style settings a real agent would use
(acks=all, retries).

    PY=$(bash scripts/python-env.sh | tail -n 1)
    "$PY" examples/python_producer.py --brokers 127.0.0.1:9092 --machine-id pump-py --machine-type pump clip.wav
"""

import argparse
import json
import struct
import sys
import wave
from datetime import datetime, timezone

from kafka import KafkaProducer


def encode_chunk(machine_id, machine_type, sequence, capture_start_us, pcm, rate, channels, sample_format):
    """The chunk wire format, version 1: magic, version, header length, JSON header, PCM bytes."""
    header = json.dumps(
        {
            "machine_id": machine_id,
            "machine_type": machine_type,
            "sequence": sequence,
            "capture_start_us": capture_start_us,
            "sample_rate_hz": rate,
            "channels": channels,
            "sample_format": sample_format,
        }
    ).encode()
    return b"AUSC" + struct.pack("<HI", 1, len(header)) + header + pcm


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wav", help="a 16-bit PCM WAV file")
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", default="auscult.audio")
    parser.add_argument("--machine-id", required=True)
    parser.add_argument("--machine-type", required=True)
    parser.add_argument("--start-time", default="2026-01-01T00:00:00Z", help="capture time of the first sample")
    parser.add_argument("--chunk-s", type=float, default=1.0)
    args = parser.parse_args()

    start = datetime.fromisoformat(args.start_time.replace("Z", "+00:00")).astimezone(timezone.utc)
    start_us = int(start.timestamp()) * 1_000_000
    try:
        clip = wave.open(args.wav, "rb")
    except (OSError, wave.Error) as error:
        sys.exit(f"{args.wav}: cannot read: {error}")
    if clip.getsampwidth() != 2:
        sys.exit(f"{args.wav}: only 16-bit PCM is handled by this example")
    rate, channels = clip.getframerate(), clip.getnchannels()
    frames_per_chunk = max(1, int(rate * args.chunk_s))

    producer = KafkaProducer(bootstrap_servers=args.brokers, acks="all", retries=5)
    sequence, frames_done = 0, 0
    while True:
        pcm = clip.readframes(frames_per_chunk)
        if not pcm:
            break
        capture_us = start_us + frames_done * 1_000_000 // rate
        value = encode_chunk(args.machine_id, args.machine_type, sequence, capture_us, pcm, rate, channels, "s16le")
        headers = [
            ("auscult-schema", b"auscult.audio-chunk/1"),
            ("machine-type", args.machine_type.encode()),
            ("sequence", str(sequence).encode()),
        ]
        producer.send(args.topic, key=args.machine_id.encode(), value=value, headers=headers)
        frames_done += len(pcm) // (2 * channels)
        sequence += 1
    producer.flush()
    producer.close()
    print(f"sent {sequence} chunks of {args.machine_id} to {args.topic}", file=sys.stderr)


if __name__ == "__main__":
    main()
