//! The sinks: the archive (each worker's windows as Parquet), the events (gathered on worker 0,
//! JSON Lines or the anomaly topic) and the fleet view (worker 0, the compacted fleet topic).
//!
//! Each holds a capability for every epoch it has not yet made durable and drops it once the
//! epoch is written (the archive: once its batch of epochs is in files renamed into place; the
//! events: once flushed), so the `durable` probe on their (empty) outputs says which epochs are
//! safely written. The Kafka input commits offsets only up to there. A failure is a sink error
//! in the worker's report: the run fails and commits nothing more.

use super::epoch_stash::EpochStash;
use super::WorkerState;
use crate::config::Config;
use crate::fleet::{FleetCountChange, FleetKey, FleetMetric, FleetView};
use auscult_connectors::archive::{ArchiveConfig, ArchiveLocation, ArchiveWriter};
use auscult_connectors::events::{EventTarget, EventWriter};
use auscult_schemas::{AnomalyEvent, WindowRecord};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

/// Changes of the fleet view's counts, at epochs.
pub(super) type FleetCounts<'scope> = StreamVec<'scope, u64, (((FleetKey, FleetMetric), isize), u64, isize)>;

/// "FleetSink": the changed rows of the fleet view, published by worker 0 once their epoch is
/// complete (to `target`, when there is one), and the final view kept in the report.
pub(super) fn fleet_sink<'scope>(
    counts: FleetCounts<'scope>,
    target: Option<EventTarget>,
    state: &Rc<RefCell<WorkerState>>,
) -> StreamVec<'scope, u64, ()> {
    let mut fleet_writer = target.map(|target| EventWriter::open(&target));
    let state = Rc::clone(state);
    counts.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
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
                    let mut state = state.borrow_mut();
                    if let Some(Ok(writer)) = fleet_writer.as_mut() {
                        let written = rows
                            .iter()
                            .try_for_each(|row| {
                                let key = format!("{}/{}", row.site, row.machine_type);
                                writer.write_record(&key, &serde_json::to_string(row).expect("plain data"))
                            })
                            .and_then(|()| writer.flush());
                        if let Err(error) = written {
                            state.report.sink_error(error.to_string());
                        }
                    } else if let Some(Err(error)) = fleet_writer.as_ref() {
                        state.report.sink_error(error.to_string());
                    }
                    state.report.fleet_updates += rows.len() as u64;
                    state.report.fleet = view.rows();
                }
            }
        },
    )
}

/// "ArchiveSink": this worker's windows, a batch of `archive.roll_epochs` epochs per set of
/// Parquet files at its location (a folder or an object store), written once the frontier has
/// passed the batch.
pub(super) fn archive_sink<'scope>(
    windows: StreamVec<'scope, u64, WindowRecord>,
    location: &ArchiveLocation,
    config: &Config,
    worker_index: usize,
    state: &Rc<RefCell<WorkerState>>,
) -> StreamVec<'scope, u64, ()> {
    let archive_config = ArchiveConfig {
        location: location.clone().with_options(config.archive.store_options.clone()),
        max_rows_per_file: config.archive.max_rows_per_file,
        zstd_level: config.archive.zstd_level,
        ..ArchiveConfig::default()
    };
    let mut writer = ArchiveWriter::new(archive_config, worker_index, archive_metadata(config));
    let roll_epochs = config.archive.roll_epochs.max(1);
    let max_rows = config.archive.max_rows_per_file;
    let state = Rc::clone(state);
    windows.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        "ArchiveSink",
        move |_capability, _info| {
            let mut stash = EpochStash::<WindowRecord>::default();
            // The open batch: epochs `first..first + roll_epochs`, held by `first`'s capability.
            let mut batch: Vec<WindowRecord> = Vec::new();
            let mut batch_capability: Option<Capability<u64>> = None;
            move |(input, frontier), output| {
                stash.take(input, output.output_index());
                while let Some((epoch, capability, mut rows)) = stash.pop_finished(|epoch| !frontier.less_equal(epoch))
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
                let passed =
                    batch_capability.as_ref().is_some_and(|first| !frontier.less_than(&(first.time() + roll_epochs)));
                if passed {
                    commit_batch(&mut writer, batch_capability.take(), &mut batch, &state);
                }
            }
        },
    )
}

/// "EventSink": every worker's events, gathered on worker 0, sorted per epoch by (window start,
/// machine, kind) and written to `target` (none: counted only), flushed once per epoch.
pub(super) fn event_sink<'scope>(
    events: StreamVec<'scope, u64, AnomalyEvent>,
    target: Option<EventTarget>,
    state: &Rc<RefCell<WorkerState>>,
) -> StreamVec<'scope, u64, ()> {
    let mut event_writer = target.map(|target| EventWriter::open(&target));
    let state = Rc::clone(state);
    events.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Exchange::new(|_event: &AnomalyEvent| 0),
        "EventSink",
        move |_capability, _info| {
            let mut stash = EpochStash::<AnomalyEvent>::default();
            move |(input, frontier), output| {
                stash.take(input, output.output_index());
                // Dropping the capability at the end of each iteration marks the epoch durable.
                while let Some((_, _capability, mut events)) = stash.pop_finished(|epoch| !frontier.less_equal(epoch)) {
                    events.sort_by(|a, b| {
                        (&a.window_start, &a.machine_id, a.kind).cmp(&(&b.window_start, &b.machine_id, b.kind))
                    });
                    let written = match event_writer.as_mut() {
                        Some(Ok(writer)) => events
                            .iter()
                            .try_for_each(|event| writer.write(event))
                            .and_then(|()| writer.flush())
                            .map_err(|error| error.to_string()),
                        Some(Err(error)) => Err(error.to_string()),
                        None => Ok(()),
                    };
                    let mut state = state.borrow_mut();
                    match written {
                        Ok(()) => {
                            state.report.events_written += events.len() as u64;
                            if let Some(metrics) = &state.metrics {
                                metrics.events_written.inc_by(events.len() as u64);
                            }
                        }
                        Err(error) => state.report.sink_error(error),
                    }
                }
            }
        },
    )
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
                let rows = files.iter().map(|file| file.rows as u64).sum::<u64>();
                state.report.archive_files += files.len();
                state.report.archive_rows += rows;
                if let Some(metrics) = &state.metrics {
                    metrics.archive_files.inc_by(files.len() as u64);
                    metrics.archive_rows.inc_by(rows);
                    metrics.archive_bytes.inc_by(files.iter().map(|file| file.bytes).sum::<u64>());
                }
            }
            Err(error) => state.report.sink_error(error.to_string()),
        },
        Err(error) => state.report.sink_error(error.to_string()),
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
