//! Producing audio chunks to Kafka with delivery accounting.
//!
//! An edge agent must not lose audio silently: every chunk is either acknowledged by the
//! broker (all in-sync replicas, in order; a retry may store a chunk twice, and the pipeline
//! drops the repeat by its sequence number) or counted as failed or dropped, and the agent
//! says which. While the broker is away librdkafka
//! retries and buffers up to a bound; when the buffer is full a chunk waits a little, then is
//! dropped and counted. A chunk whose delivery failed all the same (the broker was away past
//! the delivery timeout, or answered an error, as a broker that restarts badly does) is kept
//! and sent again with backoff ([`Resends`]) until it is delivered, or until the failed chunks
//! alone would fill the buffer (then the oldest is dropped and counted). The pipeline drops
//! repeats by sequence number, so a resend of a chunk that did arrive costs nothing; one that
//! arrives after its machine's later chunks is late, and counted as a repeat there.

use super::properties::WithUserProperties;
use super::resend::{flush_resending, FailedDeliveries};
use super::{chunk_schema_id, AgentMetrics, HEADER_MACHINE_TYPE, HEADER_SCHEMA, HEADER_SEQUENCE};
use auscult_schemas::{partition_of, AudioChunk};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
    #[error("cannot read {topic} from {brokers} to its end: {reason}")]
    Unread { topic: String, brokers: String, reason: String },
}

/// What happened to the chunks handed to the producer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: u64,
    pub delivered: u64,
    /// Chunks whose delivery failed and that were given up at the end (not resent in time).
    pub failed: u64,
    /// Sends of chunks again after a failed delivery.
    pub resent: u64,
    /// Chunks never handed to librdkafka because its buffer stayed full.
    pub dropped: u64,
    /// Chunks still unacknowledged when the flush gave up.
    pub unflushed: u64,
    pub last_error: Option<String>,
}

/// One event record: its key and JSON value (kept to be sent again if its delivery fails).
pub(crate) struct EventRecord {
    key: String,
    json: String,
}

/// The chunk producer's context: counts deliveries, times them, and keeps the chunks whose
/// delivery failed, for [`Resends`]; and the bytes librdkafka holds, from its statistics.
pub(crate) struct ChunkDeliveries {
    delivered: AtomicU64,
    failed_chunks: Mutex<VecDeque<Box<AudioChunk>>>,
    last_error: Mutex<Option<String>>,
    /// Bytes of messages in librdkafka's queues at its last statistics.
    queued_bytes: AtomicU64,
    /// Brokers librdkafka had an open connection to at its last statistics.
    brokers_up: AtomicU64,
    /// Seconds from handing a chunk over to its acknowledgement.
    latency: Histogram,
}

impl ChunkDeliveries {
    fn new(latency: Histogram) -> Self {
        Self {
            delivered: AtomicU64::default(),
            failed_chunks: Mutex::default(),
            last_error: Mutex::default(),
            queued_bytes: AtomicU64::default(),
            brokers_up: AtomicU64::default(),
            latency,
        }
    }
}

/// A chunk handed to librdkafka, and when.
pub(crate) struct InFlight {
    chunk: Box<AudioChunk>,
    handed_at: Instant,
}

impl ClientContext for ChunkDeliveries {
    fn stats(&self, statistics: Statistics) {
        self.queued_bytes.store(statistics.msg_size, Ordering::Relaxed);
        let up = statistics.brokers.values().filter(|broker| broker.nodeid >= 0 && broker.state == "UP").count();
        self.brokers_up.store(up as u64, Ordering::Relaxed);
    }
}

impl ProducerContext for ChunkDeliveries {
    /// The chunk itself, so that a failed delivery can be sent again.
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, in_flight: Box<InFlight>) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.latency.observe(in_flight.handed_at.elapsed().as_secs_f64());
            }
            Err((error, _)) => {
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(error.to_string());
                }
                self.failed_chunks.lock().unwrap_or_else(PoisonError::into_inner).push_back(in_flight.chunk);
            }
        }
    }
}

