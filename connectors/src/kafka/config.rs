//! The `[kafka]` section of the configuration: where a deployment's topics are, how an edge
//! agent buffers, and the client properties passed through. Kept beside the Kafka clients
//! that use it; the pipeline's `Config` composes it with the other sections.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the Kafka deployment's topics are and how an edge agent buffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]` (`--brokers` overrides).
    pub brokers: String,
    /// Audio chunks from edge agents, keyed by machine id.
    pub audio_topic: String,
    /// Chunks the pipeline refused, with a header saying why.
    pub dlq_topic: String,
    /// Anomaly events, keyed by machine id.
    pub anomalies_topic: String,
    /// The machine registry (compacted; key machine id, value a JSON entry, tombstone deletes).
    pub machines_topic: String,
    /// The live fleet view (compacted; key `site/type`, value the row as JSON).
    pub fleet_topic: String,
    /// Each machine's checkpointed state with `run --state kafka` (compacted; key machine id,
    /// value the versioned state record).
    pub state_topic: String,
    /// Most bytes an agent buffers while the broker is away (then it drops and says so).
    pub agent_buffer_bytes: usize,
    /// How long an agent keeps retrying one chunk before counting it failed, s: long enough to
    /// ride out a broker restart.
    pub agent_delivery_timeout_s: u64,
    /// librdkafka properties for every client (`"security.protocol" = "SASL_SSL"`, ...; a value
    /// `${NAME}` is read from the environment); `--kafka-property KEY=VALUE` adds to them.
    #[serde(deserialize_with = "text_map")]
    pub properties: BTreeMap<String, String>,
}

/// A value of a client-options table, as text: `true`, `5` and `0.5` are what a client takes
/// as text too, and an `AUSCULT_..._KEY=true` variable arrives as a TOML boolean.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextValue {
    Text(String),
    Bool(bool),
    Integer(i64),
    Float(f64),
}

/// Deserializes a table of client options (librdkafka properties, object-store options),
/// whose values clients read as text, accepting booleans and numbers as their text.
pub fn text_map<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, TextValue>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                TextValue::Text(text) => text,
                TextValue::Bool(flag) => flag.to_string(),
                TextValue::Integer(number) => number.to_string(),
                TextValue::Float(number) => number.to_string(),
            };
            (key, text)
        })
        .collect())
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".to_owned(),
            audio_topic: "auscult.audio".to_owned(),
            dlq_topic: "auscult.audio.dlq".to_owned(),
            anomalies_topic: "auscult.anomalies".to_owned(),
            machines_topic: "auscult.machines".to_owned(),
            fleet_topic: "auscult.fleet".to_owned(),
            state_topic: "auscult.state".to_owned(),
            agent_buffer_bytes: 64 * 1024 * 1024,
            agent_delivery_timeout_s: 300,
            properties: BTreeMap::new(),
        }
    }
}
