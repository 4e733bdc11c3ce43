//! What an edge agent tells Prometheus: chunks sent, delivered, sent again, failed and dropped,
//! the bytes librdkafka buffers, and how long deliveries take. The counts come from the
//! producer's own [`DeliveryReport`], so a scrape and the agent's final report agree.

use super::producer::DeliveryReport;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The agent's metrics.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    sent: Counter,
    delivered: Counter,
    resent: Counter,
    dropped: Counter,
    failed: Gauge,
    buffer_bytes: Gauge,
    brokers_up: Gauge,
}

impl AgentMetrics {
    /// Metrics around `delivery_latency`, the producer's live histogram.
    pub fn new(delivery_latency: Histogram) -> Self {
        let mut registry = Registry::with_prefix("auscult_agent");
        let sent = Counter::default();
        registry.register("chunks_sent", "Chunks handed to the producer", sent.clone());
        let delivered = Counter::default();
        registry.register("chunks_delivered", "Chunks the broker acknowledged", delivered.clone());
        let resent = Counter::default();
        registry.register("chunks_resent", "Sends of chunks again after a failed delivery", resent.clone());
        let dropped = Counter::default();
        registry.register("chunks_dropped", "Chunks dropped because the buffer stayed full", dropped.clone());
        let failed = Gauge::default();
        registry.register("chunks_failed", "Chunks whose delivery failed, waiting to be sent again", failed.clone());
        let buffer_bytes = Gauge::default();
        registry.register("buffer_bytes", "Bytes of messages librdkafka holds in its queues", buffer_bytes.clone());
        let brokers_up = Gauge::default();
        registry.register(
            "brokers_up",
            "Brokers the producer is connected to (readiness: at least one)",
            brokers_up.clone(),
        );
        registry.register(
            "delivery_seconds",
            "From handing a chunk to the producer to the broker's acknowledgement",
            delivery_latency,
        );
        Self { registry, sent, delivered, resent, dropped, failed, buffer_bytes, brokers_up }
    }

    /// Brings the metrics up to `report`, the buffer's current size and the brokers connected.
    pub fn record(&self, report: &DeliveryReport, buffer_bytes: u64, brokers_up: u64) {
        let up_to = |counter: &Counter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        up_to(&self.sent, report.sent);
        up_to(&self.delivered, report.delivered);
        up_to(&self.resent, report.resent);
        up_to(&self.dropped, report.dropped);
        self.failed.set(i64::try_from(report.failed).unwrap_or(i64::MAX));
        self.buffer_bytes.set(i64::try_from(buffer_bytes).unwrap_or(i64::MAX));
        self.brokers_up.set(i64::try_from(brokers_up).unwrap_or(i64::MAX));
    }

    /// Whether the producer was connected to a broker when last recorded.
    pub fn connected(&self) -> bool {
        self.brokers_up.get() > 0
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        crate::metrics_endpoint::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;

    #[test]
    fn counters_follow_the_report_and_never_go_back() {
        let metrics = AgentMetrics::new(Histogram::new(exponential_buckets(0.001, 2.0, 4)));
        metrics.record(&DeliveryReport { sent: 10, delivered: 7, failed: 3, ..Default::default() }, 4096, 0);
        assert!(!metrics.connected());
        metrics.record(&DeliveryReport { sent: 12, delivered: 12, ..Default::default() }, 0, 1);
        assert!(metrics.connected());
        let text = metrics.encode();
        assert!(text.contains("auscult_agent_chunks_sent_total 12"), "{text}");
        assert!(text.contains("auscult_agent_chunks_delivered_total 12"), "{text}");
        assert!(text.contains("auscult_agent_chunks_failed 0"), "{text}");
        assert!(text.contains("auscult_agent_buffer_bytes 0"), "{text}");
        assert!(text.contains("# TYPE auscult_agent_delivery_seconds histogram"), "{text}");
    }
}
