//! One machine's WAV files replayed as one stream of chunks.
//!
//! Promises: files are read in the order given; a chunk never spans two files; sequence numbers
//! start at 0 and count every chunk emitted, across files; capture time starts at the given
//! instant and advances exactly by the audio emitted (frames to µs in integer arithmetic, so no
//! drift over days of audio). A file that cannot be opened, or fails part-way, is reported once
//! as an error and the stream goes on with the next file; what it yielded before failing stays
//! emitted and counted.

use super::{WavChunkReader, WavError};
use auscult_schemas::time::samples_to_us;
use auscult_schemas::{AudioChunk, ChunkOrigin, MachineId, MachineType};
use std::path::PathBuf;

/// Milliseconds in one second.
const MILLIS_PER_SECOND: u64 = 1_000;

/// One machine and its files, in replay order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFiles {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    pub files: Vec<PathBuf>,
}

/// Replays one machine's files as one stream of chunks of `chunk_duration_ms` (the last chunk
/// of a file may be shorter).
pub struct MachineFileReader {
    machine: MachineFiles,
    chunk_duration_ms: u32,
    start_time_us: i64,
    next_file: usize,
    current: Option<WavChunkReader>,
    sequence: u64,
    /// Frames emitted at the current rate since `rate_change_us`.
    frames_at_rate: u64,
    /// Frames emitted in all, across files and rates.
    frames_total: u64,
    rate_hz: Option<u32>,
    /// Audio time emitted before the last change of sample rate, µs.
    rate_change_us: i64,
    files_skipped: usize,
}

impl MachineFileReader {
    /// A reader that will stamp its first chunk `start_time_us` (µs since the Unix epoch).
    /// A `chunk_duration_ms` of 0 is taken as 1.
    pub fn new(machine: MachineFiles, chunk_duration_ms: u32, start_time_us: i64) -> Self {
        Self {
            machine,
            chunk_duration_ms: chunk_duration_ms.max(1),
            start_time_us,
            next_file: 0,
            current: None,
            sequence: 0,
            frames_at_rate: 0,
            frames_total: 0,
            rate_hz: None,
            rate_change_us: 0,
            files_skipped: 0,
        }
    }

    /// The machine and its files.
    pub fn machine(&self) -> &MachineFiles {
        &self.machine
    }

    /// Frames emitted so far, across files (accepted audio only).
    pub fn frames_read(&self) -> u64 {
        self.frames_total
    }

    /// Files that failed, at opening or part-way (each was reported once as an error).
    pub fn files_skipped(&self) -> usize {
        self.files_skipped
    }

    /// Chunks emitted so far.
    pub fn chunks_emitted(&self) -> u64 {
        self.sequence
    }

    /// Capture time of the next frame to emit.
    fn capture_time_us(&self) -> i64 {
        let since_rate_change = samples_to_us(self.frames_at_rate, self.rate_hz.unwrap_or(1));
        self.start_time_us.saturating_add(self.rate_change_us).saturating_add(since_rate_change)
    }

    /// Opens the next file; `Err` when it cannot be read, `Ok(false)` when there is none.
    fn open_next(&mut self) -> Result<bool, WavError> {
        let Some(path) = self.machine.files.get(self.next_file).cloned() else {
            return Ok(false);
        };
        self.next_file += 1;
        let reader = WavChunkReader::open(&path)?;
        let rate = reader.info().sample_rate_hz;
        if self.rate_hz.is_some_and(|current| current != rate) {
            // Restart the exact count at the new rate, carrying the time emitted so far.
            self.rate_change_us = self.capture_time_us().saturating_sub(self.start_time_us);
            self.frames_at_rate = 0;
        }
        self.rate_hz = Some(rate);
        self.current = Some(reader);
        Ok(true)
    }

