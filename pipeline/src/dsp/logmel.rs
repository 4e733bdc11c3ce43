//! The streaming log-mel extractor.
//!
//! Frames of `n_fft` samples every `hop_length` samples, periodic Hann window, power spectrum,
//! Slaney mel filterbank, `10 * log10(max(S, 1e-10))`: what
//! `librosa.power_to_db(librosa.feature.melspectrogram(..., center=False), ref=1.0, amin=1e-10, top_db=None)`
//! computes. A stream of `n` samples has `floor((n - n_fft) / hop) + 1` frames whatever the
//! chunk boundaries, because the extractor keeps the samples a frame still needs between calls.
//! Nothing is allocated per frame.

use super::fastlog::power_to_db_in_place;
use super::mel::MelFilterbank;
use super::POWER_FLOOR;
use auscult_schemas::chunk::{MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ};
use auscult_schemas::FeatureSettings;
use num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Largest FFT size accepted.
pub const MAX_N_FFT: usize = 1 << 16;
/// Most mel bands accepted.
pub const MAX_N_MELS: usize = 512;

/// Why feature settings were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    #[error("n_fft {0} must be an even number in 16..={MAX_N_FFT}")]
    BadFftSize(usize),
    #[error("hop_length {0} must be at least 1")]
    BadHop(usize),
    #[error("n_mels {0} is outside 1..={MAX_N_MELS}")]
    BadMelCount(usize),
    #[error("sample rate {0} Hz is outside {MIN_SAMPLE_RATE_HZ}..={MAX_SAMPLE_RATE_HZ} Hz")]
    BadSampleRate(u32),
    #[error("fmin {fmin_hz} Hz and fmax {fmax_hz} Hz must satisfy 0 <= fmin < fmax <= {nyquist_hz} Hz")]
    BadFrequencyRange { fmin_hz: f64, fmax_hz: f64, nyquist_hz: f64 },
}

/// Checks settings once, so the per-frame code needs no checks.
pub fn validate_settings(settings: &FeatureSettings) -> Result<(), FeatureError> {
    if !(16..=MAX_N_FFT).contains(&settings.n_fft) || !settings.n_fft.is_multiple_of(2) {
        return Err(FeatureError::BadFftSize(settings.n_fft));
    }
    if settings.hop_length == 0 {
        return Err(FeatureError::BadHop(settings.hop_length));
    }
    if !(1..=MAX_N_MELS).contains(&settings.n_mels) {
        return Err(FeatureError::BadMelCount(settings.n_mels));
    }
    if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&settings.sample_rate_hz) {
        return Err(FeatureError::BadSampleRate(settings.sample_rate_hz));
    }
    let nyquist_hz = f64::from(settings.sample_rate_hz) / 2.0;
    if !(settings.fmin_hz >= 0.0 && settings.fmin_hz < settings.fmax_hz && settings.fmax_hz <= nyquist_hz) {
        return Err(FeatureError::BadFrequencyRange {
            fmin_hz: settings.fmin_hz,
            fmax_hz: settings.fmax_hz,
            nyquist_hz,
        });
    }
    Ok(())
}

/// The periodic Hann window of scipy's `get_window("hann", n, fftbins=True)`.
pub fn periodic_hann(length: usize) -> Vec<f32> {
    (0..length).map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / length as f64).cos()) as f32).collect()
}

