//! A worker's checkpoints and the ledger of Kafka offsets they allow to commit.
//!
//! The rule (the Arroyo and Flink way): offsets are committed only for records whose every
//! output is durable, and with checkpoints only up to a checkpoint boundary whose state every
//! worker has written. A crash anywhere between a checkpoint and a commit then replays from the
//! last committed offsets onto state that has not seen those records (or has, and drops them as
//! duplicates by sequence number); nothing is lost. The schedule and the ledger are plain
//! structs so that these rules are tested on their own, below.

use super::{WorkerReport, WorkerState};
use crate::checkpoint::changelog::{MachineState, StateEncoding};
use crate::checkpoint::CheckpointStore;
use std::collections::BTreeMap;

/// When checkpoints are due: a boundary is the last epoch of each span of `every_epochs`, the
/// same on every worker, and the state after a boundary covers capture time up to the start of
/// the next epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CheckpointSchedule {
    pub every_epochs: u64,
    pub epoch_us: i64,
}

impl CheckpointSchedule {
    pub fn new(checkpoint_s: u64, epoch_ms: u64, epoch_us: i64) -> Self {
        Self { every_epochs: (checkpoint_s.saturating_mul(1000) / epoch_ms.max(1)).max(1), epoch_us }
    }

    /// The first checkpoint boundary at or after `epoch`.
    pub fn boundary_at_or_after(&self, epoch: u64) -> u64 {
        (epoch / self.every_epochs).saturating_mul(self.every_epochs).saturating_add(self.every_epochs - 1)
    }

    /// The capture time that the state after `boundary` covers up to, µs.
    pub fn covered_until_us(&self, boundary: u64) -> i64 {
        i64::try_from(boundary.saturating_add(1)).unwrap_or(i64::MAX).saturating_mul(self.epoch_us)
    }

    /// The last boundary wholly before `frontier` (`None` before the first one).
    pub fn last_boundary_before(&self, frontier: u64) -> Option<u64> {
        ((frontier / self.every_epochs) * self.every_epochs).checked_sub(1)
    }
}

/// How far this worker may commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CommitPoint {
    /// Offsets read in epochs up to this one may be committed (`None`: none yet).
    pub last_epoch: Option<u64>,
    /// With checkpoints: the state boundary to record as committed first (as its covered time).
    pub covered_until_us: Option<i64>,
}

/// Where commits may go, given the first epoch that is not yet durable everywhere
/// (`durable_frontier`; `None`: everything is, the inputs are at their end). Without
/// checkpoints, every epoch before it; with them, only through the last boundary before it, or
/// at the end through this worker's last checkpoint (`written_until_us`).
pub(super) fn commit_point(
    durable_frontier: Option<u64>,
    schedule: Option<&CheckpointSchedule>,
    written_until_us: Option<i64>,
) -> CommitPoint {
    match (schedule, durable_frontier) {
        (None, Some(frontier)) => CommitPoint { last_epoch: frontier.checked_sub(1), covered_until_us: None },
        (None, None) => CommitPoint { last_epoch: Some(u64::MAX), covered_until_us: None },
        (Some(schedule), Some(frontier)) => {
            let last = schedule.last_boundary_before(frontier);
            CommitPoint { last_epoch: last, covered_until_us: last.map(|last| schedule.covered_until_us(last)) }
        }
        (Some(_), None) => CommitPoint { last_epoch: Some(u64::MAX), covered_until_us: written_until_us },
    }
}

/// Kafka offsets read but not committed, by the input epoch they belong to: a poll's offsets
/// belong to the latest epoch its chunks entered, so they are committed only once all of its
/// chunks are durable.
#[derive(Debug, Default)]
pub(super) struct OffsetLedger {
    uncommitted: BTreeMap<u64, BTreeMap<i32, i64>>,
}

impl OffsetLedger {
    /// Records one poll's next offsets per partition, at `epoch`.
    pub fn record(&mut self, epoch: u64, positions: BTreeMap<i32, i64>) {
        if !positions.is_empty() {
            self.uncommitted.entry(epoch).or_default().extend(positions);
        }
    }

