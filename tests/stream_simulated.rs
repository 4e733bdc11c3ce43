//! `auscult run --simulate`: the whole stream on one machine, checked from the outside.

mod common;

use auscult_connectors::simulator::{fleet, FleetSpec, SimulatedMachine};
use common::{auscult, python_ok, read_json, read_jsonl, repo, run_ok};
use std::path::Path;

/// Runs a simulated fleet and returns (events, summary).
fn run_fleet(dir: &Path, workers: usize, machines: usize) -> (Vec<serde_json::Value>, serde_json::Value) {
    let events = dir.join("events.jsonl");
    let summary = dir.join("summary.json");
    run_ok(
        auscult()
            .args(["run", "--simulate", &machines.to_string(), "--duration", "480", "--seed", "3", "-w"])
            .arg(workers.to_string())
            .arg("--events")
            .arg(&events)
            .arg("--archive")
            .arg(dir.join("archive"))
            .arg("--summary-json")
            .arg(&summary),
    );
    (read_jsonl(&events), read_json(&summary))
}

/// Archive rows as sorted JSON text, read back with pyarrow.
fn archive_rows(archive: &Path) -> Vec<String> {
    let script = r#"
import sys, json, pyarrow.dataset as ds
table = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
rows = table.to_pylist()
for row in rows:
    row["window_start"] = row["window_start"].isoformat()
    row["window_end"] = row["window_end"].isoformat()
    row["date"] = str(row["date"])
    row["source"] = row["source"].split(":")[0]
    row["logmel_mean_db"] = [round(v, 4) for v in row["logmel_mean_db"]]
    row["logmel_std_db"] = [round(v, 4) for v in row["logmel_std_db"]]
    print(json.dumps(row, sort_keys=True))
"#;
    let mut rows: Vec<String> = python_ok(script, &[archive]).lines().map(str::to_owned).collect();
    rows.sort();
    rows
}

#[test]
fn same_events_and_archive_rows_with_one_and_two_workers() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let (events_one, summary_one) = run_fleet(one.path(), 1, 6);
    let (events_two, summary_two) = run_fleet(two.path(), 2, 6);
    assert!(!events_one.is_empty(), "the faulty machines raised no event");
    assert_eq!(events_one, events_two);
    assert_eq!(summary_one["totals"]["archive_rows"], summary_two["totals"]["archive_rows"]);
    let rows_one = archive_rows(&one.path().join("archive"));
    let rows_two = archive_rows(&two.path().join("archive"));
    assert_eq!(rows_one.len() as u64, summary_one["totals"]["archive_rows"].as_u64().unwrap());
    assert_eq!(rows_one, rows_two);
    // Two workers really shared the machines.
    let workers = summary_two["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|worker| !worker["machines"].as_array().unwrap().is_empty()));
}

#[test]
fn faulty_machines_alert_after_their_fault_and_healthy_ones_rarely() {
    let dir = tempfile::tempdir().unwrap();
    let (events, summary) = run_fleet(dir.path(), 2, 8);
    let machines: Vec<String> = summary["totals"]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|machine| machine["machine_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(machines.len(), 8);
    // Every fourth machine (index 3 and 7) develops a fault 100 s after its 300 s of learning.
    let fault_onset = "2026-01-01T00:06:40";
    let mut false_alerts = 0;
    let mut healthy = 0;
    for machine in &machines {
        let opened: Vec<&serde_json::Value> = events
            .iter()
            .filter(|event| event["kind"] == "opened" && event["machine_id"] == machine.as_str())
            .collect();
        if machine.ends_with("-03") || machine.ends_with("-07") {
            assert!(
                opened.iter().any(|event| event["window_start"].as_str().unwrap() >= fault_onset),
                "{machine} developed a fault at 400 s and raised no alert after it: {opened:?}"
            );
        } else {
            healthy += 1;
            false_alerts += opened.len();
        }
    }
    // Healthy simulated machines wander in level and timbre; in 80 s of scoring each, more than
    // one false alert per two healthy machines would be a regression (measured: none).
    assert!(false_alerts * 2 <= healthy, "{false_alerts} false alerts on {healthy} healthy machines");
    // The failing valve is explained by the band its fault lives in.
    let spec = FleetSpec { machines: 8, seed: 3, ..FleetSpec::default() };
    let valve_spec = fleet(&spec).into_iter().find(|machine| machine.machine_id.as_str() == "valve-03").unwrap();
    let (low, high) = SimulatedMachine::new(valve_spec).fault_band_hz().expect("valve-03 is faulty");
    let valve = events.iter().find(|event| event["machine_id"] == "valve-03" && event["kind"] == "opened").unwrap();
    let top = &valve["top_bands"][0];
    assert!(top["deviation_sd"].as_f64().unwrap() > 3.0, "{valve}");
    assert!(
        top["high_hz"].as_f64().unwrap() >= low * 0.9 && top["low_hz"].as_f64().unwrap() <= high * 1.1,
        "the fault lives in {low}-{high} Hz: {valve}"
    );
}

#[test]
fn emitted_events_validate_against_the_published_json_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _) = run_fleet(dir.path(), 2, 4);
    assert!(!events.is_empty());
    let script = r#"
import sys, json, jsonschema
schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
count = 0
for line in open(sys.argv[2]):
    errors = list(validator.iter_errors(json.loads(line)))
    if errors:
        raise SystemExit(f"invalid event {line}: {errors[0].message}")
    count += 1
