//! Liveness of the Kafka path on a real broker (tansu over TCP): a quiet partition, a worker
//! without partitions, a process whose machines have gone silent, or an agent that comes back
//! an hour of capture time later holds nobody back. Each pipeline runs until it is sent
//! SIGTERM (no `--stop-when-idle`), while its events and archive files must keep coming, and
//! then must stop cleanly within seconds.

mod common;

use common::broker::Broker;
use common::{auscult, read_json, run_ok, Spawned};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// 2026-01-01T00:00:00Z, where the agents' capture time starts.
const START: &str = "2026-01-01T00:00:00Z";
const START_S: u64 = 1_767_225_600;
/// The configured epoch (`stream.epoch_ms`, 10 s).
const EPOCH_S: u64 = 10;
/// How long events and archive files of live machines may take to appear.
const FLOWING: Duration = Duration::from_secs(90);
/// How long a stopped pipeline may take to process, write and commit what it read.
const STOPPING: Duration = Duration::from_secs(30);

fn broker_with_topics(partitions: &str) -> Broker {
    let broker = Broker::start();
    run_ok(auscult().args(["topics", "--brokers", &broker.address, "--partitions", partitions]));
    broker
}

/// An agent simulating the first `machines` machines (fan-00, pump-01, slider-02, valve-03, ...)
/// for `seconds` of capture time from `start`, as fast as the broker takes them.
fn send(broker: &Broker, machines: &str, seconds: &str, start: &str) {
    run_ok(
        auscult().args(["agent", "--brokers", &broker.address, "--simulate", machines, "--duration", seconds]).args([
            "--speed",
            "0",
            "--start-time",
            start,
        ]),
    );
}

/// Registry entries that fix the machines' warning threshold far below any score: each opens
/// an alert as soon as it is scored, so events are a sign of life.
fn alert_on_every_window(broker: &Broker, machines: &[&str]) {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &broker.address).create().expect("a producer");
    for machine in machines {
        let record = BaseRecord::to("auscult.machines").key(*machine).payload(r#"{"warning_threshold":0.000001}"#);
        producer.send(record).map_err(|(error, _)| error).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

/// `auscult run` on the broker until signalled, learning 20 s per machine.
fn pipeline(broker: &Broker, dir: &Path, extra: &[&str]) -> Spawned {
    Spawned::start(
        auscult()
            .args(["run", "--brokers", &broker.address, "--learning-s", "20"])
            .args(extra)
            .arg("--events")
            .arg(dir.join("events.jsonl"))
            .arg("--archive")
            .arg(dir.join("archive"))
            .arg("--summary-json")
            .arg(dir.join("summary.json")),
    )
}

/// Waits until `ready` holds, failing the test after `limit`.
fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The machines with an `opened` event in the events file so far.
fn alerted(events: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    let mut machines: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["kind"] == "opened")
        .filter_map(|event| event["machine_id"].as_str().map(str::to_owned))
        .collect();
    machines.sort();
    machines.dedup();
    machines
}

/// The first capture second of the newest archive batch written so far (from the file names,
/// `part-{first epoch}-w{worker}-{n}.parquet`, complete files only).
fn newest_archived_s(archive: &Path) -> Option<u64> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(archive, &mut files);
    files
        .iter()
        .filter_map(|path| {
            path.file_name()?.to_str()?.strip_suffix(".parquet")?.strip_prefix("part-").map(str::to_owned)
        })
        .filter_map(|name| name.split('-').next()?.parse::<u64>().ok())
        .map(|epoch| epoch * EPOCH_S)
        .max()
}

/// SIGTERM, then a clean exit within `STOPPING`; returns the run's summary.
fn stop(pipeline: Spawned, dir: &Path) -> serde_json::Value {
    pipeline.signal("TERM");
    let status = pipeline.wait_within(STOPPING, "the pipeline after SIGTERM");
    assert!(status.success(), "the pipeline did not stop cleanly: {status}");
    read_json(&dir.join("summary.json"))
}