/// When failed chunks are sent again: at once after the first failure, then after a pause that
/// doubles with every round that still finds failures (1 s up to 30 s), so a broker that is
/// still away is not hammered; a round that finds none resets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resends {
    pause: Duration,
    next: Option<Instant>,
}

impl Resends {
    pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
    pub const LONGEST_PAUSE: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Self { pause: Self::FIRST_PAUSE, next: None }
    }

    /// Whether a resend round is due at `now`, with `failed` chunks waiting; a due round
    /// schedules the next one.
    pub fn due(&mut self, failed: usize, now: Instant) -> bool {
        if failed == 0 {
            return false;
        }
        match self.next {
            Some(next) if now < next => false,
            Some(_) => {
                self.pause = (self.pause * 2).min(Self::LONGEST_PAUSE);
                self.next = Some(now + self.pause);
                true
            }
            None => {
                self.next = Some(now + self.pause);
                true
            }
        }
    }
}

impl Resends {
    /// Everything is delivered: the next failure is resent at once.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Whether the round just started follows another that found failures.
    pub fn repeated(&self) -> bool {
        self.pause > Self::FIRST_PAUSE
    }

    /// Whether no round has started since the last reset.
    pub fn idle(&self) -> bool {
        self.next.is_none()
    }
}

impl Default for Resends {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends chunks keyed by machine id to the audio topic, each machine to the partition
/// [`partition_of`] names, so that the pipeline worker reading it is the machine's owner.
pub struct ChunkProducer {
    producer: ThreadedProducer<ChunkDeliveries>,
    settings: ProducerSettings,
    sent: u64,
    dropped: u64,
    schema_id: String,
    partitions: PartitionCount,
    resends: Resends,
    resent: u64,
    /// Deliveries acknowledged to producers replaced by [`ChunkProducer::reconnect`].
    delivered_before: u64,
    /// Seconds from handing a chunk over to its acknowledgement, over every session.
    latency: Histogram,
    /// Brought up to date after every send and flush, when metrics are served.
    metrics: Option<Arc<AgentMetrics>>,
    /// Chunks not handed to librdkafka yet because earlier ones wait to be sent again: a
    /// machine's chunks must reach its partition in order (the pipeline drops a chunk older
    /// than one it has processed), so after a failure nothing newer goes ahead of the resends.
    held: VecDeque<Box<AudioChunk>>,
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

    fn get(&mut self, producer: &ThreadedProducer<ChunkDeliveries>, topic: &str) -> Option<u32> {
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
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let producer = Self::client(&settings, &latency)?;
        let mut partitions = PartitionCount { count: None, asked: None };
        partitions.get(&producer, &settings.topic);
        Ok(Self {
            producer,
            settings,
            sent: 0,
            dropped: 0,
            schema_id: chunk_schema_id(),
            partitions,
            resends: Resends::new(),
            resent: 0,
            delivered_before: 0,
            latency,
            metrics: None,
            held: VecDeque::new(),
        })
    }

    /// A new librdkafka producer (a new session).
    fn client(
        settings: &ProducerSettings,
        latency: &Histogram,
    ) -> Result<ThreadedProducer<ChunkDeliveries>, KafkaTransportError> {
        super::at_least_once_in_order(&mut ClientConfig::new())
            .set("bootstrap.servers", &settings.brokers)
            .set("client.id", &settings.client_id)
            .set("linger.ms", "5")
            .set("delivery.timeout.ms", settings.delivery_timeout.as_millis().max(1).to_string())
            .set("queue.buffering.max.kbytes", (settings.buffer_max_bytes / 1024).max(1).to_string())
            .set("message.max.bytes", (16 * 1024 * 1024).to_string())
            .set("statistics.interval.ms", "1000")
            .with_user_properties()
            .create_with_context(ChunkDeliveries::new(latency.clone()))
            .map_err(|source| KafkaTransportError::Create { brokers: settings.brokers.clone(), source })
    }

