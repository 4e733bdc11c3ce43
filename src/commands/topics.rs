//! `auscult topics`: creates the audio, dead-letter and anomaly topics and the compacted
//! machine registry, fleet view and state changelog on a Kafka cluster.

use anyhow::{bail, Result};
use auscult_connectors::kafka::{create_topics, TopicOutcome};
use auscult_pipeline::Config;
use clap::Args;

#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// Kafka bootstrap brokers (default: `kafka.brokers` of the configuration).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Partitions per topic: at least the number of pipeline workers that should share the audio.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Replicas per partition.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
}

pub fn execute(args: TopicsArgs, config: Config) -> Result<()> {
    let kafka = &config.kafka;
    let brokers = args.brokers.unwrap_or_else(|| kafka.brokers.clone());
    let topics = [
        (kafka.audio_topic.as_str(), false),
        (kafka.dlq_topic.as_str(), false),
        (kafka.anomalies_topic.as_str(), false),
        (kafka.machines_topic.as_str(), true),
        (kafka.fleet_topic.as_str(), true),
        (kafka.state_topic.as_str(), true),
    ];
    let mut failed = 0;
    for (topic, outcome) in create_topics(&brokers, &topics, args.partitions, args.replication)? {
        match outcome {
            TopicOutcome::Created => println!("{topic}: created with {} partitions", args.partitions),
            TopicOutcome::AlreadyExists => println!("{topic}: exists already, left as it is"),
            TopicOutcome::Failed(reason) => {
                failed += 1;
                eprintln!("{topic}: not created: {reason}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} topic(s) could not be created on {brokers}");
    }
    Ok(())
}
