//! The Kafka deployment end to end on a real Kafka-protocol broker (tansu over TCP): agents
//! send simulated machines, some records are malformed, the pipeline runs on 2 workers, and
//! what comes out (anomaly topic, dead letters, archive) is read back by independent clients.

mod common;

use common::broker::Broker;
use common::{auscult, python_ok, read_json, run_ok, Spawned};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeSet;
use std::time::Duration;

const START: &str = "2026-01-01T00:00:00Z";

/// A broker with auscult's topics, 4 partitions each.
fn broker_with_topics() -> Broker {
    let broker = Broker::start();
    run_ok(auscult().args(["topics", "--brokers", &broker.address, "--partitions", "4"]));
    broker
}

/// `auscult agent` simulating `machines` machines for `seconds` from `start`, as fast as the
/// broker takes them (simulator seed `seed`: with seed 3 the last of 4 machines, and the 4th
/// and 8th of 8, develop a fault 400 s in).
fn send_simulated(broker: &Broker, machines: &str, seconds: &str, start: &str, seed: &str) {
    run_ok(
        auscult().args(["agent", "--brokers", &broker.address, "--simulate", machines, "--duration", seconds]).args([
            "--speed",
            "0",
            "--seed",
            seed,
            "--start-time",
            start,
        ]),
    );
}

/// Produces records that are not valid chunks; returns how many.
fn produce_malformed(broker: &Broker) -> usize {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &broker.address).create().expect("a producer");
    let mut valid_header = br#"{"machine_id":"fan-99","machine_type":"fan","sequence":0,"capture_start_us":0,"sample_rate_hz":16000,"channels":1,"sample_format":"s16le"}"#.to_vec();
    let mut good = b"AUSC".to_vec();
    good.extend(1u16.to_le_bytes());
    good.extend((valid_header.len() as u32).to_le_bytes());
    good.append(&mut valid_header);
    good.extend([0u8; 3200]);
    let mut wrong_version = good.clone();
    wrong_version[4] = 9;
    // Float samples, one of them NaN: refused at the boundary, no state made for fan-99.
    let mut float_header = br#"{"machine_id":"fan-99","machine_type":"fan","sequence":0,"capture_start_us":0,"sample_rate_hz":16000,"channels":1,"sample_format":"f32le"}"#.to_vec();
    let mut not_finite = b"AUSC".to_vec();
    not_finite.extend(1u16.to_le_bytes());
    not_finite.extend((float_header.len() as u32).to_le_bytes());
    not_finite.append(&mut float_header);
    not_finite.extend([0.25f32, f32::NAN, 0.5].iter().flat_map(|v| v.to_le_bytes()));
    let records: Vec<(Option<&[u8]>, Vec<u8>)> = vec![
        (Some(b"fan-99".as_slice()), b"this is not audio".to_vec()),
        (Some(b"fan-99".as_slice()), wrong_version),
        (None, good.clone()),
        (Some(b"pump-42".as_slice()), good.clone()),
        (Some(b"fan-99".as_slice()), good[..good.len() - 1].to_vec()),
        (Some(b"fan-99".as_slice()), not_finite),
    ];
    let count = records.len();
    for (key, value) in &records {
        let headers = OwnedHeaders::new().insert(Header { key: "test", value: Some("malformed") });
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to("auscult.audio").payload(value.as_slice()).headers(headers);
        if let Some(key) = key {
            record = record.key(*key);
        }
        producer.send(record).map_err(|(error, _)| error).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
    count
}

