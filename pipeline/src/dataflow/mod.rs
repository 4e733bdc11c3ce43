//! The timely dataflow, top to bottom: this is the one file where the graph is assembled.
//!
//! ```text
//!  worker input: its machines of files or the simulator, epoch by epoch of capture time,
//!                or its share of the Kafka audio topic's partitions (bad records -> DLQ)
//!    -> Exchange(placement of machine_id)      one worker owns each machine's state
//!    -> "MachineMonitors"                       order by (machine, capture, sequence) per epoch;
//!                                               decode, log-mel, window, learn/score, alerts;
//!                                               checkpoints at boundaries (--state DIR|kafka)
//!    -> windows  -> "ArchiveSink"  (each worker)    Parquet, a batch per `roll_epochs`, at the frontier
//!    -> events   -> Exchange(0) -> "EventSink"      JSON Lines or the anomaly topic, sorted, flushed per epoch
//!    -> facts    -> fleet counts (differential) -> Exchange(0) -> "FleetSink"   the fleet topic
//!    -> states (--state kafka) + the sinks' progress -> "StateChangelog"  the state topic,
//!                                               a boundary's records once its outputs are durable
//! ```
//!
//! The parts live beside this file: `kafka_input` (with its epoch clock, `input_clock`) and
//! `plan_input` feed the graph; `monitors` is "MachineMonitors"; `sinks` the three sinks;
//! `checkpoints` the checkpoint schedule and the ledger of offsets to commit; `state_changelog`
//! the state topic's writer; `epoch_stash` the per-epoch buffer they share.
//!
//! The timely timestamp is an epoch: `capture_time / epoch_ms`. Operators buffer per epoch and
//! act when the frontier passes it, so the output is the same whatever the number of workers,
//! processes or chunk arrival order: the per-machine state sees each machine's chunks in
//! sequence order, and sinks finalize whole epochs. With a state folder (`run --state`),
//! "MachineMonitors" holds a capability at the next checkpoint boundary and writes its
//! machines' state there once every epoch before the boundary is processed (see
//! `crate::checkpoint`), so the `durable` probe on the sinks passes a boundary only once every
//! worker's checkpoint of it is on disk.

mod checkpoints;
mod epoch_stash;
mod input_clock;
mod kafka_input;
mod monitors;
mod plan_input;
mod sinks;
mod state_changelog;

use self::checkpoints::{CheckpointSchedule, StateWriter, WorkerCheckpoints};
use self::monitors::machine_monitors;
use crate::checkpoint::changelog::StateEncoding;
use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::fleet::{fleet_counts, FleetFact, FleetKey, FleetRow, MachineStatus};
use crate::metrics::PipelineMetrics;
use crate::model::MachineMonitor;
use crate::sources::{Placement, SourcePlan};
use auscult_connectors::archive::ArchiveLocation;
use auscult_connectors::events::EventTarget;
use auscult_schemas::{AudioChunk, BandDeviation, MachineId, MachineType};
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::AsCollection;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Concatenate, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

/// How many epochs a worker's input may run ahead of what its monitors have finished:
/// bounds the audio buffered in flight.
const EPOCHS_IN_FLIGHT: u64 = 2;
/// Most latency samples a worker keeps.
const MAX_LATENCY_SAMPLES: usize = 1_000_000;
/// A scored window captured more than this long before it was scored is counted as replayed
/// audio, not as latency (1 hour, in µs).
pub const REPLAY_BEHIND_US: i64 = 3_600_000_000;

/// Everything one run needs.
#[derive(Clone)]
pub struct RunPlan {
    pub config: Config,
    pub source: SourcePlan,
    /// Where anomaly events go; `None` drops them (counted all the same).
    pub events: Option<EventTarget>,
    /// The archive's folder or object store; `None` writes no archive.
    pub archive: Option<ArchiveLocation>,
    /// Where the fleet view's changed rows go (the compacted topic `auscult.fleet`); `None`
    /// keeps only the final view in the report.
    pub fleet: Option<EventTarget>,
    /// Checkpoints of the per-machine state (Kafka source only); `None` keeps none.
    pub checkpoints: Option<CheckpointPlan>,
    /// Set (by a signal handler) to stop a Kafka-fed run cleanly: what was read is processed,
    /// made durable and committed.
    pub stop: Arc<AtomicBool>,
    /// This process's metrics, served by `--metrics` (`None`: nobody asked).
    pub metrics: Option<Arc<PipelineMetrics>>,
}

