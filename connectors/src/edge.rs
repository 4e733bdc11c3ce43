//! The edge agent's own logic, apart from its command line: one chunk stream per machine
//! (WAV files or a simulated machine, [`MachineStream`]; raw PCM on standard input,
//! [`StdinAudio`]), merged in capture-time order, paced at real time or faster ([`Pacer`]),
//! and handed to the [`ChunkProducer`]. The pipeline reads the same streams when it runs on
//! files or the simulator, so both see the chunks an agent would send.

use crate::kafka::{ChunkProducer, KafkaTransportError};
use crate::simulator::{SimulatedMachine, SimulatedMachineSpec};
use crate::wav::{MachineFileReader, MachineFiles};
use auscult_schemas::{AudioChunk, ChunkError, ChunkOrigin, MachineId, MachineType, SampleFormat};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A source error, already one line naming the input and the reason.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Chunks sent per machine, for the agent's final report.
pub type SentPerMachine = BTreeMap<String, u64>;

/// One machine's chunks, in sequence order.
pub enum MachineStream {
    File(Box<MachineFileReader>),
    Simulated { machine: Box<SimulatedMachine>, chunk_frames: usize, frames_left: u64, start_time_us: i64 },
}

impl MachineStream {
    /// A machine's WAV files, cut into `chunk_ms` chunks, the first sample at `start_time_us`.
    pub fn files(machine: MachineFiles, chunk_ms: u32, start_time_us: i64) -> Self {
        MachineStream::File(Box::new(MachineFileReader::new(machine, chunk_ms, start_time_us)))
    }

    /// `duration_s` seconds of a simulated machine, cut into `chunk_ms` chunks.
    pub fn simulated(spec: SimulatedMachineSpec, duration_s: f64, chunk_ms: u32, start_time_us: i64) -> Self {
        let chunk_frames = (u64::from(spec.sample_rate_hz) * u64::from(chunk_ms) / 1000).max(1) as usize;
        let frames_left = (duration_s * f64::from(spec.sample_rate_hz)).round() as u64;
        MachineStream::Simulated {
            machine: Box::new(SimulatedMachine::new(spec)),
            chunk_frames,
            frames_left,
            start_time_us,
        }
    }

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

/// The machines a run or an agent reads without Kafka: WAV files grouped by machine, or a
/// simulated fleet.
#[derive(Clone)]
pub enum LocalMachines {
    Files(Vec<MachineFiles>),
    Simulated { machines: Vec<SimulatedMachineSpec>, duration_s: f64 },
}

/// What `--input DIR` or `--simulate N` names.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalSource<'a> {
    /// A corpus folder (DCASE or MIMII layout, or a manifest).
    Folder(&'a std::path::Path),
    /// `machines` simulated machines (every fourth develops a fault at `fault_onset_s`).
    Simulated { machines: usize, seed: u64, snr_db: f64, duration_s: f64, fault_onset_s: f64 },
}

/// Why local machines could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error("{0}: no WAV files of any machine found")]
    NoMachines(String),
}

impl LocalMachines {
    /// The machines `source` names; files it skipped are returned, one line each.
    pub fn discover(source: &LocalSource<'_>) -> Result<(Self, Vec<String>), LocalError> {
        match *source {
            LocalSource::Folder(dir) => {
                let discovery = crate::layout::discover(dir)?;
                if discovery.machines.is_empty() {
                    return Err(LocalError::NoMachines(dir.display().to_string()));
                }
                Ok((LocalMachines::Files(discovery.machines), discovery.skipped))
            }
            LocalSource::Simulated { machines, seed, snr_db, duration_s, fault_onset_s } => {
                let spec = crate::simulator::FleetSpec { machines, seed, snr_db, fault_onset_s, ..Default::default() };
                Ok((LocalMachines::Simulated { machines: crate::simulator::fleet(&spec), duration_s }, Vec::new()))
            }
        }
    }

    /// A stream of every machine, cut into `chunk_ms` chunks from `start_time_us`.
    pub fn open_all(&self, chunk_ms: u32, start_time_us: i64) -> Vec<MachineStream> {
        match self {
            LocalMachines::Files(machines) => {
                machines.iter().map(|machine| MachineStream::files(machine.clone(), chunk_ms, start_time_us)).collect()
            }
            LocalMachines::Simulated { machines, duration_s } => machines
                .iter()
                .map(|spec| MachineStream::simulated(spec.clone(), *duration_s, chunk_ms, start_time_us))
                .collect(),
        }
    }
}

