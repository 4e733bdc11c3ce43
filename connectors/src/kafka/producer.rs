//! Producing audio chunks to Kafka with delivery accounting.
//!
//! An edge agent must not lose audio silently: every chunk is either acknowledged by the
//! broker (all in-sync replicas, idempotent so a retry never doubles it) or counted as failed
//! or dropped, and the agent says which. While the broker is away librdkafka retries and
//! buffers up to a bound; when the buffer is full a chunk waits a little, then is dropped and
//! counted.

use super::{chunk_schema_id, HEADER_MACHINE_TYPE, HEADER_SCHEMA, HEADER_SEQUENCE};
use auscult_schemas::{partition_of, AudioChunk};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How to reach the broker and how much to buffer while it is away.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerSettings {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    pub topic: String,
    pub client_id: String,
    /// Most bytes librdkafka buffers while the broker is unreachable.
    pub buffer_max_bytes: usize,
    /// How long a chunk may wait for room in a full buffer before it is dropped.
    pub full_buffer_wait: Duration,
    /// How long librdkafka keeps retrying one message before reporting it failed.
    pub delivery_timeout: Duration,
}

/// Why the producer could not be made or a message not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum KafkaTransportError {
    #[error("cannot create a Kafka producer for {brokers}: {source}")]
    Create { brokers: String, source: KafkaError },
    /// `what`: the topic and the brokers asked, as "topic T from B".
    #[error("cannot read the partitions of {what}: {source}")]
    Metadata { what: String, source: KafkaError },
    #[error("topic {topic} does not exist on {brokers} (create it, e.g. with 4 partitions)")]
    NoSuchTopic { brokers: String, topic: String },
    #[error("records to {topic} on {brokers} were not delivered: {reason}")]
    Undelivered { topic: String, brokers: String, reason: String },
    #[error("Kafka producer for {topic}: {source}")]
    Send { topic: String, source: KafkaError },
}

/// What happened to the chunks handed to the producer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Chunks never handed to librdkafka because its buffer stayed full.
    pub dropped: u64,
    /// Chunks still unacknowledged when the flush gave up.
    pub unflushed: u64,
    pub last_error: Option<String>,
}

/// Counts deliveries as the broker acknowledges them.
#[derive(Default)]
pub(crate) struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(error.to_string());
                }
            }
        }
    }
}

/// Sends chunks keyed by machine id to the audio topic, each machine to the partition
/// [`partition_of`] names, so that the pipeline worker reading it is the machine's owner.
pub struct ChunkProducer {
    producer: ThreadedProducer<DeliveryCounter>,
    settings: ProducerSettings,
    sent: u64,
    dropped: u64,
    schema_id: String,
    partitions: PartitionCount,
}

/// The audio topic's partition count, learned from the broker's metadata. While the broker has
/// not answered (it may be away when the agent starts), chunks go by key (librdkafka's own
/// partitioner: still one partition per machine, only not the owner's), and the count is asked
/// for again at most every [`PartitionCount::RETRY`].
struct PartitionCount {
    count: Option<u32>,
    asked: Option<Instant>,
}

impl PartitionCount {
    const RETRY: Duration = Duration::from_secs(30);
    const WAIT: Duration = Duration::from_secs(2);

    fn get(&mut self, producer: &ThreadedProducer<DeliveryCounter>, topic: &str) -> Option<u32> {
        if self.count.is_none() && self.asked.is_none_or(|asked| asked.elapsed() >= Self::RETRY) {
            self.asked = Some(Instant::now());
            self.count = producer.client().fetch_metadata(Some(topic), Self::WAIT).ok().and_then(|metadata| {
                let found = metadata.topics().iter().find(|found| found.name() == topic && found.error().is_none())?;
                u32::try_from(found.partitions().len()).ok().filter(|&count| count > 0)
            });
            if self.count.is_none() {
                tracing::warn!(topic, "no partition count from the broker yet: chunks go by key until it answers");
            }
        }
        self.count
    }
}