/// Where checkpoints go, and the machines an earlier run's checkpoints restored.
#[derive(Clone)]
pub struct CheckpointPlan {
    pub store: StatePlan,
    /// Each worker takes the machines it owns out of here when it starts.
    pub restored: Arc<Mutex<Vec<MachineMonitor>>>,
    /// The capture time the restored state covers up to (`None`: nothing was restored).
    pub covered_until_us: Option<i64>,
}

/// The backend of a run's checkpoints.
#[derive(Clone)]
pub enum StatePlan {
    /// Files under one folder that every process sees.
    Folder(PathBuf),
    /// Records on the compacted state topic.
    Changelog {
        brokers: String,
        topic: String,
        encoding: StateEncoding,
        /// Part keys of each restored machine to tombstone after its next record.
        parts_to_drop: Arc<Mutex<HashMap<MachineId, Vec<String>>>>,
    },
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
    /// One line per input that was skipped, naming it and why: the first
    /// [`FIRST_LINES_PER_REASON`] of each reason (all are counted in `skipped_by_reason`).
    pub skipped: Vec<String>,
    /// Inputs skipped, by reason.
    pub skipped_by_reason: BTreeMap<String, u64>,
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
    /// Live sources: scored windows captured more than [`REPLAY_BEHIND_US`] before they were
    /// scored (replayed recordings, or a backlog of hours), left out of `latency_ms`.
    #[serde(default)]
    pub latency_replayed: u64,
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
    /// and commits no more offsets. The first [`FIRST_LINES_PER_REASON`]; all are counted.
    pub sink_errors: Vec<String>,
    pub sink_error_count: u64,
}

/// Lines a report keeps of each reason for skipping input, and of sink errors: a flood of bad
/// records is counted, not listed, so it cannot grow memory.
pub const FIRST_LINES_PER_REASON: u64 = 20;

impl WorkerReport {
    /// Notes a skipped input: counted under `reason`, its line kept among the first of them.
    pub fn skip(&mut self, reason: &str, line: String) {
        let count = self.skipped_by_reason.entry(reason.to_owned()).or_default();
        *count += 1;
        if *count <= FIRST_LINES_PER_REASON {
            self.skipped.push(line);
        }
    }

    /// Notes a sink failure (the run has failed).
    pub fn sink_error(&mut self, line: String) {
        self.sink_error_count += 1;
        if self.sink_error_count <= FIRST_LINES_PER_REASON {
            self.sink_errors.push(line);
        }
    }
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

/// State shared by one worker's operators and its driver loop.
#[derive(Default)]
struct WorkerState {
    monitors: HashMap<MachineId, MachineMonitor>,
    report: WorkerReport,
    /// Registry entries (canonical JSON) of the machines this worker owns.
    registry: HashMap<MachineId, String>,
    /// The fleet view's last status of each machine this worker owns.
    fleet_status: HashMap<MachineId, (FleetKey, MachineStatus)>,
    /// Machines the registry has retired: their chunks are skipped.
    retired: HashSet<MachineId>,
    /// Machines whose state was dropped since the last checkpoint (their changelog records are
    /// tombstoned at the next), and the fleet statuses to retract at the next epoch.
    retired_since_checkpoint: Vec<MachineId>,
    fleet_retractions: Vec<(MachineId, (FleetKey, MachineStatus))>,
    /// Whether to record how long after capture each window is scored (live sources only:
    /// their capture times are wall-clock times).
    measure_latency: bool,
    /// Workers in the run (every process's).
    peers: usize,
    /// Workers per process: worker `w` runs in process `w / threads`.
    threads: usize,
    checkpoints: Option<WorkerCheckpoints>,
    metrics: Option<Arc<PipelineMetrics>>,
    /// Chunks refused by `stream.max_machines`, kept (Kafka input only) until the input sends
    /// them to the dead-letter topic, before it commits their offsets.
    refused: Option<Vec<(AudioChunk, String)>>,
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
    state.borrow_mut().refused = matches!(plan.source, SourcePlan::Kafka(_)).then(Vec::new);
    state.borrow_mut().peers = peers;
    state.borrow_mut().threads = threads;
    state.borrow_mut().metrics = plan.metrics.clone();
    let placement = Arc::new(plan.source.placement(peers));
    // The boundary at which this worker's first checkpoint is due (with checkpoints).
    let first_boundary = plan.checkpoints.as_ref().map(|checkpoint_plan| {
        start_checkpoints(&mut state.borrow_mut(), checkpoint_plan, &config, &placement, (index, peers), epoch_us)
    });
    let mut input = ChunkInput::new();
    let mut registry_handle: Option<RegistryInput> = None;
    let probe = ProbeHandle::new();
    let durable = ProbeHandle::new();