    /// Takes the offsets of the epochs up to `last` (per partition the latest), to commit.
    pub fn take_through(&mut self, last: u64) -> BTreeMap<i32, i64> {
        let mut positions = BTreeMap::new();
        while let Some(entry) = self.uncommitted.first_entry() {
            if *entry.key() > last {
                break;
            }
            positions.extend(entry.remove());
        }
        positions
    }
}

/// Where a worker's checkpoints go.
pub(super) enum StateWriter {
    /// Files in its folder, written by the monitors at the boundary.
    Folder(CheckpointStore),
    /// Records for the state topic, made by the monitors at the boundary and written by
    /// "StateChangelog" once the boundary's outputs are durable.
    Changelog(StateEncoding),
}

/// One worker's checkpointing.
pub(super) struct WorkerCheckpoints {
    pub store: StateWriter,
    pub schedule: CheckpointSchedule,
    /// The boundary this worker's last checkpoint covers up to, µs.
    pub written_until_us: Option<i64>,
    /// The boundary last recorded as committed, µs.
    pub marked_until_us: Option<i64>,
    /// Worker 0 only: once a boundary this late is committed, every worker of this run has
    /// checkpointed its restored machines, and the folders of workers beyond this run's
    /// (`peers`) are removed.
    pub remove_stale: Option<(i64, usize)>,
}

impl WorkerCheckpoints {
    /// Records that the state covering up to `covered_until_us` is committed (if it is newer
    /// than the last recorded), and removes stale workers' folders once that is safe. Errors
    /// are sink errors: nothing more is committed.
    pub fn mark_committed(&mut self, covered_until_us: i64, report: &mut WorkerReport) -> bool {
        if Some(covered_until_us) <= self.marked_until_us {
            return true;
        }
        // The changelog needs no mark: its records are written after the outputs they cover.
        let StateWriter::Folder(store) = &self.store else {
            self.marked_until_us = Some(covered_until_us);
            return true;
        };
        if let Err(error) = store.mark_committed(covered_until_us) {
            report.sink_error(error.to_string());
            return false;
        }
        self.marked_until_us = Some(covered_until_us);
        if let Some((after_us, peers)) = self.remove_stale.filter(|(after, _)| covered_until_us >= *after) {
            self.remove_stale = None;
            if let Err(error) = store.remove_workers_from(peers) {
                tracing::warn!("cannot remove the checkpoints of earlier workers (after {after_us} µs): {error}");
            }
        }
        true
    }
}

