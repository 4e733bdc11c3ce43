//! WAV files to audio chunks (hound).
//!
//! [`WavChunkReader`] reads one file as raw little-endian PCM in the chunk's sample format
//! (8-bit unsigned, 16/24/32-bit signed, 32-bit float; 1 to 8 channels, WAVE_FORMAT_EXTENSIBLE
//! included). [`MachineFileReader`] replays one machine's files as one stream of
//! [`AudioChunk`]s with running sequence numbers and capture times. Every problem is a
//! [`WavError`] whose message is one line naming the file and the reason; a bad file ends only
//! itself, never the stream.

use auscult_schemas::chunk::{MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ};
use auscult_schemas::{AudioChunk, ChunkOrigin, MachineId, MachineType, SampleFormat};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Most channels a WAV file may have (MIMII recordings have 8).
pub const MAX_WAV_CHANNELS: u16 = 8;

/// Why a WAV file (or part of it) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{path}: cannot read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: not a WAV file ({reason})")]
    NotWav { path: PathBuf, reason: String },
    #[error("{path}: unsupported WAV encoding ({reason}); PCM 8/16/24/32-bit or IEEE float 32 are read")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: malformed WAV ({reason})")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: empty: no audio frames")]
    Empty { path: PathBuf },
    #[error("{path}: truncated after {frames_read} of {frames_declared} frames ({reason})")]
    Truncated { path: PathBuf, frames_read: u64, frames_declared: u64, reason: String },
    #[error("{path}: sample rate {sample_rate_hz} Hz is outside {MIN_SAMPLE_RATE_HZ}..={MAX_SAMPLE_RATE_HZ} Hz")]
    AbsurdSampleRate { path: PathBuf, sample_rate_hz: u32 },
    #[error("{path}: {channels} channels; at most {MAX_WAV_CHANNELS} are read")]
    TooManyChannels { path: PathBuf, channels: u16 },
    #[error("{path}: sample at frame {frame} is not a finite number")]
    NonFinite { path: PathBuf, frame: u64 },
}

fn describe(path: &Path, error: hound::Error) -> WavError {
    let path = path.to_owned();
    match error {
        hound::Error::IoError(io) => WavError::Unreadable { path, reason: io.to_string() },
        hound::Error::FormatError(reason @ ("no RIFF tag found" | "no WAVE tag found")) => {
            WavError::NotWav { path, reason: reason.to_owned() }
        }
        hound::Error::FormatError(reason) => WavError::Malformed { path, reason: reason.to_owned() },
        hound::Error::Unsupported => {
            WavError::Unsupported { path, reason: "format tag is not PCM or IEEE float (e.g. ADPCM)".to_owned() }
        }
        other => WavError::Malformed { path, reason: other.to_string() },
    }
}

/// What a WAV file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    pub sample_rate_hz: u32,
    pub channels: u16,
    pub sample_format: SampleFormat,
    /// Frames (sample instants) the header declares.
    pub frames: u64,
}

/// One WAV file, read as raw PCM payloads.
pub struct WavChunkReader {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    info: WavInfo,
    frames_read: u64,
}