#[test]
fn agents_to_anomaly_topic_with_dead_letters_and_archive() {
    let broker = Broker::start();
    let created = run_ok(auscult().args(["topics", "--brokers", &broker.address, "--partitions", "4"]));
    let created = String::from_utf8_lossy(&created.stdout);
    assert_eq!(created.matches("created with 4 partitions").count(), 6, "{created}");
    // 8 simulated machines, the 4th and 8th faulty from 400 s, sent as fast as the broker takes them.
    send_simulated(&broker, "8", "480", START, "3");
    let malformed = produce_malformed(&broker);
    // An agent written in Python, with an independent Kafka client.
    let clip = common::mimii().join("pump/id_00/normal/00000000.wav");
    let python_agent = common::repo().join("examples/python_producer.py");
    let mut python = common::python();
    run_ok(
        python
            .arg(&python_agent)
            .args(["--brokers", &broker.address, "--machine-id", "pump-py", "--machine-type", "pump"])
            .arg(&clip),
    );

    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    run_ok(
        auscult()
            .args(["run", "--brokers", &broker.address, "-w", "2", "--stop-when-idle", "3", "--archive"])
            .arg(dir.path().join("archive"))
            .arg("--summary-json")
            .arg(&summary_path),
    );
    let summary = read_json(&summary_path);
    let totals = &summary["totals"];
    assert_eq!(totals["chunks_read"].as_u64().unwrap(), 8 * 480 + 10, "{totals}");
    assert_eq!(totals["dead_letters"].as_u64().unwrap(), malformed as u64);
    let machines: BTreeSet<String> = totals["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|machine| machine["machine_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(machines.len(), 9, "{machines:?}");
    assert!(machines.contains("pump-py"), "the Python agent's machine was not processed");
    let python_machine = totals["machines"].as_array().unwrap().iter().find(|m| m["machine_id"] == "pump-py").unwrap();
    assert!((python_machine["audio_s"].as_f64().unwrap() - 10.0).abs() < 1e-6, "{python_machine}");
    // auscult's agent sends each machine to its owner's partition: none of its 3,840 chunks is
    // passed between workers. The Python agent's 10 go by its client's own partitioner, so they
    // may land on another worker's partition (then they are exchanged, all 10).
    let exchanged = totals["chunks_exchanged"].as_u64().unwrap();
    assert!(exchanged == 0 || exchanged == 10, "{exchanged} chunks exchanged between workers");

    // Dead letters keep the original key and value and say why.
    let letters = broker.consume("auscult.audio.dlq", malformed, Duration::from_secs(30));
    assert_eq!(letters.len(), malformed);
    let reasons: Vec<&str> = letters.iter().map(|letter| letter.header("auscult-error").unwrap_or("")).collect();
    for expected in
        ["not an auscult chunk", "version 9", "no key", "not its machine id", "frames", "not a finite number"]
    {
        assert!(
            reasons.iter().any(|reason| reason.contains(expected)),
            "no dead letter says '{expected}': {reasons:?}"
        );
    }
    assert!(letters.iter().all(|letter| letter.header("auscult-source").is_some()));
    assert!(letters.iter().any(|letter| letter.key == "pump-42" && letter.value.starts_with(b"AUSC")));

    // Anomalies on their topic, read by an independent client: the faulty machines only.
    let events = broker.consume(
        "auscult.anomalies",
        totals["events_written"].as_u64().unwrap() as usize,
        Duration::from_secs(30),
    );
    assert_eq!(events.len() as u64, totals["events_written"].as_u64().unwrap());
    let mut alerted = BTreeSet::new();
    for record in &events {
        let event: serde_json::Value = serde_json::from_slice(&record.value).expect("JSON");
        assert_eq!(record.key, event["machine_id"].as_str().unwrap());
        assert_eq!(event["schema"], "auscult.anomaly-event/1");
        if event["kind"] == "opened" {
            alerted.insert(record.key.clone());
        }
    }
    assert_eq!(alerted, BTreeSet::from(["fan-07".to_owned(), "valve-03".to_owned()]), "{events:?}");
    // And by the example consumer (kafka-python), which checks each against the published JSON
    // Schema and prints a line per event.
    let consumer = common::repo().join("examples/anomaly_consumer.py");
    let output = run_ok(common::python().arg(&consumer).args([
        "--brokers",
        &broker.address,
        "--from-beginning",
        "--idle-timeout",
        "5",
    ]));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed.lines().count() as u64, totals["events_written"].as_u64().unwrap(), "{printed}");
    assert!(printed.lines().all(|line| line.contains("fan-07") || line.contains("valve-03")), "{printed}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("0 invalid record(s)"));

    // Offsets: every record read, good or malformed, is committed.
    let committed: u64 = summary["workers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|worker| worker["committed_offsets"].as_object().unwrap().values())
        .map(|offset| offset.as_u64().unwrap())
        .sum();
    assert_eq!(committed, 8 * 480 + 10 + malformed as u64);

    // The fleet view at the end: every machine counted once, in its type's row.
    let fleet = totals["fleet"].as_array().unwrap();
    for (machine_type, machines) in [("fan", 2), ("pump", 3), ("slider", 2), ("valve", 2)] {
        let row = fleet.iter().find(|row| row["machine_type"] == machine_type && row["site"] == "").unwrap();
        let counted: i64 = ["machines_learning", "machines_normal", "alerts_warning", "alerts_alarm"]
            .iter()
            .map(|field| row[*field].as_i64().unwrap())
            .sum();
        assert_eq!(counted, machines, "{row}");
    }
    let pump = fleet.iter().find(|row| row["machine_type"] == "pump").unwrap();
    assert_eq!(pump["machines_learning"], 1, "pump-py sent 10 s: still learning");

    // Archive rows are the windows the audio makes, read back by DuckDB.
    let windows: u64 = totals["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["windows_learned"].as_u64().unwrap() + m["windows_scored"].as_u64().unwrap())
        .sum();
    assert_eq!(totals["archive_rows"].as_u64().unwrap(), windows);
    let counted = python_ok(
        "import sys, duckdb\nprint(duckdb.sql(f\"SELECT count(*) FROM read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true)\").fetchone()[0])",
        &[&dir.path().join("archive")],
    );
    assert_eq!(counted.trim().parse::<u64>().unwrap(), windows);
}

/// Sum over the workers of the committed next offsets (= records consumed, from offset 0).
fn committed_records(summary: &serde_json::Value) -> u64 {
    summary["workers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|worker| worker["committed_offsets"].as_object().unwrap().values())
        .map(|offset| offset.as_u64().unwrap())
        .sum()
}

#[test]
fn offsets_are_committed_after_the_outputs_and_a_restart_reads_only_what_is_new() {
    let broker = broker_with_topics();
    let send = |start: &str, seconds: &str| send_simulated(&broker, "3", seconds, start, "1");
    let run = |dir: &std::path::Path| {
        let summary_path = dir.join("summary.json");
        run_ok(
            auscult()
                .args(["run", "--brokers", &broker.address, "-w", "2", "--stop-when-idle", "2", "--learning-s", "20"])
                .arg("--events")
                .arg(dir.join("events.jsonl"))
                .arg("--archive")
                .arg(dir.join("archive"))
                .arg("--summary-json")
                .arg(&summary_path),
        );
        read_json(&summary_path)
    };
    send(START, "60");
    let first = tempfile::tempdir().unwrap();
    let summary = run(first.path());
    assert_eq!(summary["totals"]["chunks_read"].as_u64().unwrap(), 180);
    assert_eq!(committed_records(&summary), 180, "{}", summary["workers"]);
    assert!(summary["totals"]["archive_rows"].as_u64().unwrap() > 0);

    // An independent client sees the group's commits at the end of every partition.
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "auscult-pipeline")
        .create()
        .unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for partition in 0..4 {
        partitions.add_partition("auscult.audio", partition);
    }
    let committed = rdkafka::consumer::Consumer::committed_offsets(&consumer, partitions, Duration::from_secs(10))
        .expect("committed offsets");
    let total: i64 =
        committed.elements().iter().filter_map(|element| element.offset().to_raw()).filter(|o| *o > 0).sum();
    assert_eq!(total, 180);

    // More audio arrives; a restarted pipeline reads only that.
    send("2026-01-01T00:01:00Z", "20");
    let second = tempfile::tempdir().unwrap();
    let summary = run(second.path());
    assert_eq!(summary["totals"]["chunks_read"].as_u64().unwrap(), 60, "the restart re-read old audio");
    assert_eq!(committed_records(&summary), 240);
}

#[test]
fn the_machine_registry_mutes_a_machine_and_overrides_its_learning() {
    let broker = broker_with_topics();
    put_registry(
        &broker,
        &[
            ("valve-03", Some(r#"{"site":"hall-b","muted":true}"#)),
            ("pump-01", Some(r#"{"site":"hall-a","learning_s":60}"#)),
            ("fan-00", Some(r#"{"learning_s":30}"#)),
            ("fan-00", None),
        ],
    );
    // valve-03 develops a fault at 400 s (seed 3); the others are healthy.
    send_simulated(&broker, "4", "480", START, "3");
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    run_ok(
        auscult()
            .args(["run", "--brokers", &broker.address, "-w", "2", "--stop-when-idle", "2", "--events"])
            .arg(dir.path().join("events.jsonl"))
            .arg("--summary-json")
            .arg(&summary_path),
    );
    let events = common::read_jsonl(&dir.path().join("events.jsonl"));
    let summary = read_json(&summary_path);
    let machine = |id: &str| {
        summary["totals"]["machines"].as_array().unwrap().iter().find(|m| m["machine_id"] == id).unwrap().clone()
    };
    // The muted valve's fault opened alerts, but no event left the pipeline.
    assert!(events.iter().all(|event| event["machine_id"] != "valve-03"), "{events:?}");
    assert!(machine("valve-03")["events_muted"].as_u64().unwrap() > 0, "{}", machine("valve-03"));
    // The pump learned for its own 60 s (30 windows of 2.05 s), not the configured 300 s.
    let pump = machine("pump-01");
    assert!((pump["learned_audio_s"].as_f64().unwrap() - 61.44).abs() < 0.01, "{pump}");
    // fan-00's override was deleted by a tombstone: it learned for the configured span.
    let fan = machine("fan-00");
    assert!(fan["learned_audio_s"].as_f64().unwrap() >= 300.0, "{fan}");

    // The fleet view on its compacted topic, read by an independent client: rows keyed by
    // site/type as they changed.
    let updates =
        summary["workers"].as_array().unwrap().iter().map(|w| w["fleet_updates"].as_u64().unwrap()).sum::<u64>();
    let records = broker.consume("auscult.fleet", updates as usize, Duration::from_secs(30));
    assert_eq!(records.len() as u64, updates);
    let rows: Vec<serde_json::Value> = records.iter().map(|r| serde_json::from_slice(&r.value).unwrap()).collect();
    let keys: BTreeSet<&str> = records.iter().map(|record| record.key.as_str()).collect();
    assert_eq!(keys, BTreeSet::from(["/fan", "/slider", "hall-a/pump", "hall-b/valve"]));
    let max = |key: &str, field: &str| {
        records
            .iter()
            .zip(&rows)
            .filter(|(r, _)| r.key == key)
            .map(|(_, row)| row[field].as_i64().unwrap())
            .max()
            .unwrap()
    };
    for key in ["/fan", "/slider", "hall-a/pump", "hall-b/valve"] {
        assert_eq!(max(key, "machines_live"), 1, "{key}");
        assert_eq!(max(key, "machines_learning"), 1, "{key}");
        // 60 s of 2.05 s windows, at most 30 (29 or 30 depending on where the minute falls).
        assert!((29..=30).contains(&max(key, "windows_last_minute")), "{key}: {}", max(key, "windows_last_minute"));
    }
    // The valve's fault shows as an open alert (muting silences events, not the view).
    assert_eq!(max("hall-b/valve", "alerts_warning") + max("hall-b/valve", "alerts_alarm").min(1), 1);
    assert_eq!(max("/fan", "alerts_warning"), 0);
    // At the end every machine is scoring: none learning.
    let last = |key: &str| {
        records.iter().zip(&rows).filter(|(r, _)| r.key == key).map(|(_, row)| row.clone()).next_back().unwrap()
    };
    assert_eq!(last("hall-a/pump")["machines_learning"], 0);
}

/// Every archive row under `dir`, read by DuckDB, one line of text each, sorted.
fn archive_rows(dir: &std::path::Path) -> Vec<String> {
    let script = r#"
import sys, duckdb
files = f"read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true)"
rows = duckdb.sql(f"select cast(columns(* exclude (date)) as varchar) from {files}").fetchall()
for row in sorted(map(repr, rows)):
    print(row)
"#;
    python_ok(script, &[dir]).lines().map(str::to_owned).collect()
}

fn sorted_lines(paths: &[std::path::PathBuf]) -> Vec<String> {
    let mut lines: Vec<String> = paths
        .iter()
        .flat_map(|path| std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_pipeline_stopped_and_restarted_from_its_checkpoints_emits_what_an_uninterrupted_one_does() {
    let broker = broker_with_topics();
    let send = |start: &str, seconds: &str| send_simulated(&broker, "4", seconds, start, "1");
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let pipeline = |group: &str, events: &str, archive: &str, summary: &str, workers: &str| {
        let mut command = auscult();
        command
            .args(["run", "--brokers", &broker.address, "-w", workers, "--learning-s", "20", "--group", group])
            .arg("--events")
            .arg(path(events))
            .arg("--archive")
            .arg(path(archive))
            .arg("--summary-json")
            .arg(path(summary));
        command
    };

    // The first two minutes of four machines; a pipeline with a state folder reads them and
    // is stopped with SIGTERM once it has archived something.
    send(START, "120");
    let first = Spawned::start(
        pipeline("restarted", "events-1.jsonl", "archive", "summary-1.json", "2")
            .arg("--state")
            .arg(path("state"))
            .stderr(std::process::Stdio::piped()),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let archived =
        || walk(&path("archive")).iter().any(|file| file.extension().is_some_and(|extension| extension == "parquet"));
    while !archived() {
        assert!(std::time::Instant::now() < deadline, "the first run archived nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    first.signal("TERM");
    let output = first.wait_with_output();
    assert!(output.status.success(), "SIGTERM is a clean stop:\n{}", String::from_utf8_lossy(&output.stderr));
    let summary = read_json(&path("summary-1.json"));
    assert!(summary["totals"]["checkpoints_written"].as_u64().unwrap() > 0, "{}", summary["totals"]);
    let read_first = summary["totals"]["chunks_read"].as_u64().unwrap();
    assert_eq!(committed_records(&summary), read_first, "a clean stop commits what it read");

    // Eight more minutes (the simulated faults start at 400 s of this agent's run; its
    // sequence numbers start again at 0); the restarted pipeline, on 3 workers now, continues
    // from the state (each worker takes the machines it owns from every worker's checkpoint).
    send("2026-01-01T00:02:00Z", "480");
    run_ok(
        pipeline("restarted", "events-2.jsonl", "archive", "summary-2.json", "3")
            .args(["--stop-when-idle", "2", "--state"])
            .arg(path("state")),
    );
    let summary = read_json(&path("summary-2.json"));
    assert!(summary["totals"]["machines_restored"].as_u64().unwrap() > 0, "{}", summary["totals"]);
    assert_eq!(summary["totals"]["chunks_read"].as_u64().unwrap() + read_first, 480 + 1920, "read twice or lost");

    // The same audio through a pipeline that was never stopped.
    run_ok(
        pipeline("uninterrupted", "events-all.jsonl", "archive-all", "summary-all.json", "2")
            .args(["--stop-when-idle", "2"]),
    );
    let uninterrupted_events = sorted_lines(&[path("events-all.jsonl")]);
    assert!(
        uninterrupted_events.iter().any(|line| line.contains("\"opened\"")),
        "the faulty machines should raise alerts"
    );
    assert_eq!(sorted_lines(&[path("events-1.jsonl"), path("events-2.jsonl")]), uninterrupted_events);
    let uninterrupted_rows = archive_rows(&path("archive-all"));
    // Each agent run is a stretch of audio of its own (the STFT restarts): its frames, in windows of 64.
    let windows = |seconds: usize| ((seconds * 16_000 - 1024) / 512 + 1) / 64;
    assert_eq!(uninterrupted_rows.len(), 4 * (windows(120) + windows(480)), "windows of the audio");
    assert_eq!(archive_rows(&path("archive")), uninterrupted_rows);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Puts registry entries (a tombstone for `None`) on `auscult.machines`.
fn put_registry(broker: &Broker, entries: &[(&str, Option<&str>)]) {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &broker.address).create().expect("a producer");
    for (key, value) in entries {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to("auscult.machines").key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer.send(record).map_err(|(error, _)| error).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

#[test]
fn a_registry_change_in_the_middle_of_a_run_changes_what_is_emitted_from_then_on() {
    let broker = broker_with_topics();
    // valve-03 develops a fault 400 s into each agent run (seed 3); the others are healthy.
    let send = |start: &str, seconds: &str| send_simulated(&broker, "4", seconds, start, "3");
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let pipeline = |group: &str, events: &str, archive: &str| {
        let mut command = auscult();
        command
            .args(["run", "--brokers", &broker.address, "-w", "2", "--learning-s", "20", "--group", group])
            .arg("--events")
            .arg(path(events))
            .arg("--archive")
            .arg(path(archive));
        command
    };

    // A live pipeline, with an empty registry, learns the four machines from two minutes of audio.
    let mut live = Spawned::start(
        pipeline("live", "events.jsonl", "archive")
            .args(["--stop-when-idle", "8", "--log", "info", "--summary-json"])
            .arg(path("summary.json"))
            .stderr(std::process::Stdio::piped()),
    );
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let log = std::sync::Arc::clone(&log);
        let stderr = live.take_stderr();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                log.lock().unwrap().push(line.unwrap());
            }
        })
    };
    send(START, "120");
    let last_windows = r#"
import sys, duckdb
try:
    print(duckdb.sql(f"select count(distinct machine_id) from read_parquet('{sys.argv[1]}/**/*.parquet') where window_end >= '2026-01-01 00:01:50'").fetchone()[0])
except duckdb.Error:
    print(0)
"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while python_ok(last_windows, &[&path("archive")]).trim() != "4" {
        assert!(std::time::Instant::now() < deadline, "the live pipeline did not process the first two minutes");
        std::thread::sleep(Duration::from_millis(300));
    }
    // While it runs: mute the valve, and fix fan-00's warning threshold at a score most of its
    // normal windows exceed; the pipeline says when it has read each entry.
    put_registry(&broker, &[("valve-03", Some(r#"{"muted":true}"#)), ("fan-00", Some(r#"{"warning_threshold":0.5}"#))]);
    let read = |machine: &str| {
        log.lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("registry entry") && line.contains(&format!("machine_id={machine}")))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(read("valve-03") && read("fan-00")) {
        assert!(std::time::Instant::now() < deadline, "the registry change was not read: {:?}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    send("2026-01-01T00:02:00Z", "480");
    let status = live.wait();
    reader.join().unwrap();
    assert!(status.success(), "{:?}", log.lock().unwrap());

    // The same audio, read by a pipeline without a registry (its registry topic is one that
    // holds nothing).
    let reference_config = path("reference.toml");
    std::fs::write(&reference_config, "[kafka]\nmachines_topic = \"auscult.machines.none\"\n").unwrap();
    run_ok(
        pipeline("reference", "reference.jsonl", "reference-archive")
            .args(["--stop-when-idle", "2", "--config"])
            .arg(&reference_config),
    );
    let events = common::read_jsonl(&path("events.jsonl"));
    let reference = common::read_jsonl(&path("reference.jsonl"));
    let of = |events: &[serde_json::Value], machine: &str| -> Vec<serde_json::Value> {
        events.iter().filter(|event| event["machine_id"] == machine).cloned().collect()
    };
    // The valve's fault alerts in the reference; the muted valve emitted nothing.
    assert!(!of(&reference, "valve-03").is_empty(), "{reference:?}");
    assert!(of(&events, "valve-03").is_empty(), "{events:?}");
    let summary = read_json(&path("summary.json"));
    let valve =
        summary["totals"]["machines"].as_array().unwrap().iter().find(|m| m["machine_id"] == "valve-03").unwrap();
    assert!(valve["events_muted"].as_u64().unwrap() > 0, "{valve}");
    // fan-00 alerts at its new threshold, only from the change on: what it emitted before is
    // what the reference emitted before.
    let (fan, fan_reference) = (of(&events, "fan-00"), of(&reference, "fan-00"));
    assert!(fan.len() > fan_reference.len(), "{} events, reference {}", fan.len(), fan_reference.len());
    assert!(fan.iter().all(|event| event["threshold"] == 0.5 || fan_reference.contains(event)), "{fan:?}");
    let before = |events: &[serde_json::Value]| -> Vec<serde_json::Value> {
        events.iter().filter(|e| e["window_start"].as_str().unwrap() < "2026-01-01T00:02:00").cloned().collect()
    };
    assert_eq!(before(&fan), before(&fan_reference));
    // The other machines are untouched.
    for machine in ["pump-01", "slider-02"] {
        assert_eq!(of(&events, machine), of(&reference, machine), "{machine}");
    }
}

#[test]
fn a_pipeline_killed_four_times_mid_stream_loses_nothing_and_its_repeats_carry_the_same_ids() {
    let broker = broker_with_topics();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    // Four machines for eight minutes at 20x real time (24 s); the faults start at 400 s.
    let agent = Spawned::start(
        auscult()
            .args(["agent", "--brokers", &broker.address, "--simulate", "4", "--duration", "480", "--speed", "20"])
            .args(["--start-time", START])
            .stderr(std::process::Stdio::null()),
    );
    let pipeline = |group: &str| {
        let mut command = auscult();
        command.args(["run", "--brokers", &broker.address, "-w", "2", "--learning-s", "20", "--group", group]);
        command
    };
    // A pipeline with a state folder (events to the anomaly topic), killed once it has
    // committed something.
    let crashing = || {
        let mut command = pipeline("crashing");
        command.arg("--state").arg(path("state")).arg("--archive").arg(path("archive"));
        command.stderr(std::process::Stdio::null());
        Spawned::start(&mut command)
    };
    let first = crashing();
    // Committed: a worker recorded a boundary that one of the checkpoint files lies within.
    let committed = || {
        let files = walk(&path("state"));
        let number = |text: &str| text.trim().parse::<i64>().ok();
        let marked = files
            .iter()
            .filter(|file| file.ends_with("committed"))
            .filter_map(|file| number(&std::fs::read_to_string(file).unwrap_or_default()))
            .max();
        files
            .iter()
            .filter(|file| file.extension().is_some_and(|extension| extension == "ckpt"))
            .filter_map(|file| number(file.file_stem()?.to_str()?))
            .any(|covered| Some(covered) <= marked)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !committed() {
        assert!(std::time::Instant::now() < deadline, "the first run committed nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    first.signal("KILL");
    first.wait();
    // Three more restarts, each killed a few seconds in while the agent still sends: each
    // restored run replays a backlog, in which audio can arrive late (after the idle rule moved
    // the frontier), the case that once lost archive rows (bench/kafka_crashes.sh, seed 2).
    for seconds in [2.5, 3.5, 3.0] {
        let restarted = crashing();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        restarted.signal("KILL");
        restarted.wait();
    }
    assert!(agent.wait().success());

    // Restarted from its state, it reads from the committed offsets to the end.
    run_ok(
        pipeline("crashing")
            .args(["--stop-when-idle", "2", "--state"])
            .arg(path("state"))
            .arg("--archive")
            .arg(path("archive"))
            .arg("--summary-json")
            .arg(path("summary.json")),
    );
    let summary = read_json(&path("summary.json"));
    assert!(summary["totals"]["machines_restored"].as_u64().unwrap() > 0, "{}", summary["totals"]);
    // (It may read every chunk again: the kill can fall between recording a boundary and
    // committing the offsets; the restored state then drops what it has seen.)
    // A pipeline that never crashed, on the same audio.
    run_ok(
        pipeline("reference")
            .args(["--stop-when-idle", "2", "--events"])
            .arg(path("reference.jsonl"))
            .arg("--archive")
            .arg(path("reference-archive")),
    );

    // Events: some may have been sent twice, each time with the same id and content; without
    // repeats they are the reference's.
    let reference: BTreeSet<String> =
        sorted_lines(&[path("reference.jsonl")]).into_iter().map(|line| canonical(&line)).collect();
    assert!(reference.iter().any(|event| event.contains("\"opened\"")), "the faults should raise alerts");
    let records = broker.consume("auscult.anomalies", usize::MAX, Duration::from_secs(10));
    let mut by_id: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for record in &records {
        let event = canonical(std::str::from_utf8(&record.value).unwrap());
        let id = serde_json::from_str::<serde_json::Value>(&event).unwrap()["event_id"].as_str().unwrap().to_owned();
        if let Some(earlier) = by_id.insert(id, event.clone()) {
            assert_eq!(earlier, event, "a repeated event id with other content");
        }
    }
    assert_eq!(by_id.into_values().collect::<BTreeSet<_>>(), reference);
    // Archive rows: repeats aside, the reference's rows, none missing.
    let rows = archive_rows(&path("archive"));
    let reference_rows = archive_rows(&path("reference-archive"));
    assert!(rows.len() >= reference_rows.len());
    let distinct: BTreeSet<&String> = rows.iter().collect();
    assert_eq!(distinct, reference_rows.iter().collect::<BTreeSet<_>>());
}

/// A JSON text in one canonical form (keys sorted, as serde_json's map is).
fn canonical(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).unwrap().to_string()
}

/// One machine's chunks on two partitions read by two workers (a producer that changed its
/// partitioner, or a topic that grew): the owner is still one worker, the chunks read by the
/// other are exchanged to it, and the machine hears its audio as one stream, exactly like a
/// twin whose identical audio stayed on its own partition.
#[test]
fn a_machine_that_moves_partition_is_still_one_state_in_order() {
    use auscult_schemas::{partition_of, AudioChunk, ChunkOrigin, MachineId, MachineType, SampleFormat};
    let broker = broker_with_topics();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &broker.address).create().expect("a producer");
    let (mover, twin) = (MachineId::new("fan-mover").unwrap(), MachineId::new("fan-twin").unwrap());
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    for sequence in 0..120u64 {
        let payload: Vec<u8> = (0..16_000)
            .flat_map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                ((noise >> 48) as i16 / 8).to_le_bytes()
            })
            .collect();
        for machine_id in [&mover, &twin] {
            let chunk = AudioChunk {
                machine_id: machine_id.clone(),
                machine_type: MachineType::new("fan").unwrap(),
                sequence,
                capture_start_us: 1_767_225_600_000_000 + sequence as i64 * 1_000_000,
                sample_rate_hz: 16_000,
                channels: 1,
                sample_format: SampleFormat::S16le,
                payload: payload.clone(),
                origin: ChunkOrigin::Simulator { seed: 0 },
            };
            let own = partition_of(machine_id, 4);
            // The mover's second minute goes to the next partition: another worker's, of 2.
            let partition = if machine_id == &mover && sequence >= 60 { (own + 1) % 4 } else { own };
            let value = chunk.encode();
            let record: BaseRecord<'_, str, [u8]> =
                BaseRecord::to("auscult.audio").key(machine_id.as_str()).payload(value.as_slice()).partition(partition);
            producer.send(record).map_err(|(error, _)| error).expect("queued");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");

    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    run_ok(
        auscult()
            .args(["run", "--brokers", &broker.address, "-w", "2", "--stop-when-idle", "3", "--events"])
            .arg(dir.path().join("events.jsonl"))
            .arg("--summary-json")
            .arg(&summary_path),
    );
    let totals = read_json(&summary_path)["totals"].clone();
    assert_eq!(totals["chunks_read"], 240, "{totals}");
    assert_eq!(totals["chunks_exchanged"], 60, "the mover's second minute crossed to its owner: {totals}");
    assert_eq!(totals["skipped"].as_array().unwrap().len(), 0, "{totals}");
    let machine = |id: &str| {
        let machines = totals["machines"].as_array().unwrap();
        let found = machines.iter().find(|m| m["machine_id"] == id).unwrap_or_else(|| panic!("{id} in {totals}"));
        (found["audio_s"].as_f64().unwrap(), found["windows_learned"].clone(), found["windows_scored"].clone())
    };
    assert_eq!(totals["machines"].as_array().unwrap().len(), 2);
    let (audio_s, learned, scored) = machine("fan-mover");
    assert!((audio_s - 120.0).abs() < 1e-6, "{audio_s}");
    assert_eq!((learned, scored), (machine("fan-twin").1, machine("fan-twin").2));
}