bad = {"schema": "auscult.anomaly-event/1"}
if not list(validator.iter_errors(bad)):
    raise SystemExit("the validator accepted an incomplete event")
print(count)
"#;
    let schema = repo().join("schemas/anomaly-event.schema.json");
    let checked: usize = python_ok(script, &[&schema, &dir.path().join("events.jsonl")]).trim().parse().unwrap();
    assert_eq!(checked, events.len());
}

#[test]
fn archive_reads_back_in_pyarrow_and_duckdb_as_the_run_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (events, summary) = run_fleet(dir.path(), 2, 4);
    let archive = dir.path().join("archive");
    let script = r#"
import sys, json, duckdb, pyarrow.parquet as pq, pyarrow.dataset as ds, glob, os
root = sys.argv[1]
files = sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True))
assert not glob.glob(os.path.join(root, "**", "*.tmp"), recursive=True), "temporary files left behind"
meta = pq.read_metadata(files[0]).metadata
table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
con = duckdb.connect()
q = f"read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
duck = con.execute(f"SELECT count(*), count(DISTINCT machine_id), count(*) FILTER (WHERE profile_state = 'scoring'), max(score), min(date), len(first(logmel_mean_db)) FROM {q}").fetchone()
per_machine = con.execute(f"SELECT machine_type, machine_id, count(*) FROM {q} GROUP BY ALL ORDER BY machine_id").fetchall()
alert_windows = con.execute(f"SELECT count(*) FROM {q} WHERE alert_state <> 'normal'").fetchone()[0]
print(json.dumps({
  "files": len(files),
  "pyarrow_rows": table.num_rows,
  "mean_type": str(table.schema.field("logmel_mean_db").type),
  "start_type": str(table.schema.field("window_start").type),
  "n_mels_meta": meta[b"auscult.n_mels"].decode(),
  "rates_meta": meta[b"auscult.sample_rates_hz"].decode(),
  "duck_rows": duck[0], "duck_machines": duck[1], "duck_scoring": duck[2], "duck_max_score": duck[3],
  "duck_date": str(duck[4]), "duck_bands": duck[5],
  "per_machine": [[t, m, c] for t, m, c in per_machine],
  "alert_windows": alert_windows,
}))
"#;
    let report: serde_json::Value = serde_json::from_str(&python_ok(script, &[&archive])).unwrap();
    let totals = &summary["totals"];
    let reported_rows = totals["archive_rows"].as_u64().unwrap();
    assert_eq!(report["pyarrow_rows"].as_u64().unwrap(), reported_rows);
    assert_eq!(report["duck_rows"].as_u64().unwrap(), reported_rows);
    assert_eq!(report["files"].as_u64().unwrap(), totals["archive_files"].as_u64().unwrap());
    assert_eq!(report["mean_type"], "fixed_size_list<item: float not null>[128]");
    assert_eq!(report["start_type"], "timestamp[us, tz=UTC]");
    assert_eq!(report["n_mels_meta"], "128");
    assert_eq!(report["rates_meta"], "16000");
    assert_eq!(report["duck_bands"].as_u64().unwrap(), 128);
    assert_eq!(report["duck_date"], "2026-01-01");
    let machines = totals["machines"].as_array().unwrap();
    assert_eq!(report["duck_machines"].as_u64().unwrap(), machines.len() as u64);
    let scored: u64 = machines.iter().map(|m| m["windows_scored"].as_u64().unwrap()).sum();
    assert_eq!(report["duck_scoring"].as_u64().unwrap(), scored);
    for row in report["per_machine"].as_array().unwrap() {
        let machine = machines.iter().find(|m| m["machine_id"] == row[1]).unwrap();
        assert_eq!(machine["machine_type"], row[0]);
        let windows = machine["windows_learned"].as_u64().unwrap() + machine["windows_scored"].as_u64().unwrap();
        assert_eq!(row[2].as_u64().unwrap(), windows, "{row}");
    }
    // The largest score in the archive is at least that of any alert event.
    let max_event_score = events.iter().map(|event| event["score"].as_f64().unwrap()).fold(0.0, f64::max);
    assert!(report["duck_max_score"].as_f64().unwrap() >= max_event_score);
    assert!(report["alert_windows"].as_u64().unwrap() > 0);
}

#[test]
fn max_machines_bounds_the_whole_run_not_each_worker() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auscult.toml");
    std::fs::write(&config, "[stream]\nmax_machines = 4\n").unwrap();
    let summary_path = dir.path().join("summary.json");
    run_ok(
        auscult()
            .arg("--config")
            .arg(&config)
            .args(["run", "--simulate", "8", "--duration", "20", "-w", "2", "--events", "-", "--summary-json"])
            .arg(&summary_path),
    );
    let summary = read_json(&summary_path);
    let totals = &summary["totals"];
    assert_eq!(totals["machines"].as_array().unwrap().len(), 4, "{totals}");
    // Four machines of 20 chunks each were refused, counted, and named.
    assert_eq!(totals["chunks_refused"], 80, "{totals}");
    let skipped = totals["skipped"].as_array().unwrap();
    assert!(skipped.iter().any(|line| line.as_str().unwrap().contains("at most 4 machines")), "{skipped:?}");
}
