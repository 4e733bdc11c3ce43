//! The Kafka input of a worker: reads its share of the audio topic and the registry, feeds
//! the dataflow epoch by epoch (the epochs come from [`InputClock`]), and commits the offsets
//! of what every sink has made durable.
//!
//! The loop never blocks on the dataflow: while the monitors are more than `EPOCHS_IN_FLIGHT`
//! behind, it stops reading but keeps stepping the worker, telling its peers its epoch and
//! watching the stop flag, so a stall elsewhere cannot stop it from being stopped.

use super::checkpoints::{commit_point, OffsetLedger};
use super::input_clock::{InputClock, Observation};
use super::{epoch_of, ChunkInput, RegistryInput, WorkerReport, WorkerState, EPOCHS_IN_FLIGHT};
use crate::metrics::{PartitionLabel, PipelineMetrics, ReasonLabel, WorkerLabel};
use crate::sources::{KafkaSource, Placement};
use auscult_connectors::kafka::{ChunkConsumer, ConsumerSettings, DeadLetter, RegistryChange, RegistryConsumer};
use auscult_schemas::{AudioChunk, ChunkOrigin, MachineId};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Operator;
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

/// How long one Kafka poll waits for records, and how many it takes at most.
const KAFKA_POLL_WAIT: Duration = Duration::from_millis(100);
const KAFKA_POLL_RECORDS: usize = 512;
/// Most chunks a Kafka-fed worker holds back to replay a backlog in capture-time order.
const KAFKA_PENDING_CHUNKS: usize = 8_192;
/// How often the consumer-lag and frontier-delay gauges are set.
const GAUGE_PERIOD: Duration = Duration::from_secs(1);
/// How long the loop parks while the monitors catch up.
const BACKPRESSURE_PARK: Duration = Duration::from_millis(10);

/// The inputs a Kafka-fed worker drives.
pub(super) struct Inputs<'a> {
    pub chunks: &'a mut ChunkInput,
    pub registry: &'a mut RegistryInput,
}

/// Each worker's input epoch, told to every worker of every process: the idle rule of
/// [`InputClock`] follows the furthest one.
struct EpochGossip {
    input: InputHandle<u64, CapacityContainerBuilder<Vec<u64>>>,
    furthest: Rc<Cell<u64>>,
    told: u64,
}

impl EpochGossip {
    /// A dataflow of its own: one input that never advances (its records are read as they
    /// arrive, whatever the frontier), broadcast to every worker.
    fn new(worker: &mut Worker) -> Self {
        let mut input = InputHandle::new();
        let furthest = Rc::new(Cell::new(0));
        let heard = Rc::clone(&furthest);
        worker.dataflow::<u64, _, _>(|scope| {
            input.to_stream(scope).broadcast().sink(Pipeline, "EpochGossip", move |(input, _frontier)| {
                input.for_each(|_time, epochs| {
                    for epoch in epochs.drain(..) {
                        heard.set(heard.get().max(epoch));
                    }
                });
            });
        });
        Self { input, furthest, told: 0 }
    }

    fn tell(&mut self, epoch: u64) {
        if epoch > self.told {
            self.told = epoch;
            self.input.send(epoch);
            self.input.flush();
        }
    }

    fn furthest(&self) -> u64 {
        self.furthest.get()
    }
}

