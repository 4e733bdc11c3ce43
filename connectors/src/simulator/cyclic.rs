//! Machines that work in cycles: a slide rail's strokes and a valve's openings.
//!
//! Both run a small state machine per sample, so events fall on exact samples whatever the block
//! or render-call boundaries. Each cycle varies a little (timing and strength jitter, now and
//! then a bounce or a longer opening), so normal audio is a distribution, not a loop.
//!
//! - slider: a stroke accelerates, runs and brakes (motor whine rising with speed, rail friction
//!   noise), ends on the stop with a ringing impact, pauses, and returns;
//! - valve: opens with a click (ringing body modes and a sharp transient), hisses with flow and
//!   hums at twice the mains frequency while open, closes with a stronger click.

use super::dsp::{db_to_gain, Biquad, Resonator};
use super::random::Rng;
use super::voice::{BlockContext, HarmonicSeries, NoiseBank, MAINS_HZ};
use std::f64::consts::TAU;

/// Share of a stroke spent accelerating (and braking).
const RAMP_SHARE: f64 = 0.2;
/// Relative jitter of stroke and pause lengths.
const TIMING_JITTER: f64 = 0.04;
/// Impacts vary by this many dB around their level.
const STRENGTH_JITTER_DB: f64 = 1.5;

/// Draws `nominal` varied by ± `jitter` (relative), as a whole number of samples (at least 1).
fn jittered_samples(nominal_s: f64, jitter: f64, rate_hz: f64, rng: &mut Rng) -> u64 {
    ((nominal_s * rng.range(1.0 - jitter, 1.0 + jitter) * rate_hz) as u64).max(1)
}

/// Struck body modes: a few resonances at their own levels.
struct Modes {
    modes: Vec<(Resonator, f64)>,
}

impl Modes {
    fn new(count: u64, low_hz: f64, high_hz: f64, ring_s: (f64, f64), rate_hz: f64, params: &mut Rng) -> Self {
        let modes = (0..count)
            .map(|_| {
                let mode =
                    Resonator::new(params.log_range(low_hz, high_hz), params.range(ring_s.0, ring_s.1), rate_hz, 0.0);
                (mode, params.range(0.3, 1.0))
            })
            .collect();
        Self { modes }
    }

    fn strike(&mut self, strength: f64, rng: &mut Rng) {
        let strength = strength * db_to_gain(rng.range(-STRENGTH_JITTER_DB, STRENGTH_JITTER_DB));
        for (mode, level) in &mut self.modes {
            mode.strike(strength * *level);
        }
    }

    #[inline]
    fn next(&mut self) -> f64 {
        self.modes.iter_mut().map(|(mode, _)| mode.next()).sum()
    }
}

/// Where a slider is in its cycle.
enum Stroke {
    Moving { elapsed: u64, length: u64 },
    Paused { left: u64 },
}

/// A slide rail moving back and forth.
pub(crate) struct Slider {
    rate_hz: f64,
    stroke_s: f64,
    pause_s: f64,
    motor_hz: f64,
    stroke: Stroke,
    forward: bool,
    /// Speed, 0 to 1, of the current sample.
    speed: f64,
    /// The return stroke's motor runs at a slightly different pitch.
    return_pitch: f64,
    motor: HarmonicSeries,
    motor_level: f64,
    rail: NoiseBank,
    rail_level: f64,
    rail_gain: f64,
    stop: Modes,
    stop_level: f64,
}

