//! The command line's finishing touches, run as a user would: the effective configuration
//! (file, then `AUSCULT_*` variables), shell completions, JSON logs, and a summary that stays
//! short for a large fleet.

mod common;

use common::{auscult, run_ok};

#[test]
fn config_prints_the_effective_settings_with_environment_overrides_and_they_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auscult.toml");
    std::fs::write(&file, "[stream]\nmax_machines = 10\n[kafka]\nbrokers = \"file:9092\"\n").unwrap();
    let printed = run_ok(
        auscult()
            .args(["--config", file.to_str().unwrap(), "config"])
            .env("AUSCULT_KAFKA__BROKERS", "plant-kafka:9092")
            .env("AUSCULT_MODEL__LEARNING_S", "45"),
    );
    let text = String::from_utf8(printed.stdout).unwrap();
    assert!(text.contains("brokers = \"plant-kafka:9092\""), "the variable wins over the file:\n{text}");
    assert!(text.contains("learning_s = 45.0"), "{text}");
    assert!(text.contains("max_machines = 10"), "the file's own value stays:\n{text}");
    // What it prints is a configuration file that gives the same settings.
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &text).unwrap();
    let reprinted = run_ok(auscult().args(["--config", again.to_str().unwrap(), "config"]));
    assert_eq!(String::from_utf8(reprinted.stdout).unwrap(), text);
    // A misspelt variable is named, not ignored.
    let wrong = auscult().arg("config").env("AUSCULT_KAFKA__BROKRES", "x").output().unwrap();
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && said.contains("AUSCULT_KAFKA__BROKRES"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
}

#[test]
fn completions_are_printed_for_the_usual_shells() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef auscult"), ("fish", "complete -c auscult")] {
        let printed = run_ok(auscult().args(["completions", shell]));
        let script = String::from_utf8(printed.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {}", &script[..script.len().min(300)]);
        assert!(script.contains("simulate") && script.contains("eval"), "{shell} completes the subcommands");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    // A corpus with one file that is not a WAV: the run warns about it and goes on.
    let dir = tempfile::tempdir().unwrap();
    let normal = dir.path().join("fan/id_00/normal");
    std::fs::create_dir_all(&normal).unwrap();
    std::fs::write(normal.join("00000000.wav"), b"RIFF not really a wav").unwrap();
    std::fs::copy(common::mimii().join("fan/id_00/normal/00000001.wav"), normal.join("00000001.wav")).unwrap();
    let output = auscult().args(["--log-format", "json", "run", "--input"]).arg(dir.path()).output().unwrap();
    assert!(output.status.success());
    let logs = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = logs.lines().filter(|line| line.starts_with('{')).collect();
    assert!(!lines.is_empty(), "no JSON log line in:\n{logs}");
    for line in lines {
        let record: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(record["level"].is_string() && record["timestamp"].is_string(), "{record}");
        assert!(record["fields"]["message"].is_string(), "{record}");
    }
    assert!(logs.contains("not a WAV file"), "{logs}");
}

#[test]
fn a_large_fleet_prints_a_short_summary_alerted_machines_first() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let output = run_ok(
        auscult().args(["run", "--simulate", "40", "--duration", "5", "-w", "2", "--summary-json"]).arg(&summary),
    );
    let text = String::from_utf8(output.stdout).unwrap() + &String::from_utf8(output.stderr).unwrap();
    let machine_lines = text
        .lines()
        .filter(|line| line.split_whitespace().nth(1).is_some_and(|t| ["fan", "pump", "slider", "valve"].contains(&t)))
        .count();
    assert_eq!(machine_lines, 25, "{text}");
    assert!(text.contains("... and 15 more machine(s)"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["totals"]["machines"].as_array().unwrap().len(), 40, "the JSON has every machine");
}

#[test]
fn the_edge_agent_does_not_depend_on_the_pipeline() {
    // The agent's logic is `connectors::edge`; its command takes its settings from `main`.
    for file in ["src/commands/agent.rs", "connectors/src/edge.rs"] {
        let source = std::fs::read_to_string(common::repo().join(file)).unwrap();
        assert!(!source.contains("auscult_pipeline"), "{file} uses the pipeline crate");
    }
    let manifest = std::fs::read_to_string(common::repo().join("connectors/Cargo.toml")).unwrap();
    assert!(!manifest.contains("auscult-pipeline"), "connectors depends on the pipeline");
}

#[test]
fn an_object_storage_url_for_the_state_is_refused_not_taken_as_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let output = auscult()
        .current_dir(dir.path())
        .args(["run", "--brokers", "127.0.0.1:9", "--state", "s3://bucket/prefix"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && said.contains("s3://") && said.contains("object storage"), "{said}");
    assert!(!dir.path().join("s3:").exists(), "a local folder named s3: was made");
}

#[test]
fn simulate_stays_quiet_in_a_pipe_apart_from_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_ok(auscult().arg("simulate").arg(dir.path()).args([
        "--ids",
        "1",
        "--train",
        "2",
        "--test-normal",
        "1",
        "--test-anomaly",
        "1",
        "--clip-s",
        "1",
    ]));
    let said = String::from_utf8(output.stderr).unwrap();
    assert_eq!(said.lines().count(), 1, "no progress bar in a pipe: {said:?}");
    assert!(said.contains("16 WAV files of 4 machines"), "{said}");
}
