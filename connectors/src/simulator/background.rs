//! Factory background: what a microphone beside a machine also hears.
//!
//! Pink-ish noise (rolled off at the top) whose level wanders over seconds, mains hum at 50 Hz and its
//! harmonics, a low rumble of distant machinery, and now and then a distant impact (a dropped
//! part, a press), each ringing low and short. Like the voices, it is built from a `params`
//! stream (the place) and a `start` stream (where the recording begins), and is of the order
//! of 1 before calibration sets its gain from the requested SNR.

use super::dsp::{Biquad, Oscillator, PinkNoise, Resonator, Wander};
use super::random::Rng;
use super::voice::{NoiseBank, MAINS_HZ};
use std::f64::consts::TAU;

/// Standard deviation of the background's level wander, dB.
const LEVEL_WANDER_DB: f64 = 0.7;
/// Correlation time of the background's level wander, s (short against a minute of learning).
const LEVEL_WANDER_S: f64 = 5.0;
/// Mains harmonics in the hum.
const HUM_HARMONICS: usize = 3;

pub(crate) struct Background {
    pink: PinkNoise,
    roll_off: Biquad,
    rumble: NoiseBank,
    rumble_level: f64,
    hum: Vec<(Oscillator, f64)>,
    level: Wander,
    level_gain: f64,
    impact: Resonator,
    impact_level: f64,
    impact_mean_gap: f64,
    samples_to_impact: u64,
}

impl Background {
    pub(crate) fn new(params: &mut Rng, start: &mut Rng, rate_hz: f64, block_s: f64) -> Self {
        let hum = (1..=HUM_HARMONICS)
            .map(|k| {
                let mut oscillator = Oscillator::new(start.range(0.0, TAU));
                oscillator.set_frequency(MAINS_HZ * k as f64, rate_hz);
                (oscillator, params.range(0.02, 0.1) / k as f64)
            })
            .collect();
        let impact_mean_gap = rate_hz / params.range(0.05, 0.3);
        Self {
            pink: PinkNoise::default(),
            roll_off: Biquad::low_pass(params.range(4_000.0, 7_000.0), 0.707, rate_hz),
            rumble: NoiseBank::new(vec![(Biquad::low_pass(params.range(80.0, 160.0), 0.707, rate_hz), 1.0)]),
            rumble_level: params.range(0.2, 0.5),
            hum,
            level: Wander::new(LEVEL_WANDER_DB, LEVEL_WANDER_S, block_s, start),
            level_gain: 1.0,
            impact: Resonator::new(params.log_range(150.0, 600.0), params.range(0.05, 0.15), rate_hz, 0.0),
            impact_level: params.range(0.5, 1.5),
            impact_mean_gap,
            samples_to_impact: start.exponential(impact_mean_gap) as u64,
        }
    }

    /// A recorded take's factory is busier or quieter than the place's usual: distant impacts
    /// come `factor` times as often.
    pub(crate) fn busier(&mut self, factor: f64, start: &mut Rng) {
        self.impact_mean_gap /= factor.max(1e-3);
        self.samples_to_impact = start.exponential(self.impact_mean_gap) as u64;
    }

    /// Once per block: step the level wander (held at the nominal level unless `wander`).
    pub(crate) fn block(&mut self, wander: bool, rng: &mut Rng) {
        let level_gain = self.level.step_gain(rng);
        self.level_gain = if wander { level_gain } else { 1.0 };
    }

    #[inline]
    pub(crate) fn sample(&mut self, rng: &mut Rng) -> f64 {
        if self.samples_to_impact == 0 {
            self.impact.strike(self.impact_level * rng.range(0.2, 1.0));
            self.samples_to_impact = rng.exponential(self.impact_mean_gap) as u64;
        } else {
            self.samples_to_impact -= 1;
        }
        let white = rng.white();
        let noise =
            self.roll_off.process(self.pink.process(white)) + self.rumble_level * self.rumble.process(rng.white());
        let hum: f64 = self.hum.iter_mut().map(|(oscillator, level)| *level * oscillator.next()).sum();
        self.level_gain * noise + hum + self.impact.next()
    }
}
