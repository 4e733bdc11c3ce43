//! "MachineMonitors": the operator that owns the machines' state. Each worker keeps the
//! monitors of the machines placed on it; an epoch's chunks are taken once the chunk and the
//! registry frontiers have both passed it, its registry changes applied first, then its chunks
//! in (machine, capture time, sequence) order, so the output does not depend on arrival order.
//! With checkpoints it holds a capability at the next boundary and writes its machines' state
//! there before any later epoch changes it (to its folder, or as records for the state
//! changelog, emitted at the boundary).
//!
//! It emits windows, events and fleet facts as one stream, split by kind without copying
//! (timely's `partition`), for the sinks and the fleet view.

use super::checkpoints::write_checkpoint;
use super::epoch_stash::EpochStash;
use super::{wall_clock_us, FleetUpdate, WorkerState, MAX_LATENCY_SAMPLES, REPLAY_BEHIND_US};
use crate::checkpoint::changelog::MachineState;
use crate::config::Config;
use crate::fleet::{FleetFact, FleetKey, MachineStatus};
use crate::metrics::{AlertLabel, MachineLabel, PipelineMetrics, StatusLabel, WindowLabel};
use crate::model::{MachineMonitor, MonitorOutput};
use crate::sources::Placement;
use auscult_schemas::{
    AlertLevel, AlertState, AnomalyEvent, AudioChunk, EventKind, MachineEntry, MachineId, WindowRecord,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::operators::{Operator, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};

/// One change of the registry collection: a machine's entry (as JSON) in or out.
pub(super) type RegistryUpdate = ((MachineId, String), isize);

/// What the monitors emit, before it is split by kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum PipelineRecord {
    Window(WindowRecord),
    Event(AnomalyEvent),
    /// A change of the fleet view's facts, at an epoch.
    Fleet(FleetUpdate),
    /// A machine's state at a checkpoint boundary, for the state changelog.
    State(MachineState),
}

/// The monitors' output, by kind.
pub(super) struct MonitorStreams<'scope> {
    pub windows: StreamVec<'scope, u64, WindowRecord>,
    pub events: StreamVec<'scope, u64, AnomalyEvent>,
    pub fleet_facts: StreamVec<'scope, u64, FleetUpdate>,
    /// With the changelog backend: each machine's state records, at each checkpoint boundary.
    pub states: StreamVec<'scope, u64, MachineState>,
}

