//! WAV files to audio chunks (hound).
//!
//! [`WavChunkReader`] reads one file as raw little-endian PCM in the chunk's sample format:
//! 8-bit unsigned, 16/24/32-bit signed, 32-bit IEEE float; 1 to [`MAX_WAV_CHANNELS`] channels,
//! interleaved as in the file; `WAVE_FORMAT_EXTENSIBLE` included (24 valid bits in a 32-bit
//! container come out as packed 24-bit). [`MachineFileReader`] replays one machine's files as
//! one stream of [`AudioChunk`](auscult_schemas::AudioChunk)s with running sequence numbers and
//! capture times.
//!
//! Every problem is a [`WavError`] whose message is one line naming the file and the reason. A
//! bad file never panics and never ends more than itself: audio read before a fault (a
//! truncated data chunk, a NaN sample) is returned first and stays valid, then the error.

mod machine;

pub use machine::{MachineFileReader, MachineFiles};

use auscult_schemas::chunk::{MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ};
use auscult_schemas::SampleFormat;
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

/// Most channels a WAV file may have (MIMII recordings have 8).
pub const MAX_WAV_CHANNELS: u16 = 8;
/// Bytes of `RIFF`, the RIFF length and `WAVE`: a shorter file cannot be a WAV file.
const RIFF_PREAMBLE_BYTES: u64 = 12;
/// Most payload bytes reserved ahead of reading; a lying header must not allocate gigabytes.
const MAX_RESERVE_BYTES: usize = 4 * 1024 * 1024;
/// Header bytes scanned for the format tag when hound refuses a format.
const MAX_HEADER_SCAN_BYTES: u64 = 64 * 1024;
/// The offset of 8-bit WAV samples: they are unsigned, 128 is silence.
const U8_SILENCE: i32 = 128;

/// Why a WAV file (or part of it) could not be used. Each message is one line, path first.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{path}: cannot read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: not a WAV file ({reason})")]
    NotWav { path: PathBuf, reason: String },
    #[error("{path}: unsupported WAV encoding ({reason}); PCM 8/16/24/32-bit and 32-bit IEEE float are read")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: malformed WAV header ({reason})")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: empty: the data chunk holds no audio frames")]
    Empty { path: PathBuf },
    #[error("{path}: truncated: {frames_read} of {frames_declared} frames could be read ({reason})")]
    Truncated { path: PathBuf, frames_read: u64, frames_declared: u64, reason: String },
    #[error("{path}: sample rate {sample_rate_hz} Hz is outside {MIN_SAMPLE_RATE_HZ}..={MAX_SAMPLE_RATE_HZ} Hz")]
    AbsurdSampleRate { path: PathBuf, sample_rate_hz: u32 },
    #[error("{path}: {channels} channels; at most {MAX_WAV_CHANNELS} are read")]
    TooManyChannels { path: PathBuf, channels: u16 },
    #[error("{path}: the sample at frame {frame} is not a finite number (NaN or infinite)")]
    NonFinite { path: PathBuf, frame: u64 },
}

impl WavError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            WavError::Unreadable { path, .. }
            | WavError::NotWav { path, .. }
            | WavError::Unsupported { path, .. }
            | WavError::Malformed { path, .. }
            | WavError::Empty { path }
            | WavError::Truncated { path, .. }
            | WavError::AbsurdSampleRate { path, .. }
            | WavError::TooManyChannels { path, .. }
            | WavError::NonFinite { path, .. } => path,
        }
    }
}

/// Whether hound failed because the file ended: it reports that as `Other` with this message.
fn ends_early(error: &std::io::Error) -> bool {
    /// hound's message for a read that found too few bytes (`read_into`, hound 3.5).
    const HOUND_SHORT_READ: &str = "Failed to read enough bytes.";
    error.kind() == ErrorKind::UnexpectedEof || error.to_string() == HOUND_SHORT_READ
}

/// Format tags hound reads: PCM, IEEE float and WAVE_FORMAT_EXTENSIBLE.
const READABLE_FORMAT_TAGS: [u16; 3] = [0x0001, 0x0003, 0xfffe];

/// Names of common format tags we do not read, for the error message.
fn format_tag_name(tag: u16) -> &'static str {
    match tag {
        0x0002 => "Microsoft ADPCM",
        0x0006 => "A-law",
        0x0007 => "µ-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 | 0x0055 => "MPEG audio",
        _ => "not PCM or IEEE float",
    }
}