/// Feeds this worker's share of the audio topic until the stop flag is set (or, with
/// `stop_when_idle`, until the topic is read to its end and quiet), then processes, writes and
/// commits what it read.
#[allow(clippy::too_many_arguments)]
pub(super) fn drive_from_kafka(
    worker: &mut Worker,
    inputs: Inputs<'_>,
    probe: &ProbeHandle<u64>,
    durable: &ProbeHandle<u64>,
    state: &Rc<RefCell<WorkerState>>,
    source: &KafkaSource,
    placement: &Placement,
    epoch_us: i64,
    idle_after: Duration,
    stop: &AtomicBool,
) {
    let Inputs { chunks: input, registry } = inputs;
    let index = worker.index();
    let mut gossip = EpochGossip::new(worker);
    let settings = ConsumerSettings {
        brokers: source.brokers.clone(),
        topic: source.topic.clone(),
        dlq_topic: source.dlq_topic.clone(),
        group_id: source.group_id.clone(),
        worker_index: worker.index(),
        workers: worker.peers(),
    };
    let connected = ChunkConsumer::connect(settings)
        .and_then(|consumer| Ok((consumer, RegistryConsumer::connect(&source.brokers, &source.registry_topic)?)));
    let (mut consumer, mut registry_consumer) = match connected {
        Ok(connected) => connected,
        Err(error) => {
            state.borrow_mut().report.sink_error(error.to_string());
            return;
        }
    };
    // This worker's machines' registry entries, as last entered into the collection.
    let mut entries: HashMap<MachineId, String> = HashMap::new();
    // Offsets read per input epoch, committed once every sink has made that epoch durable.
    let mut ledger = OffsetLedger::default();
    let mut clock = InputClock::new(KAFKA_PENDING_CHUNKS, idle_after, Instant::now());
    let mut caught_up = false;
    // The newest capture time read from each partition, µs, and when the lag gauges were set.
    let mut last_capture_us: BTreeMap<i32, i64> = BTreeMap::new();
    let mut gauges_set: Option<Instant> = None;
    if let Some(metrics) = &state.borrow().metrics {
        metrics.mark_ready(index);
    }
    loop {
        if let Some(metrics) = &state.borrow().metrics {
            metrics.heartbeat(index);
            if gauges_set.is_none_or(|set| set.elapsed() >= GAUGE_PERIOD) {
                gauges_set = Some(Instant::now());
                set_lag_gauges(metrics, &consumer, &last_capture_us, *input.time(), epoch_us);
            }
        }
        if let Some(registry_consumer) = &mut registry_consumer {
            let (changes, refused) = registry_consumer.poll();
            let report = &mut state.borrow_mut().report;
            for line in refused {
                report.skip("registry entry refused", line);
            }
            for change in changes {
                enter_registry_change(registry, &mut entries, change, |id| placement.worker_of(id) == index as u64);
            }
        }
        let allowed = input.time().saturating_sub(EPOCHS_IN_FLIGHT);
        if probe.less_than(&allowed) {
            // The monitors are behind: read nothing more until they catch up.
            worker.step_or_park(Some(BACKPRESSURE_PARK));
        } else {
            let polled = consumer.poll(KAFKA_POLL_WAIT, KAFKA_POLL_RECORDS);
            caught_up = polled.caught_up;
            let now = Instant::now();
            {
                let mut state = state.borrow_mut();
                let bytes: u64 = polled.chunks.iter().map(|chunk| chunk.payload.len() as u64).sum();
                if let Some(metrics) = &state.metrics {
                    let worker = WorkerLabel { worker: index as u32 };
                    metrics.chunks_read.get_or_create(&worker).inc_by(polled.chunks.len() as u64);
                    metrics.bytes_read.get_or_create(&worker).inc_by(bytes);
                    for rejected in &polled.rejected {
                        metrics.dead_letters.get_or_create(&ReasonLabel { reason: rejected.reason.to_owned() }).inc();
                    }
                }
                for DeadLetter { line, .. } in polled.rejected {
                    tracing::warn!(worker = index, "dead letter: {line}");
                    state.report.dead_letters += 1;
                    state.report.skip("dead letter", line);
                }
                state.report.chunks_read += polled.chunks.len() as u64;
                let threads = state.threads;
                for chunk in &polled.chunks {
                    let owner = placement.worker_of(&chunk.machine_id);
                    count_exchange(&mut state.report, index, owner, threads, chunk.payload.len() as u64);
                }
            }
            // The offsets of this poll are committed with the latest epoch its chunks enter.
            let mut poll_epoch = *input.time();
            for chunk in polled.chunks {
                let epoch = epoch_of(chunk.capture_start_us, epoch_us);
                let partition = match &chunk.origin {
                    ChunkOrigin::Kafka { partition, .. } => Some(*partition),
                    _ => None,
                };
                poll_epoch = poll_epoch.max(epoch);
                if let Some(partition) = partition {
                    let last = last_capture_us.entry(partition).or_insert(chunk.capture_start_us);
                    *last = (*last).max(chunk.capture_start_us);
                }
                clock.admit(epoch, partition, chunk, *input.time(), now);
            }
            ledger.record(poll_epoch, polled.positions);
            let behind = consumer.partitions_behind();
            let release = clock.release(&Observation {
                current: *input.time(),
                caught_up,
                behind: &behind,
                peers_epoch: gossip.furthest(),
                now,
            });
            for (epoch, chunks) in release.send {
                send_at(input, epoch, chunks);
            }
            if let Some(target) = release.advance_to {
                input.advance_to(target);
            }
            gossip.tell(*input.time());
            registry.advance_to(*input.time());
            registry.flush();
            worker.step();
        }
        dead_letter_refused(&consumer, state);
        commit_durable(&consumer, durable, &mut ledger, state);
        if stop.load(Ordering::Relaxed) {
            if index == 0 {
                tracing::warn!("stopping on a signal: processing, writing and committing what was read");
            }
            break;
        }
        if caught_up && source.stop_when_idle.is_some_and(|idle| clock.quiet_for(Instant::now()) >= idle) {
            break;
        }
    }
    // Stopping: what was read and held back goes in, in epoch order; every epoch finishes;
    // once everything is durable (other workers stop too, or this waits for them), the rest
    // is committed.
    for (epoch, chunks) in clock.drain() {
        send_at(input, epoch, chunks);
    }
    input.advance_to(u64::MAX);
    registry.advance_to(u64::MAX);
    registry.flush();
    while durable.less_than(&u64::MAX) && state.borrow().report.sink_errors.is_empty() {
        if let Some(metrics) = &state.borrow().metrics {
            metrics.heartbeat(index);
        }
        worker.step_or_park(Some(BACKPRESSURE_PARK));
        dead_letter_refused(&consumer, state);
    }
    dead_letter_refused(&consumer, state);
    commit_durable(&consumer, durable, &mut ledger, state);
}

