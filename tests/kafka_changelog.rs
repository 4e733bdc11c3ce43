//! A cluster with no shared folder: each process runs in an empty working folder of its own,
//! the machines' state lives in the compacted changelog topic `auscult.state` (`--state
//! kafka`), and each process archives to its own folder. It is rescaled from 3 processes to 2
//! to 4, and one process of 3 is killed with SIGKILL; either way the output equals that of a
//! single pipeline that was never stopped, on a real Kafka-protocol broker (tansu over TCP).

mod common;

use common::broker::Broker;
use common::{auscult, python_ok, read_json, run_ok, Spawned};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const START: &str = "2026-01-01T00:00:00Z";
const MACHINES: &str = "8";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn broker_with_topics() -> Broker {
    let broker = Broker::start();
    let output = run_ok(auscult().args(["topics", "--brokers", &broker.address, "--partitions", "4"]));
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(said.contains("auscult.state: created"), "{said}");
    broker
}

/// Eight simulated machines for `seconds` from `start`, as fast as the broker takes them (seed
/// 3: the 4th and the 8th develop a fault 400 s into the agent's run).
fn send(broker: &Broker, start: &str, seconds: &str) {
    run_ok(
        auscult().args(["agent", "--brokers", &broker.address, "--simulate", MACHINES, "--duration", seconds]).args([
            "--speed",
            "0",
            "--seed",
            "3",
            "--start-time",
            start,
        ]),
    );
}

/// The working folders of one run of a cluster of `processes` processes, one each.
struct Cluster {
    folders: Vec<PathBuf>,
    hostfile: PathBuf,
}

impl Cluster {
    fn new(root: &Path, name: &str, processes: usize) -> Cluster {
        let folders: Vec<PathBuf> = (0..processes).map(|index| root.join(format!("{name}-p{index}"))).collect();
        for folder in &folders {
            std::fs::create_dir_all(folder).unwrap();
        }
        // The hostfile is the deployment's, not state: every process is given its own copy.
        let hosts: String = (0..processes).map(|_| format!("127.0.0.1:{}\n", free_port())).collect();
        for folder in &folders {
            std::fs::write(folder.join("hosts.txt"), &hosts).unwrap();
        }
        Cluster { folders, hostfile: PathBuf::from("hosts.txt") }
    }

