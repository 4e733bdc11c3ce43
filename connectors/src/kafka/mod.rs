//! Kafka transport: audio chunks from edge agents to the pipeline, anomaly events out.
//!
//! A chunk travels as one Kafka message on the audio topic: the key is the machine id (so one
//! machine's chunks stay in one partition, in order), the value is the chunk's wire encoding
//! (`AudioChunk::encode`, documented in `schemas/audio-chunk.md`), and headers repeat what a
//! consumer needs to route or reject it without decoding (`auscult-schema`, `machine-type`,
//! `sequence`). Every producer auscult makes is at-least-once and in order ([`at_least_once_in_order`]).

pub mod admin;
pub mod changelog;
pub mod config;
pub mod consumer;
pub mod producer;
pub mod properties;
pub mod registry;
mod resend;

mod agent_metrics;
pub use admin::{create_topics, partition_count, TopicOutcome};
pub use agent_metrics::AgentMetrics;
pub use changelog::{read_changelog, ChangelogContents, ChangelogRecord, ChangelogWriter};
pub use config::KafkaConfig;
pub use consumer::{ChunkConsumer, ConsumerSettings, DeadLetter, Polled};
pub use producer::{ChunkProducer, DeliveryReport, EventProducer, KafkaTransportError, ProducerSettings};
pub use properties::{parse_property, use_client_properties, PropertyError};
pub use registry::{RegistryChange, RegistryConsumer};

/// Header naming the wire format and its version, e.g. `auscult.audio-chunk/1`.
pub const HEADER_SCHEMA: &str = "auscult-schema";
/// Header with the machine type.
pub const HEADER_MACHINE_TYPE: &str = "machine-type";
/// Header with the chunk's sequence number, decimal.
pub const HEADER_SEQUENCE: &str = "sequence";

/// The delivery settings of every producer auscult makes: `acks=all`, retries, and one request
/// in flight per connection, so that a partition's records stay in the order they were sent.
///
/// Not librdkafka's idempotent producer: repeats are dropped end to end instead (chunks by
/// their sequence numbers in the pipeline, events and archive rows by their ids), which a
/// resend after a failed delivery or a crash replay needs anyway. The broker's producer-id
/// state is then one thing less to go wrong: tansu 0.6, stopped with SIGTERM and restarted,
/// panics on an idempotent producer's next batch (`lite.rs:503`) and answers nobody after it
/// (`bench/kafka_outage.sh`, BENCHMARKS.md).
pub fn at_least_once_in_order(config: &mut rdkafka::config::ClientConfig) -> &mut rdkafka::config::ClientConfig {
    config.set("acks", "all").set("enable.idempotence", "false").set("max.in.flight.requests.per.connection", "1")
}

/// The value of [`HEADER_SCHEMA`] for chunks this build writes.
pub fn chunk_schema_id() -> String {
    format!("auscult.audio-chunk/{}", auscult_schemas::CHUNK_SCHEMA_VERSION)
}