/// Holds chunks back until their capture time, scaled by the replay speed, has come.
pub struct Pacer {
    started: Instant,
    start_time_us: i64,
    /// 1 is real time, 10 ten times faster, 0 no waiting at all.
    speed: f64,
}

impl Pacer {
    pub fn new(start_time_us: i64, speed: f64) -> Self {
        Self { started: Instant::now(), start_time_us, speed }
    }

    /// Sleeps until audio captured at `capture_us` is due, or the stop flag is set.
    pub fn wait_for(&self, capture_us: i64, stop: &AtomicBool) {
        let Some(due) = self.due(capture_us) else { return };
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= due {
                return;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(100)));
        }
    }

    /// When audio captured at `capture_us` is due (`None`: at once).
    fn due(&self, capture_us: i64) -> Option<Instant> {
        if self.speed == 0.0 {
            return None;
        }
        let offset_s = (capture_us - self.start_time_us).max(0) as f64 / 1e6 / self.speed;
        Some(self.started + Duration::from_secs_f64(offset_s))
    }
}

/// Sends every machine's chunks, interleaved in capture-time order (ties by stream order),
/// each once its last sample has been captured, until the streams end or `stop` is set.
/// Unreadable input is reported in one line and skipped.
pub fn send_merged(
    streams: &mut [MachineStream],
    producer: &mut ChunkProducer,
    pacer: &Pacer,
    stop: &AtomicBool,
    sent: &mut SentPerMachine,
) -> Result<(), KafkaTransportError> {
    let mut heads: Vec<Option<AudioChunk>> = streams.iter_mut().map(next_valid).collect();
    while !stop.load(Ordering::Relaxed) {
        let Some(index) = earliest(&heads) else { break };
        let chunk = heads[index].take().expect("picked a present head");
        let capture_end_us =
            chunk.capture_start_us + auscult_schemas::time::samples_to_us(chunk.frames() as u64, chunk.sample_rate_hz);
        pacer.wait_for(capture_end_us, stop);
        if producer.send(&chunk)? {
            *sent.entry(chunk.machine_id.to_string()).or_default() += 1;
        }
        heads[index] = next_valid(&mut streams[index]);
    }
    Ok(())
}

/// The stream whose next chunk was captured first.
fn earliest(heads: &[Option<AudioChunk>]) -> Option<usize> {
    heads
        .iter()
        .enumerate()
        .filter_map(|(index, head)| head.as_ref().map(|chunk| (chunk.capture_start_us, index)))
        .min()
        .map(|(_, index)| index)
}

/// The stream's next chunk; unreadable input is reported in one line and skipped.
fn next_valid(stream: &mut MachineStream) -> Option<AudioChunk> {
    loop {
        match stream.next_chunk()? {
            Ok(chunk) => return Some(chunk),
            Err(error) => eprintln!("skipped: {error}"),
        }
    }
}

/// Raw interleaved PCM of one machine, as `arecord -t raw` writes it.
#[derive(Debug, Clone)]
pub struct StdinAudio {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    pub sample_rate_hz: u32,
    pub channels: u16,
    pub sample_format: SampleFormat,
    pub chunk_ms: u32,
    pub start_time_us: i64,
}

/// Why raw audio could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum StdinError {
    #[error("cannot read audio from stdin: {0}")]
    Read(#[from] std::io::Error),
    #[error("stdin audio: {0}")]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Kafka(#[from] KafkaTransportError),
}

impl StdinAudio {
    /// Cuts `input` into chunks and sends them until it ends or `stop` is set. A last partial
    /// frame is dropped.
    pub fn send_all(
        &self,
        input: &mut impl Read,
        producer: &mut ChunkProducer,
        stop: &AtomicBool,
        sent: &mut SentPerMachine,
    ) -> Result<(), StdinError> {
        let mut chunks = self.chunks(input);
        while !stop.load(Ordering::Relaxed) {
            let Some(chunk) = chunks.next_chunk()? else { break };
            if producer.send(&chunk)? {
                *sent.entry(chunk.machine_id.to_string()).or_default() += 1;
            }
        }
        Ok(())
    }

    /// The chunks of `input`, one at a time.
    pub fn chunks<'a, R: Read>(&'a self, input: &'a mut R) -> RawChunks<'a, R> {
        let frame_bytes = self.sample_format.bytes_per_sample() * usize::from(self.channels.max(1));
        let frames_per_chunk = (u64::from(self.sample_rate_hz) * u64::from(self.chunk_ms) / 1000).max(1) as usize;
        RawChunks {
            audio: self,
            input,
            frame_bytes,
            buffer: vec![0u8; frames_per_chunk * frame_bytes],
            frames_done: 0,
            sequence: 0,
            ended: false,
        }
    }
}

