//! Consuming audio chunks from Kafka, with dead letters for what cannot be used.
//!
//! Each pipeline worker reads a deterministic share of the audio topic's partitions
//! (partition `p` belongs to worker `p mod workers`), so no two workers read one partition and
//! every partition is read, in every process of a cluster. A record that is not a valid chunk
//! (undecodable, another schema version, no key or a key that is not its machine, absurd
//! values, oversized) is copied to the dead-letter topic with its original key and value and
//! an `auscult-error` header saying why, and the stream goes on.

use super::producer::KafkaTransportError;
use super::properties::WithUserProperties;
use auscult_schemas::chunk::MAX_PAYLOAD_BYTES;
use auscult_schemas::{AudioChunk, ChunkOrigin};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How long a commit waits for the dead letters before it to be acknowledged.
const DEAD_LETTER_FLUSH: Duration = Duration::from_secs(30);

/// How often librdkafka reports its statistics (the consumer lag among them), ms.
const LAG_STATISTICS_MS: &str = "1000";

/// The consumer's context: keeps the lag per partition from librdkafka's statistics (the high
/// watermarks it fetches anyway: no request of our own).
pub(crate) struct LagStatistics {
    topic: String,
    lag: Mutex<BTreeMap<i32, i64>>,
}

impl ClientContext for LagStatistics {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        let mut lag = self.lag.lock().unwrap_or_else(PoisonError::into_inner);
        for partition in topic.partitions.values() {
            // librdkafka lists an internal partition -1, and negative offsets where it knows none.
            // Its own `consumer_lag` counts from the committed offset; this counts from what the
            // application has taken (or, before anything, from where fetching stands).
            if partition.partition < 0 || partition.hi_offset < 0 {
                continue;
            }
            let position = [partition.app_offset, partition.next_offset].into_iter().find(|&o| o >= 0).unwrap_or(0);
            lag.insert(partition.partition, (partition.hi_offset - position).max(0));
        }
    }
}

impl ConsumerContext for LagStatistics {}

/// Header of a dead letter saying why the record was refused.
pub const HEADER_ERROR: &str = "auscult-error";
/// Header of a dead letter saying where the record was read (`topic/partition@offset`).
pub const HEADER_SOURCE: &str = "auscult-source";

/// Which share of which topic a worker reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSettings {
    pub brokers: String,
    pub topic: String,
    pub dlq_topic: String,
    pub group_id: String,
    pub worker_index: usize,
    pub workers: usize,
}

/// What one poll brought.
#[derive(Debug, Default)]
pub struct Polled {
    pub chunks: Vec<AudioChunk>,
    /// The records sent to the dead-letter topic.
    pub rejected: Vec<DeadLetter>,
    /// Whether every assigned partition has been read to its end.
    pub caught_up: bool,
    /// For each partition read from, the offset after the last record taken.
    pub positions: BTreeMap<i32, i64>,
}

/// A record refused and sent to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// A short, fixed name of the reason (for counting: `bad_magic`, `no_key`, ...).
    pub reason: &'static str,
    /// One line naming the record (`kafka:topic/partition@offset`) and the reason in full.
    pub line: String,
}

/// One worker's reader of the audio topic.
pub struct ChunkConsumer {
    consumer: BaseConsumer<LagStatistics>,
    dead_letters: ThreadedProducer<DefaultProducerContext>,
    settings: ConsumerSettings,
    partitions: Vec<i32>,
    at_end: Vec<bool>,
}

