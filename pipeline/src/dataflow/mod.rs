//! The timely dataflow, top to bottom: this is the one file where the graph is assembled.
//!
//! ```text
//!  worker input: its machines of files or the simulator, epoch by epoch of capture time,
//!                or its share of the Kafka audio topic's partitions (bad records -> DLQ)
//!    -> Exchange(placement of machine_id)      one worker owns each machine's state
//!    -> "MachineMonitors"                       order by (machine, capture, sequence) per epoch;
//!                                               decode, log-mel, window, learn/score, alerts;
//!                                               checkpoints at boundaries (with a state folder)
//!    -> windows  -> "ArchiveSink"  (each worker)    Parquet, a batch per `roll_epochs`, at the frontier
//!    -> events   -> Exchange(0) -> "EventSink"      JSON Lines or the anomaly topic, sorted, flushed per epoch
//! ```
//!
//! The timely timestamp is an epoch: `capture_time / epoch_ms`. Operators buffer per epoch and
//! act when the frontier passes it, so the output is the same whatever the number of workers,
//! processes or chunk arrival order: the per-machine state sees each machine's chunks in
//! sequence order, and sinks finalize whole epochs. With a state folder (`run --state`),
//! "MachineMonitors" holds a capability at the next checkpoint boundary and writes its
//! machines' state there once every epoch before the boundary is processed (see
//! `crate::checkpoint`), so the `durable` probe on the sinks passes a boundary only once every
//! worker's checkpoint of it is on disk.

mod input_clock;
mod kafka_input;

use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::fleet::{
    fleet_counts, FleetCountChange, FleetFact, FleetKey, FleetMetric, FleetRow, FleetView, MachineStatus,
};
use crate::model::{MachineMonitor, MonitorOutput};
use crate::sources::{MachineStream, Placement, SourcePlan};
use auscult_connectors::archive::{ArchiveConfig, ArchiveWriter};
use auscult_connectors::events::{EventTarget, EventWriter};
use auscult_schemas::{
    AlertState, AnomalyEvent, AudioChunk, BandDeviation, MachineEntry, MachineId, MachineType, WindowRecord,
};
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use timely::communication::Pull;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::InputHandleCore;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concatenate, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

/// How many epochs a worker's input may run ahead of what its monitors have finished:
/// bounds the audio buffered in flight.
const EPOCHS_IN_FLIGHT: u64 = 2;
/// Most latency samples a worker keeps.
const MAX_LATENCY_SAMPLES: usize = 1_000_000;
/// Most lines a worker writes about chunks refused for `stream.max_machines` (the rest are counted).
const MAX_REFUSED_LINES: u64 = 20;

/// Everything one run needs.
#[derive(Clone)]
pub struct RunPlan {
    pub config: Config,
    pub source: SourcePlan,
    /// Where anomaly events go; `None` drops them (counted all the same).
    pub events: Option<EventTarget>,
    /// The archive root; `None` writes no archive.
    pub archive_dir: Option<PathBuf>,
    /// Where the fleet view's changed rows go (the compacted topic `auscult.fleet`); `None`
    /// keeps only the final view in the report.
    pub fleet: Option<EventTarget>,
    /// Checkpoints of the per-machine state (Kafka source only); `None` keeps none.
    pub checkpoints: Option<CheckpointPlan>,
    /// Set (by a signal handler) to stop a Kafka-fed run cleanly: what was read is processed,
    /// made durable and committed.
    pub stop: Arc<AtomicBool>,
}

/// Where checkpoints go, and the machines an earlier run's checkpoints restored.
#[derive(Clone)]
pub struct CheckpointPlan {
    pub dir: PathBuf,
    /// Each worker takes the machines it owns out of here when it starts.
    pub restored: Arc<Mutex<Vec<MachineMonitor>>>,
    /// The capture time the restored state covers up to (`None`: nothing was restored).
    pub covered_until_us: Option<i64>,
}

/// What the monitors emit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PipelineRecord {
    Window(WindowRecord),
    Event(AnomalyEvent),
    /// A change of the fleet view's facts, at an epoch.
    Fleet(FleetUpdate),
}

/// A fleet fact going in (+1) or out (-1) at an epoch.
pub type FleetUpdate = ((FleetKey, FleetFact), u64, isize);

/// What one machine did during the run.
#[derive(Debug, Clone, Serialize)]
pub struct MachineSummary {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    /// Seconds of audio heard since the machine's first chunk (earlier runs included after a restore).
    pub audio_s: f64,
    pub learned_audio_s: f64,
    pub windows_learned: u64,
    pub windows_scored: u64,
    pub alerts_opened: u64,
    /// Alert events not emitted because the registry mutes the machine.
    pub events_muted: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub warning_threshold: Option<f64>,
    pub state_bytes: usize,
    /// The bands that explained this machine's most recent alert.
    pub last_alert_bands: Vec<BandDeviation>,
}

