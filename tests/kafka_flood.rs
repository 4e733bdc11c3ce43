//! Floods on a real broker: 10,000 malformed records of every kind the chunk spec refuses, and
//! 20,000 new machines at once. Every bad record must end in the dead-letter topic with its
//! reason, the run must keep its memory bounded (`stream.max_machines` holding for the whole
//! run), and nothing may be written outside the archive folder.

mod common;

use auscult_schemas::{AudioChunk, ChunkOrigin, MachineId, MachineType, SampleFormat};
use common::broker::Broker;
use common::{auscult, read_json, run_ok, Spawned};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const AUDIO: &str = "auscult.audio";
const DLQ: &str = "auscult.audio.dlq";

fn broker_with_topics() -> Broker {
    let broker = Broker::start();
    run_ok(auscult().args(["topics", "--brokers", &broker.address, "--partitions", "4"]));
    broker
}

/// A deterministic source of noise (xorshift64*), so a failing record can be made again.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The wire layout written by hand (magic, version, header length, header, payload), so that
/// each part can lie.
fn wire(version: u16, header_len: u32, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut bytes = b"AUSC".to_vec();
    bytes.extend(version.to_le_bytes());
    bytes.extend(header_len.to_le_bytes());
    bytes.extend(header);
    bytes.extend(payload);
    bytes
}

fn header(machine_id: &str, machine_type: &str, format: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "machine_id": machine_id, "machine_type": machine_type, "sequence": 0,
        "capture_start_us": 0, "sample_rate_hz": 16000, "channels": 1, "sample_format": format,
    }))
    .unwrap()
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|value| value.to_le_bytes()).collect()
}

/// Record `i` of the malformed flood: (its kind, key, value). Every kind is refused by the
/// chunk spec, so every record must reach the dead-letter topic.
fn malformed(i: usize, noise: &mut Noise) -> (&'static str, Option<Vec<u8>>, Vec<u8>) {
    let good = |id: &str| wire(1, header(id, "fan", "s16le").len() as u32, &header(id, "fan", "s16le"), &[0u8; 640]);
    let with_id = |id: &str, machine_type: &str| {
        let header = header(id, machine_type, "s16le");
        (Some(id.as_bytes().to_vec()), wire(1, header.len() as u32, &header, &[0u8; 640]))
    };
    let key = Some(b"fan-1".to_vec());
    match i % 16 {
        0 => {
            let length = 1 + noise.below(2000);
            ("random bytes", key, noise.bytes(length))
        }
        1 => {
            // The payload has no length of its own (it is the rest of the record), so a chunk
            // cut at a frame boundary is a valid shorter chunk: cut in the header, or mid-frame.
            let whole = good("fan-1");
            let payload_start = whole.len() - 640;
            let cut = if i % 32 == 1 { noise.below(payload_start) } else { payload_start + 2 * noise.below(320) + 1 };
            ("truncated", key, whole[..cut].to_vec())
        }
        2 => {
            let mut value = good("fan-1");
            value[4..6].copy_from_slice(&(2 + noise.below(60_000) as u16).to_le_bytes());
            ("wrong version", key, value)
        }
        3 => {
            let header = header("fan-1", "fan", "s16le");
            (
                "header length too large",
                key,
                wire(1, header.len() as u32 + 1 + noise.below(1 << 30) as u32, &header, &[]),
            )
        }
        4 => {
            let header = header("fan-1", "fan", "s16le");
            ("header length too small", key, wire(1, header.len() as u32 / 2, &header, &[0u8; 64]))
        }
        5 => {
            let header = header("fan-1", "fan", "f32le");
            let mut samples = vec![0.25f32; 160];
            samples[noise.below(160)] = f32::NAN;
            ("NaN sample", key, wire(1, header.len() as u32, &header, &floats(&samples)))
        }
        6 => {
            let header = header("fan-1", "fan", "f32le");
            let mut samples = vec![-0.5f32; 160];
            samples[noise.below(160)] = if i % 32 == 6 { f32::INFINITY } else { f32::NEG_INFINITY };
            ("infinite sample", key, wire(1, header.len() as u32, &header, &floats(&samples)))
        }
        7 => {
            let header = header("fan-1", "fan", "s16le");
            ("empty payload", key, wire(1, header.len() as u32, &header, &[]))
        }
        8 => ("empty record", key, Vec::new()),
        9 => {
            let (key, value) = with_id("../../etc/passwd", "fan");
            ("id with /", key, value)
        }
        10 => {
            let (key, value) = with_id("..", "fan");
            ("id ..", key, value)
        }
        11 => {
            let (key, value) = with_id("fan\u{0}1", "fan");
            ("id with NUL", key, value)
        }
        12 => {
            // 10 kB (the header outgrows its limit) or 129 bytes to 3 kB (the name does).
            let length = if i % 32 == 12 { 10_000 + noise.below(1000) } else { 129 + noise.below(3000) };
            let (key, value) = with_id(&"x".repeat(length), "fan");
            ("long id", key, value)
        }
        13 => {
            let (key, value) = with_id(["fan\u{202e}gpj", "ｆａｎ-1", "fan-\u{1f4a5}", "e\u{301}"][i % 4], "fan");
            ("odd Unicode id", key, value)
        }
        14 => {
            let (key, value) = with_id("fan-1", ["../archive", "fan/x", "type=fan", ".hidden"][i % 4]);
            ("type that names a path", key, value)
        }
        _ => {
            let header = header("fan-1", "fan", "s16le");
            ("ragged payload", key, wire(1, header.len() as u32, &header, &[0u8; 641]))
        }
    }
}

