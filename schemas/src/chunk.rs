//! The audio chunk: the one unit of audio that every source produces.
//!
//! Files, the simulator and edge agents over Kafka all cut audio into [`AudioChunk`]s, so the
//! pipeline sees one shape whatever the transport. A chunk carries raw interleaved
//! little-endian PCM exactly as captured plus what is needed to check and order it: who
//! (machine id and type), which one (a per-machine sequence number), when (capture time of its
//! first sample) and how to read the bytes (sample format, rate, channels).
//!
//! The wire encoding ([`AudioChunk::encode`], [`AudioChunk::decode`]) is documented for other
//! languages in `schemas/audio-chunk.md`:
//! `b"AUSC"`, `u16` LE schema version, `u32` LE header length, a JSON header, then the PCM bytes.

use crate::machine::{MachineId, MachineIdError, MachineType};
use crate::time::TimestampUs;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The version of the chunk layout this build writes and accepts.
pub const CHUNK_SCHEMA_VERSION: u16 = 1;
/// The four bytes every encoded chunk starts with.
pub const CHUNK_MAGIC: &[u8; 4] = b"AUSC";
/// Lowest sample rate accepted, in Hz.
pub const MIN_SAMPLE_RATE_HZ: u32 = 1_000;
/// Highest sample rate accepted, in Hz.
pub const MAX_SAMPLE_RATE_HZ: u32 = 384_000;
/// Most channels accepted.
pub const MAX_CHANNELS: u16 = 64;
/// Largest JSON header accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 4 * 1024;
/// Largest PCM payload accepted, in bytes (60 s of 8-channel 32-bit audio at 48 kHz fits).
pub const MAX_PAYLOAD_BYTES: usize = 96 * 1024 * 1024;

/// How one sample is stored in the payload; all little-endian, channels interleaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleFormat {
    /// Unsigned 8-bit PCM, 128 is silence (as in WAV).
    U8,
    /// Signed 16-bit PCM.
    S16le,
    /// Signed 24-bit PCM, packed in 3 bytes.
    S24le,
    /// Signed 32-bit PCM.
    S32le,
    /// IEEE 754 32-bit float, full scale is 1.0.
    F32le,
}

impl SampleFormat {
    /// Bytes one sample of one channel takes.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            SampleFormat::U8 => 1,
            SampleFormat::S16le => 2,
            SampleFormat::S24le => 3,
            SampleFormat::S32le | SampleFormat::F32le => 4,
        }
    }
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SampleFormat::U8 => "u8",
            SampleFormat::S16le => "s16le",
            SampleFormat::S24le => "s24le",
            SampleFormat::S32le => "s32le",
            SampleFormat::F32le => "f32le",
        };
        f.write_str(name)
    }
}

/// Where a chunk came from; recorded in the archive's `source` column. Not part of the wire
/// format: the transport fills it in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChunkOrigin {
    /// A file, by path.
    File { path: String },
    /// The built-in simulator, with its seed.
    Simulator { seed: u64 },
    /// A Kafka record.
    Kafka { topic: String, partition: i32, offset: i64 },
}

impl fmt::Display for ChunkOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkOrigin::File { path } => write!(f, "file:{path}"),
            ChunkOrigin::Simulator { seed } => write!(f, "simulator:seed={seed}"),
            ChunkOrigin::Kafka { topic, partition, offset } => write!(f, "kafka:{topic}/{partition}@{offset}"),
        }
    }
}

/// One piece of one machine's audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioChunk {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    /// Per machine, from 0, one more for every chunk; a repeat is a replay, a jump is a gap.
    pub sequence: u64,
    /// Capture time of the first sample.
    pub capture_start_us: TimestampUs,
    pub sample_rate_hz: u32,
    pub channels: u16,
    pub sample_format: SampleFormat,
    /// Interleaved little-endian PCM, `frames * channels * bytes_per_sample` bytes.
    pub payload: Vec<u8>,
    /// Where it came from (not sent on the wire).
    pub origin: ChunkOrigin,
}

/// The JSON header of an encoded chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireHeader {
    machine_id: String,
    machine_type: String,
    sequence: u64,
    capture_start_us: i64,
    sample_rate_hz: u32,
    channels: u16,
    sample_format: SampleFormat,
}

