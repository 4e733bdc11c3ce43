//! The run summary people read: per machine what was heard and what was flagged, and what
//! was skipped and why.

use auscult_pipeline::dataflow::{MachineSummary, WorkerReport};
use auscult_pipeline::fleet::FleetRow;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

/// The whole run, from every worker of this process.
#[derive(Debug, Clone, Serialize)]
pub struct RunTotals {
    pub machines: Vec<MachineSummary>,
    pub chunks_read: u64,
    pub audio_s: f64,
    pub windows: u64,
    pub alerts_opened: u64,
    pub events_written: u64,
    pub dead_letters: u64,
    /// Chunks of machines refused by `stream.max_machines`.
    pub chunks_refused: u64,
    /// Kafka input: chunks read by one worker for a machine another owns, their bytes, and
    /// the bytes that crossed to another process.
    pub chunks_exchanged: u64,
    pub bytes_exchanged: u64,
    pub bytes_exchanged_between_processes: u64,
    /// Machines that continued from a checkpoint, and checkpoint files written.
    pub machines_restored: usize,
    pub checkpoints_written: u64,
    /// The fleet view at the end of the run.
    pub fleet: Vec<FleetRow>,
    /// Live sources: capture-to-score latency of scored windows, ms (50th and 99th percentile).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Scored windows captured "in the future" of this clock, left out of the latency.
    pub latency_ahead: u64,
    /// Scored windows captured more than an hour before they were scored (replayed
    /// recordings), left out of the latency.
    pub latency_replayed: u64,
    pub archive_files: usize,
    pub archive_rows: u64,
    /// The first lines of each reason (see `skipped_by_reason` for all).
    pub skipped: Vec<String>,
    /// Inputs skipped, by reason (the run's own checks of its inputs count as "input").
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub max_state_bytes: usize,
    pub wall_s: f64,
    pub x_real_time: f64,
}

impl RunTotals {
    pub fn new(reports: &[WorkerReport], mut skipped: Vec<String>, wall: Duration) -> Self {
        let mut machines: Vec<MachineSummary> =
            reports.iter().flat_map(|report| report.machines.iter().cloned()).collect();
        machines.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
        let mut skipped_by_reason: BTreeMap<String, u64> = BTreeMap::new();
        if !skipped.is_empty() {
            skipped_by_reason.insert("input".to_owned(), skipped.len() as u64);
        }
        for report in reports {
            for (reason, count) in &report.skipped_by_reason {
                *skipped_by_reason.entry(reason.clone()).or_default() += count;
            }
        }
        skipped.extend(reports.iter().flat_map(|report| report.skipped.iter().cloned()));
        // Audio of this run: restored machines count only what they heard since.
        let audio_s: f64 =
            machines.iter().map(|m| m.audio_s).sum::<f64>() - reports.iter().map(|r| r.restored_audio_s).sum::<f64>();
        let wall_s = wall.as_secs_f64();
        Self {
            chunks_read: reports.iter().map(|r| r.chunks_read).sum(),
            windows: machines.iter().map(|m| m.windows_learned + m.windows_scored).sum(),
            alerts_opened: machines.iter().map(|m| m.alerts_opened).sum(),
            events_written: reports.iter().map(|r| r.events_written).sum(),
            dead_letters: reports.iter().map(|r| r.dead_letters).sum(),
            chunks_refused: reports.iter().map(|r| r.chunks_refused).sum(),
            chunks_exchanged: reports.iter().map(|r| r.chunks_exchanged).sum(),
            bytes_exchanged: reports.iter().map(|r| r.bytes_exchanged).sum(),
            bytes_exchanged_between_processes: reports.iter().map(|r| r.bytes_exchanged_between_processes).sum(),
            machines_restored: reports.iter().map(|r| r.machines_restored).sum(),
            checkpoints_written: reports.iter().map(|r| r.checkpoints_written).sum(),
            fleet: reports.iter().flat_map(|r| r.fleet.iter().cloned()).collect(),
            latency_p50_ms: percentile(reports, 0.50),
            latency_p99_ms: percentile(reports, 0.99),
            latency_ahead: reports.iter().map(|r| r.latency_ahead).sum(),
            latency_replayed: reports.iter().map(|r| r.latency_replayed).sum(),
            archive_files: reports.iter().map(|r| r.archive_files).sum(),
            archive_rows: reports.iter().map(|r| r.archive_rows).sum(),
            max_state_bytes: machines.iter().map(|m| m.state_bytes).max().unwrap_or(0),
            x_real_time: if wall_s > 0.0 { audio_s / wall_s } else { 0.0 },
            machines,
            audio_s,
            skipped,
            skipped_by_reason,
            wall_s,
        }
    }
}

/// Prints the per-machine table and the totals.
/// Machines listed one per line in the printed summary.
const MACHINE_LINES: usize = 25;
/// Skipped inputs listed in the printed summary.
const SKIPPED_LINES: usize = 10;