fn produce(broker: &Broker, records: &[(Option<Vec<u8>>, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a producer");
    for (key, value) in records {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(AUDIO).payload(value.as_slice());
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        while let Err((error, returned)) = producer.send(record) {
            assert!(format!("{error}").contains("Queue full"), "{error}");
            producer.poll(Duration::from_millis(10));
            record = returned;
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flushed");
}

/// Runs the pipeline on the broker until the topic is read and quiet for 3 s; returns its
/// summary and its peak resident memory in MiB (VmHWM, read just before it exits).
fn run_pipeline(broker: &Broker, dir: &Path, extra: &[&str]) -> (serde_json::Value, u64) {
    let summary_path = dir.join("summary.json");
    let mut command = auscult();
    command
        .current_dir(dir)
        .args(["run", "--brokers", &broker.address, "-w", "2", "--stop-when-idle", "3"])
        .args(extra)
        .args(["--archive", "archive", "--events", "events.jsonl", "--summary-json"])
        .arg(&summary_path)
        .stderr(std::process::Stdio::null());
    let spawned = Spawned::start(&mut command);
    let status_path = PathBuf::from(format!("/proc/{}/status", spawned.id()));
    // Sampled while it runs: VmHWM is the peak so far, and is gone once it exits.
    let peak = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peak_kib / 1024
    });
    let status = spawned.wait_within(Duration::from_secs(300), "the pipeline on a flood");
    assert!(status.success(), "the pipeline failed: {status}");
    (read_json(&summary_path), peak.join().unwrap())
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    files
}

#[test]
fn ten_thousand_malformed_records_all_reach_the_dead_letter_topic_with_their_reason() {
    let broker = broker_with_topics();
    let mut noise = Noise(0x5eed);
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut records = Vec::new();
    for i in 0..10_000 {
        let (kind, key, value) = malformed(i, &mut noise);
        *kinds.entry(kind).or_default() += 1;
        records.push((key, value));
    }
    // Two good machines among them: the stream goes on around the flood.
    for sequence in 0..40u64 {
        for id in ["fan-1", "pump-1"] {
            let chunk = AudioChunk {
                machine_id: MachineId::new(id).unwrap(),
                machine_type: MachineType::new(&id[..id.len() - 2]).unwrap(),
                sequence,
                capture_start_us: sequence as i64 * 500_000,
                sample_rate_hz: 16_000,
                channels: 1,
                sample_format: SampleFormat::S16le,
                payload: (0..8000).flat_map(|n: i32| ((n * 7919 % 2000 - 1000) as i16).to_le_bytes()).collect(),
                origin: ChunkOrigin::File { path: "test".to_owned() },
            };
            records.push((Some(id.as_bytes().to_vec()), chunk.encode()));
        }
    }
    produce(&broker, &records);

    let dir = tempfile::tempdir().unwrap();
    let (summary, peak_mib) = run_pipeline(&broker, dir.path(), &["--learning-s", "10"]);
    let totals = &summary["totals"];
    assert_eq!(totals["dead_letters"].as_u64().unwrap(), 10_000, "{totals}");
    assert_eq!(totals["chunks_read"].as_u64().unwrap(), 80, "the good chunks still processed: {totals}");
    let machines: Vec<&str> =
        totals["machines"].as_array().unwrap().iter().map(|machine| machine["machine_id"].as_str().unwrap()).collect();
    assert_eq!(machines.len(), 2, "no state for the senders of bad records: {machines:?}");

    let letters = broker.consume(DLQ, 10_000, Duration::from_secs(120));
    assert_eq!(letters.len(), 10_000, "every malformed record in the dead-letter topic");
    let reasons: Vec<&str> = letters.iter().map(|letter| letter.header("auscult-error").unwrap_or("")).collect();
    assert!(reasons.iter().all(|reason| !reason.is_empty()), "a dead letter without a reason");
    assert!(reasons.iter().all(|reason| reason.len() < 400), "a reason that repeats a 10 kB name");
    for expected in [
        "not an auscult chunk",
        "version",
        "not a finite number",
        "payload is empty",
        "A-Z a-z 0-9 . _ -",
        "longer than 128",
        "more than the 4096 allowed",
        "frames",
    ] {
        assert!(reasons.iter().any(|reason| reason.contains(expected)), "no dead letter says '{expected}'");
    }
    // The bad names never reached the file system: only the archive, events and summary.
    for file in files_under(dir.path()) {
        let top = file.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        assert!(["archive", "events.jsonl", "summary.json"].contains(&top.as_str()), "{file:?} written");
        let text = file.to_string_lossy();
        assert!(!text.contains("passwd") && !text.contains("gpj"), "{file:?}");
    }
    // Hive folders of the two good machines' type only.
    for file in files_under(&dir.path().join("archive")) {
        let folders: Vec<String> =
            file.parent().unwrap().components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect();
        assert!(
            folders.iter().all(|folder| folder.starts_with("date=")
                || folder == "machine_type=fan"
                || folder == "machine_type=pump"),
            "{file:?}"
        );
    }
    // Bounded: the flood adds no state and no list that grows with it.
    assert!(peak_mib < 400, "peak resident memory {peak_mib} MiB on 10,000 bad records");
    eprintln!("kinds: {kinds:?}; peak resident memory {peak_mib} MiB");
}

#[test]
fn twenty_thousand_new_machines_at_once_hold_max_machines_for_the_run() {
    let broker = broker_with_topics();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auscult.toml");
    std::fs::write(&config, "[stream]\nmax_machines = 5000\n").unwrap();
    // 20,000 machines, one 10 ms chunk each.
    let records: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..20_000)
        .map(|n| {
            let id = format!("flood-{n:05}");
            let chunk = AudioChunk {
                machine_id: MachineId::new(&id).unwrap(),
                machine_type: MachineType::new("fan").unwrap(),
                sequence: 0,
                capture_start_us: 0,
                sample_rate_hz: 16_000,
                channels: 1,
                sample_format: SampleFormat::S16le,
                payload: vec![0u8; 320],
                origin: ChunkOrigin::File { path: "test".to_owned() },
            };
            (Some(id.into_bytes()), chunk.encode())
        })
        .collect();
    produce(&broker, &records);

    let (summary, peak_mib) = run_pipeline(&broker, dir.path(), &["--config", config.to_str().unwrap()]);
    let totals = &summary["totals"];
    let kept = totals["machines"].as_array().unwrap().len();
    let refused = totals["chunks_refused"].as_u64().unwrap();
    assert!(kept <= 5000, "{kept} machines kept with max_machines = 5000");
    assert!(kept >= 4990, "the share of each worker is used: {kept} kept");
    assert_eq!(refused, 20_000 - kept as u64, "what is refused is counted");
    let letters = broker.consume(DLQ, refused as usize, Duration::from_secs(120));
    assert_eq!(letters.len() as u64, refused, "every refused chunk in the dead-letter topic");
    assert!(letters.iter().all(|letter| {
        letter.header("auscult-error").is_some_and(|reason| reason.contains("stream.max_machines"))
            && letter.key.starts_with("flood-")
            && AudioChunk::decode(&letter.value, ChunkOrigin::File { path: "dlq".to_owned() }).is_ok()
    }));
    assert!(peak_mib < 1024, "peak resident memory {peak_mib} MiB for 5,000 machines");
    eprintln!("kept {kept}, refused {refused}; peak resident memory {peak_mib} MiB");
}