/// Writes the worker's machines' state as it is after `boundary` (nothing if it has none): to
/// its folder, or, for the changelog, returns the records to send once the boundary's outputs
/// are durable.
pub(super) fn write_checkpoint(state: &mut WorkerState, boundary: u64) -> Vec<MachineState> {
    let WorkerState { monitors, report, checkpoints, metrics, retired_since_checkpoint, .. } = state;
    let Some(checkpoints) = checkpoints else { return Vec::new() };
    let retired = std::mem::take(retired_since_checkpoint);
    if monitors.is_empty() && retired.is_empty() {
        return Vec::new();
    }
    let covered_until_us = checkpoints.schedule.covered_until_us(boundary);
    let store = match &checkpoints.store {
        // A retired machine is left out of the file: the file replaces the worker's last one.
        StateWriter::Folder(store) => store,
        StateWriter::Changelog(encoding) => {
            let mut machines: Vec<_> = monitors.values().collect();
            machines.sort_by(|a, b| a.machine_id().cmp(b.machine_id()));
            let states = machines.into_iter().map(|monitor| encoding.encode(monitor, covered_until_us));
            return states.chain(retired.iter().map(|machine_id| encoding.retire(machine_id))).collect();
        }
    };
    let started = std::time::Instant::now();
    match store.write(covered_until_us, monitors.values()) {
        Ok(path) => {
            checkpoints.written_until_us = Some(covered_until_us);
            report.checkpoints_written += 1;
            if let Some(metrics) = metrics {
                metrics.checkpoint_seconds.observe(started.elapsed().as_secs_f64());
                metrics.checkpoint_bytes.inc_by(std::fs::metadata(&path).map_or(0, |file| file.len()));
            }
        }
        Err(error) => report.sink_error(error.to_string()),
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 s checkpoints of 250 ms epochs: a boundary every 40 epochs.
    const SCHEDULE: CheckpointSchedule = CheckpointSchedule { every_epochs: 40, epoch_us: 250_000 };

    #[test]
    fn boundaries_are_the_last_epoch_of_each_span_and_cover_up_to_the_next() {
        assert_eq!(CheckpointSchedule::new(10, 250, 250_000), SCHEDULE);
        assert_eq!(SCHEDULE.boundary_at_or_after(0), 39);
        assert_eq!(SCHEDULE.boundary_at_or_after(39), 39);
        assert_eq!(SCHEDULE.boundary_at_or_after(40), 79);
        assert_eq!(SCHEDULE.covered_until_us(39), 10_000_000);
        assert_eq!(SCHEDULE.last_boundary_before(39), None, "the first boundary is not passed yet");
        assert_eq!(SCHEDULE.last_boundary_before(40), Some(39));
        assert_eq!(SCHEDULE.last_boundary_before(119), Some(79));
        // A checkpoint period shorter than an epoch is one epoch.
        assert_eq!(CheckpointSchedule::new(0, 250, 250_000).every_epochs, 1);
    }

    #[test]
    fn without_checkpoints_every_durable_epoch_commits() {
        assert_eq!(commit_point(Some(5), None, None), CommitPoint { last_epoch: Some(4), covered_until_us: None });
        assert_eq!(commit_point(Some(0), None, None).last_epoch, None);
        assert_eq!(commit_point(None, None, None).last_epoch, Some(u64::MAX));
    }

    #[test]
    fn with_checkpoints_only_through_the_last_boundary_that_every_worker_has_passed() {
        // Durable up to epoch 99: the boundary 79 is the last whose state is written everywhere.
        let point = commit_point(Some(100), Some(&SCHEDULE), Some(20_000_000));
        assert_eq!(point, CommitPoint { last_epoch: Some(79), covered_until_us: Some(20_000_000) });
        assert_eq!(commit_point(Some(30), Some(&SCHEDULE), None).last_epoch, None);
        // At the end everything is durable, the last checkpoint included.
        let end = commit_point(None, Some(&SCHEDULE), Some(27_500_000));
        assert_eq!(end, CommitPoint { last_epoch: Some(u64::MAX), covered_until_us: Some(27_500_000) });
    }

    #[test]
    fn a_crash_between_a_checkpoint_and_a_commit_replays_only_what_the_state_has_not_seen() {
        let mut ledger = OffsetLedger::default();
        // Polls of partition 0 whose latest chunks entered epochs 10, 70 and 85; partition 1 at 50.
        ledger.record(10, BTreeMap::from([(0, 100)]));
        ledger.record(50, BTreeMap::from([(1, 40)]));
        ledger.record(70, BTreeMap::from([(0, 180)]));
        ledger.record(85, BTreeMap::from([(0, 230)]));
        ledger.record(90, BTreeMap::new());
        // Durable up to epoch 99, checkpoints at 39 and 79: the state covers epochs before 80.
        let point = commit_point(Some(100), Some(&SCHEDULE), None);
        let committed = ledger.take_through(point.last_epoch.unwrap());
        assert_eq!(committed, BTreeMap::from([(0, 180), (1, 40)]), "the epoch-85 poll waits for boundary 119");
        // A crash now: the restart restores the state of boundary 79 and reads partition 0 from
        // offset 180, so the chunks of the epoch-85 poll are read again, by state that has not
        // seen them. Nothing the state has seen is past a committed offset.
        assert_eq!(ledger.take_through(84), BTreeMap::new());
        assert_eq!(ledger.take_through(119), BTreeMap::from([(0, 230)]));
        assert_eq!(ledger.take_through(u64::MAX), BTreeMap::new(), "each offset is committed once");
    }
}