/// What one worker did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct WorkerReport {
    pub worker: usize,
    pub chunks_read: u64,
    pub machines: Vec<MachineSummary>,
    /// One line per input that was skipped, naming it and why.
    pub skipped: Vec<String>,
    pub archive_files: usize,
    pub archive_rows: u64,
    pub events_written: u64,
    /// Records of the audio topic sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Chunks of machines refused because the run keeps state for `stream.max_machines` already
    /// (the first `MAX_REFUSED_LINES` are also in `skipped`).
    pub chunks_refused: u64,
    /// Live sources: milliseconds from the capture of each scored window's last sample to its
    /// score (at most `MAX_LATENCY_SAMPLES`; summarised, not serialised).
    #[serde(skip)]
    pub latency_ms: Vec<f32>,
    /// Live sources: scored windows whose capture time was ahead of this clock (an accelerated
    /// replay, or a skewed clock), left out of `latency_ms`.
    pub latency_ahead: u64,
    /// Seconds of audio the restored machines had heard before this run.
    pub restored_audio_s: f64,
    /// Fleet view rows published (changed rows, summed over epochs).
    pub fleet_updates: u64,
    /// The fleet view at the end of the run (worker 0).
    pub fleet: Vec<FleetRow>,
    /// The consumer group's committed offsets of this worker's partitions (partition -> next
    /// offset), as of the end of the run.
    pub committed_offsets: BTreeMap<i32, i64>,
    /// Machines this worker took over from a checkpoint.
    pub machines_restored: usize,
    /// Checkpoint files this worker wrote.
    pub checkpoints_written: u64,
    /// Kafka input: chunks this worker read for a machine another worker owns, and so sent
    /// through the exchange; their payload bytes; and the bytes of those whose owner is in
    /// another process (sent over the network).
    pub chunks_exchanged: u64,
    pub bytes_exchanged: u64,
    pub bytes_exchanged_between_processes: u64,
    /// Sink failures (archive, event output or checkpoint); a run with any is a failed run
    /// and commits no more offsets.
    pub sink_errors: Vec<String>,
}

/// Runs the dataflow on the workers and processes that `timely_args` describe (`-w`, `-n`,
/// `-p`, `-h`), and returns the reports of this process's workers.
pub fn run(plan: RunPlan, timely_args: Vec<String>) -> Result<Vec<WorkerReport>, String> {
    let plan = Arc::new(plan);
    let threads = match timely::CommunicationConfig::from_args(timely_args.clone().into_iter())?.0 {
        timely::CommunicationConfig::Process(threads) | timely::CommunicationConfig::ProcessBinary(threads) => threads,
        timely::CommunicationConfig::Cluster { threads, .. } => threads,
        timely::CommunicationConfig::Thread => 1,
    };
    let guards =
        timely::execute_from_args(timely_args.into_iter(), move |worker| run_worker(worker, &plan, threads.max(1)))?;
    guards.join().into_iter().collect()
}

/// Records waiting for their epoch to be complete, each epoch held by a capability so that
/// nothing downstream (nor the `durable` probe) passes it before it is handled.
struct EpochStash<D> {
    epochs: BTreeMap<u64, (Capability<u64>, Vec<D>)>,
}

impl<D> Default for EpochStash<D> {
    fn default() -> Self {
        Self { epochs: BTreeMap::new() }
    }
}

impl<D> EpochStash<D> {
    /// Moves what arrived on `input` into the stash, retaining a capability on `output_index`.
    fn take<P: Pull<Message<u64, Vec<D>>>>(
        &mut self,
        input: &mut InputHandleCore<u64, Vec<D>, P>,
        output_index: usize,
    ) {
        input.for_each_stamp(|capability, data| {
            let Some(capability) = capability.retain_least(output_index) else {
                return;
            };
            let (_, records) = self.epochs.entry(*capability.time()).or_insert_with(|| (capability, Vec::new()));
            data.for_each(|container| records.append(container));
        });
    }

    /// The earliest stashed epoch, if `finished` says it is complete.
    fn pop_finished(&mut self, finished: impl Fn(&u64) -> bool) -> Option<(u64, Capability<u64>, Vec<D>)> {
        let entry = self.epochs.first_entry()?;
        if !finished(entry.key()) {
            return None;
        }
        let (epoch, (capability, records)) = entry.remove_entry();
        Some((epoch, capability, records))
    }
}