impl ChunkProducer {
    pub fn connect(settings: ProducerSettings) -> Result<Self, KafkaTransportError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("client.id", &settings.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("delivery.timeout.ms", settings.delivery_timeout.as_millis().max(1).to_string())
            .set("queue.buffering.max.kbytes", (settings.buffer_max_bytes / 1024).max(1).to_string())
            .set("message.max.bytes", (16 * 1024 * 1024).to_string())
            .create_with_context(DeliveryCounter::default())
            .map_err(|source| KafkaTransportError::Create { brokers: settings.brokers.clone(), source })?;
        let mut partitions = PartitionCount { count: None, asked: None };
        partitions.get(&producer, &settings.topic);
        Ok(Self { producer, settings, sent: 0, dropped: 0, schema_id: chunk_schema_id(), partitions })
    }

    /// Hands one chunk to the producer. A full buffer is waited on for `full_buffer_wait`,
    /// then the chunk is dropped and counted (returns `Ok(false)`).
    pub fn send(&mut self, chunk: &AudioChunk) -> Result<bool, KafkaTransportError> {
        let value = chunk.encode();
        let sequence = chunk.sequence.to_string();
        let partition = self
            .partitions
            .get(&self.producer, &self.settings.topic)
            .map(|count| partition_of(&chunk.machine_id, count));
        let deadline = Instant::now() + self.settings.full_buffer_wait;
        loop {
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header { key: HEADER_SCHEMA, value: Some(self.schema_id.as_str()) })
                .insert(Header { key: HEADER_MACHINE_TYPE, value: Some(chunk.machine_type.as_str()) })
                .insert(Header { key: HEADER_SEQUENCE, value: Some(sequence.as_str()) });
            let mut record = BaseRecord::to(&self.settings.topic)
                .key(chunk.machine_id.as_str())
                .payload(&value)
                .timestamp(chunk.capture_start_us / 1000)
                .headers(headers);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(true);
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.dropped += 1;
                    return Ok(false);
                }
                Err((source, _)) => {
                    return Err(KafkaTransportError::Send { topic: self.settings.topic.clone(), source });
                }
            }
        }
    }

    /// Waits up to `timeout` for every handed-over chunk to be acknowledged, then reports.
    pub fn flush(&self, timeout: Duration) -> DeliveryReport {
        let _ = self.producer.flush(timeout);
        self.report()
    }

    /// The counts so far.
    pub fn report(&self) -> DeliveryReport {
        let context = self.producer.context();
        DeliveryReport {
            sent: self.sent,
            delivered: context.delivered.load(Ordering::Relaxed),
            failed: context.failed.load(Ordering::Relaxed),
            dropped: self.dropped,
            unflushed: u64::try_from(self.producer.in_flight_count()).unwrap_or(0),
            last_error: context.last_error.lock().ok().and_then(|last| last.clone()),
        }
    }
}

/// Anomaly events as JSON records on the anomaly topic, keyed by machine id.
pub struct EventProducer {
    producer: ThreadedProducer<DeliveryCounter>,
    topic: String,
    brokers: String,
    failed_seen: u64,
}

/// How long a flush waits for the broker to acknowledge an epoch's events.
const EVENT_FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

impl EventProducer {
    pub fn connect(brokers: &str, topic: &str) -> Result<Self, KafkaTransportError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", "auscult-pipeline")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create_with_context(DeliveryCounter::default())
            .map_err(|source| KafkaTransportError::Create { brokers: brokers.to_owned(), source })?;
        Ok(Self { producer, topic: topic.to_owned(), brokers: brokers.to_owned(), failed_seen: 0 })
    }

    pub fn send(&mut self, key: &str, json: &str) -> Result<(), KafkaTransportError> {
        loop {
            let record = BaseRecord::to(&self.topic).key(key).payload(json);
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((source, _)) => return Err(KafkaTransportError::Send { topic: self.topic.clone(), source }),
            }
        }
    }

    /// Returns once every event sent is acknowledged; an error if any was not.
    pub fn flush(&mut self) -> Result<(), KafkaTransportError> {
        self.producer
            .flush(EVENT_FLUSH_TIMEOUT)
            .map_err(|source| KafkaTransportError::Send { topic: self.topic.clone(), source })?;
        let context = self.producer.context();
        let failed = context.failed.load(Ordering::Relaxed);
        if failed > self.failed_seen {
            self.failed_seen = failed;
            let reason = context.last_error.lock().ok().and_then(|last| last.clone()).unwrap_or_default();
            return Err(KafkaTransportError::Undelivered {
                topic: self.topic.clone(),
                brokers: self.brokers.clone(),
                reason,
            });
        }
        Ok(())
    }
}
