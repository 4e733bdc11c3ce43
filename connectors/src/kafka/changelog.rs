//! The state changelog: a compacted topic (`auscult.state`) that holds the newest value of
//! each key, the way Kafka Streams keeps a task's state where the cluster already is.
//!
//! This module moves bytes only: [`ChangelogWriter`] sends keyed records (or tombstones) to an
//! explicit partition and returns once the broker has acknowledged every one, sending failed
//! ones again with backoff; [`read_changelog`] reads every partition from its beginning to its
//! end and keeps, per key, the newest value. What the values mean is the
//! pipeline's (`auscult_pipeline::checkpoint::changelog`).

use super::producer::KafkaTransportError;
use super::properties::WithUserProperties;
use super::resend::{flush_resending, FailedDeliveries};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One record for the changelog: a key, a value (`None`: a tombstone), and its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub partition: i32,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// Sends records to the changelog topic, at least once and in order per partition.
pub struct ChangelogWriter {
    producer: ThreadedProducer<FailedDeliveries<ChangelogRecord>>,
    topic: String,
    brokers: String,
}

impl ChangelogWriter {
    /// A writer whose records may be up to `max_record_bytes` long.
    pub fn connect(brokers: &str, topic: &str, max_record_bytes: usize) -> Result<Self, KafkaTransportError> {
        // Room for the key and the record's framing above the value.
        let message_max = (max_record_bytes + 64 * 1024).to_string();
        let producer = super::at_least_once_in_order(&mut ClientConfig::new())
            .set("bootstrap.servers", brokers)
            .set("client.id", "auscult-pipeline-state")
            .set("message.max.bytes", message_max)
            .with_user_properties()
            .create_with_context(FailedDeliveries::default())
            .map_err(|source| KafkaTransportError::Create { brokers: brokers.to_owned(), source })?;
        Ok(Self { producer, topic: topic.to_owned(), brokers: brokers.to_owned() })
    }

    /// Hands one record to the producer (waiting while its queue is full).
    pub fn send(&self, record: ChangelogRecord) -> Result<(), KafkaTransportError> {
        let mut opaque = Box::new(record);
        loop {
            let base = BaseRecord::with_opaque_to(&self.topic, opaque);
            let key = base.delivery_opaque.key.clone();
            let value = base.delivery_opaque.value.clone();
            let partition = base.delivery_opaque.partition;
            let mut base = base.key(key.as_bytes()).partition(partition);
            if let Some(value) = value.as_deref() {
                base = base.payload(value);
            }
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    opaque = record.delivery_opaque;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((source, _)) => return Err(KafkaTransportError::Send { topic: self.topic.clone(), source }),
            }
        }
    }

    /// Returns once every record sent is acknowledged by the broker (all in-sync replicas),
    /// sending failed ones again with backoff (see [`flush_resending`]).
    pub fn flush(&self) -> Result<(), KafkaTransportError> {
        flush_resending(&self.producer, (&self.topic, &self.brokers), "state record", |record| self.send(record))
    }
}

/// The newest value of each key, with where it was read (for error messages).
#[derive(Debug, Default)]
pub struct ChangelogContents {
    /// Key -> (partition, offset, value); tombstoned keys are absent.
    pub values: HashMap<String, (i32, i64, Vec<u8>)>,
    /// Records read, tombstones included.
    pub records_read: u64,
    /// Bytes of the values kept.
    pub bytes_kept: u64,
    /// Partitions of the topic.
    pub partitions: u32,
}

/// How long reading the changelog to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Reads every partition of `topic` from its beginning to its end, keeping
/// the newest value of each key for which `keep` says yes (others are skipped without being
/// copied). The topic must exist (`auscult topics` creates it).
pub fn read_changelog(
    brokers: &str,
    topic: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<ChangelogContents, KafkaTransportError> {
    let create = |source| KafkaTransportError::Create { brokers: brokers.to_owned(), source };
    let partitions = super::partition_count(brokers, topic, Duration::from_secs(10))?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "auscult-state-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("fetch.message.max.bytes", (16 * 1024 * 1024).to_string())
        .with_user_properties()
        .create()
        .map_err(create)?;
    // Each partition is read until the consumer reports its end (EOF), not to a high watermark
    // asked first: tansu 0.6 reports the offset of the last record as the high watermark, one
    // short, and so a partition holding one record as empty.
    let mut reading: std::collections::BTreeSet<i32> = (0..partitions as i32).collect();
    let mut assignment = TopicPartitionList::new();
    for &partition in &reading {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).map_err(create)?;
    }
    let mut contents = ChangelogContents { partitions, ..ChangelogContents::default() };
    consumer.assign(&assignment).map_err(create)?;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut last_error: Option<String> = None;
    while !reading.is_empty() {
        if Instant::now() >= deadline {
            return Err(KafkaTransportError::Unread {
                topic: topic.to_owned(),
                brokers: brokers.to_owned(),
                reason: format!(
                    "{} partition(s) not at their end within {READ_TIMEOUT:?} (last error: {})",
                    reading.len(),
                    last_error.as_deref().unwrap_or("none")
                ),
            });
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = match result {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                reading.remove(&partition);
                continue;
            }
            // librdkafka reconnects and fetches again by itself: an error here is worth a line,
            // and the reading goes on until the deadline.
            Err(error) => {
                tracing::warn!(topic, "reading the state topic: {error}");
                last_error = Some(error.to_string());
                continue;
            }
        };
        let (partition, offset) = (message.partition(), message.offset());
        contents.records_read += 1;
        let Some(key) = message.key().and_then(|key| std::str::from_utf8(key).ok()) else { continue };
        if !keep(key) {
            continue;
        }
        match message.payload() {
            // A tombstone; some brokers hand back an empty value for a null one.
            None | Some([]) => {
                if let Some((_, _, old)) = contents.values.remove(key) {
                    contents.bytes_kept -= old.len() as u64;
                }
            }
            Some(value) => {
                contents.bytes_kept += value.len() as u64;
                if let Some((_, _, old)) = contents.values.insert(key.to_owned(), (partition, offset, value.to_vec())) {
                    contents.bytes_kept -= old.len() as u64;
                }
            }
        }
    }
    Ok(contents)
}
