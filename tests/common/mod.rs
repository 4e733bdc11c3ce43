//! Helpers shared by the end-to-end tests: the real binary, the pinned Python venv (pyarrow,
//! DuckDB, jsonschema, librosa) from `scripts/python-env.sh`, and the shared MIMII clips.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The real MIMII clips beside the repository.
pub fn mimii() -> PathBuf {
    repo().join("../shared/data/mimii")
}

/// The `auscult` binary built for these tests.
pub fn auscult() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_auscult"));
    command.env_remove("RUST_LOG");
    command
}

/// A process a test started and waits for: killed (by its pid) if the test ends first, so a
/// failing test leaves no pipeline or agent running.
pub struct Spawned(Option<Child>);

impl Spawned {
    pub fn start(command: &mut Command) -> Spawned {
        Spawned(Some(command.spawn().expect("the command starts")))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("still running")
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("still running").id()
    }

    /// Its standard error, when it was piped.
    pub fn take_stderr(&mut self) -> ChildStderr {
        self.child().stderr.take().expect("stderr was piped")
    }

    /// Sends it `signal` (`TERM`, `INT`, `KILL`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let sent =
            Command::new("kill").arg(format!("-{signal}")).arg(self.id().to_string()).status().expect("kill runs");
        assert!(sent.success(), "kill -{signal} {} failed", self.id());
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child().try_wait().expect("waited").is_none()
    }

    /// CPU time it has used so far, user and system, in seconds (from `/proc`).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.id())).expect("a running process");
        // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        let fields: Vec<&str> = stat.rsplit_once(')').expect("pid (comm) ...").1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_second = Command::new("getconf").arg("CLK_TCK").output().expect("getconf runs");
        ticks as f64 / String::from_utf8_lossy(&per_second.stdout).trim().parse::<f64>().unwrap_or(100.0)
    }

    /// Waits at most `limit` for it to exit; kills it and fails the test if it does not.
    pub fn wait_within(mut self, limit: std::time::Duration, what: &str) -> ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait().expect("waited") {
                self.0 = None;
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: still running after {limit:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn wait(mut self) -> ExitStatus {
        self.0.take().expect("still running").wait().expect("waited")
    }

    pub fn wait_with_output(mut self) -> Output {
        self.0.take().expect("still running").wait_with_output().expect("waited")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a command, failing the test with its output if it does not exit 0.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The venv's Python: `$AUSCULT_TEST_PYTHON`, or what `scripts/python-env.sh` makes (once).
pub fn python() -> Command {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    let path = PYTHON.get_or_init(|| {
        if let Some(path) = std::env::var_os("AUSCULT_TEST_PYTHON") {
            return PathBuf::from(path);
        }
        let output = Command::new("bash").arg(repo().join("scripts/python-env.sh")).output().expect("bash runs");
        assert!(output.status.success(), "scripts/python-env.sh failed:\n{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(stdout.lines().last().expect("the script prints the python path").trim())
    });
    Command::new(path)
}

/// Runs a Python snippet with arguments; returns its stdout.
pub fn python_ok(script: &str, args: &[&Path]) -> String {
    let output = run_ok(python().arg("-c").arg(script).args(args));
    String::from_utf8(output.stdout).expect("python prints UTF-8")
}

/// Reads a JSON Lines file.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect()
}

/// Reads a run's `--summary-json`.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).expect("the summary is JSON")
}

pub mod broker;