/// Builds "MachineMonitors" on `chunks` and the registry collection's updates, each exchanged
/// to the machine's worker under `placement`; `probe` watches its progress (the inputs' back
/// pressure), and `first_boundary` is the first checkpoint due (with checkpoints).
pub(super) fn machine_monitors<'scope>(
    chunks: StreamVec<'scope, u64, AudioChunk>,
    registry: StreamVec<'scope, u64, ((MachineId, String), u64, isize)>,
    placement: &Arc<Placement>,
    config: &Config,
    state: &Rc<RefCell<WorkerState>>,
    first_boundary: Option<u64>,
    probe: &ProbeHandle<u64>,
) -> MonitorStreams<'scope> {
    let records = chunks
        .binary_frontier::<_, CapacityContainerBuilder<Vec<PipelineRecord>>, _, _, _, _>(
            registry,
            Exchange::new({
                let placement = Arc::clone(placement);
                move |chunk: &AudioChunk| placement.worker_of(&chunk.machine_id)
            }),
            Exchange::new({
                let placement = Arc::clone(placement);
                move |((machine_id, _), _, _): &((MachineId, String), u64, isize)| placement.worker_of(machine_id)
            }),
            "MachineMonitors",
            |capability, _info| {
                let config = config.clone();
                let state = Rc::clone(state);
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
                    let finished = |epoch: &u64| !frontier.less_equal(epoch) && !registry_frontier.less_equal(epoch);
                    let mut state = state.borrow_mut();
                    while let Some((epoch, capability, chunks)) = stash.pop_finished(finished) {
                        if let Some(held) = checkpoint_capability.as_mut().filter(|held| epoch > *held.time()) {
                            // The state after the boundary is complete: write it before this epoch changes it.
                            apply_registry_until(&mut state, &mut registry_changes, *held.time());
                            let states = write_checkpoint(&mut state, *held.time());
                            output.session(&*held).give_iterator(states.into_iter().map(PipelineRecord::State));
                            let next =
                                state.checkpoints.as_ref().map_or(epoch, |c| c.schedule.boundary_at_or_after(epoch));
                            held.downgrade(&next);
                        }
                        apply_registry_until(&mut state, &mut registry_changes, epoch);
                        let mut records = monitor_epoch(&config, &mut state, epoch, chunks);
                        output.session(&capability).give_container(&mut records);
                    }
                    // Both frontiers passed the boundary with no later epoch processed: write it.
                    if let Some(held) = checkpoint_capability.as_mut().filter(|held| finished(held.time())) {
                        apply_registry_until(&mut state, &mut registry_changes, *held.time());
                        let states = write_checkpoint(&mut state, *held.time());
                        output.session(&*held).give_iterator(states.into_iter().map(PipelineRecord::State));
                        let next = frontier.frontier().iter().chain(registry_frontier.frontier().iter()).min().copied();
                        match (next, state.checkpoints.as_ref()) {
                            (Some(next), Some(checkpoints)) if next < u64::MAX => {
                                held.downgrade(&checkpoints.schedule.boundary_at_or_after(next))
                            }
                            // The input is closed (or at its end, `u64::MAX`): that was the last one.
                            _ => checkpoint_capability = None,
                        }
                    }
                }
            },
        )
        .probe_with(probe);

    let mut parts = records.partition(4, |record| match record {
        PipelineRecord::Window(_) => (0, record),
        PipelineRecord::Event(_) => (1, record),
        PipelineRecord::Fleet(_) => (2, record),
        PipelineRecord::State(_) => (3, record),
    });
    let states = parts.pop().expect("four parts").flat_map(|record| match record {
        PipelineRecord::State(state) => Some(state),
        _ => None,
    });
    let fleet_facts = parts.pop().expect("three parts").flat_map(|record| match record {
        PipelineRecord::Fleet(update) => Some(update),
        _ => None,
    });
    let events = parts.pop().expect("three parts").flat_map(|record| match record {
        PipelineRecord::Event(event) => Some(event),
        _ => None,
    });
    let windows = parts.pop().expect("three parts").flat_map(|record| match record {
        PipelineRecord::Window(window) => Some(window),
        _ => None,
    });
    MonitorStreams { windows, events, fleet_facts, states }
}

/// A machine's status in the fleet view.
fn status_of(monitor: &MachineMonitor) -> MachineStatus {
    match (monitor.thresholds(), monitor.alert_state()) {
        (None, _) => MachineStatus::Learning,
        (Some(_), AlertState::Normal) => MachineStatus::Normal,
        (Some(_), AlertState::Warning) => MachineStatus::Warning,
        (Some(_), AlertState::Alarm) => MachineStatus::Alarm,
    }
}