/// Sends the chunks the monitors refused (`stream.max_machines`) to the dead-letter topic.
/// Called before every commit: a refused chunk's offset is committed only after its dead
/// letter was sent, since the commit waits for the dead letters to be acknowledged.
fn dead_letter_refused(consumer: &ChunkConsumer, state: &Rc<RefCell<WorkerState>>) {
    let mut state = state.borrow_mut();
    let Some(refused) = state.refused.as_mut().filter(|refused| !refused.is_empty()) else { return };
    let refused = std::mem::take(refused);
    for (chunk, reason) in refused {
        let line = consumer.dead_letter_chunk(&chunk, &reason);
        tracing::warn!(worker = consumer.worker_index(), "dead letter: {line}");
        if let Some(metrics) = &state.metrics {
            metrics.dead_letters.get_or_create(&ReasonLabel { reason: "machine_refused".to_owned() }).inc();
        }
    }
}

/// Counts a chunk of `bytes` that worker `index` read for `owner` if it must cross to another
/// worker (and, with `threads` workers per process, to another process).
fn count_exchange(report: &mut WorkerReport, index: usize, owner: u64, threads: usize, bytes: u64) {
    if owner == index as u64 {
        return;
    }
    report.chunks_exchanged += 1;
    report.bytes_exchanged += bytes;
    if owner / threads.max(1) as u64 != (index / threads.max(1)) as u64 {
        report.bytes_exchanged_between_processes += bytes;
    }
}

/// Enters one registry change of a machine this worker owns as updates of the collection.
fn enter_registry_change(
    registry: &mut RegistryInput,
    entries: &mut HashMap<MachineId, String>,
    change: RegistryChange,
    owned: impl Fn(&MachineId) -> bool,
) {
    let (machine_id, new) = match change {
        RegistryChange::Upsert(machine_id, entry) => (machine_id, Some(entry.to_json())),
        RegistryChange::Delete(machine_id) => (machine_id, None),
    };
    if !owned(&machine_id) || entries.get(&machine_id) == new.as_ref() {
        return;
    }
    match &new {
        Some(entry) => {
            tracing::info!(machine_id = %machine_id, entry = %entry, "registry entry in effect from the next window")
        }
        None => tracing::info!(machine_id = %machine_id, "registry entry deleted"),
    }
    if let Some(old) = entries.remove(&machine_id) {
        registry.update((machine_id.clone(), old), -1);
    }
    if let Some(new) = new {
        registry.update((machine_id.clone(), new.clone()), 1);
        entries.insert(machine_id, new);
    }
}