/// State shared by one worker's operators and its driver loop.
#[derive(Default)]
struct WorkerState {
    monitors: HashMap<MachineId, MachineMonitor>,
    report: WorkerReport,
    /// Registry entries (canonical JSON) of the machines this worker owns.
    registry: HashMap<MachineId, String>,
    /// The fleet view's last status of each machine this worker owns.
    fleet_status: HashMap<MachineId, (FleetKey, MachineStatus)>,
    /// Whether to record how long after capture each window is scored (live sources only:
    /// their capture times are wall-clock times).
    measure_latency: bool,
    /// Workers in the run (every process's).
    peers: usize,
    /// Workers per process: worker `w` runs in process `w / threads`.
    threads: usize,
    checkpoints: Option<WorkerCheckpoints>,
}

/// One worker's checkpointing.
struct WorkerCheckpoints {
    store: CheckpointStore,
    /// Epochs between checkpoint boundaries.
    every_epochs: u64,
    epoch_us: i64,
    /// The boundary this worker's last checkpoint covers up to, µs.
    written_until_us: Option<i64>,
    /// The boundary last recorded as committed, µs.
    marked_until_us: Option<i64>,
    /// Worker 0 only: once a boundary this late is committed, every worker of this run has
    /// checkpointed its restored machines, and the folders of workers beyond this run's
    /// (`peers`) are removed.
    remove_stale: Option<(i64, usize)>,
}

impl WorkerCheckpoints {
    /// The first checkpoint boundary at or after `epoch`: boundaries are the last epochs of
    /// each span of `every_epochs`, the same on every worker.
    fn boundary_at_or_after(&self, epoch: u64) -> u64 {
        (epoch / self.every_epochs).saturating_mul(self.every_epochs).saturating_add(self.every_epochs - 1)
    }

    /// The capture time that the state after `boundary` covers up to, µs.
    fn covered_until_us(&self, boundary: u64) -> i64 {
        i64::try_from(boundary.saturating_add(1)).unwrap_or(i64::MAX).saturating_mul(self.epoch_us)
    }
}

/// Writes the worker's machines' state as it is after `boundary` (nothing if it has none).
fn write_checkpoint(state: &mut WorkerState, boundary: u64) {
    let WorkerState { monitors, report, checkpoints, .. } = state;
    let Some(checkpoints) = checkpoints else { return };
    if monitors.is_empty() {
        return;
    }
    let covered_until_us = checkpoints.covered_until_us(boundary);
    match checkpoints.store.write(covered_until_us, monitors.values()) {
        Ok(_) => {
            checkpoints.written_until_us = Some(covered_until_us);
            report.checkpoints_written += 1;
        }
        Err(error) => report.sink_errors.push(error.to_string()),
    }
}

/// Seconds of audio a machine has heard (over all runs, for a restored one).
fn audio_seconds(monitor: &MachineMonitor) -> f64 {
    let rate = monitor.feature_settings().map_or(1.0, |settings| f64::from(settings.sample_rate_hz));
    monitor.stats().samples as f64 / rate
}

fn wall_clock_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as i64)
}

fn epoch_of(capture_us: i64, epoch_us: i64) -> u64 {
    u64::try_from(capture_us.div_euclid(epoch_us)).unwrap_or(0)
}