/// Maps hound's refusal of a header to our one-line reasons.
fn describe_header_error(path: &Path, file_bytes: u64, error: hound::Error) -> WavError {
    let path_buf = path.to_owned();
    // hound checks the sizes in the fmt chunk before the tag, so a compressed format (4-bit
    // ADPCM, say) can fail a size check first: whenever the tag is foreign, name it.
    let not_riff = |reason: &str| reason.starts_with("no RIFF") || reason.starts_with("no WAVE");
    let header_refused = matches!(error, hound::Error::Unsupported)
        || matches!(error, hound::Error::FormatError(reason) if !not_riff(reason));
    if let Some(tag) =
        header_refused.then(|| format_tag(path)).flatten().filter(|tag| !READABLE_FORMAT_TAGS.contains(tag))
    {
        let reason = format!("format tag {tag:#06x}, {}", format_tag_name(tag));
        return WavError::Unsupported { path: path_buf, reason };
    }
    match error {
        hound::Error::IoError(io) if ends_early(&io) => {
            if file_bytes < RIFF_PREAMBLE_BYTES {
                WavError::NotWav { path: path_buf, reason: format!("only {file_bytes} bytes") }
            } else {
                WavError::Malformed { path: path_buf, reason: "the file ends before the data chunk".to_owned() }
            }
        }
        hound::Error::IoError(io) => WavError::Unreadable { path: path_buf, reason: io.to_string() },
        hound::Error::FormatError(reason @ ("no RIFF tag found" | "no WAVE tag found")) => {
            WavError::NotWav { path: path_buf, reason: reason.to_owned() }
        }
        hound::Error::FormatError("bits per sample is not 32") => {
            WavError::Unsupported { path: path_buf, reason: "IEEE float that is not 32-bit, e.g. 64-bit".to_owned() }
        }
        hound::Error::FormatError(
            reason @ ("bits per sample is not 8 or 16" | "bits per sample is not a multiple of 8"),
        ) => WavError::Unsupported { path: path_buf, reason: reason.to_owned() },
        hound::Error::Unsupported => WavError::Unsupported {
            path: path_buf,
            reason: "an extensible sub-format other than PCM or IEEE float".to_owned(),
        },
        hound::Error::FormatError(reason) => WavError::Malformed { path: path_buf, reason: reason.to_owned() },
        other => WavError::Malformed { path: path_buf, reason: other.to_string() },
    }
}

/// The format tag of the `fmt ` chunk, read by hand to name a format hound refuses.
fn format_tag(path: &Path) -> Option<u16> {
    let mut bytes = Vec::new();
    File::open(path).ok()?.take(MAX_HEADER_SCAN_BYTES).read_to_end(&mut bytes).ok()?;
    let mut offset = RIFF_PREAMBLE_BYTES as usize;
    while offset + 8 <= bytes.len() {
        let id = &bytes[offset..offset + 4];
        let length = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().ok()?) as usize;
        if id == b"fmt " {
            let tag = bytes.get(offset + 8..offset + 10)?;
            return Some(u16::from_le_bytes([tag[0], tag[1]]));
        }
        // Chunks are padded to an even length.
        offset = offset.checked_add(8 + length + length % 2)?;
    }
    None
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

/// One WAV file, read as raw PCM payloads in the chunk format.
pub struct WavChunkReader {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    /// The same file positioned at its audio data, when the stored samples are exactly the
    /// chunk's little-endian layout (every PCM width here and float 32 without padding): then a
    /// payload is a plain read of bytes, not a per-sample decode and re-encode.
    raw: Option<BufReader<File>>,
    info: WavInfo,
    frames_read: u64,
    /// An error met after the frames last returned; it is returned by the next call.
    pending_error: Option<WavError>,
    /// Set once an error was returned: the file yields nothing more.
    failed: bool,
}