impl WavChunkReader {
    /// Opens and checks the header: format, channels, rate, not empty.
    pub fn open(path: &Path) -> Result<Self, WavError> {
        if path.is_dir() {
            return Err(WavError::Unreadable { path: path.to_owned(), reason: "it is a folder".to_owned() });
        }
        let reader = hound::WavReader::open(path).map_err(|error| describe(path, error))?;
        let spec = reader.spec();
        let sample_format = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 8) => SampleFormat::U8,
            (hound::SampleFormat::Int, 16) => SampleFormat::S16le,
            (hound::SampleFormat::Int, 24) => SampleFormat::S24le,
            (hound::SampleFormat::Int, 32) => SampleFormat::S32le,
            (hound::SampleFormat::Float, 32) => SampleFormat::F32le,
            (format, bits) => {
                return Err(WavError::Unsupported { path: path.to_owned(), reason: format!("{bits}-bit {format:?}") })
            }
        };
        if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&spec.sample_rate) {
            return Err(WavError::AbsurdSampleRate { path: path.to_owned(), sample_rate_hz: spec.sample_rate });
        }
        if spec.channels > MAX_WAV_CHANNELS {
            return Err(WavError::TooManyChannels { path: path.to_owned(), channels: spec.channels });
        }
        let frames = u64::from(reader.duration());
        if frames == 0 {
            return Err(WavError::Empty { path: path.to_owned() });
        }
        let info = WavInfo { sample_rate_hz: spec.sample_rate, channels: spec.channels, sample_format, frames };
        Ok(Self { path: path.to_owned(), reader, info, frames_read: 0 })
    }

    pub fn info(&self) -> WavInfo {
        self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames returned so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// The next at most `max_frames` frames as interleaved little-endian PCM; `None` at the end.
    /// Frames already returned stay valid when a later read fails.
    pub fn next_payload(&mut self, max_frames: usize) -> Result<Option<Vec<u8>>, WavError> {
        let left = self.info.frames - self.frames_read;
        let frames = (max_frames.max(1) as u64).min(left) as usize;
        if frames == 0 {
            return Ok(None);
        }
        let channels = usize::from(self.info.channels);
        let count = frames * channels;
        let mut payload = Vec::with_capacity(count * self.info.sample_format.bytes_per_sample());
        let truncated = |reader: &Self, error: hound::Error| WavError::Truncated {
            path: reader.path.clone(),
            frames_read: reader.frames_read,
            frames_declared: reader.info.frames,
            reason: error.to_string(),
        };
        match self.info.sample_format {
            SampleFormat::F32le => {
                let mut samples = self.reader.samples::<f32>();
                for index in 0..count {
                    let sample = match samples.next() {
                        Some(Ok(sample)) => sample,
                        Some(Err(error)) => return Err(truncated(self, error)),
                        None => return Err(truncated(self, hound::Error::FormatError("data ends early"))),
                    };
                    if !sample.is_finite() {
                        let frame = self.frames_read + (index / channels) as u64;
                        return Err(WavError::NonFinite { path: self.path.clone(), frame });
                    }
                    payload.extend_from_slice(&sample.to_le_bytes());
                }
            }
            format => {
                let mut samples = self.reader.samples::<i32>();
                for _ in 0..count {
                    let sample = match samples.next() {
                        Some(Ok(sample)) => sample,
                        Some(Err(error)) => return Err(truncated(self, error)),
                        None => return Err(truncated(self, hound::Error::FormatError("data ends early"))),
                    };
                    match format {
                        SampleFormat::U8 => payload.push((sample + 128) as u8),
                        SampleFormat::S16le => payload.extend_from_slice(&(sample as i16).to_le_bytes()),
                        SampleFormat::S24le => payload.extend_from_slice(&sample.to_le_bytes()[..3]),
                        _ => payload.extend_from_slice(&sample.to_le_bytes()),
                    }
                }
            }
        }
        self.frames_read += frames as u64;
        Ok(Some(payload))
    }
}

/// One machine and its files, in replay order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFiles {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    pub files: Vec<PathBuf>,
}

/// Replays one machine's files as one stream of chunks: sequence numbers and capture time
/// run on across files; a chunk never spans two files; a bad file is reported once and skipped.
pub struct MachineFileReader {
    machine: MachineFiles,
    chunk_duration_ms: u32,
    start_time_us: i64,
    next_file: usize,
    current: Option<WavChunkReader>,
    sequence: u64,
    /// Capture time of the next chunk's first sample, in µs, kept exact as frames at the first rate.
    frames_so_far: u64,
    rate_hz: Option<u32>,
    elapsed_us_before_rate: i64,
    files_skipped: usize,
}

impl MachineFileReader {
    pub fn new(machine: MachineFiles, chunk_duration_ms: u32, start_time_us: i64) -> Self {
        Self {
            machine,
            chunk_duration_ms: chunk_duration_ms.max(1),
            start_time_us,
            next_file: 0,
            current: None,
            sequence: 0,
            frames_so_far: 0,
            rate_hz: None,
            elapsed_us_before_rate: 0,
            files_skipped: 0,
        }
    }

    pub fn machine(&self) -> &MachineFiles {
        &self.machine
    }

    /// Frames emitted so far, across files.
    pub fn frames_read(&self) -> u64 {
        self.frames_so_far
    }

    pub fn files_skipped(&self) -> usize {
        self.files_skipped
    }