    /// Replaces the producer with a new one, carrying over its failed chunks (and those of its
    /// in-flight ones that fail within a second). A connection that keeps failing after the
    /// broker came back (errors the client does not recover from by itself) starts afresh.
    fn reconnect(&mut self) -> Result<(), KafkaTransportError> {
        let fresh = Self::client(&self.settings, &self.latency)?;
        let old = std::mem::replace(&mut self.producer, fresh);
        // The old session's queued and in-flight chunks fail at once (purged) and come back
        // through its delivery reports, to be carried over with the others.
        old.purge(PurgeConfig::default().queue().inflight());
        let _ = old.flush(Duration::from_secs(1));
        let context = old.context();
        self.delivered_before += context.delivered.load(Ordering::Relaxed);
        let carried = std::mem::take(&mut *context.failed_chunks.lock().unwrap_or_else(PoisonError::into_inner));
        let lost_in_flight = u64::try_from(old.in_flight_count()).unwrap_or(0);
        if lost_in_flight > 0 {
            tracing::warn!(
                chunks = lost_in_flight,
                "chunks of the old producer session neither delivered nor returned"
            );
        }
        self.dropped += lost_in_flight;
        if let Some(error) = context.last_error.lock().ok().and_then(|last| last.clone()) {
            *self.producer.context().last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        }
        self.producer.context().failed_chunks.lock().unwrap_or_else(PoisonError::into_inner).extend(carried);
        Ok(())
    }

    /// Hands one chunk to the producer (after any failed chunks that are due to be sent
    /// again). A full buffer is waited on for `full_buffer_wait`, then the chunk is dropped and
    /// counted (returns `Ok(false)`).
    pub fn send(&mut self, chunk: &AudioChunk) -> Result<bool, KafkaTransportError> {
        self.resend_due(Instant::now())?;
        if self.recovering() {
            self.hold(Box::new(chunk.clone()));
            self.sent += 1;
            self.record_metrics();
            return Ok(true);
        }
        let handed = self.hand_over(Box::new(chunk.clone()))?;
        if handed {
            self.sent += 1;
        } else {
            self.dropped += 1;
        }
        self.record_metrics();
        Ok(handed)
    }

    /// Whether chunks wait to be sent again (failed, or held behind failed ones).
    fn recovering(&self) -> bool {
        !self.held.is_empty()
            || !self.producer.context().failed_chunks.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Keeps a chunk back until the resends before it are delivered; while the held and
    /// failed chunks together exceed the buffer, the oldest held one is dropped.
    fn hold(&mut self, chunk: Box<AudioChunk>) {
        self.held.push_back(chunk);
        let failed_bytes: usize = self
            .producer
            .context()
            .failed_chunks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|chunk| chunk.payload.len())
            .sum();
        let mut bytes = failed_bytes + self.held.iter().map(|chunk| chunk.payload.len()).sum::<usize>();
        while bytes > self.settings.buffer_max_bytes {
            let Some(oldest) = self.held.pop_front() else { break };
            bytes -= oldest.payload.len();
            self.dropped += 1;
        }
    }

