//! Digital signal processing: from PCM samples to log-mel frames, as librosa computes them.
//!
//! Pure functions and small structs, no I/O and no timely: the stream, `auscult features`,
//! `auscult eval` and the tests all call exactly this code. [`LogMelExtractor`] is streaming:
//! feed it samples in chunks of any size and it yields the same frames as one call on the whole
//! signal would.

pub mod decode;
pub mod fastlog;
pub mod logmel;
pub mod mel;

pub use decode::{decode_to_mono, ChannelSelection, DecodeError};
pub use logmel::{ExtractorState, FeatureError, LogMelExtractor};
pub use mel::MelFilterbank;

/// Floor of the power spectrum before the logarithm (librosa's `amin`).
pub const POWER_FLOOR: f32 = 1e-10;
