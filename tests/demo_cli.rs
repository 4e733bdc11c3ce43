//! `auscult demo` as a newcomer runs it: plain sentences, its own output folder, and query
//! lines that work when pasted into a shell.

mod common;

use common::{auscult, run_ok};

#[test]
fn the_demo_speaks_plainly_and_its_python_query_line_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let output = run_ok(auscult().args(["demo", "--machines", "4", "--duration", "330", "--out"]).arg(&out));
    let stdout = String::from_utf8(output.stdout).unwrap();
    // The fault is a sentence, not Rust debug text.
    let fault = stdout.lines().find(|line| line.contains("will develop")).expect("a faulty machine is announced");
    assert!(!fault.contains('{') && !fault.contains("Some("), "{fault}");
    assert!(out.join("events.jsonl").exists() && out.join("archive").is_dir(), "{stdout}");
    // The Python line, pasted into a shell with the venv's interpreter, prints the table.
    let line = stdout.lines().find(|line| line.trim_start().starts_with("python3 -c")).expect("a Python query line");
    let python = common::python().get_program().to_owned();
    let command = line.trim_start().replacen("python3", &python.to_string_lossy(), 1);
    let printed = run_ok(std::process::Command::new("bash").arg("-c").arg(&command));
    let table = String::from_utf8_lossy(&printed.stdout);
    for machine in ["fan-00", "pump-01", "slider-02", "valve-03"] {
        assert!(table.contains(machine), "{machine} missing from:\n{table}");
    }
}

#[test]
fn without_out_the_demo_writes_to_a_new_folder_in_tmpdir_and_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let run = || {
        let output = run_ok(auscult().args(["demo", "--machines", "4", "--duration", "310"]).env("TMPDIR", tmp.path()));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let line = stdout.lines().find(|line| line.starts_with("auscult demo: writing to ")).expect("it says where");
        std::path::PathBuf::from(line.trim_start_matches("auscult demo: writing to "))
    };
    let (first, second) = (run(), run());
    assert_ne!(first, second, "each run gets its own folder");
    for folder in [&first, &second] {
        assert!(folder.starts_with(tmp.path()) && folder.join("events.jsonl").exists(), "{}", folder.display());
    }
}
