//! A live run scraped over HTTP as Prometheus would, its page parsed by a real parser (the
//! `prometheus_client` Python package's OpenMetrics parser): the pipeline's counters equal its
//! own summary, the probes answer, and the agent's page parses and agrees with what it sent.

mod common;

use common::broker::Broker;
use common::{auscult, python_ok, read_json, run_ok, Spawned};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};

/// Scrapes `url` and parses it; prints `{"status": ..., "samples": [[name, labels, value], ...]}`.
const SCRAPE: &str = r#"
import json, sys, urllib.request, urllib.error
from prometheus_client.openmetrics.parser import text_string_to_metric_families
def get(path):
    try:
        with urllib.request.urlopen(sys.argv[1] + path, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
status, text = get("/metrics")
families = list(text_string_to_metric_families(text))
samples = [[s.name, s.labels, s.value] for family in families for s in family.samples]
print(json.dumps({"status": status, "healthz": get("/healthz")[0], "readyz": get("/readyz")[0], "samples": samples,
                  "families": [family.name for family in families]}))
"#;

struct Scrape {
    health: (u64, u64, u64),
    families: Vec<String>,
    samples: Vec<(String, serde_json::Map<String, serde_json::Value>, f64)>,
}

impl Scrape {
    fn of(address: &str) -> Scrape {
        let text = python_ok(SCRAPE, &[std::path::Path::new(&format!("http://{address}"))]);
        let page: serde_json::Value = serde_json::from_str(text.trim()).expect("the scraper prints JSON");
        let code = |key: &str| page[key].as_u64().unwrap();
        let samples = page["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sample| {
                (
                    sample[0].as_str().unwrap().to_owned(),
                    sample[1].as_object().unwrap().clone(),
                    sample[2].as_f64().unwrap(),
                )
            })
            .collect();
        let families =
            page["families"].as_array().unwrap().iter().map(|name| name.as_str().unwrap().to_owned()).collect();
        Scrape { health: (code("status"), code("healthz"), code("readyz")), families, samples }
    }

    /// The sum of a metric's samples whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(sample, found, _)| {
                sample == name
                    && labels.iter().all(|(key, value)| found.get(*key).and_then(|v| v.as_str()) == Some(value))
            })
            .map(|(_, _, value)| value)
            .sum()
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn a_live_run_scraped_over_http_counts_what_its_summary_says() {
    let broker = Broker::start();
    run_ok(auscult().args(["topics", "--brokers", &broker.address, "--partitions", "4"]));
    // Three records that are not chunks: dead letters of two reasons.
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &broker.address).create().expect("a producer");
    for (key, value) in [(Some("fan-9"), b"not audio".as_slice()), (Some("fan-9"), b"AUSC".as_slice()), (None, b"x")] {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to("auscult.audio").payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        producer.send(record).map_err(|(error, _)| error).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");

    // The agent, paced so that it is scraped while it sends: 2 machines, 90 s at 15x, in 1 s chunks.
    let agent_address = free_address();
    let agent = Spawned::start(
        auscult()
            .args(["agent", "--brokers", &broker.address, "--simulate", "2", "--duration", "90", "--speed", "15"])
            // Captured from 100 s ago: live audio, whose capture-to-score latency is measured
            // (audio captured more than an hour back is a replay, and left out of it).
            .args(["--start-time", &recent_start(100), "--metrics", &agent_address])
            .stderr(std::process::Stdio::null()),
    );
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let address = free_address();
    let pipeline = Spawned::start(
        auscult()
            .args(["run", "--brokers", &broker.address, "-w", "2", "--learning-s", "20", "--metrics", &address])
            .arg("--archive")
            .arg(dir.path().join("archive"))
            .arg("--summary-json")
            .arg(&summary)
            .stderr(std::process::Stdio::null()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let sending = Scrape::of(&agent_address);
    assert_eq!(sending.health, (200, 200, 200), "ready: connected to the broker");
    assert_eq!(sending.sum("auscult_agent_brokers_up", &[]), 1.0);
    let sent = sending.sum("auscult_agent_chunks_sent_total", &[]);
    assert!(sent > 0.0 && sent < 180.0, "scraped mid-run: {sent} of 180 chunks sent");
    assert!(sending.sum("auscult_agent_chunks_delivered_total", &[]) <= sent);
    assert!(agent.wait().success());

    // Every chunk read and every window made: the counters stop moving.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Scrape::of(&address);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = Scrape::of(&address);
        let windows = |scrape: &Scrape| scrape.sum("auscult_windows_total", &[]);
        if now.sum("auscult_chunks_read_total", &[]) == 180.0 && windows(&now) == windows(&last) && windows(&now) > 0.0
        {
            last = now;
            break;
        }
        assert!(Instant::now() < deadline, "the pipeline did not read the agent's 180 chunks");
        last = now;
    }
    assert_eq!(last.health, (200, 200, 200), "scrape, /healthz and /readyz");
    pipeline.signal("TERM");
    assert!(pipeline.wait().success());

    let totals = &read_json(&summary)["totals"];
    let total = |key: &str| totals[key].as_f64().unwrap_or_else(|| panic!("{key} in {totals}"));
    assert_eq!(last.sum("auscult_chunks_read_total", &[]), total("chunks_read"));
    assert_eq!(last.sum("auscult_audio_bytes_read_total", &[]), 180.0 * 16_000.0 * 2.0, "1 s of s16 at 16 kHz");
    // Every window, the last epoch's too: a stream that went quiet is processed to its end
    // without waiting for the stop (its late last chunks' epoch is closed once idle).
    assert_eq!(last.sum("auscult_windows_total", &[]), total("windows"));
    let learned: f64 =
        totals["machines"].as_array().unwrap().iter().map(|m| m["windows_learned"].as_f64().unwrap()).sum();
    assert_eq!(last.sum("auscult_windows_total", &[("phase", "learned")]), learned);
    assert_eq!(last.sum("auscult_dead_letters_total", &[]), total("dead_letters"));
    assert_eq!(total("dead_letters"), 3.0);
    let (bad_magic, truncated) = (
        last.sum("auscult_dead_letters_total", &[("reason", "bad_magic")]),
        last.sum("auscult_dead_letters_total", &[("reason", "truncated")]),
    );
    assert!(bad_magic >= 1.0 && truncated >= 1.0 && bad_magic + truncated == 3.0, "{bad_magic} {truncated}");
    let machines = |status: &str| last.sum("auscult_machines", &[("status", status)]);
    assert_eq!(last.sum("auscult_machines", &[]), 2.0);
    assert_eq!(machines("muted"), 0.0);
    assert_eq!(machines("learning"), 0.0, "both learned 20 s of their 90 s");
    // The archive's counters are those of the batches committed by the time of the scrape; at
    // the stop the rest is committed, so the summary has at least as many.
    assert!(last.sum("auscult_archive_rows_total", &[]) <= total("archive_rows"));
    assert!(last.sum("auscult_capture_to_score_seconds_count", &[]) > 0.0, "live windows were scored");
    assert!(last
        .samples
        .iter()
        .any(|(name, labels, _)| name == "auscult_consumer_lag_records" && labels.contains_key("partition")));

    // Every metric the Grafana dashboard queries is one that the pipeline or the agent exports.
    let dashboard = std::fs::read_to_string(common::repo().join("deploy/grafana/dashboards/auscult.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("auscult_") {
                    let family = ["_total", "_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suffix| word.strip_suffix(suffix))
                        .unwrap_or(word);
                    queried.insert(family.to_owned());
                }
            }
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    let exported: std::collections::BTreeSet<&String> = last.families.iter().chain(&sending.families).collect();
    let missing: Vec<&String> = queried.iter().filter(|name| !exported.contains(name)).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics nobody exports: {missing:?}; exported: {exported:?}");
}

/// The RFC 3339 time `seconds_ago` seconds before now.
fn recent_start(seconds_ago: i64) -> String {
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    auscult_schemas::time::rfc3339(now_us - seconds_ago * 1_000_000)
}