/// The per-frame work: window, FFT, power, mel, dB. Owns every buffer, so a frame allocates nothing.
///
/// The real FFT of `n_fft` samples is a complex FFT of `n_fft / 2` (even samples as real parts,
/// odd as imaginary), then one pass that splits the even and odd spectra and combines them with
/// twiddles, fused with the power computation, so the spectrum itself is never stored.
struct FrameKernel {
    filterbank: MelFilterbank,
    window: Vec<f32>,
    fft: Arc<dyn Fft<f32>>,
    /// The windowed frame, read as `n_fft / 2` complex values.
    packed: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    /// `e^{-2 pi i k / n_fft} / 2` for `k` in `0..n_fft / 2`.
    half_twiddles: Vec<Complex<f32>>,
    /// Power spectrum, `n_fft / 2 + 1` bins then zero padding for the filterbank.
    power: Vec<f32>,
    mel_db: Vec<f32>,
    /// Whether this CPU has AVX2 and FMA (checked once; the same code is compiled for both).
    wide_vectors: bool,
    /// The double-precision FFT for frames whose dynamic range is beyond single precision.
    precise: Option<PreciseSpectrum>,
}

/// Beyond this spread between a frame's loudest and quietest band, single-precision FFT
/// rounding (about 1e-7 of the frame's energy) shows in the quiet bands: such a frame's
/// spectrum is computed again in double precision, as librosa computes it. Real recordings
/// have a noise floor well inside this range and never pay for it; pure synthetic tones do.
pub const SINGLE_PRECISION_RANGE_DB: f32 = 80.0;

/// The spectrum of a frame in double precision (the slow, exact path).
struct PreciseSpectrum {
    fft: Arc<dyn Fft<f64>>,
    packed: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    /// `e^{-2 pi i k / n_fft}` for `k` in `0..n_fft / 2`.
    twiddles: Vec<Complex<f64>>,
}

impl PreciseSpectrum {
    fn new(n_fft: usize) -> Self {
        let fft = FftPlanner::<f64>::new().plan_fft_forward(n_fft / 2);
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        let twiddles = (0..n_fft / 2)
            .map(|k| Complex::from_polar(1.0, -2.0 * std::f64::consts::PI * k as f64 / n_fft as f64))
            .collect();
        Self { packed: vec![Complex::default(); n_fft / 2], scratch, fft, twiddles }
    }

    /// Writes `|X[k]|^2` (rounded to single precision, as librosa stores it) into `power`.
    fn power(&mut self, head: &[f32], tail: &[f32], window: &[f32], power: &mut [f32]) {
        let n_fft = window.len();
        let half = n_fft / 2;
        let sample =
            |n: usize| f64::from(if n < head.len() { head[n] } else { tail[n - head.len()] }) * f64::from(window[n]);
        for (index, slot) in self.packed.iter_mut().enumerate() {
            *slot = Complex::new(sample(2 * index), sample(2 * index + 1));
        }
        self.fft.process_with_scratch(&mut self.packed, &mut self.scratch);
        let dc = self.packed[0];
        power[0] = ((dc.re + dc.im) * (dc.re + dc.im)) as f32;
        power[half] = ((dc.re - dc.im) * (dc.re - dc.im)) as f32;
        for (k, power) in power.iter_mut().enumerate().take(half).skip(1) {
            let z = self.packed[k];
            let mirror = self.packed[half - k].conj();
            let twiddle = self.twiddles[k];
            let even = (z + mirror) * 0.5;
            let odd = (z - mirror) * Complex::new(0.0, -0.5);
            *power = (even + twiddle * odd).norm_sqr() as f32;
        }
    }
}

impl FrameKernel {
    fn new(settings: &FeatureSettings) -> Self {
        let half = settings.n_fft / 2;
        let fft = FftPlanner::<f32>::new().plan_fft_forward(half);
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        let half_twiddles = (0..half)
            .map(|k| {
                let angle = -2.0 * std::f64::consts::PI * k as f64 / settings.n_fft as f64;
                Complex::new((angle.cos() / 2.0) as f32, (angle.sin() / 2.0) as f32)
            })
            .collect();
        let filterbank = MelFilterbank::new(settings);
        Self {
            window: periodic_hann(settings.n_fft),
            packed: vec![Complex::default(); half],
            power: vec![0.0; filterbank.padded_bins()],
            mel_db: vec![0.0; settings.n_mels],
            filterbank,
            half_twiddles,
            scratch,
            fft,
            wide_vectors: has_wide_vectors(),
            precise: None,
        }
    }

