//! The Slaney mel filterbank, bit for bit the construction of `librosa.filters.mel` with its
//! defaults (`htk=False`, `norm="slaney"`), stored sparsely: each band keeps only the FFT bins
//! where its triangle is non-zero, so applying it costs about two multiply-adds per bin.

use auscult_schemas::FeatureSettings;

/// Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa `hz_to_mel(htk=False)`).
pub fn hz_to_mel(freq_hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if freq_hz >= MIN_LOG_HZ {
        min_log_mel + (freq_hz / MIN_LOG_HZ).ln() / log_step
    } else {
        freq_hz / F_SP
    }
}

/// The inverse of [`hz_to_mel`] (librosa `mel_to_hz(htk=False)`).
pub fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (log_step * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// Lanes of the filterbank's multiply-add: every band's weights are padded with zeros to a
/// multiple of this, so the inner loop has no scalar tail (the power spectrum is padded too).
pub const FILTER_LANES: usize = 8;

/// One band: the first FFT bin it touches and its weights from there on, zero-padded.
#[derive(Debug, Clone)]
struct Band {
    first_bin: usize,
    weights: Vec<f32>,
}

/// A mel filterbank for one sample rate and FFT size.
#[derive(Debug, Clone)]
pub struct MelFilterbank {
    bands: Vec<Band>,
    /// Band edges in Hz: band `i` spans `edges_hz[i]..edges_hz[i + 2]`, peaking at `edges_hz[i + 1]`.
    edges_hz: Vec<f64>,
    n_bins: usize,
}

impl MelFilterbank {
    /// Builds the filterbank librosa builds for these settings.
    pub fn new(settings: &FeatureSettings) -> Self {
        let n_bins = settings.n_fft / 2 + 1;
        let n_mels = settings.n_mels;
        let min_mel = hz_to_mel(settings.fmin_hz);
        let max_mel = hz_to_mel(settings.fmax_hz);
        let edges_hz: Vec<f64> = (0..n_mels + 2)
            .map(|i| {
                let fraction = if n_mels + 1 == 0 { 0.0 } else { i as f64 / (n_mels + 1) as f64 };
                mel_to_hz(min_mel + (max_mel - min_mel) * fraction)
            })
            .collect();
        let nyquist_hz = f64::from(settings.sample_rate_hz) / 2.0;
        let bin_hz: Vec<f64> = (0..n_bins).map(|k| nyquist_hz * k as f64 / (n_bins - 1).max(1) as f64).collect();
        let bands = (0..n_mels)
            .map(|band| {
                let lower_width = edges_hz[band + 1] - edges_hz[band];
                let upper_width = edges_hz[band + 2] - edges_hz[band + 1];
                let area_norm = 2.0 / (edges_hz[band + 2] - edges_hz[band]);
                let dense: Vec<f32> = bin_hz
                    .iter()
                    .map(|&freq| {
                        let rising = (freq - edges_hz[band]) / lower_width;
                        let falling = (edges_hz[band + 2] - freq) / upper_width;
                        let triangle = rising.min(falling).max(0.0) as f32;
                        triangle * area_norm as f32
                    })
                    .collect();
                let first_bin = dense.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last_bin = dense.iter().rposition(|&w| w > 0.0).unwrap_or(0);
                let mut weights =
                    if dense[first_bin] > 0.0 { dense[first_bin..=last_bin].to_vec() } else { Vec::new() };
                weights.resize(weights.len().div_ceil(FILTER_LANES) * FILTER_LANES, 0.0);
                Band { first_bin, weights }
            })
            .collect();
        Self { bands, edges_hz, n_bins }
    }

    /// Heap bytes of the weights.
    pub fn heap_bytes(&self) -> usize {
        self.bands.iter().map(|band| band.weights.capacity() * 4 + std::mem::size_of::<Band>()).sum::<usize>()
            + self.edges_hz.capacity() * 8
    }

    /// Number of bands.
    pub fn n_mels(&self) -> usize {
        self.bands.len()
    }

    /// Number of FFT bins (`n_fft / 2 + 1`).
    pub fn n_bins(&self) -> usize {
        self.n_bins
    }

    /// Length the power spectrum passed to [`apply`](Self::apply) must have: the bins, then
    /// zeros that the padded weights of the top bands may read.
    pub fn padded_bins(&self) -> usize {
        self.n_bins + FILTER_LANES
    }

    /// The lower and upper edge of a band, Hz (where its triangle starts and ends).
    pub fn band_range_hz(&self, band: usize) -> (f64, f64) {
        (self.edges_hz[band], self.edges_hz[band + 2])
    }

    /// Mel band energies of one power spectrum of [`padded_bins`](Self::padded_bins) values
    /// (the padding zero); `mel_out.len()` is the band count.
    #[inline(always)]
    pub fn apply(&self, power: &[f32], mel_out: &mut [f32]) {
        for (band, out) in self.bands.iter().zip(mel_out.iter_mut()) {
            let bins = &power[band.first_bin..band.first_bin + band.weights.len()];
            let mut lanes = [0.0f32; FILTER_LANES];
            for (value_block, weight_block) in
                bins.chunks_exact(FILTER_LANES).zip(band.weights.chunks_exact(FILTER_LANES))
            {
                for lane in 0..FILTER_LANES {
                    lanes[lane] += value_block[lane] * weight_block[lane];
                }
            }
            *out = lanes.iter().sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scale_round_trips_and_matches_librosa_points() {
        for freq in [0.0, 440.0, 999.0, 1000.0, 4000.0, 8000.0, 22050.0] {
            assert!((mel_to_hz(hz_to_mel(freq)) - freq).abs() < 1e-6);
        }
        // librosa.hz_to_mel(1000) == 15, librosa.hz_to_mel(8000) == 45.245640471924965
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(8000.0) - 45.245_640_471_924_965).abs() < 1e-9);
    }

    #[test]
    fn every_band_has_weight_and_bands_rise_in_frequency() {
        let bank = MelFilterbank::new(&FeatureSettings::new(16_000, 1024, 512, 128));
        assert_eq!(bank.n_mels(), 128);
        let mut previous_low = -1.0;
        for band in 0..bank.n_mels() {
            let (low, high) = bank.band_range_hz(band);
            assert!(low > previous_low && high > low);
            previous_low = low;
        }
        // A flat spectrum of ones gives each band the sum of its weights, which is positive.
        let mut ones = vec![1.0f32; bank.n_bins()];
        ones.resize(bank.padded_bins(), 0.0);
        let mut mel = vec![0.0f32; 128];
        bank.apply(&ones, &mut mel);
        assert!(mel.iter().skip(8).all(|&energy| energy > 0.0));
    }
}
