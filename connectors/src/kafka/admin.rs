//! Creating auscult's topics, so a new deployment needs no other Kafka tool.

use super::producer::KafkaTransportError;
use super::properties::WithUserProperties;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// What happened to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyExists,
    Failed(String),
}

/// Creates each topic with `partitions` partitions and `replication` replicas, log-compacted
/// where the flag says so; a topic that exists already is left as it is.
pub fn create_topics(
    brokers: &str,
    topics: &[(&str, bool)],
    partitions: i32,
    replication: i32,
) -> Result<Vec<(String, TopicOutcome)>, KafkaTransportError> {
    let create = |source| KafkaTransportError::Create { brokers: brokers.to_owned(), source };
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).with_user_properties().create().map_err(create)?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|&(topic, compacted)| {
            let topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
            if compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics(new_topics.iter(), &options)).map_err(create)?;
    Ok(results
        .into_iter()
        .map(|result| match result {
            Ok(name) => (name, TopicOutcome::Created),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => (name, TopicOutcome::AlreadyExists),
            Err((name, code)) => (name, TopicOutcome::Failed(code.to_string())),
        })
        .collect())
}

/// The number of partitions of `topic`, from the broker's metadata; an error if the broker
/// does not answer within `timeout` or has no such topic.
pub fn partition_count(brokers: &str, topic: &str, timeout: Duration) -> Result<u32, KafkaTransportError> {
    let create = |source| KafkaTransportError::Create { brokers: brokers.to_owned(), source };
    let client: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).with_user_properties().create().map_err(create)?;
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| KafkaTransportError::Metadata { what: format!("topic {topic} from {brokers}"), source })?;
    let count = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .map(|found| found.partitions().len())
        .sum::<usize>();
    match u32::try_from(count) {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(KafkaTransportError::NoSuchTopic { brokers: brokers.to_owned(), topic: topic.to_owned() }),
    }
}

/// Drives an admin future on this thread: librdkafka completes it from its own threads, so a
/// polling loop is all it needs (no async runtime).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
