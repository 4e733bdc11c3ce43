//! The anomaly event sink: JSON Lines to a file or to standard output, or JSON records on the
//! anomaly topic of Kafka (keyed by machine id).
//!
//! One event per line or record, in the order given, flushed when the caller finishes an epoch
//! so a reader never sees half an epoch's events after `flush` returns (on Kafka, `flush`
//! returns once the broker acknowledged every record).

use auscult_schemas::AnomalyEvent;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTarget {
    /// Standard output (`-` on the command line).
    Stdout,
    /// A file, created or truncated at start.
    File(PathBuf),
    /// A Kafka topic.
    Kafka { brokers: String, topic: String },
}

impl EventTarget {
    /// `-` means standard output; anything else is a file path.
    pub fn parse(text: &str) -> Self {
        if text == "-" {
            EventTarget::Stdout
        } else {
            EventTarget::File(PathBuf::from(text))
        }
    }
}

/// Why events could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EventSinkError {
    #[error("cannot create event file {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write events to {target}: {source}")]
    Write { target: String, source: io::Error },
    #[error("anomaly events on Kafka: {0}")]
    Kafka(#[from] crate::kafka::KafkaTransportError),
}

/// Where a writer puts its events.
enum Output {
    Lines(BufWriter<Box<dyn Write + Send>>),
    Kafka(crate::kafka::EventProducer),
}

/// Writes events as JSON Lines or Kafka records.
pub struct EventWriter {
    out: Output,
    target: String,
    written: u64,
}

impl EventWriter {
    /// Opens the target (a file is created or truncated; Kafka is connected to).
    pub fn open(target: &EventTarget) -> Result<Self, EventSinkError> {
        let lines = |sink: Box<dyn Write + Send>| Output::Lines(BufWriter::new(sink));
        let (out, name) = match target {
            EventTarget::Stdout => (lines(Box::new(io::stdout())), "stdout".to_owned()),
            EventTarget::File(path) => (lines(Box::new(create(path)?)), path.display().to_string()),
            EventTarget::Kafka { brokers, topic } => (
                Output::Kafka(crate::kafka::EventProducer::connect(brokers, topic)?),
                format!("kafka:{topic}@{brokers}"),
            ),
        };
        Ok(Self { out, target: name, written: 0 })
    }

    /// Appends one event as one line or record.
    pub fn write(&mut self, event: &AnomalyEvent) -> Result<(), EventSinkError> {
        let line = serde_json::to_string(event).expect("events are plain data and always serialize");
        self.write_record(event.machine_id.as_str(), &line)
    }

    /// Appends any JSON record under `key` (the key is used on Kafka only).
    pub fn write_record(&mut self, key: &str, json: &str) -> Result<(), EventSinkError> {
        match &mut self.out {
            Output::Lines(out) => writeln!(out, "{json}")
                .map_err(|source| EventSinkError::Write { target: self.target.clone(), source })?,
            Output::Kafka(producer) => producer.send(key, json)?,
        }
        self.written += 1;
        Ok(())
    }

    /// Pushes everything written so far out; on Kafka, waits for the broker's acknowledgements.
    pub fn flush(&mut self) -> Result<(), EventSinkError> {
        match &mut self.out {
            Output::Lines(out) => {
                out.flush().map_err(|source| EventSinkError::Write { target: self.target.clone(), source })
            }
            Output::Kafka(producer) => Ok(producer.flush()?),
        }
    }

    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

fn create(path: &Path) -> Result<File, EventSinkError> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| EventSinkError::Create { path: path.to_owned(), source })?;
    }
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|source| EventSinkError::Create { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use auscult_schemas::{AlertLevel, EventKind, MachineId, MachineType, EVENT_SCHEMA_ID};

    #[test]
    fn each_event_is_one_parseable_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/events.jsonl");
        let mut writer = EventWriter::open(&EventTarget::File(path.clone())).unwrap();
        let event = AnomalyEvent {
            schema: EVENT_SCHEMA_ID.to_owned(),
            event_id: "0123456789abcdef".to_owned(),
            machine_id: MachineId::new("fan-1").unwrap(),
            machine_type: MachineType::new("fan").unwrap(),
            kind: EventKind::Opened,
            level: AlertLevel::Warning,
            window_start: "2026-01-01T00:00:00.000000Z".to_owned(),
            window_end: "2026-01-01T00:00:01.000000Z".to_owned(),
            score: 3.5,
            threshold: 2.0,
            top_bands: Vec::new(),
            learned_audio_s: 60.0,
        };
        writer.write(&event).unwrap();
        writer.write(&event).unwrap();
        writer.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let parsed: AnomalyEvent = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(parsed, event);
        assert_eq!(writer.written(), 2);
    }

    #[test]
    fn an_unwritable_path_is_named_in_the_error() {
        let error = EventWriter::open(&EventTarget::File(PathBuf::from("/proc/no/such/events.jsonl"))).err().unwrap();
        assert!(error.to_string().contains("/proc/no/such/events.jsonl"), "{error}");
    }
}