    /// `auscult run` for process `index`, in its own folder, with relative paths only.
    fn process(&self, broker: &Broker, group: &str, index: usize, extra: &[&str]) -> std::process::Command {
        let mut command = auscult();
        command
            .current_dir(&self.folders[index])
            .args(["run", "--brokers", &broker.address, "-w", "1", "--learning-s", "20", "--group", group])
            .args(["--state", "kafka", "--archive", "archive", "--summary-json", "summary.json"])
            .args(["--processes", &self.folders.len().to_string(), "--process", &index.to_string()])
            .arg("--hostfile")
            .arg(&self.hostfile)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Runs every process until the topic is read to its end and idle, with these environment
    /// variables; returns their summaries and standard errors.
    fn run_to_end(&self, broker: &Broker, group: &str, env: &[(&str, &str)]) -> Vec<(serde_json::Value, String)> {
        let running: Vec<Spawned> = (0..self.folders.len())
            .map(|index| {
                let mut command = self.process(broker, group, index, &["--stop-when-idle", "3"]);
                command.envs(env.iter().copied());
                Spawned::start(&mut command)
            })
            .collect();
        let outputs: Vec<_> = running.into_iter().map(Spawned::wait_with_output).collect();
        outputs
            .into_iter()
            .zip(&self.folders)
            .map(|(output, folder)| {
                let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
                assert!(output.status.success(), "{}:\n{stderr}", folder.display());
                (read_json(&folder.join("summary.json")), stderr)
            })
            .collect()
    }
}

/// A total of the runs' summaries.
fn total(summaries: &[(serde_json::Value, String)], field: &str) -> u64 {
    summaries.iter().map(|(summary, _)| summary["totals"][field].as_u64().unwrap()).sum()
}

/// Each machine's windows learned and seconds of audio heard, over all runs (a restored
/// machine's counters go on from its state; one that learned again would start from 0).
fn per_machine(summaries: &[(serde_json::Value, String)]) -> BTreeMap<String, (u64, u64)> {
    let mut machines = BTreeMap::new();
    for (summary, _) in summaries {
        for worker in summary["workers"].as_array().unwrap() {
            for machine in worker["machines"].as_array().unwrap() {
                let id = machine["machine_id"].as_str().unwrap().to_owned();
                let counts =
                    (machine["windows_learned"].as_u64().unwrap(), machine["audio_s"].as_f64().unwrap() as u64);
                assert!(machines.insert(id.clone(), counts).is_none(), "{id} was in two processes");
            }
        }
    }
    machines
}

/// Every archive row under these folders, read by DuckDB, one line of text each, sorted.
fn archive_rows(folders: &[PathBuf]) -> Vec<String> {
    let script = r#"
import sys, duckdb, glob
files = [f for folder in sys.argv[1:] for f in glob.glob(f"{folder}/**/*.parquet", recursive=True)]
rows = duckdb.sql(f"select cast(columns(* exclude (date)) as varchar) from read_parquet({files!r}, hive_partitioning = true)").fetchall()
for row in sorted(map(repr, rows)):
    print(row)
"#;
    let archives: Vec<PathBuf> = folders.iter().map(|folder| folder.join("archive")).collect();
    let args: Vec<&Path> = archives.iter().map(PathBuf::as_path).collect();
    python_ok(script, &args).lines().map(str::to_owned).collect()
}

/// The anomaly topic's events of one consumer group's runs, by event id; a repeated id must
/// carry the same content.
fn events_by_id(broker: &Broker) -> BTreeMap<String, String> {
    let mut by_id = BTreeMap::new();
    for record in broker.consume("auscult.anomalies", usize::MAX, Duration::from_secs(10)) {
        let event: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
        let id = event["event_id"].as_str().unwrap().to_owned();
        if let Some(earlier) = by_id.insert(id, event.to_string()) {
            assert_eq!(earlier, event.to_string(), "a repeated event id with other content");
        }
    }
    by_id
}

/// What a pipeline that never stopped wrote: archive rows, events, and per machine what
/// [`per_machine`] gives.
struct Reference {
    rows: Vec<String>,
    events: BTreeSet<String>,
    machines: BTreeMap<String, (u64, u64)>,
}

/// The same audio through one process that never stopped (no state), in `folder`, with its
/// events to a file.
fn uninterrupted(broker: &Broker, folder: &Path) -> Reference {
    std::fs::create_dir_all(folder).unwrap();
    run_ok(
        auscult()
            .current_dir(folder)
            .args(["run", "--brokers", &broker.address, "-w", "2", "--learning-s", "20", "--group", "reference"])
            .args(["--stop-when-idle", "3", "--archive", "archive", "--events", "events.jsonl"])
            .args(["--summary-json", "summary.json"]),
    );
    let events = std::fs::read_to_string(folder.join("events.jsonl")).unwrap();
    let events: BTreeSet<String> =
        events.lines().map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap().to_string()).collect();
    let summary = read_json(&folder.join("summary.json"));
    Reference {
        rows: archive_rows(&[folder.to_path_buf()]),
        events,
        machines: per_machine(&[(summary, String::new())]),
    }
}

