//! The Kafka input's epoch clock: which of the chunks a worker has read may enter the dataflow
//! now, and how far the worker's input epoch may advance.
//!
//! A worker's input epoch promises that no more chunks of earlier epochs will come from it;
//! the dataflow's frontier is the least of every worker's promise, so one worker that cannot
//! promise anything holds back all of them. Three rules keep the promise moving:
//!
//! - **Backlog replay.** While partitions are being read behind their end, chunks wait until
//!   every partition still behind has passed their epoch (the watermark), so a backlog is
//!   replayed in capture-time order; at most `max_pending` chunks wait (then the oldest go).
//! - **Caught up.** Once every partition is read to its end, the input moves to the epoch after
//!   the newest chunk seen.
//! - **Idleness** (Flink's `withIdleness`). A worker that is caught up and has read nothing for
//!   `idle_after` (a quiet partition, a machine switched off, a worker that owns no partition)
//!   follows the furthest epoch any worker's input has reached, which every worker and process
//!   learns through the dataflow. A chunk that arrives later for an earlier epoch is late: it
//!   goes in the current epoch, so it is processed, never lost, and a machine's chunks keep
//!   their order. An idle worker also closes the epoch its last late chunks went in, or they
//!   would wait there for the next chunk (for a machine switched off, until the stop).
//!
//! Plain data and `Instant`s given by the caller: the unit tests drive it without timely or a
//! broker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Chunks held back per epoch, and the epochs seen, of one worker's partitions.
#[derive(Debug)]
pub struct InputClock<T> {
    pending: BTreeMap<u64, Vec<T>>,
    pending_items: usize,
    max_pending: usize,
    /// The newest epoch read from each partition.
    partition_epochs: BTreeMap<i32, u64>,
    newest_epoch: u64,
    /// The latest epoch chunks were sent in (later than their own epoch, for late chunks).
    newest_sent: Option<u64>,
    idle_after: Duration,
    last_arrival: Instant,
}

/// What the worker knows of its partitions and peers at one step.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The epoch the worker's input is at.
    pub current: u64,
    /// Every partition of the worker has been read to its end (true for a worker without any).
    pub caught_up: bool,
    /// The worker's partitions not yet read to their end.
    pub behind: &'a [i32],
    /// The furthest epoch any worker's input has reached, as far as this worker has heard.
    pub peers_epoch: u64,
    pub now: Instant,
}

/// What the worker does at one step: send these chunks (each batch at its epoch, in order),
/// then advance its input to `advance_to`, if any.
#[derive(Debug, PartialEq)]
pub struct Release<T> {
    pub send: Vec<(u64, Vec<T>)>,
    pub advance_to: Option<u64>,
}

impl<T> InputClock<T> {
    pub fn new(max_pending: usize, idle_after: Duration, now: Instant) -> Self {
        Self {
            pending: BTreeMap::new(),
            pending_items: 0,
            max_pending,
            partition_epochs: BTreeMap::new(),
            newest_epoch: 0,
            newest_sent: None,
            idle_after,
            last_arrival: now,
        }
    }

    /// Takes a chunk of capture epoch `epoch`, read from `partition` while the input is at
    /// `current`: it waits for its epoch, or goes in the current one if it is late.
    pub fn admit(&mut self, epoch: u64, partition: Option<i32>, item: T, current: u64, now: Instant) {
        self.newest_epoch = self.newest_epoch.max(epoch);
        if let Some(partition) = partition {
            let latest = self.partition_epochs.entry(partition).or_insert(epoch);
            *latest = (*latest).max(epoch);
        }
        self.last_arrival = now;
        self.pending_items += 1;
        self.pending.entry(epoch.max(current)).or_default().push(item);
    }