/// Commits the offsets of the epochs that every sink has made durable; with checkpoints, only
/// up to the last checkpoint boundary that is durable everywhere, recorded first in the
/// worker's checkpoint folder (see [`commit_point`]). Nothing is committed after a sink error.
fn commit_durable(
    consumer: &ChunkConsumer,
    durable: &ProbeHandle<u64>,
    ledger: &mut OffsetLedger,
    state: &Rc<RefCell<WorkerState>>,
) {
    let mut state = state.borrow_mut();
    let state = &mut *state;
    if !state.report.sink_errors.is_empty() {
        return;
    }
    let frontier = durable.with_frontier(|frontier| frontier.first().copied()).filter(|epoch| *epoch < u64::MAX);
    let checkpoints = state.checkpoints.as_mut();
    let point = commit_point(
        frontier,
        checkpoints.as_ref().map(|checkpoints| &checkpoints.schedule),
        checkpoints.as_ref().and_then(|checkpoints| checkpoints.written_until_us),
    );
    if let (Some(checkpoints), Some(covered_until_us)) = (checkpoints, point.covered_until_us) {
        if !checkpoints.mark_committed(covered_until_us, &mut state.report) {
            return;
        }
    }
    let Some(last) = point.last_epoch else { return };
    let positions = ledger.take_through(last);
    if positions.is_empty() {
        return;
    }
    match consumer.commit(&positions) {
        Ok(()) => state.report.committed_offsets.extend(positions),
        Err(error) => {
            if let Some(metrics) = &state.metrics {
                metrics.kafka_commit_failures.inc();
            }
            state.report.sink_error(format!("cannot commit offsets {positions:?}: {error}"))
        }
    }
}

/// Sets the consumer-lag and frontier-delay gauges of worker `index`'s partitions.
fn set_lag_gauges(
    metrics: &PipelineMetrics,
    consumer: &ChunkConsumer,
    last_capture_us: &BTreeMap<i32, i64>,
    input_epoch: u64,
    epoch_us: i64,
) {
    for (partition, lag) in consumer.lag() {
        metrics.consumer_lag_records.get_or_create(&PartitionLabel { partition }).set(lag);
    }
    let now_us = super::wall_clock_us();
    for (&partition, &capture_us) in last_capture_us {
        let lag_s = (now_us - capture_us) as f64 / 1e6;
        metrics.consumer_lag_seconds.get_or_create(&PartitionLabel { partition }).set(lag_s.max(0.0));
    }
    let epoch_start_us = i64::try_from(input_epoch).unwrap_or(i64::MAX).saturating_mul(epoch_us);
    let delay_s = (now_us.saturating_sub(epoch_start_us)) as f64 / 1e6;
    let worker = WorkerLabel { worker: consumer.worker_index() as u32 };
    metrics.frontier_delay_seconds.get_or_create(&worker).set(delay_s.max(0.0));
}

/// Sends chunks held back for `epoch` (or the input's current epoch, if it is past it).
fn send_at(input: &mut ChunkInput, epoch: u64, chunks: Vec<AudioChunk>) {
    if epoch > *input.time() {
        input.advance_to(epoch);
    }
    for chunk in chunks {
        input.send(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunks_for_another_worker_count_and_only_those_for_another_process_cross_it() {
        let mut report = WorkerReport::default();
        // Two processes of two workers: 0 and 1 in the first, 2 and 3 in the second.
        count_exchange(&mut report, 1, 1, 2, 100);
        assert_eq!((report.chunks_exchanged, report.bytes_exchanged), (0, 0), "its own machine");
        count_exchange(&mut report, 1, 0, 2, 100);
        assert_eq!(
            (report.chunks_exchanged, report.bytes_exchanged, report.bytes_exchanged_between_processes),
            (1, 100, 0)
        );
        count_exchange(&mut report, 1, 3, 2, 50);
        assert_eq!(
            (report.chunks_exchanged, report.bytes_exchanged, report.bytes_exchanged_between_processes),
            (2, 150, 50)
        );
        count_exchange(&mut report, 2, 0, 2, 10);
        assert_eq!(report.bytes_exchanged_between_processes, 60, "worker 2 is in the second process, 0 in the first");
    }
}
