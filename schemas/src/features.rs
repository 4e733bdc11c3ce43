//! The settings that define a log-mel feature, recorded with every feature that is stored.
//!
//! Parameter names follow librosa (`n_fft`, `hop_length`, `n_mels`, `fmin`, `fmax`) so that
//! anyone can hold auscult's features against the reference. The archive writes these into each
//! Parquet file's key-value metadata under [`FeatureSettings::metadata`].

use serde::{Deserialize, Serialize};

/// Names the feature definition; bumped when the numbers a setting produces would change.
pub const FEATURE_VERSION: &str = "auscult-logmel/1";

/// How log-mel frames are computed from audio at one sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureSettings {
    pub sample_rate_hz: u32,
    /// Frame length in samples (a power of two is fastest).
    pub n_fft: usize,
    /// Samples between the starts of two frames.
    pub hop_length: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Lowest band edge, Hz.
    pub fmin_hz: f64,
    /// Highest band edge, Hz; librosa's default is half the sample rate.
    pub fmax_hz: f64,
}

impl FeatureSettings {
    /// librosa's defaults for a rate: fmin 0, fmax sr/2.
    pub fn new(sample_rate_hz: u32, n_fft: usize, hop_length: usize, n_mels: usize) -> Self {
        Self { sample_rate_hz, n_fft, hop_length, n_mels, fmin_hz: 0.0, fmax_hz: f64::from(sample_rate_hz) / 2.0 }
    }

    /// Duration of one hop, in microseconds.
    pub fn hop_us(&self) -> f64 {
        self.hop_length as f64 * 1e6 / f64::from(self.sample_rate_hz)
    }

    /// Key-value pairs for a stored file's metadata (sr, n_fft, hop, n_mels, fmin, fmax, version).
    pub fn metadata(&self) -> Vec<(String, String)> {
        vec![
            ("auscult.feature_version".to_owned(), FEATURE_VERSION.to_owned()),
            ("auscult.sample_rate_hz".to_owned(), self.sample_rate_hz.to_string()),
            ("auscult.n_fft".to_owned(), self.n_fft.to_string()),
            ("auscult.hop_length".to_owned(), self.hop_length.to_string()),
            ("auscult.n_mels".to_owned(), self.n_mels.to_string()),
            ("auscult.fmin_hz".to_owned(), self.fmin_hz.to_string()),
            ("auscult.fmax_hz".to_owned(), self.fmax_hz.to_string()),
            ("auscult.window".to_owned(), "hann-periodic".to_owned()),
            ("auscult.mel_scale".to_owned(), "slaney".to_owned()),
        ]
    }
}