/// Counts an epoch's windows and alert events in the metrics, and sets the worker's machines
/// by status (a muted machine counts as muted, whatever its alert state).
fn count_outputs(
    metrics: &PipelineMetrics,
    worker: usize,
    monitors: &HashMap<MachineId, MachineMonitor>,
    made: &MonitorOutput,
) {
    for window in &made.windows {
        let phase = if window.score.is_some() { "scored" } else { "learned" };
        metrics.windows.get_or_create(&WindowLabel { machine_type: window.machine_type.to_string(), phase }).inc();
        if let Some(per_machine) = &metrics.machine_windows {
            per_machine.get_or_create(&MachineLabel { machine: window.machine_id.to_string() }).inc();
        }
    }
    for event in &made.events {
        let level = match event.level {
            AlertLevel::Warning => "warning",
            AlertLevel::Alarm => "alarm",
        };
        let kind = match event.kind {
            EventKind::Opened => "opened",
            EventKind::Escalated => "escalated",
            EventKind::Closed => "closed",
        };
        metrics.alert_events.get_or_create(&AlertLabel { level, kind }).inc();
    }
    let mut counts: BTreeMap<&'static str, i64> =
        ["learning", "normal", "warning", "alarm", "muted"].into_iter().map(|status| (status, 0)).collect();
    for monitor in monitors.values() {
        let status = if monitor.entry().muted {
            "muted"
        } else {
            match status_of(monitor) {
                MachineStatus::Learning => "learning",
                MachineStatus::Normal => "normal",
                MachineStatus::Warning => "warning",
                MachineStatus::Alarm => "alarm",
            }
        };
        *counts.entry(status).or_default() += 1;
    }
    for (status, count) in counts {
        metrics.machines.get_or_create(&StatusLabel { worker: worker as u32, status }).set(count);
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
        let entry = registry_entry(&state.registry, &machine_id);
        if entry.retired {
            // Out of service: its state goes, and so does its place in the fleet view.
            state.retired.insert(machine_id.clone());
            if state.monitors.remove(&machine_id).is_some() {
                state.retired_since_checkpoint.push(machine_id.clone());
            }
            if let Some(status) = state.fleet_status.remove(&machine_id) {
                state.fleet_retractions.push((machine_id, status));
            }
        } else {
            state.retired.remove(&machine_id);
            if let Some(monitor) = state.monitors.get_mut(&machine_id) {
                monitor.apply_entry(entry);
            }
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
    let WorkerState {
        monitors,
        report,
        registry,
        fleet_status,
        measure_latency,
        peers,
        metrics,
        refused,
        retired,
        fleet_retractions,
        ..
    } = state;
    let touched: BTreeSet<MachineId> = chunks.iter().map(|chunk| chunk.machine_id.clone()).collect();
    let mut made = MonitorOutput::default();
    let mut records: Vec<PipelineRecord> = Vec::new();
    for (machine_id, (key, status)) in fleet_retractions.drain(..) {
        records.push(PipelineRecord::Fleet(((key, FleetFact::Status(machine_id, status)), epoch, -1)));
    }
    for chunk in chunks {
        if retired.contains(&chunk.machine_id) {
            let line = format!("{}: machine {} is retired in the registry", chunk.origin, chunk.machine_id);
            report.skip("machine retired (registry)", line);
            continue;
        }
        if !monitors.contains_key(&chunk.machine_id) {
            // The run's bound, shared evenly by its workers (each owns the machines it keeps).
            let share = config.stream.max_machines.div_ceil(*peers).max(1);
            if monitors.len() >= share {
                report.chunks_refused += 1;
                let reason = format!(
                    "machine {} refused: this run keeps state for at most {} machines (stream.max_machines), {share} on each of its {peers} workers",
                    chunk.machine_id, config.stream.max_machines
                );
                report.skip("machine refused (stream.max_machines)", format!("{}: {reason}", chunk.origin));
                if let Some(refused) = refused {
                    refused.push((chunk, reason));
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
            report.skip("chunk not processed", format!("{}: {error}", chunk.origin));
        }
    }
    // Fleet facts: each window, and each touched machine's status where it changed.
    for machine_id in touched {
        let Some(monitor) = monitors.get(&machine_id) else { continue };
        let entry = monitor.entry();
        let key = FleetKey {
            site: entry.site.clone().unwrap_or_default(),
            machine_type: entry.machine_type.as_ref().unwrap_or(monitor.machine_type()).to_string(),
        };
        let status = status_of(monitor);
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
            } else if now_us - window.window_end_us > REPLAY_BEHIND_US {
                // Recorded audio replayed (an agent's --start-time in the past), or a backlog
                // of more than an hour: its delay is not the pipeline's latency.
                report.latency_replayed += 1;
            } else {
                let latency_ms = (now_us - window.window_end_us) as f64 / 1000.0;
                if let Some(metrics) = metrics {
                    metrics.capture_to_score_seconds.observe(latency_ms / 1000.0);
                }
                if report.latency_ms.len() < MAX_LATENCY_SAMPLES {
                    report.latency_ms.push(latency_ms as f32);
                }
            }
        }
    }
    if let Some(metrics) = metrics {
        count_outputs(metrics, report.worker, monitors, &made);
    }
    records.extend(made.windows.into_iter().map(PipelineRecord::Window));
    records.extend(made.events.into_iter().map(PipelineRecord::Event));
    records
}