/// The file again, positioned at its audio data, if its samples are stored exactly as the
/// chunk format lays them out (the container of a sample, `block_align / channels`, is as wide
/// as the sample). The header was already checked by hound; this only walks the RIFF chunks.
fn raw_data_reader(path: &Path, format: SampleFormat, channels: u16) -> Option<BufReader<File>> {
    let mut reader = BufReader::with_capacity(RAW_READ_BUFFER_BYTES, File::open(path).ok()?);
    hound::read_wave_header(&mut reader).ok()?;
    let mut block_align = None;
    loop {
        let mut header = [0u8; 8];
        reader.read_exact(&mut header).ok()?;
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        match &header[..4] {
            b"data" => break,
            b"fmt " => {
                // Only its first 16 bytes matter here; the length is the file's word, so the
                // rest is skipped, never allocated (a lying length asked for 4 GiB: found by
                // fuzz/run.sh).
                let mut fmt = [0u8; 16];
                reader.read_exact(&mut fmt).ok()?;
                block_align = Some(u16::from_le_bytes([fmt[12], fmt[13]]));
                let rest = (length + length % 2).checked_sub(fmt.len())?;
                std::io::copy(&mut (&mut reader).take(rest as u64), &mut std::io::sink()).ok()?;
            }
            _ => {
                std::io::copy(&mut (&mut reader).take((length + length % 2) as u64), &mut std::io::sink()).ok()?;
            }
        }
    }
    let container = usize::from(block_align?) / usize::from(channels.max(1));
    (container == format.bytes_per_sample()).then_some(reader)
}

/// Read buffer of the raw data path.
const RAW_READ_BUFFER_BYTES: usize = 1 << 16;