    worker.dataflow::<u64, _, _>(|scope| {
        // The machine registry, a differential collection of (machine, entry as JSON), joined
        // with the chunks on the machine's worker: an epoch's changes apply before its chunks.
        let (registry_input, registry) = scope.new_collection::<(MachineId, String), isize>();
        registry_handle = Some(registry_input);
        let chunks = input.to_stream(scope);
        let monitored = machine_monitors(chunks, registry.inner, &placement, &config, &state, first_boundary, &probe);
        // The fleet view: facts from every worker, counted incrementally by differential.
        let minute_epochs = (60_000 / config.stream.epoch_ms.max(1)).max(1);
        let counts = fleet_counts(monitored.fleet_facts.as_collection(), minute_epochs);
        let on_worker_zero = |target: &Option<EventTarget>| target.clone().filter(|_| index == 0);
        let mut done = vec![
            sinks::fleet_sink(counts.inner, on_worker_zero(&plan.fleet), &state),
            sinks::event_sink(monitored.events, on_worker_zero(&plan.events), &state),
        ];
        if let Some(location) = &plan.archive {
            done.push(sinks::archive_sink(monitored.windows, location, &config, index, &state));
        }
        let mut done = scope.concatenate(done);
        // With the state changelog, a boundary is durable once its state records are, too.
        if let Some(target) = changelog_target(plan.checkpoints.as_ref(), &placement, index) {
            done = state_changelog::state_changelog(monitored.states, done, target, &state);
        }
        // The epochs every sink has made durable: the Kafka input commits offsets up to there.
        done.probe_with(&durable);
    });

    let mut registry_input = registry_handle.expect("made with the dataflow");
    // A run restored from a checkpoint starts after its boundary: the state holds everything
    // up to there, so whatever comes is of a later epoch, even audio an earlier run read late.
    // No row of this run then lands in an archive batch that an earlier run made durable.
    if let Some(start) = plan.checkpoints.as_ref().and_then(|c| c.covered_until_us).map(|us| epoch_of(us, epoch_us)) {
        input.advance_to(start);
        registry_input.advance_to(start);
        registry_input.flush();
    }
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
            plan_input::drive_from_plan(worker, &mut input, &probe, &state, plan, &placement, epoch_us)
        }
    }
    drop(registry_input);
    input.close();
    while worker.step_or_park(None) {}
    if let Some(metrics) = &plan.metrics {
        metrics.mark_finished(index);
    }

    let mut state = state.borrow_mut();
    state.report.machines = machine_summaries(&state.monitors);
    std::mem::take(&mut state.report)
}