fn run_worker(worker: &mut Worker, plan: &RunPlan, threads: usize) -> WorkerReport {
    let index = worker.index();
    let peers = worker.peers();
    let config = plan.config.clone();
    let epoch_us = i64::try_from(config.stream.epoch_ms.saturating_mul(1000)).unwrap_or(i64::MAX).max(1);
    let state = Rc::new(RefCell::new(WorkerState::default()));
    state.borrow_mut().report.worker = index;
    state.borrow_mut().measure_latency = matches!(plan.source, SourcePlan::Kafka(_));
    state.borrow_mut().peers = peers;
    state.borrow_mut().threads = threads;
    let placement = Arc::new(plan.source.placement(peers));
    // The boundary at which this worker's first checkpoint is due (with checkpoints).
    let mut first_boundary = None;
    if let Some(checkpoint_plan) = &plan.checkpoints {
        let every_epochs = (config.stream.checkpoint_s.saturating_mul(1000) / config.stream.epoch_ms.max(1)).max(1);
        let mut checkpoints = WorkerCheckpoints {
            store: CheckpointStore::new(&checkpoint_plan.dir, index, &config),
            every_epochs,
            epoch_us,
            written_until_us: None,
            marked_until_us: checkpoint_plan.covered_until_us,
            remove_stale: None,
        };
        let boundary =
            checkpoints.boundary_at_or_after(epoch_of(checkpoint_plan.covered_until_us.unwrap_or(0), epoch_us));
        first_boundary = Some(boundary);
        if index == 0 {
            checkpoints.remove_stale = Some((checkpoints.covered_until_us(boundary), peers));
        }
        let mut state = state.borrow_mut();
        let mut restored = checkpoint_plan.restored.lock().unwrap_or_else(PoisonError::into_inner);
        let (mine, others): (Vec<_>, Vec<_>) =
            restored.drain(..).partition(|monitor| placement.worker_of(monitor.machine_id()) == index as u64);
        *restored = others;
        state.report.machines_restored = mine.len();
        state.report.restored_audio_s = mine.iter().map(audio_seconds).sum();
        for monitor in mine {
            state.monitors.insert(monitor.machine_id().clone(), monitor);
        }
        state.checkpoints = Some(checkpoints);
    }
    let mut input = ChunkInput::new();
    let mut registry_handle: Option<RegistryInput> = None;
    let probe = ProbeHandle::new();
    let durable = ProbeHandle::new();

    worker.dataflow::<u64, _, _>(|scope| {
        // The machine registry, a differential collection of (machine, entry as JSON), joined
        // with the chunks on the machine's worker: an epoch's changes apply before its chunks.
        let (registry_input, registry) = scope.new_collection::<(MachineId, String), isize>();
        registry_handle = Some(registry_input);
        let records = input
            .to_stream(scope)
            .binary_frontier::<_, CapacityContainerBuilder<Vec<PipelineRecord>>, _, _, _, _>(
                registry.inner,
                Exchange::new({
                    let placement = Arc::clone(&placement);
                    move |chunk: &AudioChunk| placement.worker_of(&chunk.machine_id)
                }),
                Exchange::new({
                    let placement = Arc::clone(&placement);
                    move |((machine_id, _), _, _): &((MachineId, String), u64, isize)| placement.worker_of(machine_id)
                }),
                "MachineMonitors",
                |capability, _info| {
                    let config = config.clone();
                    let state = Rc::clone(&state);
                    let mut stash = EpochStash::<AudioChunk>::default();
                    let mut registry_changes: BTreeMap<u64, Vec<RegistryUpdate>> = BTreeMap::new();
                    // Held at the next checkpoint boundary until this worker's state after it is written.
                    let mut checkpoint_capability = first_boundary.map(|boundary| capability.delayed(&boundary));
                    move |(input, frontier), (registry_updates, registry_frontier), output| {
                        stash.take(input, output.output_index());
                        registry_updates.for_each_stamp(|_, data| {
                            data.for_each(|container| {
                                for (change, time, diff) in container.drain(..) {
                                    registry_changes.entry(time).or_default().push((change, diff));
                                }
                            })
                        });
                        let finished =
                            |epoch: &u64| !frontier.less_equal(epoch) && !registry_frontier.less_equal(epoch);
                        let mut state = state.borrow_mut();
                        while let Some((epoch, capability, chunks)) = stash.pop_finished(finished) {
                            if let Some(held) = checkpoint_capability.as_mut().filter(|held| epoch > *held.time()) {
                                // The state after the boundary is complete: write it before this epoch changes it.
                                apply_registry_until(&mut state, &mut registry_changes, *held.time());
                                write_checkpoint(&mut state, *held.time());
                                let next = state.checkpoints.as_ref().map_or(epoch, |c| c.boundary_at_or_after(epoch));
                                held.downgrade(&next);
                            }
                            apply_registry_until(&mut state, &mut registry_changes, epoch);
                            let mut records = monitor_epoch(&config, &mut state, epoch, chunks);
                            output.session(&capability).give_container(&mut records);
                        }
                        // Both frontiers passed the boundary with no later epoch processed: write it.
                        if let Some(held) = checkpoint_capability.as_mut().filter(|held| finished(held.time())) {
                            apply_registry_until(&mut state, &mut registry_changes, *held.time());
                            write_checkpoint(&mut state, *held.time());
                            let next =
                                frontier.frontier().iter().chain(registry_frontier.frontier().iter()).min().copied();
                            match (next, state.checkpoints.as_ref()) {
                                (Some(next), Some(checkpoints)) if next < u64::MAX => {
                                    held.downgrade(&checkpoints.boundary_at_or_after(next))
                                }
                                // The input is closed (or at its end, `u64::MAX`): that was the last one.
                                _ => checkpoint_capability = None,
                            }
                        }
                    }
                },
            )
            .probe_with(&probe);
        let windows = records.clone().flat_map(|record| match record {
            PipelineRecord::Window(window) => Some(window),
            _ => None,
        });
        let events = records.clone().flat_map(|record| match record {
            PipelineRecord::Event(event) => Some(event),
            _ => None,
        });
        // The fleet view: facts from every worker, counted incrementally by differential, the
        // changed rows published by worker 0 once their epoch is complete.
        let facts = records
            .flat_map(|record| match record {
                PipelineRecord::Fleet(update) => Some(update),
                _ => None,
            })
            .as_collection();
        let minute_epochs = (60_000 / config.stream.epoch_ms.max(1)).max(1);
        let counts = fleet_counts(facts, minute_epochs);
        let fleet_target = plan.fleet.clone().filter(|_| index == 0);
        let mut fleet_writer = fleet_target.map(|target| EventWriter::open(&target));
        let fleet_state = Rc::clone(&state);
        let fleet_done = counts.inner.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Exchange::new(|_: &(((FleetKey, FleetMetric), isize), u64, isize)| 0u64),
            "FleetSink",
            move |_capability, _info| {
                let mut by_epoch: BTreeMap<u64, (Capability<u64>, Vec<FleetCountChange>)> = BTreeMap::new();
                let mut view = FleetView::default();
                move |(input, frontier), output| {
                    input.for_each_stamp(|capability, data| {
                        let Some(capability) = capability.retain_least(output.output_index()) else {
                            return;
                        };
                        data.for_each(|container| {
                            for (change, time, diff) in container.drain(..) {
                                let (_, changes) =
                                    by_epoch.entry(time).or_insert_with(|| (capability.delayed(&time), Vec::new()));
                                changes.push((change, diff));
                            }
                        })
                    });
                    while let Some(entry) = by_epoch.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (_capability, changes) = entry.remove();
                        let rows = view.apply(changes);
                        let mut state = fleet_state.borrow_mut();
                        if let Some(Ok(writer)) = fleet_writer.as_mut() {
                            let written = rows
                                .iter()
                                .try_for_each(|row| {
                                    let key = format!("{}/{}", row.site, row.machine_type);
                                    writer.write_record(&key, &serde_json::to_string(row).expect("plain data"))
                                })
                                .and_then(|()| writer.flush());
                            if let Err(error) = written {
                                state.report.sink_errors.push(error.to_string());
                            }
                        } else if let Some(Err(error)) = fleet_writer.as_ref() {
                            state.report.sink_errors.push(error.to_string());
                        }
                        state.report.fleet_updates += rows.len() as u64;
                        state.report.fleet = view.rows();
                    }
                }
            },
        );
        // Each sink holds a capability for every epoch it has not yet made durable, so the
        // `durable` probe on their (empty) outputs says which epochs are safely written: the
        // Kafka source commits offsets only up to there.
        let mut done = vec![fleet_done];
        if let Some(dir) = &plan.archive_dir {
            let archive_config = ArchiveConfig {
                dir: dir.clone(),
                max_rows_per_file: config.archive.max_rows_per_file,
                zstd_level: config.archive.zstd_level,
                ..ArchiveConfig::default()
            };
            let mut writer = ArchiveWriter::new(archive_config, index, archive_metadata(&config));
            let roll_epochs = config.archive.roll_epochs.max(1);
            let max_rows = config.archive.max_rows_per_file;
            let state = Rc::clone(&state);
            done.push(windows.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                Pipeline,
                "ArchiveSink",
                move |_capability, _info| {
                    let mut stash = EpochStash::<WindowRecord>::default();
                    // The open batch: epochs `first..first + roll_epochs`, held by `first`'s capability.
                    let mut batch: Vec<WindowRecord> = Vec::new();
                    let mut batch_capability: Option<Capability<u64>> = None;
                    move |(input, frontier), output| {
                        stash.take(input, output.output_index());
                        while let Some((epoch, capability, mut rows)) =
                            stash.pop_finished(|epoch| !frontier.less_equal(epoch))
                        {
                            if batch_capability.as_ref().is_some_and(|first| epoch >= first.time() + roll_epochs) {
                                commit_batch(&mut writer, batch_capability.take(), &mut batch, &state);
                            }
                            batch_capability.get_or_insert(capability);
                            batch.append(&mut rows);
                            if batch.len() >= max_rows {
                                commit_batch(&mut writer, batch_capability.take(), &mut batch, &state);
                            }
                        }
                        // A batch is complete once the frontier has passed its last epoch.
                        let passed = batch_capability
                            .as_ref()
                            .is_some_and(|first| !frontier.less_than(&(first.time() + roll_epochs)));
                        if passed {
                            commit_batch(&mut writer, batch_capability.take(), &mut batch, &state);
                        }
                    }
                },
            ));
        }
        let event_target = plan.events.clone().filter(|_| index == 0);
        let mut event_writer = event_target.map(|target| EventWriter::open(&target));
        let state = Rc::clone(&state);
        done.push(events.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Exchange::new(|_event: &AnomalyEvent| 0),
            "EventSink",
            move |_capability, _info| {
                let mut stash = EpochStash::<AnomalyEvent>::default();
                move |(input, frontier), output| {
                    stash.take(input, output.output_index());
                    // Dropping the capability at the end of each iteration marks the epoch durable.
                    while let Some((_, _capability, mut events)) =
                        stash.pop_finished(|epoch| !frontier.less_equal(epoch))
                    {
                        events.sort_by(|a, b| {
                            (&a.window_start, &a.machine_id, a.kind).cmp(&(&b.window_start, &b.machine_id, b.kind))
                        });
                        let mut state = state.borrow_mut();
                        match event_writer.as_mut() {
                            Some(Ok(writer)) => {
                                let written = events
                                    .iter()
                                    .try_for_each(|event| writer.write(event))
                                    .and_then(|()| writer.flush());
                                match written {
                                    Ok(()) => state.report.events_written += events.len() as u64,
                                    Err(error) => state.report.sink_errors.push(error.to_string()),
                                }
                            }
                            Some(Err(error)) => state.report.sink_errors.push(error.to_string()),
                            None => state.report.events_written += events.len() as u64,
                        }
                    }
                }
            },
        ));
        scope.concatenate(done).probe_with(&durable);
    });

    let mut registry_input = registry_handle.expect("made with the dataflow");
    match &plan.source {
        SourcePlan::Kafka(source) => {
            let inputs = kafka_input::Inputs { chunks: &mut input, registry: &mut registry_input };
            let idle_after = Duration::from_millis(config.stream.idle_after_ms);
            kafka_input::drive_from_kafka(
                worker, inputs, &probe, &durable, &state, source, &placement, epoch_us, idle_after, &plan.stop,
            )
        }
        _ => {
            // Files and simulated machines have no registry: its collection stays empty.
            registry_input.advance_to(u64::MAX);
            registry_input.flush();
            drive_from_plan(worker, &mut input, &probe, &state, plan, &placement, epoch_us)
        }
    }
    drop(registry_input);
    input.close();
    while worker.step_or_park(None) {}

    let mut state = state.borrow_mut();
    let WorkerState { monitors, report, .. } = &mut *state;
    let mut machines: Vec<MachineSummary> = monitors
        .values()
        .map(|monitor| {
            let stats = monitor.stats();
            MachineSummary {
                machine_id: monitor.machine_id().clone(),
                machine_type: monitor.machine_type().clone(),
                audio_s: audio_seconds(monitor),
                learned_audio_s: monitor.learned_audio_s(),
                windows_learned: stats.windows_learned,
                windows_scored: stats.windows_scored,
                alerts_opened: stats.alerts_opened,
                events_muted: stats.events_muted,
                gaps: stats.gaps,
                duplicates: stats.duplicates,
                warning_threshold: monitor.thresholds().map(|(warning, _)| warning),
                state_bytes: monitor.heap_bytes(),
                last_alert_bands: monitor.last_alert_bands().to_vec(),
            }
        })
        .collect();
    machines.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
    report.machines = machines;
    std::mem::take(report)
}