/// Why a chunk was refused. The pipeline names the input (file, partition and offset) around it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChunkError {
    #[error("not an auscult chunk: it does not start with \"AUSC\"")]
    BadMagic,
    #[error("chunk schema version {found} is not supported (this build reads {CHUNK_SCHEMA_VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error("chunk is truncated: {needed} bytes needed, {available} present")]
    Truncated { needed: usize, available: usize },
    #[error("chunk header is {bytes} bytes, more than the {MAX_HEADER_BYTES} allowed")]
    HeaderTooLarge { bytes: usize },
    #[error("chunk header is not valid JSON for schema version {CHUNK_SCHEMA_VERSION}: {reason}")]
    BadHeader { reason: String },
    #[error("chunk names an invalid machine: {0}")]
    BadMachine(#[from] MachineIdError),
    #[error("sample rate {0} Hz is outside {MIN_SAMPLE_RATE_HZ}..={MAX_SAMPLE_RATE_HZ} Hz")]
    AbsurdSampleRate(u32),
    #[error("channel count {0} is outside 1..={MAX_CHANNELS}")]
    AbsurdChannels(u16),
    #[error("payload is {bytes} bytes, more than the {MAX_PAYLOAD_BYTES} allowed")]
    PayloadTooLarge { bytes: usize },
    #[error("payload of {bytes} bytes is not a whole number of {frame_bytes}-byte frames")]
    RaggedPayload { bytes: usize, frame_bytes: usize },
    #[error("payload is empty")]
    EmptyPayload,
    #[error("sample {index} is not a finite number (float samples must be finite)")]
    NonFiniteSample { index: usize },
}

impl ChunkError {
    /// A short, fixed name of the reason, for counting refusals by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadMagic => "bad_magic",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::Truncated { .. } => "truncated",
            Self::HeaderTooLarge { .. } => "header_too_large",
            Self::BadHeader { .. } => "bad_header",
            Self::BadMachine(_) => "bad_machine",
            Self::AbsurdSampleRate(_) => "absurd_sample_rate",
            Self::AbsurdChannels(_) => "absurd_channels",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RaggedPayload { .. } => "ragged_payload",
            Self::EmptyPayload => "empty_payload",
            Self::NonFiniteSample { .. } => "non_finite_sample",
        }
    }
}

impl AudioChunk {
    /// Bytes of one frame (one sample of every channel).
    pub fn frame_bytes(&self) -> usize {
        self.sample_format.bytes_per_sample() * usize::from(self.channels)
    }

    /// Frames (sample instants) in the payload.
    pub fn frames(&self) -> usize {
        self.payload.len() / self.frame_bytes().max(1)
    }