impl Slider {
    pub(crate) fn new(params: &mut Rng, start: &mut Rng, rate_hz: f64, block_s: f64) -> Self {
        let motor_hz = params.range(60.0, 150.0);
        let levels = (1..=4).map(|k| params.range(0.4, 1.0) / f64::from(k)).collect();
        let rail = NoiseBank::new(vec![
            (Biquad::band_pass(params.log_range(1_000.0, 4_000.0), params.range(1.0, 2.0), rate_hz), 0.7),
            (Biquad::high_pass(params.log_range(3_000.0, 5_000.0), 0.707, rate_hz), 0.3),
        ]);
        let stroke_s = params.range(0.3, 0.8);
        let pause_s = params.range(0.2, 1.0);
        // Begin anywhere in the first stroke or pause.
        let stroke = if start.chance(0.5) {
            Stroke::Paused { left: (start.uniform() * pause_s * rate_hz) as u64 + 1 }
        } else {
            let length = (stroke_s * rate_hz) as u64;
            Stroke::Moving { elapsed: start.below(length), length }
        };
        Self {
            rate_hz,
            stroke_s,
            pause_s,
            motor_hz,
            stroke,
            forward: start.chance(0.5),
            speed: 0.0,
            return_pitch: params.range(0.96, 1.04),
            motor: HarmonicSeries::new(motor_hz, vec![1.0, 2.0, 3.0, 4.0], levels, rate_hz, block_s, start),
            motor_level: params.range(0.5, 0.8),
            rail,
            rail_level: params.range(0.4, 0.8),
            rail_gain: 1.0,
            stop: Modes::new(3, 500.0, 3_500.0, (0.03, 0.12), rate_hz, params),
            stop_level: params.range(1.0, 2.5),
        }
    }

    pub(crate) fn cycle_s(&self) -> f64 {
        2.0 * (self.stroke_s + self.pause_s)
    }

    /// Speed of the current sample, 0 to 1.
    pub(crate) fn speed(&self) -> f64 {
        self.speed
    }

    pub(crate) fn motor_hz(&self) -> f64 {
        self.motor_hz
    }

    /// The drive shaft turns at a quarter of the motor's tone frequency.
    pub(crate) fn rotation_hz(&self) -> f64 {
        self.motor_hz / 4.0
    }

    pub(crate) fn block(&mut self, context: &BlockContext, rng: &mut Rng) {
        let direction = if self.forward { 1.0 } else { self.return_pitch };
        // The motor's pitch follows the speed; it never quite stops humming while moving.
        let pitch = context.pitch * direction * (0.4 + 0.6 * self.speed);
        self.motor.retune(pitch, context.upper_harmonic_gain, rng);
        self.rail_gain = context.noise_gain;
    }

    #[inline]
    pub(crate) fn sample(&mut self, rng: &mut Rng) -> f64 {
        match &mut self.stroke {
            Stroke::Moving { elapsed, length } => {
                let progress = *elapsed as f64 / *length as f64;
                self.speed = (progress / RAMP_SHARE).min((1.0 - progress) / RAMP_SHARE).clamp(0.0, 1.0);
                *elapsed += 1;
                if *elapsed >= *length {
                    self.stop.strike(self.stop_level, rng);
                    self.stroke =
                        Stroke::Paused { left: jittered_samples(self.pause_s, TIMING_JITTER, self.rate_hz, rng) };
                }
            }
            Stroke::Paused { left } => {
                self.speed = 0.0;
                *left -= 1;
                if *left == 0 {
                    self.forward = !self.forward;
                    let length = jittered_samples(self.stroke_s, TIMING_JITTER, self.rate_hz, rng);
                    self.stroke = Stroke::Moving { elapsed: 0, length };
                }
            }
        }
        let moving = self.speed;
        moving
            * (self.motor_level * self.motor.next() + self.rail_level * self.rail_gain * self.rail.process(rng.white()))
            + self.stop.next()
    }
}

/// A solenoid valve opening and closing.
pub(crate) struct Valve {
    rate_hz: f64,
    period_s: f64,
    open_share: f64,
    open: bool,
    samples_left: u64,
    body: Modes,
    open_strength: f64,
    close_strength: f64,
    transient: Biquad,
    transient_envelope: f64,
    transient_decay: f64,
    hiss: NoiseBank,
    hiss_level: f64,
    hiss_envelope: f64,
    hiss_follow: f64,
    hiss_gain: f64,
    buzz: super::dsp::Oscillator,
    buzz_level: f64,
    bounce_in: Option<u64>,
}