    /// How long since the last chunk arrived (since the start, before the first).
    pub fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_arrival)
    }

    /// Whether the worker has nothing to read and has read nothing for `idle_after`.
    pub fn is_idle(&self, caught_up: bool, now: Instant) -> bool {
        caught_up && self.quiet_for(now) >= self.idle_after
    }

    /// The chunks that may go now and the epoch the input may advance to.
    pub fn release(&mut self, seen: &Observation<'_>) -> Release<T> {
        let watermark = if seen.caught_up {
            u64::MAX
        } else {
            seen.behind
                .iter()
                .map(|partition| self.partition_epochs.get(partition).copied().unwrap_or(seen.current))
                .min()
                .unwrap_or(u64::MAX)
        };
        let mut send = Vec::new();
        let mut current = seen.current;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > watermark && self.pending_items <= self.max_pending {
                break;
            }
            let (epoch, chunks) = entry.remove_entry();
            self.pending_items -= chunks.len();
            current = current.max(epoch);
            self.newest_sent = Some(self.newest_sent.map_or(epoch, |sent| sent.max(epoch)));
            send.push((epoch, chunks));
        }
        let mut target =
            if seen.caught_up { self.newest_epoch.saturating_add(1) } else { watermark.min(self.newest_epoch) };
        if self.is_idle(seen.caught_up, seen.now) {
            target = target.max(seen.peers_epoch);
            if let Some(sent) = self.newest_sent {
                target = target.max(sent.saturating_add(1));
            }
        }
        let held_back = self.pending.first_key_value().is_some_and(|(first, _)| *first < target);
        let advance_to = (target > current && !held_back).then_some(target);
        Release { send, advance_to }
    }

    /// Everything still held back, in epoch order (at a stop).
    pub fn drain(&mut self) -> Vec<(u64, Vec<T>)> {
        self.pending_items = 0;
        std::mem::take(&mut self.pending).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(2);

    fn seen(current: u64, caught_up: bool, behind: &[i32], peers_epoch: u64, now: Instant) -> Observation<'_> {
        Observation { current, caught_up, behind, peers_epoch, now }
    }

    #[test]
    fn a_backlog_is_released_up_to_the_slowest_partition_still_behind() {
        let start = Instant::now();
        let mut clock = InputClock::new(100, IDLE, start);
        for epoch in 0..6 {
            clock.admit(epoch, Some(0), epoch, 0, start);
        }
        for epoch in 0..3 {
            clock.admit(epoch, Some(1), 100 + epoch, 0, start);
        }
        let release = clock.release(&seen(0, false, &[0, 1], 0, start));
        let epochs: Vec<u64> = release.send.iter().map(|(epoch, _)| *epoch).collect();
        assert_eq!(epochs, vec![0, 1, 2], "partition 1 has only reached epoch 2");
        assert_eq!(release.send[0].1, vec![0, 100]);
        assert_eq!(release.advance_to, None, "epoch 3 is still held back");
        // Partition 1 reaches its end: its watermark no longer counts.
        let release = clock.release(&seen(2, false, &[0], 0, start));
        assert_eq!(release.send.iter().map(|(epoch, _)| *epoch).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(release.advance_to, None, "partition 0 is behind, at epoch 5: nothing past it is promised");
    }

    #[test]
    fn a_caught_up_worker_advances_past_its_newest_chunk() {
        let start = Instant::now();
        let mut clock = InputClock::new(100, IDLE, start);
        clock.admit(7, Some(0), "a", 0, start);
        let release = clock.release(&seen(0, true, &[], 0, start));
        assert_eq!(release.send, vec![(7, vec!["a"])]);
        assert_eq!(release.advance_to, Some(8));
    }

    #[test]
    fn a_worker_without_partitions_follows_its_peers_once_idle() {
        let start = Instant::now();
        let mut clock: InputClock<()> = InputClock::new(100, IDLE, start);
        let release = clock.release(&seen(0, true, &[], 40, start));
        assert_eq!(release.advance_to, Some(1), "not idle yet: it promises only what it knows");
        let later = start + IDLE;
        let release = clock.release(&seen(1, true, &[], 40, later));
        assert_eq!(release.advance_to, Some(40), "idle: it holds nobody back");
        let release = clock.release(&seen(40, true, &[], 40, later));
        assert_eq!(release.advance_to, None);
    }

    #[test]
    fn a_quiet_partition_stops_holding_back_once_idle_and_a_late_chunk_goes_in_the_current_epoch() {
        let start = Instant::now();
        let mut clock = InputClock::new(100, IDLE, start);
        clock.admit(3, Some(2), "early", 0, start);
        assert_eq!(clock.release(&seen(0, true, &[], 50, start)).advance_to, Some(4));
        let idle = start + IDLE + Duration::from_millis(1);
        assert_eq!(clock.release(&seen(4, true, &[], 50, idle)).advance_to, Some(50));
        // The machine comes back with audio of an earlier epoch: late, sent in epoch 50.
        clock.admit(45, Some(2), "late", 50, idle);
        let release = clock.release(&seen(50, true, &[], 50, idle));
        assert_eq!(release.send, vec![(50, vec!["late"])]);
        assert_eq!(release.advance_to, None, "the newest chunk is 45, and the peers are at 50");
        assert!(!clock.is_idle(true, idle), "it just read a chunk");
        // Nothing more comes: once idle, the worker closes epoch 50, so the late chunk is
        // processed now, not when the next chunk or the stop comes.
        let later = idle + IDLE + Duration::from_millis(1);
        assert_eq!(clock.release(&seen(50, true, &[], 50, later)).advance_to, Some(51));
        assert_eq!(clock.release(&seen(51, true, &[], 51, later)).advance_to, None, "and no further");
    }

    #[test]
    fn a_busy_worker_does_not_jump_to_its_peers() {
        let start = Instant::now();
        let mut clock = InputClock::new(100, IDLE, start);
        let soon = start + Duration::from_millis(500);
        clock.admit(10, Some(0), 1, 0, soon);
        let release = clock.release(&seen(0, true, &[], 90, soon + Duration::from_millis(500)));
        assert_eq!(release.advance_to, Some(11));
    }

    #[test]
    fn a_worker_behind_its_end_is_never_idle() {
        let start = Instant::now();
        let mut clock = InputClock::new(100, IDLE, start);
        clock.admit(5, Some(0), 1, 0, start);
        let much_later = start + IDLE * 10;
        let release = clock.release(&seen(0, false, &[0], 90, much_later));
        assert_eq!(release.send, vec![(5, vec![1])]);
        assert_eq!(release.advance_to, None, "partition 0 is at epoch 5 and still behind: it may have more of 5");
    }

    #[test]
    fn past_the_bound_the_oldest_held_back_chunks_go_ahead() {
        let start = Instant::now();
        let mut clock = InputClock::new(2, IDLE, start);
        for epoch in 0..4 {
            clock.admit(epoch, Some(0), epoch, 0, start);
        }
        clock.admit(0, Some(1), 99, 0, start);
        // Partition 1 is at epoch 0; five chunks wait, two may: the oldest epochs go until at most two wait.
        let release = clock.release(&seen(0, false, &[0, 1], 0, start));
        assert_eq!(release.send, vec![(0, vec![0, 99]), (1, vec![1])]);
        assert_eq!(clock.drain(), vec![(2, vec![2]), (3, vec![3])]);
    }
}