impl ChunkConsumer {
    /// Connects and assigns this worker's partitions, from the group's committed offsets or,
    /// without any, from the beginning.
    pub fn connect(settings: ConsumerSettings) -> Result<Self, KafkaTransportError> {
        let create = |source| KafkaTransportError::Create { brokers: settings.brokers.clone(), source };
        let consumer: BaseConsumer<LagStatistics> = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("fetch.message.max.bytes", (MAX_PAYLOAD_BYTES + 64 * 1024).to_string())
            // A broker holds an empty fetch this long before answering; records that arrive
            // meanwhile may wait for the answer, so keep it short for live audio.
            .set("fetch.wait.max.ms", "25")
            .set("statistics.interval.ms", LAG_STATISTICS_MS)
            .with_user_properties()
            .create_with_context(LagStatistics { topic: settings.topic.clone(), lag: Mutex::default() })
            .map_err(create)?;
        let metadata = consumer.fetch_metadata(Some(&settings.topic), Duration::from_secs(10)).map_err(create)?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|topic| topic.name() == settings.topic)
            .flat_map(|topic| topic.partitions().iter().map(|partition| partition.id()))
            .collect();
        partitions.sort_unstable();
        if partitions.is_empty() {
            return Err(KafkaTransportError::NoSuchTopic { brokers: settings.brokers.clone(), topic: settings.topic });
        }
        let workers = settings.workers.max(1);
        partitions.retain(|partition| (*partition as usize) % workers == settings.worker_index % workers);
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            assignment.add_partition_offset(&settings.topic, *partition, Offset::Stored).map_err(create)?;
        }
        consumer.assign(&assignment).map_err(create)?;
        let dead_letters =
            super::at_least_once_in_order(ClientConfig::new().set("bootstrap.servers", &settings.brokers))
                .with_user_properties()
                .create()
                .map_err(create)?;
        let at_end = vec![partitions.is_empty(); partitions.len()];
        Ok(Self { consumer, dead_letters, settings, partitions, at_end })
    }

    /// The partitions of this worker not yet read to their end.
    pub fn partitions_behind(&self) -> Vec<i32> {
        self.partitions.iter().zip(&self.at_end).filter(|(_, &end)| !end).map(|(&partition, _)| partition).collect()
    }

    /// The partitions this worker reads.
    /// The index of the worker this consumer reads for.
    pub fn worker_index(&self) -> usize {
        self.settings.worker_index
    }

    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// Takes what arrives within `timeout` (at most `max_records` records).
    pub fn poll(&mut self, timeout: Duration, max_records: usize) -> Polled {
        let mut polled = Polled::default();
        let mut wait = timeout;
        for _ in 0..max_records {
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    mark(&self.partitions, &mut self.at_end, message.partition(), false);
                    polled.positions.insert(message.partition(), message.offset() + 1);
                    match chunk_of(&message) {
                        Ok(chunk) => polled.chunks.push(chunk),
                        Err((reason, text)) => {
                            let line = self.dead_letter(&message, &text);
                            polled.rejected.push(DeadLetter { reason, line });
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    mark(&self.partitions, &mut self.at_end, partition, true)
                }
                Some(Err(error)) => {
                    tracing::warn!(topic = %self.settings.topic, "Kafka consumer: {error}");
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        polled.caught_up = self.at_end.iter().all(|&end| end);
        polled
    }

    /// Copies a refused record to the dead-letter topic; returns the one-line reason.
    fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &str) -> String {
        let source = format!("{}/{}@{}", message.topic(), message.partition(), message.offset());
        let line = format!("kafka:{source}: {reason}");
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header { key: HEADER_ERROR, value: Some(reason) })
            .insert(Header { key: HEADER_SOURCE, value: Some(source.as_str()) });
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.settings.dlq_topic).payload(message.payload().unwrap_or_default()).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Err((error, _)) = self.dead_letters.send(record) {
            tracing::error!("{line}; and it could not be sent to {}: {error}", self.settings.dlq_topic);
        }
        line
    }

    /// Sends a chunk that was read and decoded but then refused downstream (its machine is past
    /// `stream.max_machines`) to the dead-letter topic, re-encoded, with `reason` in its
    /// `auscult-error` header and the record it came from in `auscult-source`. Returns the
    /// one-line reason.
    pub fn dead_letter_chunk(&self, chunk: &AudioChunk, reason: &str) -> String {
        let source = match &chunk.origin {
            ChunkOrigin::Kafka { topic, partition, offset } => format!("{topic}/{partition}@{offset}"),
            other => other.to_string(),
        };
        let line = format!("{}: {reason}", chunk.origin);
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header { key: HEADER_ERROR, value: Some(reason) })
            .insert(Header { key: HEADER_SOURCE, value: Some(source.as_str()) });
        let value = chunk.encode();
        let key = chunk.machine_id.to_string();
        let record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.settings.dlq_topic).payload(value.as_slice()).key(key.as_bytes()).headers(headers);
        if let Err((error, _)) = self.dead_letters.send(record) {
            tracing::error!("{line}; and it could not be sent to {}: {error}", self.settings.dlq_topic);
        }
        line
    }

    /// Records not yet read per assigned partition, as librdkafka's last statistics (every
    /// second) said: the high watermark minus the position. Partitions it has not reported on
    /// yet are left out.
    pub fn lag(&self) -> Vec<(i32, i64)> {
        let lag = self.consumer.context().lag.lock().unwrap_or_else(PoisonError::into_inner);
        self.partitions.iter().filter_map(|partition| Some((*partition, *lag.get(partition)?))).collect()
    }

    /// Waits until the dead letters sent so far are acknowledged.
    pub fn flush_dead_letters(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.dead_letters.flush(timeout)
    }

    /// Commits the group's offsets (`partition -> next offset to read`), once the dead letters
    /// of those records are acknowledged: the caller commits only what is durable downstream.
    pub fn commit(&self, positions: &BTreeMap<i32, i64>) -> Result<(), KafkaError> {
        if positions.is_empty() {
            return Ok(());
        }
        self.flush_dead_letters(DEAD_LETTER_FLUSH)?;
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next) in positions {
            offsets.add_partition_offset(&self.settings.topic, partition, Offset::Offset(next))?;
        }
        self.consumer.commit(&offsets, CommitMode::Sync)
    }
}

/// Records whether `partition` has been read to its end.
fn mark(partitions: &[i32], at_end: &mut [bool], partition: i32, end: bool) {
    if let Some(index) = partitions.iter().position(|&p| p == partition) {
        at_end[index] = end;
    }
}

/// The chunk a record holds, or why it holds none (a short name and the full reason).
fn chunk_of(message: &BorrowedMessage<'_>) -> Result<AudioChunk, (&'static str, String)> {
    let origin = ChunkOrigin::Kafka {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    };
    let value = message.payload().ok_or_else(|| ("no_value", "the record has no value".to_owned()))?;
    let chunk = AudioChunk::decode(value, origin).map_err(|error| (error.kind(), error.to_string()))?;
    match message.key() {
        None => Err(("no_key", format!("the record has no key; it must be the machine id {}", chunk.machine_id))),
        Some(key) if key != chunk.machine_id.as_str().as_bytes() => Err((
            "key_mismatch",
            format!("the record's key '{}' is not its machine id {}", String::from_utf8_lossy(key), chunk.machine_id),
        )),
        Some(_) => Ok(chunk),
    }
}
