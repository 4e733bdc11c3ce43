//! The broker goes away for 30 s while an agent streams live and the pipeline runs, and comes
//! back on the same SQLite storage: once stopped as an operator would (SIGTERM), once crashed
//! (SIGKILL). No chunk may be lost, every window must be scored once, and the pipeline must
//! neither exit nor spin while the broker is away, and must stop promptly on SIGTERM after.

mod common;

use auscult_schemas::{AudioChunk, ChunkOrigin};
use common::broker::Broker;
use common::{auscult, read_json, read_jsonl, run_ok, Spawned};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const SECONDS: u64 = 50;
const DOWN: Duration = Duration::from_secs(30);

enum BrokerStop {
    Graceful,
    Crash,
}

fn pipeline(broker: &Broker, dir: &Path, name: &str, extra: &[&str]) -> Spawned {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Spawned::start(
        auscult()
            .args(["run", "--brokers", &broker.address, "-w", "2", "--learning-s", "20", "--group", name])
            .args(extra)
            .arg("--events")
            .arg(dir.join(format!("{name}.jsonl")))
            .arg("--archive")
            .arg(dir.join(format!("{name}-archive")))
            .arg("--summary-json")
            .arg(dir.join(format!("{name}.json")))
            .stderr(log),
    )
}

/// Per machine: (audio seconds, windows learned, windows scored).
fn per_machine(summary: &serde_json::Value) -> Vec<(String, f64, u64, u64)> {
    summary["totals"]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|machine| {
            (
                machine["machine_id"].as_str().unwrap().to_owned(),
                machine["audio_s"].as_f64().unwrap(),
                machine["windows_learned"].as_u64().unwrap(),
                machine["windows_scored"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// Chunks the pipeline has read, from its `/metrics` page (0 while it does not answer).
fn chunks_read(address: &str) -> f64 {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return 0.0 };
    let mut page = String::new();
    let asked = stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: auscult\r\n\r\n");
    if asked.is_err() || stream.read_to_string(&mut page).is_err() {
        return 0.0;
    }
    page.lines()
        .filter(|line| line.starts_with("auscult_chunks_read_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn event_ids(path: &Path) -> BTreeSet<String> {
    read_jsonl(path).iter().map(|event| event["event_id"].as_str().unwrap().to_owned()).collect()
}

fn through_an_outage(stop: BrokerStop) {
    let mut broker = Broker::start_persistent();
    run_ok(auscult().args(["topics", "--brokers", &broker.address, "--partitions", "4"]));
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_address();
    let mut live = pipeline(&broker, dir.path(), "live", &["--metrics", &metrics]);
    let agent = Spawned::start(
        auscult()
            .args(["agent", "--brokers", &broker.address, "--simulate", "2", "--speed", "1"])
            .args(["--duration", &SECONDS.to_string()])
            .stderr(Stdio::piped()),
    );
    std::thread::sleep(Duration::from_secs(10));
    match stop {
        BrokerStop::Graceful => broker.stop_gracefully(),
        BrokerStop::Crash => broker.crash(),
    }
    let cpu_before = live.cpu_seconds();
    std::thread::sleep(DOWN);
    let cpu_share = (live.cpu_seconds() - cpu_before) / DOWN.as_secs_f64();
    assert!(live.is_running(), "the pipeline exited while the broker was away");
    assert!(cpu_share < 0.3, "the pipeline used {cpu_share:.2} of a core while the broker was away");
    broker.restart();

    let agent = agent.wait_with_output();
    let said = String::from_utf8_lossy(&agent.stderr);
    assert!(agent.status.success(), "{said}");
    let chunks = 2 * SECONDS; // 1 s chunks (stream.chunk_ms)
    assert!(said.contains(&format!("{chunks} chunks sent, {chunks} delivered, 0 failed, 0 dropped")), "{said}");
    // Time to read the backlog (librdkafka reconnects with backoff, up to 10 s), then a stop
    // on SIGTERM within seconds.
    let deadline = Instant::now() + Duration::from_secs(90);
    while chunks_read(&metrics) < chunks as f64 {
        assert!(Instant::now() < deadline, "the pipeline read {} of {chunks} chunks", chunks_read(&metrics));
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    live.signal("TERM");
    let status = live.wait_within(Duration::from_secs(30), "the live pipeline after SIGTERM");
    let log = std::fs::read_to_string(dir.path().join("live.log")).unwrap();
    assert!(status.success(), "{log}");

    // In the topic, no chunk comes after a later one of its machine, unless it is a repeat of
    // one already there (the pipeline drops an older chunk: its audio would be lost).
    let mut newest: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    for record in broker.consume("auscult.audio", chunks as usize, Duration::from_secs(60)) {
        let chunk = AudioChunk::decode(&record.value, ChunkOrigin::File { path: "topic".to_owned() }).unwrap();
        let key = (chunk.machine_id.to_string(), chunk.sequence);
        let newest = newest.entry(key.0.clone()).or_insert(chunk.sequence);
        assert!(chunk.sequence >= *newest || seen.contains(&key), "{key:?} arrived after sequence {newest}");
        *newest = (*newest).max(chunk.sequence);
        seen.insert(key);
    }
    assert_eq!(seen.len() as u64, chunks, "every chunk in the topic");

    // Every chunk heard, every window scored once: as a run over the same topic afterwards.
    let reference = pipeline(&broker, dir.path(), "reference", &["--stop-when-idle", "3"]);
    assert!(reference.wait_within(Duration::from_secs(120), "the reference run").success());
    let live = read_json(&dir.path().join("live.json"));
    let reference = read_json(&dir.path().join("reference.json"));
    let heard = per_machine(&live);
    assert_eq!(heard.len(), 2, "{heard:?}");
    for (machine, audio_s, ..) in &heard {
        assert!((audio_s - SECONDS as f64).abs() < 1e-6, "{machine} heard {audio_s} s of {SECONDS}");
    }
    assert_eq!(heard, per_machine(&reference), "the live run against the reference");
    assert_eq!(live["totals"]["archive_rows"], reference["totals"]["archive_rows"], "one row per window");
    assert_eq!(event_ids(&dir.path().join("live.jsonl")), event_ids(&dir.path().join("reference.jsonl")));
    eprintln!("pipeline CPU while the broker was away: {cpu_share:.3} of a core; agent: {said}");
}

#[test]
fn a_broker_stopped_with_sigterm_for_30_s_loses_nothing() {
    through_an_outage(BrokerStop::Graceful);
}

#[test]
fn a_broker_crashed_for_30_s_loses_nothing() {
    through_an_outage(BrokerStop::Crash);
}