pub fn print_run_summary(
    out: &mut impl Write,
    totals: &RunTotals,
    archive: Option<&dyn std::fmt::Display>,
) -> io::Result<()> {
    writeln!(
        out,
        "{:<16} {:<8} {:>8} {:>8} {:>8} {:>7} {:>9}  explained by",
        "machine", "type", "audio s", "learned", "scored", "alerts", "state KiB"
    )?;
    // A fleet of thousands prints the machines that alerted first, then the most heard, up to
    // MACHINE_LINES; the full table is in --summary-json.
    let mut machines: Vec<&_> = totals.machines.iter().collect();
    machines.sort_by(|a, b| {
        b.alerts_opened
            .cmp(&a.alerts_opened)
            .then(b.audio_s.total_cmp(&a.audio_s))
            .then(a.machine_id.cmp(&b.machine_id))
    });
    let hidden = machines.len().saturating_sub(MACHINE_LINES);
    for machine in machines.into_iter().take(MACHINE_LINES) {
        let bands: Vec<String> = machine
            .last_alert_bands
            .iter()
            .map(|band| format!("{:.0}-{:.0} Hz ({:+.1} sd)", band.low_hz, band.high_hz, band.deviation_sd))
            .collect();
        writeln!(
            out,
            "{:<16} {:<8} {:>8.1} {:>8} {:>8} {:>7} {:>9.1}  {}",
            machine.machine_id.as_str(),
            machine.machine_type.as_str(),
            machine.audio_s,
            machine.windows_learned,
            machine.windows_scored,
            machine.alerts_opened,
            machine.state_bytes as f64 / 1024.0,
            if bands.is_empty() { "-".to_owned() } else { bands.join(", ") }
        )?;
    }
    if hidden > 0 {
        let alerted = totals.machines.iter().filter(|machine| machine.alerts_opened > 0).count();
        writeln!(
            out,
            "... and {hidden} more machine(s) ({alerted} of all {} alerted; every machine is in --summary-json)",
            totals.machines.len()
        )?;
    }
    writeln!(
        out,
        "{} machines, {:.1} s of audio in {} chunks, {} windows, {} alerts, {} events; {:.2} s wall, {:.0}x real time; largest machine state {:.1} KiB",
        totals.machines.len(),
        totals.audio_s,
        totals.chunks_read,
        totals.windows,
        totals.alerts_opened,
        totals.events_written,
        totals.wall_s,
        totals.x_real_time,
        totals.max_state_bytes as f64 / 1024.0
    )?;
    if let Some(dir) = archive {
        writeln!(out, "archive: {} rows in {} Parquet files under {}", totals.archive_rows, totals.archive_files, dir)?;
    }
    if let (Some(p50), Some(p99)) = (totals.latency_p50_ms, totals.latency_p99_ms) {
        writeln!(out, "latency from capture to score: p50 {p50:.0} ms, p99 {p99:.0} ms")?;
    }
    if totals.latency_replayed > 0 {
        writeln!(
            out,
            "latency: {} scored window(s) were captured more than an hour before they were scored (replayed recordings, or a backlog); capture-to-score latency does not apply to them and they are not in it",
            totals.latency_replayed
        )?;
    }
    if totals.latency_ahead > 0 {
        writeln!(
            out,
            "latency: {} scored window(s) were captured later than this clock's now (an accelerated replay or a skewed clock) and are not in it",
            totals.latency_ahead
        )?;
    }
    if totals.chunks_exchanged > 0 {
        writeln!(
            out,
            "exchange: {} chunk(s) ({:.1} MB) read by a worker other than their machine's owner, {:.1} MB of them to another process (an agent that does not send each machine to its partition; see README \"Kafka\")",
            totals.chunks_exchanged,
            totals.bytes_exchanged as f64 / 1e6,
            totals.bytes_exchanged_between_processes as f64 / 1e6
        )?;
    }
    if totals.machines_restored > 0 || totals.checkpoints_written > 0 {
        writeln!(
            out,
            "state: {} machine(s) continued from a checkpoint, {} checkpoint(s) written (one per worker and boundary)",
            totals.machines_restored, totals.checkpoints_written
        )?;
    }
    if totals.dead_letters > 0 {
        writeln!(
            out,
            "dead letters: {} record(s) of the audio topic were not chunks (listed below)",
            totals.dead_letters
        )?;
    }
    if totals.chunks_refused > 0 {
        writeln!(
            out,
            "refused: {} chunk(s) of machines beyond stream.max_machines (from Kafka: sent to the dead-letter topic; the first listed below)",
            totals.chunks_refused
        )?;
    }
    if !totals.skipped.is_empty() {
        let total: u64 = totals.skipped_by_reason.values().sum();
        let reasons: Vec<String> =
            totals.skipped_by_reason.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
        writeln!(out, "skipped {total} input(s) ({}); the first of each reason:", reasons.join(", "))?;
        for line in totals.skipped.iter().take(SKIPPED_LINES) {
            writeln!(out, "  {line}")?;
        }
        if totals.skipped.len() > SKIPPED_LINES {
            writeln!(out, "  ... {} more in --summary-json", totals.skipped.len() - SKIPPED_LINES)?;
        }
    }
    Ok(())
}

/// The `quantile` of every worker's latency samples (nearest rank).
fn percentile(reports: &[WorkerReport], quantile: f64) -> Option<f64> {
    let mut samples: Vec<f32> = reports.iter().flat_map(|report| report.latency_ms.iter().copied()).collect();
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f32::total_cmp);
    let rank = ((quantile * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    Some(f64::from(samples[rank - 1]))
}
