//! The audio sources a run can read, seen by the dataflow as one chunk stream per machine.
//!
//! A [`SourcePlan`] says what to read (WAV files grouped by machine, or simulated machines);
//! each worker opens only the machines it owns (by [`route_hash`]), so no two workers read the
//! same machine and every machine is read. Whatever the source, the dataflow sees the same
//! [`AudioChunk`]s an edge agent would send over Kafka.

use auscult_connectors::simulator::{SimulatedMachine, SimulatedMachineSpec};
use auscult_connectors::wav::{MachineFileReader, MachineFiles};
use auscult_schemas::{route_hash, AudioChunk, MachineId};

/// A source error, already one line naming the input and the reason.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// What a run reads.
#[derive(Clone)]
pub enum SourcePlan {
    /// WAV files, grouped by machine (from `layout::discover` or a manifest).
    Files { machines: Vec<MachineFiles> },
    /// Simulated machines, each producing `duration_s` seconds of audio.
    Simulated { machines: Vec<SimulatedMachineSpec>, duration_s: f64 },
}

impl SourcePlan {
    /// Machines in the plan.
    pub fn machine_count(&self) -> usize {
        match self {
            SourcePlan::Files { machines } => machines.len(),
            SourcePlan::Simulated { machines, .. } => machines.len(),
        }
    }

    /// Opens the machines that worker `index` of `peers` owns.
    pub fn open_for_worker(&self, index: usize, peers: usize, chunk_ms: u32, start_time_us: i64) -> Vec<MachineStream> {
        let owned = |id: &MachineId| route_hash(id) % peers as u64 == index as u64;
        match self {
            SourcePlan::Files { machines } => machines
                .iter()
                .filter(|machine| owned(&machine.machine_id))
                .map(|machine| {
                    MachineStream::File(Box::new(MachineFileReader::new(machine.clone(), chunk_ms, start_time_us)))
                })
                .collect(),
            SourcePlan::Simulated { machines, duration_s } => machines
                .iter()
                .filter(|spec| owned(&spec.machine_id))
                .map(|spec| {
                    let chunk_frames = (u64::from(spec.sample_rate_hz) * u64::from(chunk_ms) / 1000).max(1) as usize;
                    let total_frames = (duration_s * f64::from(spec.sample_rate_hz)).round() as u64;
                    MachineStream::Simulated {
                        machine: Box::new(SimulatedMachine::new(spec.clone())),
                        chunk_frames,
                        frames_left: total_frames,
                        start_time_us,
                    }
                })
                .collect(),
        }
    }
}

/// One machine's chunks, in sequence order.
pub enum MachineStream {
    File(Box<MachineFileReader>),
    Simulated { machine: Box<SimulatedMachine>, chunk_frames: usize, frames_left: u64, start_time_us: i64 },
}

impl MachineStream {
    /// The next chunk, an error about one input (the stream goes on), or `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Result<AudioChunk, SourceError>> {
        match self {
            MachineStream::File(reader) => {
                reader.next_chunk().map(|item| item.map_err(|error| Box::new(error) as SourceError))
            }
            MachineStream::Simulated { machine, chunk_frames, frames_left, start_time_us } => {
                if *frames_left == 0 {
                    return None;
                }
                let frames = (*chunk_frames as u64).min(*frames_left) as usize;
                *frames_left -= frames as u64;
                Some(Ok(machine.next_chunk(frames, *start_time_us)))
            }
        }
    }
}
