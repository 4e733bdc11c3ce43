//! Kafka transport: audio chunks from edge agents to the pipeline, anomaly events out.
//!
//! A chunk travels as one Kafka message on the audio topic: the key is the machine id (so one
//! machine's chunks stay in one partition, in order), the value is the chunk's wire encoding
//! (`AudioChunk::encode`, documented in `schemas/audio-chunk.md`), and headers repeat what a
//! consumer needs to route or reject it without decoding (`auscult-schema`, `machine-type`,
//! `sequence`). The producer is librdkafka's idempotent producer with `acks=all`.

pub mod admin;
pub mod consumer;
pub mod producer;
pub mod properties;
pub mod registry;

mod agent_metrics;
pub use admin::{create_topics, partition_count, TopicOutcome};
pub use agent_metrics::AgentMetrics;
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

/// The value of [`HEADER_SCHEMA`] for chunks this build writes.
pub fn chunk_schema_id() -> String {
    format!("auscult.audio-chunk/{}", auscult_schemas::CHUNK_SCHEMA_VERSION)
}