    /// One frame whose `n_fft` samples are `head` followed by `tail`; returns its dB values.
    #[inline]
    fn frame(&mut self, head: &[f32], tail: &[f32]) -> &[f32] {
        #[cfg(target_arch = "x86_64")]
        if self.wide_vectors {
            // SAFETY: `wide_vectors` is true only when the CPU reported AVX2 and FMA at run time.
            unsafe { self.frame_avx2(head, tail) };
            return &self.mel_db;
        }
        self.frame_portable(head, tail);
        &self.mel_db
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn frame_avx2(&mut self, head: &[f32], tail: &[f32]) {
        self.frame_portable(head, tail);
    }

    #[inline(always)]
    fn frame_portable(&mut self, head: &[f32], tail: &[f32]) {
        let windowed: &mut [f32] = bytemuck::cast_slice_mut(&mut self.packed);
        let (head_slots, tail_slots) = windowed.split_at_mut(head.len());
        let (head_window, tail_window) = self.window.split_at(head.len());
        for ((slot, sample), weight) in head_slots.iter_mut().zip(head).zip(head_window) {
            *slot = sample * weight;
        }
        for ((slot, sample), weight) in tail_slots.iter_mut().zip(tail).zip(tail_window) {
            *slot = sample * weight;
        }
        self.fft.process_with_scratch(&mut self.packed, &mut self.scratch);
        self.power_from_packed();
        self.filterbank.apply(&self.power, &mut self.mel_db);
        power_to_db_in_place(&mut self.mel_db, POWER_FLOOR);
        let (quietest, loudest) =
            self.mel_db.iter().fold((f32::MAX, f32::MIN), |(low, high), &db| (low.min(db), high.max(db)));
        if loudest - quietest > SINGLE_PRECISION_RANGE_DB {
            let precise = self.precise.get_or_insert_with(|| PreciseSpectrum::new(self.window.len()));
            precise.power(head, tail, &self.window, &mut self.power);
            self.filterbank.apply(&self.power, &mut self.mel_db);
            power_to_db_in_place(&mut self.mel_db, POWER_FLOOR);
        }
    }

    /// `|X[k]|^2` of the real signal's spectrum from the packed half-length spectrum `Z`:
    /// `X[k] = (Z[k] + conj Z[M-k]) / 2 + W^k (Z[k] - conj Z[M-k]) / 2i`, with `M = n_fft / 2`.
    #[inline(always)]
    fn power_from_packed(&mut self) {
        let half = self.packed.len();
        let dc = self.packed[0];
        self.power[0] = (dc.re + dc.im) * (dc.re + dc.im);
        self.power[half] = (dc.re - dc.im) * (dc.re - dc.im);
        let forward = &self.packed[1..];
        let mirrored = self.packed[1..].iter().rev();
        for (((power, z), mirror), twiddle) in
            self.power[1..half].iter_mut().zip(forward).zip(mirrored).zip(&self.half_twiddles[1..])
        {
            let sum_re = z.re + mirror.re;
            let diff_im = z.im - mirror.im;
            let sum_im = z.im + mirror.im;
            let diff_re = mirror.re - z.re;
            let re = 0.5 * sum_re + twiddle.re * sum_im - twiddle.im * diff_re;
            let im = 0.5 * diff_im + twiddle.re * diff_re + twiddle.im * sum_im;
            *power = re * re + im * im;
        }
    }
}

fn has_wide_vectors() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The part of a [`LogMelExtractor`] that depends on the audio so far: the samples of frames
/// not yet complete. Everything else follows from its settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExtractorState {
    pending: Vec<f32>,
    skip: usize,
    frames_emitted: u64,
}