    /// The next chunk, an error about one file (the stream goes on after it), or `None` when
    /// every file is done.
    pub fn next_chunk(&mut self) -> Option<Result<AudioChunk, WavError>> {
        loop {
            if self.current.is_none() {
                match self.open_next() {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(error) => {
                        self.files_skipped += 1;
                        return Some(Err(error));
                    }
                }
            }
            let capture_start_us = self.capture_time_us();
            let reader = self.current.as_mut().expect("a file is open: opened just above");
            let info = reader.info();
            let chunk_frames = u64::from(info.sample_rate_hz) * u64::from(self.chunk_duration_ms) / MILLIS_PER_SECOND;
            match reader.next_payload(chunk_frames.max(1) as usize) {
                Ok(Some(payload)) => {
                    let frame_bytes = info.sample_format.bytes_per_sample() * usize::from(info.channels);
                    let frames = (payload.len() / frame_bytes) as u64;
                    let chunk = AudioChunk {
                        machine_id: self.machine.machine_id.clone(),
                        machine_type: self.machine.machine_type.clone(),
                        sequence: self.sequence,
                        capture_start_us,
                        sample_rate_hz: info.sample_rate_hz,
                        channels: info.channels,
                        sample_format: info.sample_format,
                        payload,
                        origin: ChunkOrigin::File { path: reader.path().display().to_string() },
                    };
                    self.sequence += 1;
                    self.frames_at_rate += frames;
                    self.frames_total += frames;
                    return Some(Ok(chunk));
                }
                Ok(None) => self.current = None,
                Err(error) => {
                    self.current = None;
                    self.files_skipped += 1;
                    return Some(Err(error));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write_wav(path: &Path, sample_rate: u32, frames: usize) {
        let spec =
            hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for index in 0..frames {
            writer.write_sample((index % 1000) as i16).unwrap();
        }
        writer.finalize().unwrap();
    }

    fn machine(files: Vec<PathBuf>) -> MachineFiles {
        MachineFiles {
            machine_id: MachineId::new("fan-id_00").unwrap(),
            machine_type: MachineType::new("fan").unwrap(),
            files,
        }
    }

    fn drain(reader: &mut MachineFileReader) -> (Vec<AudioChunk>, Vec<WavError>) {
        let (mut chunks, mut errors) = (Vec::new(), Vec::new());
        while let Some(item) = reader.next_chunk() {
            match item {
                Ok(chunk) => chunks.push(chunk),
                Err(error) => errors.push(error),
            }
        }
        (chunks, errors)
    }

    #[test]
    fn files_replay_as_one_stream_and_a_missing_file_is_reported_once_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a.wav"), dir.path().join("c.wav"));
        write_wav(&first, 16_000, 24_000);
        write_wav(&second, 16_000, 16_000);
        let missing = dir.path().join("b-missing.wav");
        let mut reader = MachineFileReader::new(machine(vec![first.clone(), missing.clone(), second]), 1000, 5_000_000);
        let (chunks, errors) = drain(&mut reader);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path(), missing);
        assert_eq!(reader.files_skipped(), 1);
        let sizes: Vec<usize> = chunks.iter().map(AudioChunk::frames).collect();
        assert_eq!(sizes, vec![16_000, 8_000, 16_000], "a chunk never spans two files");
        let sequences: Vec<u64> = chunks.iter().map(|chunk| chunk.sequence).collect();
        assert_eq!(sequences, vec![0, 1, 2]);
        let starts: Vec<i64> = chunks.iter().map(|chunk| chunk.capture_start_us).collect();
        assert_eq!(starts, vec![5_000_000, 6_000_000, 6_500_000]);
        assert_eq!(chunks[0].origin, ChunkOrigin::File { path: first.display().to_string() });
        assert!(chunks.iter().all(|chunk| chunk.validate().is_ok()));
        assert_eq!(reader.frames_read(), 40_000);
        assert_eq!(reader.chunks_emitted(), 3);
    }

    #[test]
    fn a_file_truncated_midway_keeps_its_audio_and_the_next_file_follows_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let (cut, next) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
        write_wav(&cut, 16_000, 16_000);
        let bytes = std::fs::read(&cut).unwrap();
        // 6,000 frames (12,000 bytes) of the declared 16,000 go missing.
        std::fs::write(&cut, &bytes[..bytes.len() - 12_000]).unwrap();
        write_wav(&next, 16_000, 4_000);
        let mut reader = MachineFileReader::new(machine(vec![cut, next]), 250, 0);
        let (chunks, errors) = drain(&mut reader);
        assert_eq!(errors.len(), 1);
        assert!(matches!(errors[0], WavError::Truncated { frames_read: 10_000, .. }), "{}", errors[0]);
        let sizes: Vec<usize> = chunks.iter().map(AudioChunk::frames).collect();
        assert_eq!(sizes, vec![4_000, 4_000, 2_000, 4_000]);
        assert_eq!(chunks[3].capture_start_us, 625_000, "the next file starts where the accepted audio ended");
        assert_eq!(chunks[3].sequence, 3);
        assert_eq!(reader.frames_read(), 14_000);
        assert_eq!(reader.files_skipped(), 1);
    }

    #[test]
    fn capture_times_are_exact_at_rates_that_do_not_divide_a_microsecond() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
        write_wav(&first, 44_100, 44_100 * 3);
        write_wav(&second, 8_000, 8_000);
        let mut reader = MachineFileReader::new(machine(vec![first, second]), 1, 1_000);
        let (chunks, errors) = drain(&mut reader);
        assert!(errors.is_empty());
        // 1 ms at 44.1 kHz is 44 frames (44.1 rounded down): time is counted from frames, not summed per chunk.
        assert_eq!(chunks[0].frames(), 44);
        for (index, chunk) in chunks.iter().take_while(|chunk| chunk.sample_rate_hz == 44_100).enumerate() {
            let frames = 44 * index as u128;
            assert_eq!(chunk.capture_start_us, 1_000 + (frames * 1_000_000 / 44_100) as i64);
        }
        let first_at_8k = chunks.iter().find(|chunk| chunk.sample_rate_hz == 8_000).unwrap();
        assert_eq!(first_at_8k.capture_start_us, 1_000 + 3_000_000, "a change of rate keeps time exact");
        assert_eq!(chunks.last().unwrap().capture_start_us, 1_000 + 3_000_000 + 999_000);
    }
}
