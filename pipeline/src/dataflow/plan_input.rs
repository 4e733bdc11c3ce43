//! The file and simulator input of a worker: its own machines (the plan's placement says which),
//! merged epoch by epoch of capture time, so that a run on files gives the same output as the
//! same audio from Kafka. A file that cannot be read is skipped with one line; the rest go on.

use super::{epoch_of, ChunkInput, RunPlan, WorkerState, EPOCHS_IN_FLIGHT};
use crate::metrics::WorkerLabel;
use crate::sources::{MachineStream, Placement};
use auscult_schemas::AudioChunk;
use std::cell::RefCell;
use std::rc::Rc;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// Feeds this worker's machines of a file or simulator plan epoch by epoch of capture time,
/// never more than `EPOCHS_IN_FLIGHT` ahead of what the monitors have finished.
pub(super) fn drive_from_plan(
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
    let metrics = plan.metrics.clone();
    let worker_label = WorkerLabel { worker: index as u32 };
    if let Some(metrics) = &metrics {
        metrics.mark_ready(index);
    }
    loop {
        if let Some(metrics) = &metrics {
            metrics.heartbeat(index);
        }
        for (stream, peeked) in streams.iter_mut() {
            while peeked.is_none() {
                match stream.next_chunk() {
                    Some(Ok(chunk)) => *peeked = Some(chunk),
                    Some(Err(error)) => {
                        tracing::warn!(worker = index, "skipped: {error}");
                        state.borrow_mut().report.skip("input unreadable", error.to_string());
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
                if let Some(metrics) = &metrics {
                    metrics.chunks_read.get_or_create(&worker_label).inc();
                    metrics.bytes_read.get_or_create(&worker_label).inc_by(chunk.payload.len() as u64);
                }
                input.send(chunk);
                match stream.next_chunk() {
                    Some(Ok(next)) => *peeked = Some(next),
                    Some(Err(error)) => {
                        tracing::warn!(worker = index, "skipped: {error}");
                        state.borrow_mut().report.skip("input unreadable", error.to_string());
                    }
                    None => {}
                }
            }
        }
        input.advance_to(epoch + 1);
        let allowed = (epoch + 1).saturating_sub(EPOCHS_IN_FLIGHT);
        while probe.less_than(&allowed) {
            if let Some(metrics) = &metrics {
                metrics.heartbeat(index);
            }
            worker.step();
        }
    }
}