/// Sets up this worker's checkpoints and takes the restored machines it owns; returns the
/// boundary at which its first checkpoint is due.
fn start_checkpoints(
    state: &mut WorkerState,
    checkpoint_plan: &CheckpointPlan,
    config: &Config,
    placement: &Placement,
    (index, peers): (usize, usize),
    epoch_us: i64,
) -> u64 {
    let schedule = CheckpointSchedule::new(config.stream.checkpoint_s, config.stream.epoch_ms, epoch_us);
    let boundary = schedule.boundary_at_or_after(epoch_of(checkpoint_plan.covered_until_us.unwrap_or(0), epoch_us));
    let mut restored = checkpoint_plan.restored.lock().unwrap_or_else(PoisonError::into_inner);
    let (mine, others): (Vec<_>, Vec<_>) =
        restored.drain(..).partition(|monitor| placement.worker_of(monitor.machine_id()) == index as u64);
    *restored = others;
    state.report.machines_restored = mine.len();
    state.report.restored_audio_s = mine.iter().map(audio_seconds).sum();
    for monitor in mine {
        state.monitors.insert(monitor.machine_id().clone(), monitor);
    }
    let store = match &checkpoint_plan.store {
        StatePlan::Folder(dir) => StateWriter::Folder(CheckpointStore::new(dir, index, config)),
        StatePlan::Changelog { encoding, .. } => StateWriter::Changelog(encoding.clone()),
    };
    state.checkpoints = Some(WorkerCheckpoints {
        store,
        schedule,
        written_until_us: None,
        marked_until_us: checkpoint_plan.covered_until_us,
        remove_stale: (index == 0 && matches!(checkpoint_plan.store, StatePlan::Folder(_)))
            .then(|| (schedule.covered_until_us(boundary), peers)),
    });
    boundary
}

/// Where this worker's "StateChangelog" writes, with the part keys of its machines to drop
/// (`None` without the changelog backend).
fn changelog_target(
    checkpoint_plan: Option<&CheckpointPlan>,
    placement: &Placement,
    index: usize,
) -> Option<state_changelog::ChangelogTarget> {
    let StatePlan::Changelog { brokers, topic, encoding, parts_to_drop } = &checkpoint_plan?.store else {
        return None;
    };
    let mut all = parts_to_drop.lock().unwrap_or_else(PoisonError::into_inner);
    let mine: HashMap<MachineId, Vec<String>> = all
        .iter()
        .filter(|(machine_id, _)| placement.worker_of(machine_id) == index as u64)
        .map(|(machine_id, keys)| (machine_id.clone(), keys.clone()))
        .collect();
    all.retain(|machine_id, _| !mine.contains_key(machine_id));
    Some(state_changelog::ChangelogTarget {
        brokers: brokers.clone(),
        topic: topic.clone(),
        encoding: encoding.clone(),
        parts_to_drop: mine,
    })
}

/// What each machine did, by machine id.
fn machine_summaries(monitors: &HashMap<MachineId, MachineMonitor>) -> Vec<MachineSummary> {
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
    machines
}

type ChunkInput = InputHandle<u64, CapacityContainerBuilder<Vec<AudioChunk>>>;
type RegistryInput = InputSession<u64, (MachineId, String), isize>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_one_reason_is_counted_and_only_its_first_lines_kept() {
        let mut report = WorkerReport::default();
        for index in 0..10_000 {
            report.skip("dead letter", format!("kafka:auscult.audio/0@{index}: not an auscult chunk"));
        }
        report.skip("input unreadable", "a.wav: not a WAV file".to_owned());
        assert_eq!(report.skipped_by_reason["dead letter"], 10_000);
        assert_eq!(report.skipped_by_reason["input unreadable"], 1);
        assert_eq!(report.skipped.len() as u64, FIRST_LINES_PER_REASON + 1);
        assert!(report.skipped.last().unwrap().starts_with("a.wav"), "another reason still gets its lines");
        for _ in 0..100 {
            report.sink_error("disk full".to_owned());
        }
        assert_eq!((report.sink_errors.len() as u64, report.sink_error_count), (FIRST_LINES_PER_REASON, 100));
    }
}