    /// Sends the failed chunks again if a round is due, in capture order; drops the oldest of
    /// them while they alone exceed the buffer. The first failure also takes back what waits
    /// in librdkafka's queue behind it (purged, it fails and is resent in order). Once every
    /// resend is delivered, the held chunks go.
    fn resend_due(&mut self, now: Instant) -> Result<(), KafkaTransportError> {
        // No round since the last reset (so nothing is held either: chunks are held only
        // once a round has begun, and released before the reset).
        let first_failure = self.resends.idle()
            && !self.producer.context().failed_chunks.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
        if first_failure {
            self.producer.purge(PurgeConfig::default().queue());
        }
        let failed = {
            let mut failed = self.producer.context().failed_chunks.lock().unwrap_or_else(PoisonError::into_inner);
            let mut bytes: usize = failed.iter().map(|chunk| chunk.payload.len()).sum();
            while bytes > self.settings.buffer_max_bytes {
                let Some(oldest) = failed.pop_front() else { break };
                bytes -= oldest.payload.len();
                self.dropped += 1;
            }
            if failed.is_empty() && self.producer.in_flight_count() == 0 {
                self.resends.reset();
                drop(failed);
                return self.release_held();
            }
            if !self.resends.due(failed.len(), now) {
                return Ok(());
            }
            let mut failed: Vec<Box<AudioChunk>> = std::mem::take(&mut *failed).into();
            failed.sort_by(|a, b| {
                (a.capture_start_us, &a.machine_id, a.sequence).cmp(&(b.capture_start_us, &b.machine_id, b.sequence))
            });
            failed
        };
        // Chunks sent again last round failed again: start a new session before this one.
        if self.resends.repeated() {
            tracing::warn!("deliveries keep failing: starting a new producer session");
            self.reconnect()?;
        }
        tracing::warn!(chunks = failed.len(), "sending chunks again after a failed delivery");
        for chunk in failed {
            if self.hand_over(chunk)? {
                self.resent += 1;
            } else {
                self.dropped += 1;
            }
        }
        Ok(())
    }

    /// Hands the held chunks over, in the order they came.
    fn release_held(&mut self) -> Result<(), KafkaTransportError> {
        while let Some(chunk) = self.held.pop_front() {
            if !self.hand_over(chunk)? {
                self.dropped += 1;
            }
        }
        Ok(())
    }

    /// Hands `chunk` to librdkafka; `Ok(false)` if its buffer stayed full for `full_buffer_wait`.
    fn hand_over(&mut self, chunk: Box<AudioChunk>) -> Result<bool, KafkaTransportError> {
        let value = chunk.encode();
        let sequence = chunk.sequence.to_string();
        let partition = self
            .partitions
            .get(&self.producer, &self.settings.topic)
            .map(|count| partition_of(&chunk.machine_id, count));
        let deadline = Instant::now() + self.settings.full_buffer_wait;
        let mut in_flight = Box::new(InFlight { chunk, handed_at: Instant::now() });
        loop {
            let chunk = &in_flight.chunk;
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header { key: HEADER_SCHEMA, value: Some(self.schema_id.as_str()) })
                .insert(Header { key: HEADER_MACHINE_TYPE, value: Some(chunk.machine_type.as_str()) })
                .insert(Header { key: HEADER_SEQUENCE, value: Some(sequence.as_str()) });
            let key = chunk.machine_id.to_string();
            let timestamp_ms = chunk.capture_start_us / 1000;
            let mut record = BaseRecord::with_opaque_to(&self.settings.topic, in_flight)
                .key(key.as_str())
                .payload(&value)
                .timestamp(timestamp_ms)
                .headers(headers);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(true),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record))
                    if Instant::now() < deadline =>
                {
                    in_flight = record.delivery_opaque;
                    std::thread::sleep(Duration::from_millis(20));
                    in_flight.handed_at = Instant::now();
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => return Ok(false),
                Err((source, _)) => {
                    return Err(KafkaTransportError::Send { topic: self.settings.topic.clone(), source });
                }
            }
        }
    }

    /// Waits up to `timeout` for every handed-over chunk to be acknowledged, sending failed
    /// ones again as their rounds come due, then reports.
    pub fn flush(&mut self, timeout: Duration) -> DeliveryReport {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let _ = self.producer.flush((deadline - now).min(Duration::from_millis(500)));
            if self.resend_due(Instant::now()).is_err() {
                break;
            }
            let failed = self.producer.context().failed_chunks.lock().unwrap_or_else(PoisonError::into_inner).len();
            if failed == 0 && self.held.is_empty() && self.producer.in_flight_count() == 0 {
                break;
            }
        }
        self.record_metrics();
        self.report()
    }

    /// Metrics of this producer, kept up to date from now on.
    pub fn metrics(&mut self) -> Arc<AgentMetrics> {
        let metrics = self.metrics.get_or_insert_with(|| Arc::new(AgentMetrics::new(self.latency.clone())));
        Arc::clone(metrics)
    }

    fn record_metrics(&self) {
        if let Some(metrics) = &self.metrics {
            let context = self.producer.context();
            metrics.record(
                &self.report(),
                context.queued_bytes.load(Ordering::Relaxed),
                context.brokers_up.load(Ordering::Relaxed),
            );
        }
    }

    /// The counts so far.
    pub fn report(&self) -> DeliveryReport {
        let context = self.producer.context();
        DeliveryReport {
            sent: self.sent,
            delivered: self.delivered_before + context.delivered.load(Ordering::Relaxed),
            failed: context.failed_chunks.lock().unwrap_or_else(PoisonError::into_inner).len() as u64,
            resent: self.resent,
            dropped: self.dropped,
            unflushed: u64::try_from(self.producer.in_flight_count()).unwrap_or(0) + self.held.len() as u64,
            last_error: context.last_error.lock().ok().and_then(|last| last.clone()),
        }
    }
}