#[test]
fn one_machine_on_four_partitions_flows_through_two_workers() {
    let broker = broker_with_topics("4");
    alert_on_every_window(&broker, &["fan-00"]);
    let dir = tempfile::tempdir().unwrap();
    let run = pipeline(&broker, dir.path(), &["-w", "2"]);
    send(&broker, "1", "120", START);
    wait_for(FLOWING, "an event of the one machine", || alerted(&dir.path().join("events.jsonl")) == ["fan-00"]);
    // The archive follows the machine: the batch of its last minute is written (the machine
    // sends nothing after it, so no later epoch is ever complete; the epoch after its newest
    // chunk is).
    wait_for(FLOWING, "the archive of the last minute", || {
        newest_archived_s(&dir.path().join("archive")).is_some_and(|s| s >= START_S + 60)
    });
    let summary = stop(run, dir.path());
    assert_eq!(summary["totals"]["chunks_read"], 120, "{}", summary["totals"]);
    // Its audio was captured in 2026-01-01, long before it was scored: a replay, whose delay
    // is not reported as the pipeline's latency.
    let totals = &summary["totals"];
    assert!(totals["latency_replayed"].as_u64().unwrap() > 0, "{totals}");
    assert!(totals["latency_p50_ms"].is_null(), "{totals}");
}

#[test]
fn six_workers_on_four_partitions_are_not_held_by_the_two_without_any() {
    let broker = broker_with_topics("4");
    let machines = ["fan-00", "pump-01", "slider-02"];
    alert_on_every_window(&broker, &machines);
    let dir = tempfile::tempdir().unwrap();
    let run = pipeline(&broker, dir.path(), &["-w", "6"]);
    send(&broker, "3", "120", START);
    wait_for(FLOWING, "events of every machine", || alerted(&dir.path().join("events.jsonl")) == machines);
    wait_for(FLOWING, "the archive of the last minute", || {
        newest_archived_s(&dir.path().join("archive")).is_some_and(|s| s >= START_S + 60)
    });
    let summary = stop(run, dir.path());
    assert_eq!(summary["totals"]["chunks_read"], 360, "{}", summary["totals"]);
}

#[test]
fn an_agent_back_an_hour_later_is_heard_at_once() {
    let broker = broker_with_topics("4");
    alert_on_every_window(&broker, &["fan-00", "pump-01"]);
    let dir = tempfile::tempdir().unwrap();
    let run = pipeline(&broker, dir.path(), &["-w", "2"]);
    send(&broker, "2", "60", START);
    wait_for(FLOWING, "events of both machines", || alerted(&dir.path().join("events.jsonl")).len() == 2);
    // The agent comes back an hour of capture time later (counting its chunks from 0 again).
    send(&broker, "2", "60", "2026-01-01T01:00:00Z");
    wait_for(FLOWING, "the archive of the hour after", || {
        newest_archived_s(&dir.path().join("archive")).is_some_and(|s| s >= START_S + 3600)
    });
    let summary = stop(run, dir.path());
    assert_eq!(summary["totals"]["chunks_read"], 240, "{}", summary["totals"]);
    let machines = summary["totals"]["machines"].as_array().unwrap();
    assert!(machines.iter().all(|m| m["gaps"].as_u64().unwrap() >= 1), "the hour's gap was not seen: {machines:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn two_processes_go_on_when_one_process_has_only_silent_machines() {
    let broker = broker_with_topics("4");
    let machines = ["fan-00", "pump-01", "slider-02", "valve-03"];
    alert_on_every_window(&broker, &machines);
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts.txt");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let hosts = hostfile.to_str().unwrap();
    let process = |index: &str, out: &Path| {
        std::fs::create_dir_all(out).unwrap();
        pipeline(&broker, out, &["-w", "1", "--processes", "2", "--process", index, "--hostfile", hosts])
    };
    let (first, second) = (dir.path().join("p0"), dir.path().join("p1"));
    let runs = [process("0", &first), process("1", &second)];
    send(&broker, "4", "60", START);
    wait_for(FLOWING, "events of every machine", || alerted(&first.join("events.jsonl")) == machines);
    // Then only fan-00 goes on: whichever process does not read its partition has only silent machines.
    send(&broker, "1", "120", "2026-01-01T00:01:00Z");
    wait_for(FLOWING, "the archive of fan-00's last minute", || {
        [&first, &second].iter().filter_map(|out| newest_archived_s(&out.join("archive"))).max() >= Some(START_S + 120)
    });
    let [zero, one] = runs;
    one.signal("TERM");
    let summary_zero = stop(zero, &first);
    let status = one.wait_within(STOPPING, "process 1 after SIGTERM");
    assert!(status.success(), "process 1 did not stop cleanly: {status}");
    let summary_one = read_json(&second.join("summary.json"));
    let read = summary_zero["totals"]["chunks_read"].as_u64().unwrap()
        + summary_one["totals"]["chunks_read"].as_u64().unwrap();
    assert_eq!(read, 4 * 60 + 120);
}
