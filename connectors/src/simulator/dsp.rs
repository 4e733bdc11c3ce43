//! The simulator's signal-processing parts: biquad filters (RBJ cookbook), band filters,
//! recursive oscillators, struck resonators, pink noise and slow random wander.
//!
//! All are a few multiply-adds per sample, so a machine renders hundreds of times faster than
//! real time. Frequencies are in Hz and are kept below [`MAX_FREQ_RATIO`] of the sample rate,
//! so no part can alias or go unstable whatever the rate.

use super::random::Rng;
use std::f64::consts::TAU;

/// Highest frequency, as a share of the sample rate, any part is tuned to (just under Nyquist).
pub(crate) const MAX_FREQ_RATIO: f64 = 0.45;
/// Lowest frequency any filter is tuned to, Hz.
const MIN_FREQ_HZ: f64 = 1.0;
/// Samples of impulse response summed to measure a filter's noise power gain.
const IMPULSE_SAMPLES: usize = 1 << 14;

/// Clamps a frequency to what a filter at `rate_hz` can take.
pub(crate) fn playable_hz(freq_hz: f64, rate_hz: f64) -> f64 {
    freq_hz.clamp(MIN_FREQ_HZ, MAX_FREQ_RATIO * rate_hz)
}

/// A second-order IIR filter (transposed direct form II).
#[derive(Debug, Clone)]
pub(crate) struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    z1: f64,
    z2: f64,
}

impl Biquad {
    fn from_rbj(b: [f64; 3], a: [f64; 3]) -> Self {
        Self { b0: b[0] / a[0], b1: b[1] / a[0], b2: b[2] / a[0], a1: a[1] / a[0], a2: a[2] / a[0], z1: 0.0, z2: 0.0 }
    }

    fn omega(freq_hz: f64, rate_hz: f64, q: f64) -> (f64, f64) {
        let omega = TAU * playable_hz(freq_hz, rate_hz) / rate_hz;
        (omega.cos(), omega.sin() / (2.0 * q.max(0.05)))
    }