    fn capture_time_us(&self) -> i64 {
        let rate = u128::from(self.rate_hz.unwrap_or(1));
        let since = (u128::from(self.frames_so_far) * 1_000_000 / rate) as i64;
        self.start_time_us + self.elapsed_us_before_rate + since
    }

    /// The next chunk, an error about one file (the stream goes on), or `None` when done.
    pub fn next_chunk(&mut self) -> Option<Result<AudioChunk, WavError>> {
        loop {
            if self.current.is_none() {
                let path = self.machine.files.get(self.next_file)?.clone();
                self.next_file += 1;
                match WavChunkReader::open(&path) {
                    Ok(reader) => {
                        let rate = reader.info().sample_rate_hz;
                        if self.rate_hz.is_some_and(|current| current != rate) {
                            // Keep capture time exact across a rate change.
                            self.elapsed_us_before_rate = self.capture_time_us() - self.start_time_us;
                            self.frames_so_far = 0;
                        }
                        self.rate_hz = Some(rate);
                        self.current = Some(reader);
                    }
                    Err(error) => {
                        self.files_skipped += 1;
                        return Some(Err(error));
                    }
                }
            }
            let capture_start_us = self.capture_time_us();
            let reader = self.current.as_mut().expect("opened above");
            let info = reader.info();
            let frames = (u64::from(info.sample_rate_hz) * u64::from(self.chunk_duration_ms) / 1000).max(1) as usize;
            match reader.next_payload(frames) {
                Ok(Some(payload)) => {
                    let frames = (payload.len() / (info.sample_format.bytes_per_sample() * usize::from(info.channels))) as u64;
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
                    self.frames_so_far += frames;
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

    fn write(path: &Path, spec: hound::WavSpec, frames: usize) {
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for index in 0..frames * usize::from(spec.channels) {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => writer.write_sample(index as f32 / 1000.0 - 0.5).unwrap(),
                (_, 8) => writer.write_sample((index % 200) as i8 - 100).unwrap(),
                (_, 16) => writer.write_sample((index as i16).wrapping_mul(97)).unwrap(),
                (_, bits) => writer.write_sample(((index as i32) * 7919) % (1 << (bits - 2))).unwrap(),
            }
        }
        writer.finalize().unwrap();
    }

    fn spec(channels: u16, bits: u16, float: bool) -> hound::WavSpec {
        let sample_format = if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int };
        hound::WavSpec { channels, sample_rate: 16_000, bits_per_sample: bits, sample_format }
    }

    #[test]
    fn every_pcm_width_round_trips_to_its_chunk_format() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, float, format) in [
            (8, false, SampleFormat::U8),
            (16, false, SampleFormat::S16le),
            (24, false, SampleFormat::S24le),
            (32, false, SampleFormat::S32le),
            (32, true, SampleFormat::F32le),
        ] {
            for channels in [1u16, 2, 8] {
                let path = dir.path().join(format!("{bits}-{float}-{channels}.wav"));
                write(&path, spec(channels, bits, float), 100);
                let mut reader = WavChunkReader::open(&path).unwrap();
                assert_eq!(reader.info().sample_format, format);
                assert_eq!(reader.info().channels, channels);
                let mut bytes = Vec::new();
                while let Some(payload) = reader.next_payload(33).unwrap() {
                    bytes.extend(payload);
                }
                assert_eq!(bytes.len(), 100 * usize::from(channels) * format.bytes_per_sample());
                // Compare with hound's own reading of the same samples.
                let mut check = hound::WavReader::open(&path).unwrap();
                if float {
                    let expected: Vec<u8> = check.samples::<f32>().flat_map(|s| s.unwrap().to_le_bytes()).collect();
                    assert_eq!(bytes, expected);
                } else {
                    let expected: Vec<i32> = check.samples::<i32>().map(|s| s.unwrap()).collect();
                    let width = format.bytes_per_sample();
                    let decoded: Vec<i32> = bytes
                        .chunks_exact(width)
                        .map(|b| match width {
                            1 => i32::from(b[0]) - 128,
                            2 => i32::from(i16::from_le_bytes([b[0], b[1]])),
                            3 => i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8,
                            _ => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                        })
                        .collect();
                    assert_eq!(decoded, expected, "{bits} bits, {channels} channels");
                }
            }
        }
    }

