//! What a running pipeline tells Prometheus, and how it answers health probes.
//!
//! One [`PipelineMetrics`] per process, shared by its workers, which update it where they
//! update their own reports, so a scrape and the run's summary count the same things. Labels
//! stay bounded: `worker`, `partition`, `reason`, `machine_type`, `level`, `status`; a
//! per-machine label (whose values grow with the fleet) only with `metrics.machine_labels`.
//! Names follow Prometheus' conventions (`auscult_` prefix, base units, counters end in
//! `_total` when written).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A worker that has not stepped for this long makes `/healthz` fail.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    pub worker: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabel {
    pub machine_type: String,
    /// `learned` or `scored`.
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MachineLabel {
    pub machine: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabel {
    /// `warning` or `alarm`.
    pub level: &'static str,
    /// `opened`, `escalated` or `closed`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub worker: u32,
    /// `learning`, `normal`, `warning`, `alarm` or `muted`.
    pub status: &'static str,
}

/// The pipeline's metrics, and its workers' heartbeats for the health probes.
#[derive(Debug)]
pub struct PipelineMetrics {
    registry: Registry,
    pub chunks_read: Family<WorkerLabel, Counter>,
    pub bytes_read: Family<WorkerLabel, Counter>,
    pub dead_letters: Family<ReasonLabel, Counter>,
    pub consumer_lag_records: Family<PartitionLabel, Gauge>,
    pub consumer_lag_seconds: Family<PartitionLabel, Gauge<f64, AtomicU64>>,
    pub frontier_delay_seconds: Family<WorkerLabel, Gauge<f64, AtomicU64>>,
    pub capture_to_score_seconds: Histogram,
    pub windows: Family<WindowLabel, Counter>,
    /// Windows per machine: only with `metrics.machine_labels`.
    pub machine_windows: Option<Family<MachineLabel, Counter>>,
    pub alert_events: Family<AlertLabel, Counter>,
    pub machines: Family<StatusLabel, Gauge>,
    pub checkpoint_seconds: Histogram,
    pub checkpoint_bytes: Counter,
    pub archive_rows: Counter,
    pub archive_files: Counter,
    pub archive_bytes: Counter,
    pub events_written: Counter,
    pub kafka_commit_failures: Counter,
    health: Health,
}

impl PipelineMetrics {
    /// Metrics for a process of `workers` worker threads (indexed from `first_worker`).
    pub fn new(first_worker: usize, workers: usize, machine_labels: bool) -> Self {
        let mut registry = Registry::with_prefix("auscult");
        let chunks_read = Family::default();
        registry.register("chunks_read", "Audio chunks read from the input", chunks_read.clone());
        let bytes_read = Family::default();
        registry.register("audio_bytes_read", "Bytes of audio payload read from the input", bytes_read.clone());
        let dead_letters = Family::default();
        registry.register(
            "dead_letters",
            "Records of the audio topic sent to the dead-letter topic, by reason",
            dead_letters.clone(),
        );
        let consumer_lag_records = Family::default();
        registry.register(
            "consumer_lag_records",
            "Records of each audio-topic partition not yet read (high watermark minus position)",
            consumer_lag_records.clone(),
        );
        let consumer_lag_seconds = Family::default();
        registry.register(
            "consumer_lag_seconds",
            "Wall clock minus the capture time of the last chunk read from each partition",
            consumer_lag_seconds.clone(),
        );
        let frontier_delay_seconds = Family::default();
        registry.register(
            "frontier_delay_seconds",
            "Wall clock minus the start of the epoch each worker's input is at",
            frontier_delay_seconds.clone(),
        );
        let capture_to_score_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "capture_to_score_seconds",
            "From the capture of a window's last sample to its score (live sources)",
            capture_to_score_seconds.clone(),
        );
        let windows = Family::default();
        registry.register("windows", "Windows learned from or scored", windows.clone());
        let machine_windows = machine_labels.then(|| {
            let family = Family::default();
            registry.register("machine_windows", "Windows learned from or scored, per machine", family.clone());
            family
        });
        let alert_events: Family<AlertLabel, Counter> = Family::default();
        registry.register("alert_events", "Alert events (opened, escalated, closed) by level", alert_events.clone());
        // Every combination from zero, so that a rate over them works before the first alert.
        for level in ["warning", "alarm"] {
            for kind in ["opened", "escalated", "closed"] {
                alert_events.get_or_create(&AlertLabel { level, kind }).inc_by(0);
            }
        }
        let machines = Family::default();
        registry.register("machines", "Machines each worker keeps, by status", machines.clone());
        let checkpoint_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        registry.register(
            "checkpoint_seconds",
            "Time to write one worker's checkpoint (with the changelog: to send it and have it acknowledged)",
            checkpoint_seconds.clone(),
        );
        let checkpoint_bytes = Counter::default();
        registry.register(
            "checkpoint_bytes",
            "Bytes of checkpoints written (files, or state records on the changelog)",
            checkpoint_bytes.clone(),
        );
        let archive_rows = Counter::default();
        registry.register("archive_rows", "Window rows written to the Parquet archive", archive_rows.clone());
        let archive_files = Counter::default();
        registry.register("archive_files", "Parquet files committed to the archive", archive_files.clone());
        let archive_bytes = Counter::default();
        registry.register("archive_bytes", "Bytes of Parquet files committed to the archive", archive_bytes.clone());
        let events_written = Counter::default();
        registry.register("events_written", "Anomaly events written to their output", events_written.clone());
        let kafka_commit_failures = Counter::default();
        registry.register("kafka_commit_failures", "Failed commits of consumer offsets", kafka_commit_failures.clone());
        Self {
            registry,
            chunks_read,
            bytes_read,
            dead_letters,
            consumer_lag_records,
            consumer_lag_seconds,
            frontier_delay_seconds,
            capture_to_score_seconds,
            windows,
            machine_windows,
            alert_events,
            machines,
            checkpoint_seconds,
            checkpoint_bytes,
            archive_rows,
            archive_files,
            archive_bytes,
            events_written,
            kafka_commit_failures,
            health: Health::new(first_worker, workers),
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        auscult_connectors::metrics_endpoint::encode(&self.registry)
    }

    /// Worker `worker` is stepping (call it from its loop).
    pub fn heartbeat(&self, worker: usize) {
        self.health.beat(worker);
    }

    /// Worker `worker` is ready: its input is connected and its state restored.
    pub fn mark_ready(&self, worker: usize) {
        self.health.mark_ready(worker);
    }

    /// Worker `worker` has finished its work (a stopped worker is not a stalled one).
    pub fn mark_finished(&self, worker: usize) {
        self.health.mark_finished(worker);
    }

    pub fn healthy(&self) -> Result<(), String> {
        self.health.healthy(Instant::now())
    }

    pub fn ready(&self) -> Result<(), String> {
        self.health.ready()
    }
}

/// Each worker's last step and readiness, as the probes see them.
#[derive(Debug)]
struct Health {
    started: Instant,
    first_worker: usize,
    /// Milliseconds after `started` of each worker's last step.
    last_beat_ms: Vec<AtomicU64>,
    ready: Vec<AtomicBool>,
    finished: Vec<AtomicBool>,
}

impl Health {
    fn new(first_worker: usize, workers: usize) -> Self {
        Self {
            started: Instant::now(),
            first_worker,
            last_beat_ms: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ready: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            finished: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn slot(&self, worker: usize) -> Option<usize> {
        worker.checked_sub(self.first_worker).filter(|&slot| slot < self.ready.len())
    }

    fn beat(&self, worker: usize) {
        if let Some(slot) = self.slot(worker) {
            let now = self.started.elapsed().as_millis() as u64;
            self.last_beat_ms[slot].store(now, Ordering::Relaxed);
        }
    }

    fn mark_ready(&self, worker: usize) {
        if let Some(slot) = self.slot(worker) {
            self.ready[slot].store(true, Ordering::Relaxed);
        }
    }

    fn mark_finished(&self, worker: usize) {
        if let Some(slot) = self.slot(worker) {
            self.finished[slot].store(true, Ordering::Relaxed);
        }
    }

    fn healthy(&self, now: Instant) -> Result<(), String> {
        let now_ms = now.saturating_duration_since(self.started).as_millis() as u64;
        let stalled: Vec<String> = (0..self.ready.len())
            .filter(|&slot| !self.finished[slot].load(Ordering::Relaxed))
            .filter(|&slot| {
                let last = self.last_beat_ms[slot].load(Ordering::Relaxed);
                now_ms.saturating_sub(last) > STALLED_AFTER.as_millis() as u64
            })
            .map(|slot| (slot + self.first_worker).to_string())
            .collect();
        if stalled.is_empty() {
            Ok(())
        } else {
            Err(format!("worker(s) {} have not stepped for {} s", stalled.join(", "), STALLED_AFTER.as_secs()))
        }
    }

    fn ready(&self) -> Result<(), String> {
        let waiting: Vec<String> = (0..self.ready.len())
            .filter(|&slot| !self.ready[slot].load(Ordering::Relaxed))
            .map(|slot| (slot + self.first_worker).to_string())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("worker(s) {} are connecting or restoring state", waiting.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_fails_for_a_worker_that_stopped_stepping_and_readiness_waits_for_every_worker() {
        let health = Health::new(2, 2);
        let start = health.started;
        health.beat(2);
        health.beat(3);
        assert_eq!(health.healthy(start + Duration::from_secs(1)), Ok(()));
        let late = start + STALLED_AFTER + Duration::from_secs(5);
        let stalled = health.healthy(late).unwrap_err();
        assert!(stalled.contains("2, 3"), "{stalled}");
        health.mark_finished(3);
        assert!(health.healthy(late).unwrap_err().starts_with("worker(s) 2 "), "a finished worker is not stalled");
        assert!(health.ready().unwrap_err().contains("2, 3"));
        health.mark_ready(2);
        health.mark_ready(3);
        health.mark_ready(7); // another process's worker: ignored
        assert_eq!(health.ready(), Ok(()));
    }

    #[test]
    fn the_encoding_names_every_family_with_its_prefix_and_counters_end_in_total() {
        let metrics = PipelineMetrics::new(0, 1, true);
        metrics.chunks_read.get_or_create(&WorkerLabel { worker: 0 }).inc_by(3);
        metrics.windows.get_or_create(&WindowLabel { machine_type: "fan".into(), phase: "scored" }).inc();
        metrics.machine_windows.as_ref().unwrap().get_or_create(&MachineLabel { machine: "fan-00".into() }).inc();
        let text = metrics.encode();
        assert!(text.contains("auscult_chunks_read_total{worker=\"0\"} 3"), "{text}");
        assert!(text.contains("auscult_windows_total{machine_type=\"fan\",phase=\"scored\"} 1"), "{text}");
        assert!(text.contains("auscult_machine_windows_total{machine=\"fan-00\"} 1"), "{text}");
        assert!(text.contains("# TYPE auscult_capture_to_score_seconds histogram"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        assert!(!PipelineMetrics::new(0, 1, false).encode().contains("machine_windows"));
    }
}