    /// Low-pass at `cutoff_hz` with quality `q` (0.707 is Butterworth).
    pub(crate) fn low_pass(cutoff_hz: f64, q: f64, rate_hz: f64) -> Self {
        let (cos, alpha) = Self::omega(cutoff_hz, rate_hz, q);
        Self::from_rbj([(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    /// High-pass at `cutoff_hz` with quality `q`.
    pub(crate) fn high_pass(cutoff_hz: f64, q: f64, rate_hz: f64) -> Self {
        let (cos, alpha) = Self::omega(cutoff_hz, rate_hz, q);
        Self::from_rbj([(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    /// Band-pass around `centre_hz`, unit gain at the centre, bandwidth `centre_hz / q`.
    pub(crate) fn band_pass(centre_hz: f64, q: f64, rate_hz: f64) -> Self {
        let (cos, alpha) = Self::omega(centre_hz, rate_hz, q);
        Self::from_rbj([alpha, 0.0, -alpha], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    /// A peaking equaliser: `gain_db` at `centre_hz`, bandwidth about `centre_hz / q`, unity far
    /// from it.
    pub(crate) fn peaking(centre_hz: f64, q: f64, gain_db: f64, rate_hz: f64) -> Self {
        let (cos, alpha) = Self::omega(centre_hz, rate_hz, q);
        let a = 10f64.powf(gain_db / 40.0);
        Self::from_rbj([1.0 + alpha * a, -2.0 * cos, 1.0 - alpha * a], [1.0 + alpha / a, -2.0 * cos, 1.0 - alpha / a])
    }

    #[inline]
    pub(crate) fn process(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.z1;
        self.z1 = self.b1 * x - self.a1 * y + self.z2;
        self.z2 = self.b2 * x - self.a2 * y;
        y
    }

    /// Output power for unit-power white input: the energy of the impulse response.
    pub(crate) fn noise_power_gain(&self) -> f64 {
        let mut filter = Self { z1: 0.0, z2: 0.0, ..self.clone() };
        (0..IMPULSE_SAMPLES).map(|n| filter.process(if n == 0 { 1.0 } else { 0.0 }).powi(2)).sum()
    }
}

/// A band-pass of cascaded identical 2nd-order band-passes passing `low_hz..high_hz` (-3 dB at
/// the edges): two stages make band-limited noise, four measure power in a band.
#[derive(Debug, Clone)]
pub(crate) struct BandFilter {
    stages: Vec<Biquad>,
}

/// Stages of a band filter that shapes sound (4th order).
const SOUND_STAGES: u32 = 2;
/// Stages of a band filter that measures (8th order: over 30 dB down an octave past the edges).
const MEASURE_STAGES: u32 = 4;

impl BandFilter {
    /// A 4th-order band filter, for sound.
    pub(crate) fn new(low_hz: f64, high_hz: f64, rate_hz: f64) -> Self {
        Self::with_stages(low_hz, high_hz, rate_hz, SOUND_STAGES)
    }

    /// An 8th-order band filter, for measuring power in a band.
    pub(crate) fn sharp(low_hz: f64, high_hz: f64, rate_hz: f64) -> Self {
        Self::with_stages(low_hz, high_hz, rate_hz, MEASURE_STAGES)
    }

    fn with_stages(low_hz: f64, high_hz: f64, rate_hz: f64, stages: u32) -> Self {
        let low = playable_hz(low_hz.min(high_hz), rate_hz);
        let high = playable_hz(high_hz.max(low_hz), rate_hz).max(low * 1.01);
        let centre = (low * high).sqrt();
        // n identical stages narrow the -3 dB bandwidth by √(2^(1/n) - 1): widen each to match.
        let shrink = (2f64.powf(1.0 / f64::from(stages)) - 1.0).sqrt();
        let stage = Biquad::band_pass(centre, shrink * centre / (high - low), rate_hz);
        Self { stages: vec![stage; stages as usize] }
    }

    #[inline]
    pub(crate) fn process(&mut self, x: f64) -> f64 {
        self.stages.iter_mut().fold(x, |signal, stage| stage.process(signal))
    }

    /// Mean power of `signal` in the band.
    pub(crate) fn power_of(mut self, signal: &[f32]) -> f64 {
        let sum: f64 = signal.iter().map(|&x| self.process(f64::from(x)).powi(2)).sum();
        sum / signal.len().max(1) as f64
    }
}

/// A sine oscillator by complex rotation: two multiply-adds per sample; its frequency may change
/// at any sample without a phase jump.
#[derive(Debug, Clone)]
pub(crate) struct Oscillator {
    re: f64,
    im: f64,
    step_re: f64,
    step_im: f64,
}

impl Oscillator {
    pub(crate) fn new(phase: f64) -> Self {
        Self { re: phase.cos(), im: phase.sin(), step_re: 1.0, step_im: 0.0 }
    }

    /// Retunes; also renormalises, so rounding never lets the amplitude drift.
    pub(crate) fn set_frequency(&mut self, freq_hz: f64, rate_hz: f64) {
        let (step_im, step_re) = (TAU * freq_hz / rate_hz).sin_cos();
        self.step_re = step_re;
        self.step_im = step_im;
        let norm = (self.re * self.re + self.im * self.im).sqrt().max(f64::MIN_POSITIVE);
        self.re /= norm;
        self.im /= norm;
    }

    #[inline]
    pub(crate) fn next(&mut self) -> f64 {
        let value = self.im;
        let re = self.re * self.step_re - self.im * self.step_im;
        self.im = self.re * self.step_im + self.im * self.step_re;
        self.re = re;
        value
    }
}

/// A struck resonance: a decaying sine (a mode of a valve body, a rail, a housing).
#[derive(Debug, Clone)]
pub(crate) struct Resonator {
    oscillator: Oscillator,
    amplitude: f64,
    decay: f64,
}

/// Amplitude under which a resonator is silent and costs nothing.
const RESONATOR_FLOOR: f64 = 1e-6;

impl Resonator {
    /// A mode at `freq_hz` whose amplitude falls by 60 dB in `ring_s`.
    pub(crate) fn new(freq_hz: f64, ring_s: f64, rate_hz: f64, phase: f64) -> Self {
        let mut oscillator = Oscillator::new(phase);
        oscillator.set_frequency(playable_hz(freq_hz, rate_hz), rate_hz);
        let decay = (1e-3f64).powf(1.0 / (ring_s.max(1e-4) * rate_hz));
        Self { oscillator, amplitude: 0.0, decay }
    }

    /// Adds a strike of `amplitude` to whatever is still ringing.
    pub(crate) fn strike(&mut self, amplitude: f64) {
        self.amplitude += amplitude;
    }

    #[inline]
    pub(crate) fn next(&mut self) -> f64 {
        if self.amplitude < RESONATOR_FLOOR {
            return 0.0;
        }
        let value = self.amplitude * self.oscillator.next();
        self.amplitude *= self.decay;
        value
    }
}

/// Pink (1/f) noise from white: Paul Kellet's three-pole approximation, about ±0.5 dB.
#[derive(Debug, Clone, Default)]
pub(crate) struct PinkNoise {
    poles: [f64; 3],
}

impl PinkNoise {
    /// Brings the output for unit-variance white input to the order of 1.
    const GAIN: f64 = 0.25;

    #[inline]
    pub(crate) fn process(&mut self, white: f64) -> f64 {
        self.poles[0] = 0.99765 * self.poles[0] + white * 0.099_046_0;
        self.poles[1] = 0.96300 * self.poles[1] + white * 0.296_516_4;
        self.poles[2] = 0.57000 * self.poles[2] + white * 1.052_691_3;
        (self.poles.iter().sum::<f64>() + white * 0.1848) * Self::GAIN
    }
}

/// A slow random wander (Ornstein–Uhlenbeck): mean 0, stationary standard deviation `std`,
/// correlation time `time_constant_s`; stepped once per block. Starts at a random point of its
/// stationary distribution, so every take begins somewhere else.
#[derive(Debug, Clone)]
pub(crate) struct Wander {
    value: f64,
    keep: f64,
    innovation: f64,
    /// See [`log_normal_compensation`]: used when the value is read as dB.
    power_compensation: f64,
}

impl Wander {
    pub(crate) fn new(std: f64, time_constant_s: f64, step_s: f64, rng: &mut Rng) -> Self {
        let keep = (-step_s / time_constant_s.max(step_s)).exp();
        let power_compensation = log_normal_compensation(std);
        Self { value: std * rng.normal(), keep, innovation: std * (1.0 - keep * keep).sqrt(), power_compensation }
    }

    /// Takes one step, reads the value as dB and returns it as an amplitude factor whose
    /// power is 1 on average (the log-normal bias removed), so a wander never shifts a mean level.
    #[inline]
    pub(crate) fn step_gain(&mut self, rng: &mut Rng) -> f64 {
        db_to_gain(self.step(rng)) * self.power_compensation
    }

    /// Takes one step and returns the new value.
    #[inline]
    pub(crate) fn step(&mut self, rng: &mut Rng) -> f64 {
        self.value = self.keep * self.value + self.innovation * rng.normal();
        self.value
    }
}

/// The factor that brings the mean power of `db_to_gain(x)`, x normal in dB with `std_db`, to 1:
/// exp(-(std·ln 10 / 20)²).
pub(crate) fn log_normal_compensation(std_db: f64) -> f64 {
    (-(std_db * std::f64::consts::LN_10 / 20.0).powi(2)).exp()
}

/// A random amplitude factor, normal in dB with `std_db`, whose power is 1 on average.
pub(crate) fn log_normal_gain(std_db: f64, rng: &mut Rng) -> f64 {
    db_to_gain(std_db * rng.normal()) * log_normal_compensation(std_db)
}

/// Decibels to an amplitude factor.
#[inline]
pub(crate) fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 16_000.0;

    fn sine_gain(mut filter: BandFilter, freq_hz: f64) -> f64 {
        let mut oscillator = Oscillator::new(0.0);
        oscillator.set_frequency(freq_hz, RATE);
        let samples: Vec<f64> = (0..32_000).map(|_| filter.process(oscillator.next())).collect();
        (samples[16_000..].iter().map(|x| x * x).sum::<f64>() / 16_000.0 * 2.0).sqrt()
    }

    #[test]
    fn band_filters_pass_their_band_and_stop_an_octave_beyond_its_edges() {
        let filter = BandFilter::new(1_000.0, 1_400.0, RATE);
        assert!((sine_gain(filter.clone(), 1_183.0) - 1.0).abs() < 0.02);
        let edge = sine_gain(filter.clone(), 1_000.0);
        assert!((0.6..0.8).contains(&edge), "-3 dB at the band edge, got {edge}");
        assert!(sine_gain(filter.clone(), 500.0) < 0.1);
        assert!(sine_gain(filter, 2_800.0) < 0.1);
        let sharp = BandFilter::sharp(1_000.0, 1_400.0, RATE);
        assert!((sine_gain(sharp.clone(), 1_183.0) - 1.0).abs() < 0.02);
        let edge = sine_gain(sharp.clone(), 1_400.0);
        assert!((0.6..0.8).contains(&edge), "-3 dB at the sharp filter's edge, got {edge}");
        assert!(sine_gain(sharp.clone(), 500.0) < 0.03 && sine_gain(sharp, 2_800.0) < 0.03);
    }

    #[test]
    fn a_peaking_filter_has_its_gain_at_the_centre_and_none_far_away() {
        let gain_at = |freq_hz: f64| {
            let mut filter = Biquad::peaking(1_000.0, 1.4, 6.0, RATE);
            let mut oscillator = Oscillator::new(0.0);
            oscillator.set_frequency(freq_hz, RATE);
            let samples: Vec<f64> = (0..32_000).map(|_| filter.process(oscillator.next())).collect();
            10.0 * (samples[16_000..].iter().map(|x| x * x).sum::<f64>() / 16_000.0 * 2.0).log10()
        };
        assert!((gain_at(1_000.0) - 6.0).abs() < 0.1, "{}", gain_at(1_000.0));
        assert!(gain_at(100.0).abs() < 0.3 && gain_at(7_000.0).abs() < 0.3);
    }

    #[test]
    fn noise_power_gain_matches_filtered_white_noise() {
        let filter = Biquad::band_pass(2_500.0, 2.0, RATE);
        let mut rng = Rng::new(1);
        let mut measuring = filter.clone();
        let measured = (0..400_000).map(|_| measuring.process(rng.white()).powi(2)).sum::<f64>() / 400_000.0;
        let predicted = filter.noise_power_gain();
        assert!((measured / predicted - 1.0).abs() < 0.05, "{measured} vs {predicted}");
    }

    #[test]
    fn a_resonator_rings_down_by_60_db_in_its_ring_time() {
        let mut mode = Resonator::new(1_000.0, 0.1, RATE, 0.0);
        mode.strike(1.0);
        let samples: Vec<f64> = (0..3_200).map(|_| mode.next().abs()).collect();
        let early = samples[..160].iter().cloned().fold(0.0, f64::max);
        let at_ring_time = samples[1_600..1_760].iter().cloned().fold(0.0, f64::max);
        assert!((at_ring_time / early - 1e-3).abs() < 3e-4, "{at_ring_time} / {early}");
    }

    #[test]
    fn a_wander_has_its_stationary_spread() {
        let mut rng = Rng::new(3);
        let mut wander = Wander::new(2.0, 0.5, 0.004, &mut rng);
        let values: Vec<f64> = (0..400_000).map(|_| wander.step(&mut rng)).collect();
        let variance = values.iter().map(|v| v * v).sum::<f64>() / values.len() as f64;
        assert!((variance.sqrt() - 2.0).abs() < 0.15, "{}", variance.sqrt());
        let mut gains = Wander::new(3.0, 0.05, 0.004, &mut rng);
        let mean_power = (0..400_000).map(|_| gains.step_gain(&mut rng).powi(2)).sum::<f64>() / 400_000.0;
        assert!((mean_power - 1.0).abs() < 0.02, "a wander in dB must not change the mean power: {mean_power}");
        let mean_power = (0..400_000).map(|_| log_normal_gain(3.0, &mut rng).powi(2)).sum::<f64>() / 400_000.0;
        assert!((mean_power - 1.0).abs() < 0.02, "nor must a random level: {mean_power}");
    }
}