/// Chance that a closing valve bounces (a second, weaker click shortly after).
const BOUNCE_CHANCE: f64 = 0.08;
/// Chance that an opening lasts longer than usual.
const LONG_OPENING_CHANCE: f64 = 0.05;
/// How much longer a long opening lasts.
const LONG_OPENING_FACTOR: f64 = 1.6;
/// The click's sharp transient decays by 60 dB in this time, s.
const TRANSIENT_S: f64 = 0.003;
/// Flow noise rises and falls with this time constant, s.
const HISS_TIME_CONSTANT_S: f64 = 0.015;

impl Valve {
    pub(crate) fn new(params: &mut Rng, start: &mut Rng, rate_hz: f64, _block_s: f64) -> Self {
        let period_s = params.range(0.8, 3.0);
        let open_share = params.range(0.3, 0.6);
        let mut buzz = super::dsp::Oscillator::new(start.range(0.0, TAU));
        buzz.set_frequency(2.0 * MAINS_HZ, rate_hz);
        let hiss = NoiseBank::new(vec![(
            Biquad::band_pass(params.log_range(500.0, 3_000.0), params.range(0.7, 1.5), rate_hz),
            1.0,
        )]);
        Self {
            rate_hz,
            period_s,
            open_share,
            open: false,
            samples_left: start.below((period_s * rate_hz) as u64) + 1,
            body: Modes::new(3, 800.0, 6_000.0, (0.005, 0.03), rate_hz, params),
            open_strength: params.range(1.0, 2.0),
            close_strength: params.range(2.0, 4.0),
            transient: Biquad::high_pass(params.log_range(2_000.0, 4_000.0), 0.707, rate_hz),
            transient_envelope: 0.0,
            transient_decay: (1e-3f64).powf(1.0 / (TRANSIENT_S * rate_hz)),
            hiss,
            hiss_level: params.range(0.2, 0.6),
            hiss_envelope: 0.0,
            hiss_follow: 1.0 - (-1.0 / (HISS_TIME_CONSTANT_S * rate_hz)).exp(),
            hiss_gain: 1.0,
            buzz,
            buzz_level: params.range(0.05, 0.2),
            bounce_in: None,
        }
    }

    pub(crate) fn cycle_s(&self) -> f64 {
        self.period_s
    }

    /// How far open (energised) the valve is, 0 to 1, smoothed like its flow.
    pub(crate) fn energised(&self) -> f64 {
        self.hiss_envelope
    }

    pub(crate) fn block(&mut self, context: &BlockContext, _rng: &mut Rng) {
        self.hiss_gain = context.noise_gain;
    }

    fn click(&mut self, strength: f64, rng: &mut Rng) {
        self.body.strike(strength, rng);
        self.transient_envelope += strength;
    }

    #[inline]
    pub(crate) fn sample(&mut self, rng: &mut Rng) -> f64 {
        self.samples_left = self.samples_left.saturating_sub(1);
        if self.samples_left == 0 {
            self.open = !self.open;
            let share = if self.open { self.open_share } else { 1.0 - self.open_share };
            let mut length_s = self.period_s * share;
            if self.open {
                self.click(self.open_strength, rng);
                if rng.chance(LONG_OPENING_CHANCE) {
                    length_s *= LONG_OPENING_FACTOR;
                }
            } else {
                self.click(self.close_strength, rng);
                if rng.chance(BOUNCE_CHANCE) {
                    self.bounce_in = Some((rng.range(0.01, 0.03) * self.rate_hz) as u64 + 1);
                }
            }
            self.samples_left = jittered_samples(length_s, TIMING_JITTER, self.rate_hz, rng);
        }
        if let Some(left) = self.bounce_in {
            if left <= 1 {
                self.bounce_in = None;
                self.click(0.4 * self.close_strength, rng);
            } else {
                self.bounce_in = Some(left - 1);
            }
        }
        let target = if self.open { 1.0 } else { 0.0 };
        self.hiss_envelope += self.hiss_follow * (target - self.hiss_envelope);
        let white = rng.white();
        let transient = self.transient_envelope * self.transient.process(white);
        self.transient_envelope *= self.transient_decay;
        let open = if self.open { 1.0 } else { 0.0 };
        self.body.next()
            + transient
            + self.hiss_envelope * self.hiss_level * self.hiss_gain * self.hiss.process(white)
            + open * self.buzz_level * self.buzz.next()
    }
}
