#!/usr/bin/env python3
"""A downstream consumer in Python: print auscult's anomaly events as they arrive.

Reads the topic `auscult.anomalies` with kafka-python, checks every event against the published
JSON Schema (`schemas/anomaly-event.schema.json`) and prints one line per event. An event that
does not validate is reported on stderr and makes the exit status 1. Events carry a deterministic
`event_id`: after a pipeline crash a consumer may see one twice, and this one prints it once.

    PY=$(bash scripts/python-env.sh | tail -n 1)
    "$PY" examples/anomaly_consumer.py --brokers 127.0.0.1:9092 --from-beginning
    "$PY" examples/anomaly_consumer.py --brokers 127.0.0.1:9092 --from-beginning --idle-timeout 5   # stop when quiet
"""

import argparse
import json
import pathlib
import sys

import jsonschema
from kafka import KafkaConsumer

SCHEMA = pathlib.Path(__file__).resolve().parent.parent / "schemas" / "anomaly-event.schema.json"


def describe(event):
    """One line: when, which machine, what happened, how far over the threshold, and where."""
    line = (
        f"{event['window_start']} {event['machine_id']} ({event['machine_type']}) "
        f"{event['kind']} {event['level']}: score {event['score']:.2f}, threshold {event['threshold']:.2f}"
    )
    if event["top_bands"]:
        band = event["top_bands"][0]
        line += f", most off: {band['low_hz']:.0f}-{band['high_hz']:.0f} Hz ({band['deviation_sd']:+.1f} sd)"
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True, help="bootstrap brokers, host:port[,host:port]")
    parser.add_argument("--topic", default="auscult.anomalies")
    parser.add_argument("--group", default=None, help="consumer group (none: read without committing)")
    parser.add_argument("--from-beginning", action="store_true", help="read the topic from its start")
    parser.add_argument("--idle-timeout", type=float, default=None, help="stop after this many quiet seconds")
    args = parser.parse_args()

    validator = jsonschema.Draft202012Validator(
        json.loads(SCHEMA.read_text()), format_checker=jsonschema.FormatChecker()
    )
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.brokers.split(","),
        group_id=args.group,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        consumer_timeout_ms=int(args.idle_timeout * 1000) if args.idle_timeout else float("inf"),
    )
    seen, invalid = set(), 0
    try:
        for record in consumer:
            where = f"{record.topic}/{record.partition}@{record.offset}"
            try:
                event = json.loads(record.value)
            except ValueError as error:
                print(f"{where}: not JSON: {error}", file=sys.stderr)
                invalid += 1
                continue
            errors = list(validator.iter_errors(event))
            if errors:
                print(f"{where}: not an anomaly event: {errors[0].message}", file=sys.stderr)
                invalid += 1
                continue
            if record.key is None or record.key.decode() != event["machine_id"]:
                print(f"{where}: key {record.key!r} is not the event's machine id", file=sys.stderr)
                invalid += 1
                continue
            if event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            print(describe(event), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    print(f"{len(seen)} event(s), {invalid} invalid record(s)", file=sys.stderr)
    sys.exit(1 if invalid else 0)


if __name__ == "__main__":
    main()