/// Streaming log-mel frames for one signal at one sample rate.
pub struct LogMelExtractor {
    settings: FeatureSettings,
    kernel: FrameKernel,
    /// Samples a future frame still needs; `pending[0]` is the next frame's first sample.
    pending: Vec<f32>,
    /// Samples to drop before the next frame starts (when `hop_length > n_fft`).
    skip: usize,
    frames_emitted: u64,
}

impl LogMelExtractor {
    /// An extractor for these settings.
    pub fn new(settings: FeatureSettings) -> Result<Self, FeatureError> {
        validate_settings(&settings)?;
        Ok(Self {
            kernel: FrameKernel::new(&settings),
            pending: Vec::with_capacity(settings.n_fft * 2),
            skip: 0,
            settings,
            frames_emitted: 0,
        })
    }

    /// The settings this extractor computes.
    pub fn settings(&self) -> &FeatureSettings {
        &self.settings
    }

    /// The filterbank (for band edges in Hz).
    pub fn filterbank(&self) -> &MelFilterbank {
        &self.kernel.filterbank
    }

    /// Frames emitted since creation or the last [`reset`](Self::reset).
    pub fn frames_emitted(&self) -> u64 {
        self.frames_emitted
    }

    /// Heap bytes held (buffers, window, filterbank, FFT twiddles; the FFT plan's own tables aside).
    pub fn heap_bytes(&self) -> usize {
        let kernel = &self.kernel;
        kernel.window.capacity() * 4
            + kernel.packed.capacity() * 8
            + kernel.scratch.capacity() * 8
            + kernel.half_twiddles.capacity() * 8
            + kernel.power.capacity() * 4
            + kernel.mel_db.capacity() * 4
            + kernel.filterbank.heap_bytes()
            + kernel.precise.as_ref().map_or(0, |p| (p.packed.capacity() + p.scratch.capacity()) * 16)
            + self.pending.capacity() * 4
    }

    /// Forgets buffered samples, so the next frame starts at the next sample pushed (after a gap).
    /// What this extractor remembers between calls to `push`, for a checkpoint.
    pub fn state(&self) -> ExtractorState {
        ExtractorState { pending: self.pending.clone(), skip: self.skip, frames_emitted: self.frames_emitted }
    }

    /// Continues from a checkpointed state (of an extractor with the same settings).
    pub fn restore(&mut self, state: ExtractorState) {
        self.pending = state.pending;
        self.skip = state.skip;
        self.frames_emitted = state.frames_emitted;
    }

    pub fn reset(&mut self) {
        self.pending.clear();
        self.skip = 0;
        self.frames_emitted = 0;
    }

    /// Feeds samples; calls `on_frame` with each completed frame's `n_mels` dB values, in order.
    pub fn push(&mut self, mut samples: &[f32], mut on_frame: impl FnMut(&[f32])) {
        let dropped = self.skip.min(samples.len());
        samples = &samples[dropped..];
        self.skip -= dropped;
        let n_fft = self.settings.n_fft;
        let hop = self.settings.hop_length;
        // Frames that lie wholly inside `samples` are read in place; only the tail is kept.
        let mut start = 0usize;
        if !self.pending.is_empty() {
            // Frames that start in `pending` and end in `samples`.
            let mut offset = 0usize;
            while offset < self.pending.len() {
                let head = &self.pending[offset..];
                let Some(tail) = samples.get(..n_fft.saturating_sub(head.len())) else {
                    break;
                };
                let head = &head[..head.len().min(n_fft)];
                on_frame(self.kernel.frame(head, tail));
                self.frames_emitted += 1;
                offset += hop;
            }
            if offset < self.pending.len() {
                // Not enough audio yet for the frame at `offset`: keep it and everything after.
                self.pending.drain(..offset);
                self.pending.extend_from_slice(samples);
                return;
            }
            start = offset - self.pending.len();
            self.pending.clear();
        }
        while start + n_fft <= samples.len() {
            on_frame(self.kernel.frame(&samples[start..start + n_fft], &[]));
            self.frames_emitted += 1;
            start += hop;
        }
        if start < samples.len() {
            self.pending.extend_from_slice(&samples[start..]);
        } else {
            self.skip = start - samples.len();
        }
    }