impl WavChunkReader {
    /// Opens the file and checks its header: a WAV, a format we read, 1 to 8 channels, a sane
    /// rate, at least one frame.
    pub fn open(path: &Path) -> Result<Self, WavError> {
        let unreadable = |reason: String| WavError::Unreadable { path: path.to_owned(), reason };
        let file = File::open(path).map_err(|error| unreadable(error.to_string()))?;
        let metadata = file.metadata().map_err(|error| unreadable(error.to_string()))?;
        if metadata.is_dir() {
            return Err(unreadable("it is a folder".to_owned()));
        }
        let reader = hound::WavReader::new(BufReader::new(file))
            .map_err(|error| describe_header_error(path, metadata.len(), error))?;
        let spec = reader.spec();
        let sample_format = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 8) => SampleFormat::U8,
            (hound::SampleFormat::Int, 16) => SampleFormat::S16le,
            (hound::SampleFormat::Int, 24) => SampleFormat::S24le,
            (hound::SampleFormat::Int, 32) => SampleFormat::S32le,
            (hound::SampleFormat::Float, 32) => SampleFormat::F32le,
            (hound::SampleFormat::Int, bits) => {
                let reason = format!("{bits}-bit integer samples");
                return Err(WavError::Unsupported { path: path.to_owned(), reason });
            }
            (hound::SampleFormat::Float, bits) => {
                let reason = format!("{bits}-bit float samples");
                return Err(WavError::Unsupported { path: path.to_owned(), reason });
            }
        };
        if spec.channels > MAX_WAV_CHANNELS {
            return Err(WavError::TooManyChannels { path: path.to_owned(), channels: spec.channels });
        }
        if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&spec.sample_rate) {
            return Err(WavError::AbsurdSampleRate { path: path.to_owned(), sample_rate_hz: spec.sample_rate });
        }
        let frames = u64::from(reader.duration());
        if frames == 0 {
            return Err(WavError::Empty { path: path.to_owned() });
        }
        let info = WavInfo { sample_rate_hz: spec.sample_rate, channels: spec.channels, sample_format, frames };
        let raw = raw_data_reader(path, sample_format, spec.channels);
        Ok(Self { path: path.to_owned(), reader, raw, info, frames_read: 0, pending_error: None, failed: false })
    }

    /// Rate, channels, format and declared length.
    pub fn info(&self) -> WavInfo {
        self.info
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames returned so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// The next at most `max_frames` frames (at least one) as interleaved little-endian PCM;
    /// `Ok(None)` at the end. When the file turns out truncated or holds a non-finite float,
    /// the whole frames before the fault are returned first, the error on the next call, and
    /// `Ok(None)` after that.
    pub fn next_payload(&mut self, max_frames: usize) -> Result<Option<Vec<u8>>, WavError> {
        if let Some(error) = self.pending_error.take() {
            self.failed = true;
            return Err(error);
        }
        let left = self.info.frames.saturating_sub(self.frames_read);
        let frames = (max_frames.max(1) as u64).min(left) as usize;
        if self.failed || frames == 0 {
            return Ok(None);
        }
        let channels = usize::from(self.info.channels);
        let samples_wanted = frames * channels;
        let width = self.info.sample_format.bytes_per_sample();
        let mut payload = Vec::with_capacity((samples_wanted * width).min(MAX_RESERVE_BYTES));
        let mut samples_read = 0usize;
        let mut stop = None;
        if let Some(raw) = self.raw.as_mut() {
            // Grow as bytes arrive: a header may promise far more than the file holds.
            let wanted_bytes = samples_wanted * width;
            let mut filled = 0;
            while filled < wanted_bytes {
                if filled == payload.len() {
                    payload.resize(filled + (wanted_bytes - filled).min(MAX_RESERVE_BYTES), 0);
                }
                match raw.read(&mut payload[filled..]) {
                    Ok(0) => {
                        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "failed to fill whole buffer");
                        stop = Some(Stop::Read(hound::Error::IoError(eof)));
                        break;
                    }
                    Ok(read) => filled += read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        stop = Some(Stop::Read(hound::Error::IoError(error)));
                        break;
                    }
                }
            }
            samples_read = filled / width;
            if self.info.sample_format == SampleFormat::F32le {
                let first_bad = payload[..samples_read * width]
                    .chunks_exact(width)
                    .position(|bytes| !f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]).is_finite());
                if let Some(index) = first_bad {
                    samples_read = index;
                    stop = Some(Stop::NonFinite);
                }
            }
        } else {
            match self.info.sample_format {
                SampleFormat::F32le => {
                    for sample in self.reader.samples::<f32>().take(samples_wanted) {
                        match sample {
                            Ok(value) if value.is_finite() => payload.extend_from_slice(&value.to_le_bytes()),
                            Ok(_) => stop = Some(Stop::NonFinite),
                            Err(error) => stop = Some(Stop::Read(error)),
                        }
                        if stop.is_some() {
                            break;
                        }
                        samples_read += 1;
                    }
                }
                format => {
                    for sample in self.reader.samples::<i32>().take(samples_wanted) {
                        match sample {
                            Ok(value) => push_int(&mut payload, format, value),
                            Err(error) => {
                                stop = Some(Stop::Read(error));
                                break;
                            }
                        }
                        samples_read += 1;
                    }
                }
            }
        }
        let whole_frames = samples_read / channels;
        payload.truncate(whole_frames * channels * width);
        let error = stop.map(|stop| self.describe_stop(stop, whole_frames as u64));
        self.frames_read += whole_frames as u64;
        match error {
            None => Ok(Some(payload)),
            Some(error) if whole_frames > 0 => {
                self.pending_error = Some(error);
                Ok(Some(payload))
            }
            Some(error) => {
                self.failed = true;
                Err(error)
            }
        }
    }

    /// The error for a read that stopped after `whole_frames` more frames of this call.
    fn describe_stop(&self, stop: Stop, whole_frames: u64) -> WavError {
        let frame = self.frames_read + whole_frames;
        match stop {
            Stop::NonFinite => WavError::NonFinite { path: self.path.clone(), frame },
            Stop::Read(error) => {
                let reason = match error {
                    hound::Error::IoError(io) if ends_early(&io) => "the data chunk ends early".to_owned(),
                    other => other.to_string(),
                };
                WavError::Truncated {
                    path: self.path.clone(),
                    frames_read: frame,
                    frames_declared: self.info.frames,
                    reason,
                }
            }
        }
    }
}

/// Why a read stopped before the frames asked for.
enum Stop {
    /// A float sample was NaN or infinite (in the frame after the whole frames read).
    NonFinite,
    /// hound could not read on: the file ends early or cannot be read.
    Read(hound::Error),
}

/// Appends one integer sample (as hound yields it) in the chunk's byte layout.
#[inline]
fn push_int(payload: &mut Vec<u8>, format: SampleFormat, value: i32) {
    match format {
        // hound yields 8-bit WAV samples as `u8 - 128`; the chunk keeps WAV's unsigned bytes.
        SampleFormat::U8 => payload.push((value + U8_SILENCE).clamp(0, i32::from(u8::MAX)) as u8),
        SampleFormat::S16le => payload.extend_from_slice(&(value as i16).to_le_bytes()),
        SampleFormat::S24le => payload.extend_from_slice(&value.to_le_bytes()[..3]),
        SampleFormat::S32le | SampleFormat::F32le => payload.extend_from_slice(&value.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests;