    #[test]
    fn the_real_eight_channel_mimii_file_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mimii/original_8ch/fan/id_00/normal/00000000.wav");
        let reader = WavChunkReader::open(&path).unwrap();
        assert_eq!(reader.info(), WavInfo { sample_rate_hz: 16_000, channels: 8, sample_format: SampleFormat::S16le, frames: 160_000 });
    }

    #[test]
    fn bad_files_name_the_path_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.wav");
        write(&good, spec(1, 16, false), 1000);
        let bytes = std::fs::read(&good).unwrap();
        let truncated = dir.path().join("truncated.wav");
        std::fs::write(&truncated, &bytes[..bytes.len() - 500]).unwrap();
        let mut reader = WavChunkReader::open(&truncated).unwrap();
        let error = loop {
            match reader.next_payload(100) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a truncated file read to the end"),
                Err(error) => break error,
            }
        };
        assert!(matches!(error, WavError::Truncated { frames_read: 700, frames_declared: 1000, .. }), "{error}");
        let text = dir.path().join("text.wav");
        std::fs::write(&text, b"hello, not audio").unwrap();
        assert!(matches!(WavChunkReader::open(&text), Err(WavError::NotWav { .. })));
        let mut adpcm = bytes[..60].to_vec();
        adpcm[20..22].copy_from_slice(&0x0011u16.to_le_bytes());
        let adpcm_path = dir.path().join("adpcm.wav");
        std::fs::write(&adpcm_path, adpcm).unwrap();
        assert!(matches!(WavChunkReader::open(&adpcm_path), Err(WavError::Unsupported { .. })));
        let empty = dir.path().join("empty.wav");
        write(&empty, spec(1, 16, false), 0);
        assert!(matches!(WavChunkReader::open(&empty), Err(WavError::Empty { .. })));
        let slow = dir.path().join("slow.wav");
        write(&slow, hound::WavSpec { sample_rate: 50, ..spec(1, 16, false) }, 10);
        let error = WavChunkReader::open(&slow).err().unwrap();
        assert!(matches!(error, WavError::AbsurdSampleRate { sample_rate_hz: 50, .. }));
        assert!(error.to_string().contains("slow.wav"));
        let missing = dir.path().join("missing.wav");
        assert!(matches!(WavChunkReader::open(&missing), Err(WavError::Unreadable { .. })));
        let nan = dir.path().join("nan.wav");
        let mut writer = hound::WavWriter::create(&nan, spec(1, 32, true)).unwrap();
        for value in [0.1f32, 0.2, f32::NAN, 0.3] {
            writer.write_sample(value).unwrap();
        }
        writer.finalize().unwrap();
        let error = WavChunkReader::open(&nan).unwrap().next_payload(10).err().unwrap();
        assert!(matches!(error, WavError::NonFinite { frame: 2, .. }));
    }

    #[test]
    fn a_machine_replays_its_files_as_one_stream_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a.wav");
        let second = dir.path().join("c.wav");
        write(&first, spec(1, 16, false), 24_000);
        write(&second, spec(1, 16, false), 16_000);
        let machine = MachineFiles {
            machine_id: MachineId::new("fan-1").unwrap(),
            machine_type: MachineType::new("fan").unwrap(),
            files: vec![first, dir.path().join("b-missing.wav"), second],
        };
        let mut reader = MachineFileReader::new(machine, 1000, 5_000_000);
        let mut chunks = Vec::new();
        let mut errors = 0;
        while let Some(item) = reader.next_chunk() {
            match item {
                Ok(chunk) => chunks.push(chunk),
                Err(_) => errors += 1,
            }
        }
        assert_eq!(errors, 1);
        assert_eq!(reader.files_skipped(), 1);
        let sizes: Vec<usize> = chunks.iter().map(AudioChunk::frames).collect();
        assert_eq!(sizes, vec![16_000, 8_000, 16_000]);
        let sequences: Vec<u64> = chunks.iter().map(|c| c.sequence).collect();
        assert_eq!(sequences, vec![0, 1, 2]);
        let starts: Vec<i64> = chunks.iter().map(|c| c.capture_start_us).collect();
        assert_eq!(starts, vec![5_000_000, 6_000_000, 6_500_000]);
        assert_eq!(reader.frames_read(), 40_000);
    }
}