    /// All frames of a whole signal, row-major `frames x n_mels` (convenience for files and tests).
    pub fn extract_all(&mut self, samples: &[f32]) -> Vec<f32> {
        let mut matrix = Vec::new();
        self.push(samples, |frame| matrix.extend_from_slice(frame));
        matrix
    }
}

/// Number of frames librosa (`center=False`) makes of `n_samples` samples.
pub fn frame_count(n_samples: usize, n_fft: usize, hop_length: usize) -> usize {
    if n_samples < n_fft {
        0
    } else {
        (n_samples - n_fft) / hop_length + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings() -> FeatureSettings {
        FeatureSettings::new(16_000, 1024, 512, 128)
    }

    fn test_signal(length: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..length)
            .map(|n| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                0.3 * (n as f32 * 0.07).sin() + 0.1 * noise
            })
            .collect()
    }

    #[test]
    fn frame_count_matches_librosa_center_false() {
        let mut extractor = LogMelExtractor::new(settings()).unwrap();
        for length in [0, 1023, 1024, 1535, 1536, 16_000] {
            extractor.reset();
            let frames = extractor.extract_all(&test_signal(length)).len() / 128;
            assert_eq!(frames, frame_count(length, 1024, 512), "length {length}");
        }
    }

    #[test]
    fn a_tone_peaks_in_the_band_that_holds_its_frequency() {
        let tone: Vec<f32> =
            (0..16_000).map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16_000.0).sin()).collect();
        let mut extractor = LogMelExtractor::new(settings()).unwrap();
        let matrix = extractor.extract_all(&tone);
        let first_frame = &matrix[..128];
        let loudest = (0..128).max_by(|&a, &b| first_frame[a].total_cmp(&first_frame[b])).unwrap();
        let (low, high) = extractor.filterbank().band_range_hz(loudest);
        assert!(low < 1000.0 && 1000.0 < high, "band {loudest} spans {low}..{high} Hz");
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut bad = settings();
        bad.n_fft = 8;
        assert!(matches!(LogMelExtractor::new(bad), Err(FeatureError::BadFftSize(8))));
        let mut bad = settings();
        bad.fmax_hz = 9_000.0;
        assert!(matches!(LogMelExtractor::new(bad), Err(FeatureError::BadFrequencyRange { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn frames_do_not_depend_on_chunk_boundaries(
            cuts in proptest::collection::vec(1usize..=160_000, 1..12),
            hop in prop_oneof![Just(512usize), Just(256), Just(1500)],
        ) {
            let signal = test_signal(40_000);
            let mut config = settings();
            config.hop_length = hop;
            let whole = LogMelExtractor::new(config).unwrap().extract_all(&signal);
            let mut chunked = Vec::new();
            let mut extractor = LogMelExtractor::new(config).unwrap();
            let mut position = 0;
            for cut in cuts.iter().cycle() {
                if position >= signal.len() {
                    break;
                }
                let end = (position + cut).min(signal.len());
                extractor.push(&signal[position..end], |frame| chunked.extend_from_slice(frame));
                position = end;
            }
            prop_assert_eq!(chunked, whole);
        }

        #[test]
        fn tiny_chunks_give_the_same_frames(chunk in 1usize..700) {
            let signal = test_signal(6_000);
            let whole = LogMelExtractor::new(settings()).unwrap().extract_all(&signal);
            let mut extractor = LogMelExtractor::new(settings()).unwrap();
            let mut chunked = Vec::new();
            for piece in signal.chunks(chunk) {
                extractor.push(piece, |frame| chunked.extend_from_slice(frame));
            }
            prop_assert_eq!(chunked, whole);
        }
    }
}
