//! "StateChangelog": each worker writes its machines' state records to the compacted state
//! topic (`run --state kafka`), a boundary's records only once every sink has made that
//! boundary's outputs durable, and holds the boundary until the broker has acknowledged them.
//! Its (empty) output is what the `durable` probe watches, so offsets are committed only up to
//! a boundary whose state is on the broker for every worker, and a state record on the broker
//! never covers an output that is not (see `crate::checkpoint::changelog`).

use super::epoch_stash::EpochStash;
use super::WorkerState;
use crate::checkpoint::changelog::{MachineState, StateEncoding};
use auscult_connectors::kafka::{ChangelogWriter, KafkaTransportError};
use auscult_schemas::MachineId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

/// Where the records go.
pub(super) struct ChangelogTarget {
    pub brokers: String,
    pub topic: String,
    pub encoding: StateEncoding,
    /// Part keys of each machine to tombstone once its next record is acknowledged (those of
    /// the restored version, and any a crash left behind).
    pub parts_to_drop: HashMap<MachineId, Vec<String>>,
}

/// Builds "StateChangelog" on this worker's state records and the sinks' (empty) outputs.
pub(super) fn state_changelog<'scope>(
    states: StreamVec<'scope, u64, MachineState>,
    sinks_done: StreamVec<'scope, u64, ()>,
    target: ChangelogTarget,
    state: &Rc<RefCell<WorkerState>>,
) -> StreamVec<'scope, u64, ()> {
    let ChangelogTarget { brokers, topic, encoding, mut parts_to_drop } = target;
    let writer = ChangelogWriter::connect(&brokers, &topic, encoding.max_record_bytes());
    let state = Rc::clone(state);
    states.binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
        sinks_done,
        Pipeline,
        Pipeline,
        "StateChangelog",
        move |_capability, _info| {
            let mut stash = EpochStash::<MachineState>::default();
            move |(input, frontier), (done, done_frontier), output| {
                stash.take(input, output.output_index());
                done.for_each(|_, _| {});
                let durable = |epoch: &u64| !frontier.less_equal(epoch) && !done_frontier.less_equal(epoch);
                // Dropping the capability at the end of each iteration marks the boundary durable.
                while let Some((boundary, _capability, machines)) = stash.pop_finished(durable) {
                    let started = std::time::Instant::now();
                    let bytes: usize = machines
                        .iter()
                        .flat_map(|m| &m.records)
                        .map(|(_, _, value)| value.as_ref().map_or(0, Vec::len))
                        .sum();
                    let written = match writer.as_ref() {
                        Ok(writer) => write_boundary(writer, &encoding, machines, &mut parts_to_drop),
                        Err(error) => Err(error.to_string()),
                    };
                    let mut state = state.borrow_mut();
                    match written {
                        Ok(()) => {
                            state.report.checkpoints_written += 1;
                            if let Some(checkpoints) = state.checkpoints.as_mut() {
                                checkpoints.written_until_us = Some(checkpoints.schedule.covered_until_us(boundary));
                            }
                            if let Some(metrics) = &state.metrics {
                                metrics.checkpoint_seconds.observe(started.elapsed().as_secs_f64());
                                metrics.checkpoint_bytes.inc_by(bytes as u64);
                            }
                        }
                        Err(error) => state.report.sink_error(error),
                    }
                }
            }
        },
    )
}

/// Sends one boundary's records and waits for their acknowledgement; then tombstones the part
/// records they replace, and waits for those too.
fn write_boundary(
    writer: &ChangelogWriter,
    encoding: &StateEncoding,
    machines: Vec<MachineState>,
    parts_to_drop: &mut HashMap<MachineId, Vec<String>>,
) -> Result<(), String> {
    let text = |error: KafkaTransportError| error.to_string();
    let mut replaced = Vec::new();
    for machine in machines {
        let new_parts: Vec<String> = machine.part_keys().map(str::to_owned).collect();
        let mut old_parts = parts_to_drop.insert(machine.machine_id.clone(), new_parts.clone()).unwrap_or_default();
        old_parts.retain(|key| !new_parts.contains(key));
        if !old_parts.is_empty() {
            replaced.push((machine.machine_id.clone(), old_parts));
        }
        for record in machine.into_records() {
            writer.send(record).map_err(text)?;
        }
    }
    writer.flush().map_err(text)?;
    if !replaced.is_empty() {
        for (machine_id, keys) in &replaced {
            for tombstone in encoding.tombstones(machine_id, keys.iter().map(String::as_str)) {
                writer.send(tombstone).map_err(text)?;
            }
        }
        writer.flush().map_err(text)?;
    }
    Ok(())
}
