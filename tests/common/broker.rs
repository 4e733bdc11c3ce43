//! A real Kafka-protocol broker (tansu) on a free loopback port, from `scripts/broker.sh`,
//! stopped when dropped. The first use builds tansu once (about 15 minutes); CI installs it
//! before the tests.

use super::repo;
use auscult_connectors::kafka::{create_topics, TopicOutcome};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Broker {
    pub address: String,
    dir: tempfile::TempDir,
    storage: String,
}

impl Broker {
    /// A broker that keeps its records in memory.
    pub fn start() -> Broker {
        Self::launch(tempfile::tempdir().expect("a temporary folder"), None, "memory://tansu/")
    }

    /// A broker that keeps its records in SQLite in its folder, so it can be restarted.
    pub fn start_persistent() -> Broker {
        Self::launch(tempfile::tempdir().expect("a temporary folder"), None, "sqlite://tansu.db")
    }

    /// Kills the broker (SIGKILL, as a crash) and starts it again on the same port and storage.
    pub fn crash_and_restart(&mut self, down_for: Duration) {
        self.crash();
        std::thread::sleep(down_for);
        self.restart();
    }

    /// Kills the broker (SIGKILL, as a crash).
    pub fn crash(&mut self) {
        let pid = std::fs::read_to_string(self.dir.path().join("broker.pid")).expect("a running broker");
        let killed = Command::new("kill").args(["-9", pid.trim()]).status().expect("kill runs");
        assert!(killed.success());
    }

    /// Stops the broker as an operator would, with `scripts/broker.sh stop` (SIGTERM, then
    /// SIGKILL after 10 s).
    pub fn stop_gracefully(&mut self) {
        let stopped = Command::new("bash")
            .arg(repo().join("scripts/broker.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status()
            .expect("bash runs");
        assert!(stopped.success());
    }

    /// Starts a crashed broker again on the same port and storage.
    pub fn restart(&mut self) {
        let port = self.address.rsplit(':').next().expect("host:port").to_owned();
        let address = Self::run_start_script(self.dir.path(), Some(&port), &self.storage);
        assert_eq!(address, self.address);
    }

    fn launch(dir: tempfile::TempDir, port: Option<&str>, storage: &str) -> Broker {
        let address = Self::run_start_script(dir.path(), port, storage);
        Broker { address, dir, storage: storage.to_owned() }
    }

    /// Runs `scripts/broker.sh start`; returns the address it prints.
    fn run_start_script(dir: &std::path::Path, port: Option<&str>, storage: &str) -> String {
        let mut command = Command::new("bash");
        command.arg(repo().join("scripts/broker.sh")).arg("start").arg(dir);
        if let Some(port) = port {
            command.arg(port);
        }
        let output = command.env("AUSCULT_BROKER_STORAGE", storage).output().expect("bash runs");
        assert!(
            output.status.success(),
            "scripts/broker.sh start failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default()
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout.lines().last().expect("the script prints the address").trim().to_owned()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// Creates `topic` with `partitions` partitions (replication 1).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let outcomes = create_topics(&self.address, &[(topic, false)], partitions, 1).expect("topic creation answered");
        assert_eq!(outcomes, vec![(topic.to_owned(), TopicOutcome::Created)]);
    }

    /// Reads every message of `topic` from the beginning until `expected` arrived or `timeout`
    /// passed: (partition, key, headers, value).
    pub fn consume(&self, topic: &str, expected: usize, timeout: Duration) -> Vec<Consumed> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("group.id", format!("test-{topic}-{}", std::process::id()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        while messages.len() < expected && Instant::now() < deadline {
            if let Some(result) = consumer.poll(Duration::from_millis(200)) {
                messages.push(Consumed::from(&result.expect("a message, not an error")));
            }
        }
        messages
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(repo().join("scripts/broker.sh")).arg("stop").arg(self.dir.path()).output();
    }
}

/// One consumed message, owned.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub value: Vec<u8>,
}

impl Consumed {
    fn from(message: &BorrowedMessage<'_>) -> Consumed {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (header.key.to_owned(), String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Consumed {
            partition: message.partition(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            headers,
            value: message.payload().unwrap_or_default().to_vec(),
        }
    }

    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}
