//! Reading the machine registry from its compacted topic.
//!
//! Every pipeline worker reads the whole topic from the beginning (it is small: one record per
//! machine, compacted) and keeps only the machines it owns, so each entry enters the dataflow
//! exactly once, on its owner's worker. A record's key is the machine id; its value is a
//! [`MachineEntry`] as JSON, or nothing (a tombstone: the entry is deleted; an empty value
//! counts as one, since a broker may store a null value as empty).

use super::producer::KafkaTransportError;
use super::properties::WithUserProperties;
use auscult_schemas::{MachineEntry, MachineId};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// One change of the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    Upsert(MachineId, MachineEntry),
    Delete(MachineId),
}

/// A reader of the registry topic.
pub struct RegistryConsumer {
    consumer: BaseConsumer,
    topic: String,
    /// What was read at connection (the registry as it stood), handed out by the first poll.
    initial: Option<(Vec<RegistryChange>, Vec<String>)>,
}

/// How long a new reader may take to read the registry to its end before audio is processed.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

impl RegistryConsumer {
    /// Reads `topic` from the beginning to its end (so the registry applies from the first
    /// chunk on); a missing topic is an empty registry.
    pub fn connect(brokers: &str, topic: &str) -> Result<Option<Self>, KafkaTransportError> {
        let create = |source| KafkaTransportError::Create { brokers: brokers.to_owned(), source };
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "auscult-registry-reader")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .with_user_properties()
            .create()
            .map_err(create)?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(create)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|found| found.name() == topic && found.error().is_none())
            .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
            .collect();
        if partitions.is_empty() {
            return Ok(None);
        }
        let mut assignment = TopicPartitionList::new();
        for &partition in &partitions {
            assignment.add_partition_offset(topic, partition, Offset::Beginning).map_err(create)?;
        }
        consumer.assign(&assignment).map_err(create)?;
        let mut reader = Self { consumer, topic: topic.to_owned(), initial: None };
        let mut changes = Vec::new();
        let mut refused = Vec::new();
        let mut at_end = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + LOAD_TIMEOUT;
        while at_end.len() < partitions.len() && std::time::Instant::now() < deadline {
            reader.take(Duration::from_millis(100), &mut changes, &mut refused, &mut at_end);
        }
        if at_end.len() < partitions.len() {
            refused
                .push(format!("{topic}: not read to its end within {LOAD_TIMEOUT:?}; the rest applies as it arrives"));
        }
        reader.initial = Some((changes, refused));
        Ok(Some(reader))
    }

    /// The changes that arrived (at first, the whole registry), and one line for each record
    /// that was refused.
    pub fn poll(&mut self) -> (Vec<RegistryChange>, Vec<String>) {
        let (mut changes, mut refused) = self.initial.take().unwrap_or_default();
        let mut at_end = std::collections::BTreeSet::new();
        self.take(Duration::ZERO, &mut changes, &mut refused, &mut at_end);
        (changes, refused)
    }

    /// Takes what is there (waiting up to `wait` for the first record).
    fn take(
        &self,
        wait: Duration,
        changes: &mut Vec<RegistryChange>,
        refused: &mut Vec<String>,
        at_end: &mut std::collections::BTreeSet<i32>,
    ) {
        let mut wait = wait;
        while let Some(result) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            let message = match result {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(partition)) => {
                    at_end.insert(partition);
                    continue;
                }
                Err(_) => continue,
            };
            let place = format!("kafka:{}/{}@{}", self.topic, message.partition(), message.offset());
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            let machine_id = match MachineId::new(key.clone()) {
                Ok(machine_id) => machine_id,
                Err(error) => {
                    refused.push(format!("{place}: registry key '{key}' is not a machine id: {error}"));
                    continue;
                }
            };
            match message.payload() {
                // A tombstone; some brokers hand back an empty value for a null one.
                None | Some([]) => changes.push(RegistryChange::Delete(machine_id)),
                Some(value) => match MachineEntry::parse(value) {
                    Ok(entry) => changes.push(RegistryChange::Upsert(machine_id, entry)),
                    Err(error) => refused.push(format!("{place}: machine {machine_id}: {error}")),
                },
            }
        }
    }
}