#[test]
fn a_cluster_rescaled_from_3_to_2_to_4_processes_continues_every_machine_from_the_changelog() {
    let broker = broker_with_topics();
    let root = tempfile::tempdir().unwrap();
    // Three stretches of audio, each read to its end by a cluster of another size.
    let mut clusters = Vec::new();
    let mut all_summaries = Vec::new();
    let mut heard = 0;
    for (processes, start, seconds) in
        [(3, START, 120), (2, "2026-01-01T00:02:00Z", 180), (4, "2026-01-01T00:05:00Z", 420)]
    {
        let seconds = seconds.to_string();
        send(&broker, start, &seconds);
        let cluster = Cluster::new(root.path(), &format!("{processes}-processes"), processes);
        // The 2-process run splits each state into parts of at most 8 KiB; the 4-process run
        // restores from them and writes whole records again, tombstoning the parts.
        let record_bytes: &[(&str, &str)] =
            if processes == 2 { &[("AUSCULT_STATE__MAX_RECORD_BYTES", "8192")] } else { &[] };
        let summaries = cluster.run_to_end(&broker, "rescaled", record_bytes);
        let machines = per_machine(&summaries);
        assert_eq!(machines.len(), 8, "every machine is in exactly one process: {machines:?}");
        // Every machine came back from the changelog, on whichever process owns it now, with
        // what it had heard before: it learned once, in the first run, and then only scored.
        heard += seconds.parse::<u64>().unwrap();
        let restored = if clusters.is_empty() { 0 } else { 8 };
        assert_eq!(total(&summaries, "machines_restored"), restored, "{}", summaries[0].1);
        assert!(machines.values().all(|(learned, audio_s)| *learned == 23 && *audio_s == heard), "{machines:?}");
        if restored > 0 {
            assert!(summaries.iter().any(|(_, stderr)| stderr.contains("from kafka:auscult.state")));
        }
        assert!(total(&summaries, "checkpoints_written") > 0);
        all_summaries.push(summaries);
        clusters.push(cluster);
    }
    // Every part record the 2-process run wrote was tombstoned once whole records replaced it.
    let mut newest: BTreeMap<String, usize> = BTreeMap::new();
    for record in broker.consume("auscult.state", usize::MAX, Duration::from_secs(5)) {
        newest.insert(record.key.clone(), record.value.len());
    }
    let parts: Vec<(&String, &usize)> = newest.iter().filter(|(key, _)| key.contains("/part/")).collect();
    assert!(parts.len() > 8, "the states were split: {parts:?}");
    assert!(parts.iter().all(|(_, bytes)| **bytes == 0), "parts left in force: {parts:?}");
    assert!(newest.iter().filter(|(key, _)| !key.contains('/')).all(|(_, bytes)| *bytes > 0));
    // Nothing was read twice: each run committed what it read and the next went on from there.
    let read: u64 = all_summaries.iter().map(|summaries| total(summaries, "chunks_read")).sum();
    assert_eq!(read, 8 * (120 + 180 + 420));

    // The same audio through one process that never stopped: the same windows, scored the
    // same, and the same events.
    let Reference { rows: reference_rows, events: reference_events, machines: reference_machines } =
        uninterrupted(&broker, &root.path().join("reference"));
    assert!(reference_events.iter().any(|event| event.contains("\"opened\"")), "the faults should raise alerts");
    let folders: Vec<PathBuf> = clusters.iter().flat_map(|cluster| cluster.folders.clone()).collect();
    assert_eq!(archive_rows(&folders), reference_rows);
    let events: BTreeSet<String> = events_by_id(&broker).into_values().collect();
    assert_eq!(events, reference_events);
    // The uninterrupted run learned as many windows, and heard as much.
    assert_eq!(per_machine(all_summaries.last().unwrap()), reference_machines);
}

