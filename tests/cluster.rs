//! timely's own cluster mode: two `auscult run` processes with one hostfile give the same
//! events as one process with two workers.

mod common;

use common::{auscult, read_jsonl, run_ok};
use std::net::TcpListener;
use std::process::Stdio;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn two_processes_with_a_hostfile_emit_what_one_process_does() {
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts.txt");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let common_args = ["run", "--simulate", "8", "--duration", "420", "--seed", "5", "-w", "1", "--processes", "2"];
    let cluster_events = dir.path().join("cluster.jsonl");
    let mut second = auscult()
        .args(common_args)
        .args(["--process", "1", "--events", "-"])
        .arg("--hostfile")
        .arg(&hostfile)
        .arg("--archive")
        .arg(dir.path().join("archive"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    run_ok(
        auscult()
            .args(common_args)
            .args(["--process", "0"])
            .arg("--hostfile")
            .arg(&hostfile)
            .arg("--events")
            .arg(&cluster_events)
            .arg("--archive")
            .arg(dir.path().join("archive")),
    );
    assert!(second.wait().unwrap().success());
    let single_events = dir.path().join("single.jsonl");
    run_ok(
        auscult()
            .args(["run", "--simulate", "8", "--duration", "420", "--seed", "5", "-w", "2", "--events"])
            .arg(&single_events),
    );
    let cluster = read_jsonl(&cluster_events);
    assert!(!cluster.is_empty());
    assert_eq!(cluster, read_jsonl(&single_events));
    // Both processes archived their own machines' windows.
    let files: Vec<_> = walk(&dir.path().join("archive"));
    assert!(
        files.iter().any(|name| name.contains("-w000-")) && files.iter().any(|name| name.contains("-w001-")),
        "{files:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            names.extend(walk(&entry.path()));
        } else {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}