    /// Checks everything that can be checked without decoding samples: rate, channels, sizes.
    pub fn validate(&self) -> Result<(), ChunkError> {
        if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&self.sample_rate_hz) {
            return Err(ChunkError::AbsurdSampleRate(self.sample_rate_hz));
        }
        if self.channels == 0 || self.channels > MAX_CHANNELS {
            return Err(ChunkError::AbsurdChannels(self.channels));
        }
        if self.payload.is_empty() {
            return Err(ChunkError::EmptyPayload);
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(ChunkError::PayloadTooLarge { bytes: self.payload.len() });
        }
        if !self.payload.len().is_multiple_of(self.frame_bytes()) {
            return Err(ChunkError::RaggedPayload { bytes: self.payload.len(), frame_bytes: self.frame_bytes() });
        }
        Ok(())
    }

    /// The wire encoding: magic, version, header length, JSON header, PCM payload.
    pub fn encode(&self) -> Vec<u8> {
        let header = WireHeader {
            machine_id: self.machine_id.to_string(),
            machine_type: self.machine_type.to_string(),
            sequence: self.sequence,
            capture_start_us: self.capture_start_us,
            sample_rate_hz: self.sample_rate_hz,
            channels: self.channels,
            sample_format: self.sample_format,
        };
        let header = serde_json::to_vec(&header).expect("a struct of plain fields always serializes");
        let header_len = u32::try_from(header.len()).expect("the header of valid names is a few hundred bytes");
        let mut bytes = Vec::with_capacity(10 + header.len() + self.payload.len());
        bytes.extend_from_slice(CHUNK_MAGIC);
        bytes.extend_from_slice(&CHUNK_SCHEMA_VERSION.to_le_bytes());
        bytes.extend_from_slice(&header_len.to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&self.payload);
        bytes
    }

    /// Decodes and validates the wire encoding; `origin` says where the bytes came from.
    pub fn decode(bytes: &[u8], origin: ChunkOrigin) -> Result<AudioChunk, ChunkError> {
        const PREAMBLE: usize = 10;
        if bytes.len() < PREAMBLE {
            if !bytes.is_empty() && !CHUNK_MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
                return Err(ChunkError::BadMagic);
            }
            return Err(ChunkError::Truncated { needed: PREAMBLE, available: bytes.len() });
        }
        if &bytes[..4] != CHUNK_MAGIC {
            return Err(ChunkError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != CHUNK_SCHEMA_VERSION {
            return Err(ChunkError::UnsupportedVersion { found: version });
        }
        let header_len = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
        if header_len > MAX_HEADER_BYTES {
            return Err(ChunkError::HeaderTooLarge { bytes: header_len });
        }
        let header_end = PREAMBLE + header_len;
        if bytes.len() < header_end {
            return Err(ChunkError::Truncated { needed: header_end, available: bytes.len() });
        }
        let header: WireHeader = serde_json::from_slice(&bytes[PREAMBLE..header_end])
            .map_err(|error| ChunkError::BadHeader { reason: error.to_string() })?;
        let chunk = AudioChunk {
            machine_id: MachineId::new(header.machine_id)?,
            machine_type: MachineType::new(header.machine_type)?,
            sequence: header.sequence,
            capture_start_us: header.capture_start_us,
            sample_rate_hz: header.sample_rate_hz,
            channels: header.channels,
            sample_format: header.sample_format,
            payload: bytes[header_end..].to_vec(),
            origin,
        };
        chunk.validate()?;
        chunk.check_finite()?;
        Ok(chunk)
    }

    /// Float samples must be finite: a NaN or an infinity is refused where the chunk enters.
    fn check_finite(&self) -> Result<(), ChunkError> {
        if self.sample_format != SampleFormat::F32le {
            return Ok(());
        }
        let bad = self
            .payload
            .chunks_exact(4)
            .position(|bytes| !f32::from_le_bytes(bytes.try_into().expect("chunks of 4 bytes")).is_finite());
        bad.map_or(Ok(()), |index| Err(ChunkError::NonFiniteSample { index }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunk(payload: Vec<u8>) -> AudioChunk {
        AudioChunk {
            machine_id: MachineId::new("fan-07").unwrap(),
            machine_type: MachineType::new("fan").unwrap(),
            sequence: 42,
            capture_start_us: 1_795_000_000_000_000,
            sample_rate_hz: 16_000,
            channels: 1,
            sample_format: SampleFormat::S16le,
            payload,
            origin: ChunkOrigin::Simulator { seed: 1 },
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(samples in proptest::collection::vec(any::<i16>(), 1..2000), sequence in any::<u64>()) {
            let mut original = chunk(samples.iter().flat_map(|s| s.to_le_bytes()).collect());
            original.sequence = sequence;
            let decoded = AudioChunk::decode(&original.encode(), original.origin.clone()).unwrap();
            prop_assert_eq!(decoded, original);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = AudioChunk::decode(&bytes, ChunkOrigin::Simulator { seed: 0 });
        }
    }

    #[test]
    fn each_kind_of_damage_has_its_own_reason() {
        let good = chunk(vec![0; 64]).encode();
        let origin = || ChunkOrigin::Simulator { seed: 0 };
        assert_eq!(AudioChunk::decode(b"RIFF....WAVE", origin()), Err(ChunkError::BadMagic));
        let mut float = chunk(Vec::new());
        float.sample_format = SampleFormat::F32le;
        float.payload = [0.5f32, -0.25, f32::NAN, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(AudioChunk::decode(&float.encode(), origin()), Err(ChunkError::NonFiniteSample { index: 2 }));
        float.payload = [0.5f32, f32::INFINITY].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(AudioChunk::decode(&float.encode(), origin()), Err(ChunkError::NonFiniteSample { index: 1 }));
        float.payload = [0.5f32, -1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(AudioChunk::decode(&float.encode(), origin()).is_ok());
        let mut old = good.clone();
        old[4] = 9;
        assert_eq!(AudioChunk::decode(&old, origin()), Err(ChunkError::UnsupportedVersion { found: 9 }));
        assert!(matches!(AudioChunk::decode(&good[..20], origin()), Err(ChunkError::Truncated { .. })));
        assert!(matches!(AudioChunk::decode(&good[..good.len() - 1], origin()), Err(ChunkError::RaggedPayload { .. })));
        let mut bad_rate = chunk(vec![0; 64]);
        bad_rate.sample_rate_hz = 7;
        assert_eq!(AudioChunk::decode(&bad_rate.encode(), origin()), Err(ChunkError::AbsurdSampleRate(7)));
        let mut bad_header = good.clone();
        bad_header[12] = b'!';
        assert!(matches!(AudioChunk::decode(&bad_header, origin()), Err(ChunkError::BadHeader { .. })));
    }
}