/// The chunks of one raw PCM input ([`StdinAudio::chunks`]).
pub struct RawChunks<'a, R> {
    audio: &'a StdinAudio,
    input: &'a mut R,
    frame_bytes: usize,
    buffer: Vec<u8>,
    frames_done: u64,
    sequence: u64,
    ended: bool,
}

impl<R: Read> RawChunks<'_, R> {
    /// The next whole chunk (the last may be shorter), `None` at the end of the input.
    pub fn next_chunk(&mut self) -> Result<Option<AudioChunk>, StdinError> {
        if self.ended {
            return Ok(None);
        }
        let filled = read_up_to(self.input, &mut self.buffer)?;
        self.ended = filled < self.buffer.len();
        let whole = filled - filled % self.frame_bytes;
        if whole == 0 {
            self.ended = true;
            return Ok(None);
        }
        let audio = self.audio;
        let chunk = AudioChunk {
            machine_id: audio.machine_id.clone(),
            machine_type: audio.machine_type.clone(),
            sequence: self.sequence,
            capture_start_us: audio.start_time_us
                + auscult_schemas::time::samples_to_us(self.frames_done, audio.sample_rate_hz),
            sample_rate_hz: audio.sample_rate_hz,
            channels: audio.channels,
            sample_format: audio.sample_format,
            payload: self.buffer[..whole].to_vec(),
            origin: ChunkOrigin::File { path: "stdin".to_owned() },
        };
        chunk.validate()?;
        self.frames_done += (whole / self.frame_bytes) as u64;
        self.sequence += 1;
        Ok(Some(chunk))
    }
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_up_to(input: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => break,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio() -> StdinAudio {
        StdinAudio {
            machine_id: MachineId::new("fan-1").unwrap(),
            machine_type: MachineType::new("fan").unwrap(),
            sample_rate_hz: 16_000,
            channels: 2,
            sample_format: SampleFormat::S16le,
            chunk_ms: 500,
            start_time_us: 1_000_000,
        }
    }

    #[test]
    fn raw_pcm_is_cut_into_timed_numbered_chunks_and_a_partial_frame_is_dropped() {
        // 1.2 s of 2-channel s16le, plus 3 bytes of a frame that never finished.
        let frames = 19_200usize;
        let mut bytes = vec![1u8; frames * 4 + 3];
        let audio = audio();
        let mut input = bytes.as_slice();
        let mut chunks = audio.chunks(&mut input);
        let mut got = Vec::new();
        while let Some(chunk) = chunks.next_chunk().unwrap() {
            got.push(chunk);
        }
        assert_eq!(got.iter().map(|chunk| chunk.frames()).collect::<Vec<_>>(), [8000, 8000, 3200]);
        assert_eq!(got.iter().map(|chunk| chunk.sequence).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            got.iter().map(|chunk| chunk.capture_start_us).collect::<Vec<_>>(),
            [1_000_000, 1_500_000, 2_000_000]
        );
        bytes.clear();
        let mut empty = bytes.as_slice();
        assert!(audio.chunks(&mut empty).next_chunk().unwrap().is_none(), "no audio, no chunk");
    }

    #[test]
    fn the_pacer_spaces_audio_by_its_capture_time_over_the_speed() {
        let pacer = Pacer::new(0, 4.0);
        let due = pacer.due(2_000_000).unwrap();
        assert_eq!(due - pacer.started, Duration::from_millis(500));
        assert_eq!(pacer.due(-5).unwrap(), pacer.started, "audio before the start is due at once");
        assert!(Pacer::new(0, 0.0).due(10_000_000).is_none(), "speed 0 never waits");
    }

    #[test]
    fn streams_are_merged_by_capture_time() {
        let chunk = |capture_start_us| AudioChunk {
            machine_id: MachineId::new("m").unwrap(),
            machine_type: MachineType::new("fan").unwrap(),
            sequence: 0,
            capture_start_us,
            sample_rate_hz: 16_000,
            channels: 1,
            sample_format: SampleFormat::S16le,
            payload: vec![0; 2],
            origin: ChunkOrigin::File { path: "t".to_owned() },
        };
        assert_eq!(earliest(&[Some(chunk(30)), None, Some(chunk(10)), Some(chunk(10))]), Some(2));
        assert_eq!(earliest(&[None, None]), None);
    }
}