/// Anomaly events as JSON records on the anomaly topic, keyed by machine id. A record whose
/// delivery fails (a broker that answers errors while it shuts down or restarts) is sent again
/// with backoff within the flush; consumers drop repeats by `event_id`.
pub struct EventProducer {
    producer: ThreadedProducer<FailedDeliveries<EventRecord>>,
    topic: String,
    brokers: String,
}

impl EventProducer {
    pub fn connect(brokers: &str, topic: &str) -> Result<Self, KafkaTransportError> {
        let producer = super::at_least_once_in_order(&mut ClientConfig::new())
            .set("bootstrap.servers", brokers)
            .set("client.id", "auscult-pipeline")
            .with_user_properties()
            .create_with_context(FailedDeliveries::default())
            .map_err(|source| KafkaTransportError::Create { brokers: brokers.to_owned(), source })?;
        Ok(Self { producer, topic: topic.to_owned(), brokers: brokers.to_owned() })
    }

    pub fn send(&self, key: &str, json: &str) -> Result<(), KafkaTransportError> {
        let mut opaque = Box::new(EventRecord { key: key.to_owned(), json: json.to_owned() });
        loop {
            let record = BaseRecord::with_opaque_to(&self.topic, opaque).key(key).payload(json);
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    opaque = record.delivery_opaque;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((source, _)) => return Err(KafkaTransportError::Send { topic: self.topic.clone(), source }),
            }
        }
    }

    /// Returns once every event sent is acknowledged, sending failed ones again with backoff
    /// (see [`flush_resending`]).
    pub fn flush(&mut self) -> Result<(), KafkaTransportError> {
        let (topic, brokers) = (self.topic.as_str(), self.brokers.as_str());
        flush_resending(&self.producer, (topic, brokers), "record", |record| self.send(&record.key, &record.json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_start_at_once_then_back_off_to_a_ceiling_and_reset_when_none_fail() {
        let start = Instant::now();
        let mut resends = Resends::new();
        assert!(!resends.due(0, start), "nothing failed");
        assert!(resends.due(3, start), "the first round is at once");
        assert!(!resends.due(3, start + Duration::from_millis(999)));
        assert!(resends.due(3, start + Duration::from_secs(1)));
        // Then 2 s, 4 s, ... up to 30 s between rounds.
        assert!(!resends.due(3, start + Duration::from_millis(2_999)));
        assert!(resends.due(3, start + Duration::from_secs(3)));
        let mut at = start + Duration::from_secs(3);
        for _ in 0..10 {
            at += Resends::LONGEST_PAUSE;
            assert!(resends.due(1, at));
        }
        assert!(!resends.due(1, at + Resends::LONGEST_PAUSE - Duration::from_millis(1)), "the pause stops growing");
        assert!(!resends.due(0, at + Resends::LONGEST_PAUSE), "nothing failed");
        resends.reset();
        assert!(resends.due(1, at), "once all is delivered, the next failure is resent at once");
        assert!(!resends.repeated());
    }
}