#[test]
fn a_process_of_3_killed_with_sigkill_loses_nothing_once_the_job_is_restarted() {
    let broker = broker_with_topics();
    let root = tempfile::tempdir().unwrap();
    // Eight machines for eight minutes at 20x real time (24 s).
    let agent = Spawned::start(
        auscult()
            .args(["agent", "--brokers", &broker.address, "--simulate", MACHINES, "--duration", "480", "--speed", "20"])
            .args(["--seed", "3", "--start-time", START])
            .stderr(Stdio::null()),
    );
    let first = Cluster::new(root.path(), "first", 3);
    let running: Vec<Spawned> =
        (0..3).map(|index| Spawned::start(&mut first.process(&broker, "killed", index, &[]))).collect();
    // Once some machines' state is on the changelog, process 1 is killed.
    let deadline = Instant::now() + Duration::from_secs(90);
    while broker.consume("auscult.state", 8, Duration::from_millis(500)).len() < 8 {
        assert!(Instant::now() < deadline, "no state reached the changelog");
    }
    std::thread::sleep(Duration::from_secs(2));
    running[1].signal("KILL");
    let killed_at = Instant::now();
    // The others cannot go on without it (timely's cluster is fixed): they fail or are stopped.
    let mut others: Vec<Spawned> = running.into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let survivors = |others: &mut Vec<Spawned>| -> Vec<usize> {
        (0..3).filter(|index| *index != 1 && others[*index].is_running()).collect()
    };
    while !survivors(&mut others).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let still_running = survivors(&mut others);
    eprintln!(
        "after the SIGKILL of process 1: processes {still_running:?} still running {:.1} s later (then killed too)",
        killed_at.elapsed().as_secs_f64()
    );
    for index in still_running {
        others[index].signal("KILL");
    }
    drop(others);
    assert!(agent.wait().success());

    // The job restarted, in new empty folders, reads from the committed offsets to the end.
    let restarted = Cluster::new(root.path(), "restarted", 3);
    let summaries = restarted.run_to_end(&broker, "killed", &[]);
    let recovered_in = killed_at.elapsed();
    assert_eq!(total(&summaries, "machines_restored"), 8, "{}", summaries[0].1);
    let machines = per_machine(&summaries);
    let said: Vec<&str> = summaries.iter().map(|(_, stderr)| stderr.as_str()).collect();
    assert!(machines.values().all(|(learned, audio_s)| (*learned, *audio_s) == (23, 480)), "{machines:?}\n{said:#?}");
    // What the kill cost: the audio read again that the restored state had already heard
    // (dropped by sequence number), and the time to read the state back.
    let duplicates: u64 = summaries
        .iter()
        .flat_map(|(summary, _)| summary["workers"].as_array().unwrap().clone())
        .flat_map(|worker| worker["machines"].as_array().unwrap().clone())
        .map(|machine| machine["duplicates"].as_u64().unwrap())
        .sum();
    let restore_s: Vec<&str> =
        summaries.iter().filter_map(|(_, stderr)| stderr.split(", in ").nth(1)?.split(" s)").next()).collect();
    eprintln!(
        "restarted job: {} chunks read, {duplicates} of them (s of audio) already in the restored state; state read in {restore_s:?} s per process; {:.1} s from the kill to the end of the backlog",
        total(&summaries, "chunks_read"),
        recovered_in.as_secs_f64()
    );

    // After dropping repeats, the same windows and events as one process that never stopped.
    let Reference { rows: reference_rows, events: reference_events, .. } =
        uninterrupted(&broker, &root.path().join("reference"));
    assert!(reference_events.iter().any(|event| event.contains("\"opened\"")), "the faults should raise alerts");
    let folders: Vec<PathBuf> = first.folders.iter().chain(&restarted.folders).cloned().collect();
    let rows = archive_rows(&folders);
    assert!(rows.len() >= reference_rows.len());
    assert_eq!(rows.iter().collect::<BTreeSet<_>>(), reference_rows.iter().collect::<BTreeSet<_>>());
    let events: BTreeSet<String> = events_by_id(&broker).into_values().collect();
    assert_eq!(events, reference_events);
}

/// A machine retired in the registry leaves the state topic (a tombstone follows) and does not
/// come back on the next restart; its chunks are skipped and counted.
#[test]
fn a_machine_retired_in_the_registry_is_tombstoned_on_the_state_topic() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let broker = broker_with_topics();
    let root = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let folder = root.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        run_ok(
            auscult()
                .current_dir(&folder)
                .args(["run", "--brokers", &broker.address, "-w", "2", "--learning-s", "20", "--state", "kafka"])
                .args(["--stop-when-idle", "3", "--events", "events.jsonl", "--summary-json", "summary.json"]),
        );
        read_json(&folder.join("summary.json"))
    };
    let machines = |summary: &serde_json::Value| -> Vec<String> {
        let workers = summary["workers"].as_array().unwrap();
        let mut ids: Vec<String> = workers
            .iter()
            .flat_map(|worker| worker["machines"].as_array().unwrap().iter())
            .map(|machine| machine["machine_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    send(&broker, START, "120");
    let first = run("first");
    assert_eq!(machines(&first).len(), 8);

    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &broker.address).create().unwrap();
    producer.send(BaseRecord::<str, str>::to("auscult.machines").key("fan-00").payload(r#"{"retired":true}"#)).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    send(&broker, "2026-01-01T00:02:00Z", "120");
    let second = run("second");
    let kept = machines(&second);
    assert_eq!(kept.len(), 7);
    assert!(!kept.contains(&"fan-00".to_owned()), "{kept:?}");
    assert_eq!(second["totals"]["skipped_by_reason"]["machine retired (registry)"], 120, "{}", second["totals"]);
    // The newest record of the retired machine on the state topic is a tombstone.
    let records = broker.consume("auscult.state", usize::MAX, Duration::from_secs(5));
    let last = records.iter().rev().find(|record| record.key == "fan-00").expect("fan-00 had state");
    assert!(last.value.is_empty(), "not a tombstone: {} bytes", last.value.len());
    let third = run("third");
    assert_eq!(third["totals"]["machines_restored"], 7, "{}", third["totals"]);
}
