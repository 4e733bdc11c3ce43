//! Sending again what the broker did not take: the pipeline's outputs (events, state records)
//! must be acknowledged before their offsets are committed, and a broker that shuts down or
//! restarts answers errors for a while. A producer with a [`FailedDeliveries`] context keeps
//! each record whose delivery failed, and [`flush_resending`] sends them again with backoff
//! until every record is acknowledged or the time is up.

use super::producer::KafkaTransportError;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a flush waits for the broker to acknowledge the records, resends included.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// The first pause before failed records are sent again, and the longest.
const RESEND_FIRST_PAUSE: Duration = Duration::from_millis(500);
const RESEND_LONGEST_PAUSE: Duration = Duration::from_secs(8);

/// A producer context that keeps the records (the delivery opaque, `R`) whose delivery failed.
pub(crate) struct FailedDeliveries<R> {
    failed: Mutex<Vec<R>>,
    last_error: Mutex<Option<String>>,
}

impl<R> Default for FailedDeliveries<R> {
    fn default() -> Self {
        Self { failed: Mutex::new(Vec::new()), last_error: Mutex::new(None) }
    }
}

impl<R: Send + Sync + 'static> ClientContext for FailedDeliveries<R> {}

impl<R: Send + Sync + 'static> ProducerContext for FailedDeliveries<R> {
    type DeliveryOpaque = Box<R>;

    fn delivery(&self, result: &DeliveryResult<'_>, record: Box<R>) {
        if let Err((error, _)) = result {
            self.failed.lock().unwrap_or_else(PoisonError::into_inner).push(*record);
            *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        }
    }
}

/// Returns once every record sent through `producer` is acknowledged, handing failed ones to
/// `resend` with backoff; an error if some are still not delivered after [`FLUSH_TIMEOUT`].
/// `what` names the records in messages ("event", "state record").
pub(crate) fn flush_resending<R: Send + Sync + 'static>(
    producer: &ThreadedProducer<FailedDeliveries<R>>,
    (topic, brokers): (&str, &str),
    what: &str,
    mut resend: impl FnMut(R) -> Result<(), KafkaTransportError>,
) -> Result<(), KafkaTransportError> {
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    let mut pause = RESEND_FIRST_PAUSE;
    loop {
        producer
            .flush(deadline.saturating_duration_since(Instant::now()))
            .map_err(|source| KafkaTransportError::Send { topic: topic.to_owned(), source })?;
        let context = producer.context();
        let failed = std::mem::take(&mut *context.failed.lock().unwrap_or_else(PoisonError::into_inner));
        if failed.is_empty() {
            return Ok(());
        }
        let reason = context.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_default();
        if Instant::now() + pause >= deadline {
            return Err(KafkaTransportError::Undelivered {
                topic: topic.to_owned(),
                brokers: brokers.to_owned(),
                reason: format!(
                    "{} {what}(s) after {FLUSH_TIMEOUT:?} of resending; last error: {reason}",
                    failed.len()
                ),
            });
        }
        tracing::warn!(topic, "{} {what}(s) not delivered ({reason}): sending them again in {pause:?}", failed.len());
        std::thread::sleep(pause);
        pause = (pause * 2).min(RESEND_LONGEST_PAUSE);
        for record in failed {
            resend(record)?;
        }
    }
}