type ChunkInput = InputHandle<u64, CapacityContainerBuilder<Vec<AudioChunk>>>;
type RegistryInput = InputSession<u64, (MachineId, String), isize>;
/// One change of the registry collection: a machine's entry (as JSON) in or out.
type RegistryUpdate = ((MachineId, String), isize);

/// Feeds this worker's machines of a file or simulator plan epoch by epoch of capture time,
/// never more than `EPOCHS_IN_FLIGHT` ahead of what the monitors have finished.
fn drive_from_plan(
    worker: &mut Worker,
    input: &mut ChunkInput,
    probe: &ProbeHandle<u64>,
    state: &Rc<RefCell<WorkerState>>,
    plan: &RunPlan,
    placement: &Placement,
    epoch_us: i64,
) {
    let index = worker.index();
    let config = &plan.config;
    let mut streams: Vec<(MachineStream, Option<AudioChunk>)> = plan
        .source
        .open_for_worker(index, placement, config.stream.chunk_ms, config.start_time_us())
        .into_iter()
        .map(|stream| (stream, None))
        .collect();
    loop {
        for (stream, peeked) in streams.iter_mut() {
            while peeked.is_none() {
                match stream.next_chunk() {
                    Some(Ok(chunk)) => *peeked = Some(chunk),
                    Some(Err(error)) => {
                        tracing::warn!(worker = index, "skipped: {error}");
                        state.borrow_mut().report.skipped.push(error.to_string());
                    }
                    None => break,
                }
            }
        }
        streams.retain(|(_, peeked)| peeked.is_some());
        let Some(epoch) = streams
            .iter()
            .filter_map(|(_, peeked)| peeked.as_ref().map(|chunk| epoch_of(chunk.capture_start_us, epoch_us)))
            .min()
        else {
            break;
        };
        if epoch > *input.time() {
            input.advance_to(epoch);
        }
        for (stream, peeked) in streams.iter_mut() {
            while let Some(chunk) = peeked.take() {
                if epoch_of(chunk.capture_start_us, epoch_us) > epoch {
                    *peeked = Some(chunk);
                    break;
                }
                state.borrow_mut().report.chunks_read += 1;
                input.send(chunk);
                match stream.next_chunk() {
                    Some(Ok(next)) => *peeked = Some(next),
                    Some(Err(error)) => {
                        tracing::warn!(worker = index, "skipped: {error}");
                        state.borrow_mut().report.skipped.push(error.to_string());
                    }
                    None => {}
                }
            }
        }
        input.advance_to(epoch + 1);
        let allowed = (epoch + 1).saturating_sub(EPOCHS_IN_FLIGHT);
        while probe.less_than(&allowed) {
            worker.step();
        }
    }
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

/// Applies the registry updates of epochs up to `epoch`, in epoch order.
fn apply_registry_until(state: &mut WorkerState, changes: &mut BTreeMap<u64, Vec<RegistryUpdate>>, epoch: u64) {
    while let Some(entry) = changes.first_entry() {
        if *entry.key() > epoch {
            break;
        }
        apply_registry_changes(state, entry.remove());
    }
}

/// Applies an epoch's registry updates to the worker's machines: retractions first, then the
/// entries that replace them.
fn apply_registry_changes(state: &mut WorkerState, mut changes: Vec<RegistryUpdate>) {
    // An entry put in and taken out within one epoch cancels out.
    differential_dataflow::consolidation::consolidate(&mut changes);
    changes.sort_by_key(|(_, diff)| *diff);
    for ((machine_id, json), diff) in changes {
        if diff < 0 {
            if state.registry.get(&machine_id) == Some(&json) {
                state.registry.remove(&machine_id);
            }
        } else {
            state.registry.insert(machine_id.clone(), json);
        }
        if let Some(monitor) = state.monitors.get_mut(&machine_id) {
            monitor.apply_entry(registry_entry(&state.registry, &machine_id));
        }
    }
}

/// The registry entry of a machine (the default entry when it has none).
fn registry_entry(registry: &HashMap<MachineId, String>, machine_id: &MachineId) -> MachineEntry {
    registry.get(machine_id).and_then(|json| MachineEntry::parse(json.as_bytes()).ok()).unwrap_or_default()
}

/// The work of "MachineMonitors" for one finished epoch: its chunks in (machine, capture time,
/// sequence) order through each machine's monitor; returns the windows and events they made.
fn monitor_epoch(
    config: &Config,
    state: &mut WorkerState,
    epoch: u64,
    mut chunks: Vec<AudioChunk>,
) -> Vec<PipelineRecord> {
    chunks.sort_by(|a, b| {
        (&a.machine_id, a.capture_start_us, a.sequence).cmp(&(&b.machine_id, b.capture_start_us, b.sequence))
    });
    let WorkerState { monitors, report, registry, fleet_status, measure_latency, peers, .. } = state;
    let touched: BTreeSet<MachineId> = chunks.iter().map(|chunk| chunk.machine_id.clone()).collect();
    let mut made = MonitorOutput::default();
    for chunk in chunks {
        if !monitors.contains_key(&chunk.machine_id) {
            // The run's bound, shared evenly by its workers (each owns the machines it keeps).
            let share = config.stream.max_machines.div_ceil(*peers).max(1);
            if monitors.len() >= share {
                report.chunks_refused += 1;
                if report.chunks_refused <= MAX_REFUSED_LINES {
                    report.skipped.push(format!(
                        "{}: machine {} refused: this run keeps state for at most {} machines (stream.max_machines), {share} on each of its {peers} workers",
                        chunk.origin, chunk.machine_id, config.stream.max_machines
                    ));
                }
                continue;
            }
            let mut monitor = MachineMonitor::new(chunk.machine_id.clone(), chunk.machine_type.clone(), config);
            monitor.apply_entry(registry_entry(registry, &chunk.machine_id));
            monitors.insert(chunk.machine_id.clone(), monitor);
        }
        let monitor = monitors.get_mut(&chunk.machine_id).expect("inserted above");
        if let Err(error) = monitor.accept(&chunk, &mut made) {
            tracing::warn!(source = %chunk.origin, "skipped: {error}");
            report.skipped.push(format!("{}: {error}", chunk.origin));
        }
    }
    // Fleet facts: each window, and each touched machine's status where it changed.
    let mut records: Vec<PipelineRecord> = Vec::new();
    for machine_id in touched {
        let Some(monitor) = monitors.get(&machine_id) else { continue };
        let entry = monitor.entry();
        let key = FleetKey {
            site: entry.site.clone().unwrap_or_default(),
            machine_type: entry.machine_type.as_ref().unwrap_or(monitor.machine_type()).to_string(),
        };
        let status = match (monitor.thresholds(), monitor.alert_state()) {
            (None, _) => MachineStatus::Learning,
            (Some(_), AlertState::Normal) => MachineStatus::Normal,
            (Some(_), AlertState::Warning) => MachineStatus::Warning,
            (Some(_), AlertState::Alarm) => MachineStatus::Alarm,
        };
        let now = (key.clone(), status);
        if fleet_status.get(&machine_id) != Some(&now) {
            if let Some((old_key, old_status)) = fleet_status.insert(machine_id.clone(), now) {
                records.push(PipelineRecord::Fleet((
                    (old_key, FleetFact::Status(machine_id.clone(), old_status)),
                    epoch,
                    -1,
                )));
            }
            records.push(PipelineRecord::Fleet((
                (key.clone(), FleetFact::Status(machine_id.clone(), status)),
                epoch,
                1,
            )));
        }
        for _ in made.windows.iter().filter(|window| window.machine_id == machine_id) {
            records.push(PipelineRecord::Fleet(((key.clone(), FleetFact::Window(machine_id.clone())), epoch, 1)));
        }
    }
    if *measure_latency {
        let now_us = wall_clock_us();
        for window in made.windows.iter().filter(|window| window.score.is_some()) {
            if now_us < window.window_end_us {
                report.latency_ahead += 1;
            } else if report.latency_ms.len() < MAX_LATENCY_SAMPLES {
                report.latency_ms.push(((now_us - window.window_end_us) as f64 / 1000.0) as f32);
            }
        }
    }
    records.extend(made.windows.into_iter().map(PipelineRecord::Window));
    records.extend(made.events.into_iter().map(PipelineRecord::Event));
    records
}

fn commit_batch(
    writer: &mut Result<ArchiveWriter, impl std::fmt::Display>,
    batch_capability: Option<Capability<u64>>,
    batch: &mut Vec<WindowRecord>,
    state: &Rc<RefCell<WorkerState>>,
) {
    let Some(capability) = batch_capability else { return };
    let first_epoch = *capability.time();
    let rows = std::mem::take(batch);
    let mut state = state.borrow_mut();
    match writer {
        Ok(writer) => match writer.write_batch(first_epoch, rows) {
            Ok(files) => {
                state.report.archive_files += files.len();
                state.report.archive_rows += files.iter().map(|file| file.rows as u64).sum::<u64>();
            }
            Err(error) => state.report.sink_errors.push(error.to_string()),
        },
        Err(error) => state.report.sink_errors.push(error.to_string()),
    }
    // The capability is dropped here, after the files are renamed into place: the batch's epochs are durable.
}

/// Feature and model settings recorded in every archive file's footer.
fn archive_metadata(config: &Config) -> Vec<(String, String)> {
    vec![
        ("auscult.feature_version".to_owned(), auscult_schemas::features::FEATURE_VERSION.to_owned()),
        ("auscult.n_fft".to_owned(), config.features.n_fft.to_string()),
        ("auscult.hop_length".to_owned(), config.features.hop_length.to_string()),
        ("auscult.n_mels".to_owned(), config.features.n_mels.to_string()),
        ("auscult.fmin_hz".to_owned(), config.features.fmin_hz.to_string()),
        ("auscult.fmax_hz".to_owned(), config.features.fmax_hz.map_or("sr/2".to_owned(), |fmax| fmax.to_string())),
        ("auscult.window_frames".to_owned(), config.model.window_frames.to_string()),
        ("auscult.version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
    ]
}
