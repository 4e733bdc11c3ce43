//! The machines' own sounds: one model per machine type, each instance with its own parameters.
//!
//! A voice is built from two random streams: `params` decides what the machine *is* (rotation
//! rate, blade count, harmonic levels, spectral shape, stroke period: the same for every
//! recording of one machine) and `start` decides where a recording *begins* (phases, the state
//! of the slow wanders, event timers). While running, a voice draws from the stream it is given.
//! Output is of the order of 1; the machine's gain is set later by calibration.
//!
//! - fan: blade-pass tone and harmonics, a little shaft rotation, loud shaped broadband rush
//!   with gusts;
//! - pump: motor harmonic series with the vane-pass harmonics stronger, 100 Hz magnetic hum,
//!   turbulent flow noise, occasional crackle;
//! - slider and valve: see [`super::cyclic`].

use super::cyclic::{Slider, Valve};
use super::dsp::{Biquad, Oscillator, Resonator, Wander, MAX_FREQ_RATIO};
use super::random::Rng;
use std::f64::consts::TAU;

/// What the voice is told once per block: the pitch factor (the machine's slow wander times
/// any fault's shift) and what a fault does to its levels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockContext {
    pub(crate) pitch: f64,
    /// Factor on every harmonic above the first.
    pub(crate) upper_harmonic_gain: f64,
    /// Factor on broadband (flow, air, rail) noise.
    pub(crate) noise_gain: f64,
}

impl Default for BlockContext {
    fn default() -> Self {
        Self { pitch: 1.0, upper_harmonic_gain: 1.0, noise_gain: 1.0 }
    }
}

/// Standard deviation of each partial's slow amplitude wander, dB.
const PARTIAL_WANDER_DB: f64 = 1.0;
/// Correlation time of each partial's amplitude wander, s.
const PARTIAL_WANDER_S: f64 = 0.7;
/// Mains frequency of the factory, Hz (magnetic hum is at twice it).
pub(crate) const MAINS_HZ: f64 = 50.0;

/// Harmonic partials of one base frequency, unit total power, with slowly wandering levels.
pub(crate) struct HarmonicSeries {
    base_hz: f64,
    multiples: Vec<f64>,
    levels: Vec<f64>,
    wanders: Vec<Wander>,
    gains: Vec<f64>,
    oscillators: Vec<Oscillator>,
    rate_hz: f64,
}

impl HarmonicSeries {
    /// Partials at `multiples` of `base_hz` with amplitudes proportional to `levels`.
    pub(crate) fn new(
        base_hz: f64,
        multiples: Vec<f64>,
        levels: Vec<f64>,
        rate_hz: f64,
        block_s: f64,
        start: &mut Rng,
    ) -> Self {
        let power: f64 = levels.iter().map(|level| level * level / 2.0).sum();
        let levels: Vec<f64> = levels.iter().map(|level| level / power.max(1e-12).sqrt()).collect();
        let oscillators = multiples.iter().map(|_| Oscillator::new(start.range(0.0, TAU))).collect();
        let wanders =
            multiples.iter().map(|_| Wander::new(PARTIAL_WANDER_DB, PARTIAL_WANDER_S, block_s, start)).collect();
        Self { base_hz, gains: levels.clone(), levels, multiples, wanders, oscillators, rate_hz }
    }

    /// Retunes to `base_hz * pitch` and steps the level wander; partials that would pass
    /// Nyquist fall silent.
    pub(crate) fn retune(&mut self, pitch: f64, upper_harmonic_gain: f64, rng: &mut Rng) {
        let base = self.base_hz * pitch;
        for index in 0..self.multiples.len() {
            let freq_hz = base * self.multiples[index];
            let wander = self.wanders[index].step_gain(rng);
            let fault = if index == 0 { 1.0 } else { upper_harmonic_gain };
            let audible = freq_hz < MAX_FREQ_RATIO * self.rate_hz;
            self.gains[index] = if audible { self.levels[index] * wander * fault } else { 0.0 };
            self.oscillators[index].set_frequency(freq_hz.min(MAX_FREQ_RATIO * self.rate_hz), self.rate_hz);
        }
    }

    #[inline]
    pub(crate) fn next(&mut self) -> f64 {
        self.oscillators.iter_mut().zip(&self.gains).map(|(oscillator, gain)| gain * oscillator.next()).sum()
    }
}

/// Several filters on one white-noise input, each scaled to its share of unit total power.
pub(crate) struct NoiseBank {
    filters: Vec<Biquad>,
    gains: Vec<f64>,
}

impl NoiseBank {
    /// `parts` are filters with their share of the power (shares are normalised).
    pub(crate) fn new(parts: Vec<(Biquad, f64)>) -> Self {
        let total: f64 = parts.iter().map(|(_, share)| share).sum();
        let gains = parts.iter().map(|(filter, share)| (share / total / filter.noise_power_gain()).sqrt()).collect();
        Self { filters: parts.into_iter().map(|(filter, _)| filter).collect(), gains }
    }

    #[inline]
    pub(crate) fn process(&mut self, white: f64) -> f64 {
        self.filters.iter_mut().zip(&self.gains).map(|(filter, gain)| gain * filter.process(white)).sum()
    }
}

/// A fan: blade-pass tone over a loud broadband rush that comes in gusts.
pub(crate) struct Fan {
    rotation_hz: f64,
    blade_pass_hz: f64,
    tones: HarmonicSeries,
    air: NoiseBank,
    tone_level: f64,
    air_level: f64,
    gust: Wander,
    air_gain: f64,
}

impl Fan {
    pub(crate) fn new(params: &mut Rng, start: &mut Rng, rate_hz: f64, block_s: f64) -> Self {
        let rotation_hz = params.range(12.0, 45.0);
        let blades = 5 + params.below(7);
        let slope = params.range(0.7, 1.4);
        let mut multiples = vec![1.0, 2.0];
        let mut levels = vec![params.range(0.08, 0.2), params.range(0.03, 0.1)];
        for k in 1..=5u32 {
            multiples.push(f64::from(k) * blades as f64);
            levels.push(params.range(0.6, 1.0) / f64::from(k).powf(slope));
        }
        let air = NoiseBank::new(vec![
            (Biquad::low_pass(params.log_range(1_500.0, 4_000.0), 0.707, rate_hz), 0.5),
            (
                Biquad::band_pass(params.log_range(300.0, 1_200.0), params.range(0.6, 1.2), rate_hz),
                params.range(0.2, 0.5),
            ),
            (
                Biquad::band_pass(params.log_range(1_500.0, 4_500.0), params.range(0.8, 2.0), rate_hz),
                params.range(0.1, 0.3),
            ),
        ]);
        let tone_share = params.range(0.08, 0.3);
        let gust = Wander::new(params.range(0.8, 2.0), params.range(0.5, 2.0), block_s, start);
        Self {
            rotation_hz,
            blade_pass_hz: rotation_hz * blades as f64,
            tones: HarmonicSeries::new(rotation_hz, multiples, levels, rate_hz, block_s, start),
            air,
            tone_level: tone_share.sqrt(),
            air_level: (1.0 - tone_share).sqrt(),
            gust,
            air_gain: 1.0,
        }
    }

    fn block(&mut self, context: &BlockContext, rng: &mut Rng) {
        self.tones.retune(context.pitch, context.upper_harmonic_gain, rng);
        self.air_gain = self.gust.step_gain(rng) * context.noise_gain;
    }

    #[inline]
    fn sample(&mut self, rng: &mut Rng) -> f64 {
        self.tone_level * self.tones.next() + self.air_level * self.air_gain * self.air.process(rng.white())
    }
}

/// A pump: motor harmonics (vane pass stronger), magnetic hum, turbulent flow, crackle.
pub(crate) struct Pump {
    rotation_hz: f64,
    tones: HarmonicSeries,
    hum: Oscillator,
    hum_level: f64,
    flow: NoiseBank,
    tone_level: f64,
    flow_level: f64,
    turbulence: Wander,
    flow_gain: f64,
    crackle: Resonator,
    crackle_level: f64,
    crackle_mean_gap: f64,
    samples_to_crackle: u64,
}

impl Pump {
    pub(crate) fn new(params: &mut Rng, start: &mut Rng, rate_hz: f64, block_s: f64) -> Self {
        let rotation_hz = params.range(24.0, 49.0);
        let harmonics = 8 + params.below(6);
        let vanes = 5 + params.below(4);
        let slope = params.range(0.5, 1.0);
        let multiples: Vec<f64> = (1..=harmonics).map(|k| k as f64).collect();
        let levels = (1..=harmonics)
            .map(|k| {
                let vane_pass = if k % vanes == 0 { params.range(1.5, 2.5) } else { 1.0 };
                vane_pass * params.range(0.3, 1.0) / (k as f64).powf(slope)
            })
            .collect();
        let mut hum = Oscillator::new(start.range(0.0, TAU));
        hum.set_frequency(2.0 * MAINS_HZ, rate_hz);
        let flow = NoiseBank::new(vec![
            (Biquad::band_pass(params.log_range(300.0, 1_500.0), params.range(0.5, 1.0), rate_hz), 0.7),
            (Biquad::low_pass(params.range(150.0, 400.0), 0.707, rate_hz), 0.3),
        ]);
        let tone_share = params.range(0.35, 0.7);
        let crackle_mean_gap = rate_hz / params.range(0.5, 3.0);
        Self {
            rotation_hz,
            tones: HarmonicSeries::new(rotation_hz, multiples, levels, rate_hz, block_s, start),
            hum,
            hum_level: params.range(0.05, 0.3),
            flow,
            tone_level: tone_share.sqrt(),
            flow_level: (1.0 - tone_share).sqrt(),
            turbulence: Wander::new(params.range(1.5, 3.0), params.range(0.05, 0.3), block_s, start),
            flow_gain: 1.0,
            crackle: Resonator::new(params.log_range(2_000.0, 5_000.0), params.range(0.003, 0.008), rate_hz, 0.0),
            crackle_level: params.range(0.5, 1.5),
            crackle_mean_gap,
            samples_to_crackle: start.exponential(crackle_mean_gap) as u64,
        }
    }

    fn block(&mut self, context: &BlockContext, rng: &mut Rng) {
        self.tones.retune(context.pitch, context.upper_harmonic_gain, rng);
        self.flow_gain = self.turbulence.step_gain(rng) * context.noise_gain;
    }

    #[inline]
    fn sample(&mut self, rng: &mut Rng) -> f64 {
        if self.samples_to_crackle == 0 {
            self.crackle.strike(self.crackle_level * rng.range(0.3, 1.0));
            self.samples_to_crackle = rng.exponential(self.crackle_mean_gap) as u64;
        } else {
            self.samples_to_crackle -= 1;
        }
        self.tone_level * self.tones.next()
            + self.hum_level * self.hum.next()
            + self.flow_level * self.flow_gain * self.flow.process(rng.white())
            + self.crackle.next()
    }
}

/// One machine's sound model.
pub(crate) enum MachineVoice {
    Fan(Fan),
    Pump(Pump),
    Slider(Slider),
    Valve(Valve),
}

impl MachineVoice {
    /// The model for `machine_type`; a type the simulator does not know sounds like a pump
    /// (a generic motor-driven machine).
    pub(crate) fn new(machine_type: &str, params: &mut Rng, start: &mut Rng, rate_hz: f64, block_s: f64) -> Self {
        match machine_type {
            "fan" => MachineVoice::Fan(Fan::new(params, start, rate_hz, block_s)),
            "slider" => MachineVoice::Slider(Slider::new(params, start, rate_hz, block_s)),
            "valve" => MachineVoice::Valve(Valve::new(params, start, rate_hz, block_s)),
            _ => MachineVoice::Pump(Pump::new(params, start, rate_hz, block_s)),
        }
    }

    /// Once per block: retune and step the slow wanders.
    pub(crate) fn block(&mut self, context: &BlockContext, rng: &mut Rng) {
        match self {
            MachineVoice::Fan(fan) => fan.block(context, rng),
            MachineVoice::Pump(pump) => pump.block(context, rng),
            MachineVoice::Slider(slider) => slider.block(context, rng),
            MachineVoice::Valve(valve) => valve.block(context, rng),
        }
    }

    #[inline]
    pub(crate) fn sample(&mut self, rng: &mut Rng) -> f64 {
        match self {
            MachineVoice::Fan(fan) => fan.sample(rng),
            MachineVoice::Pump(pump) => pump.sample(rng),
            MachineVoice::Slider(slider) => slider.sample(rng),
            MachineVoice::Valve(valve) => valve.sample(rng),
        }
    }

    /// The shaft rotation rate (the valve's: the mains frequency its solenoid hums at), Hz.
    pub(crate) fn rotation_hz(&self) -> f64 {
        match self {
            MachineVoice::Fan(fan) => fan.rotation_hz,
            MachineVoice::Pump(pump) => pump.rotation_hz,
            MachineVoice::Slider(slider) => slider.rotation_hz(),
            MachineVoice::Valve(_) => MAINS_HZ,
        }
    }

    /// The strongest tone: blade pass (fan), rotation (pump), motor (slider), hum (valve), Hz.
    pub(crate) fn fundamental_hz(&self) -> f64 {
        match self {
            MachineVoice::Fan(fan) => fan.blade_pass_hz,
            MachineVoice::Pump(pump) => pump.rotation_hz,
            MachineVoice::Slider(slider) => slider.motor_hz(),
            MachineVoice::Valve(_) => 2.0 * MAINS_HZ,
        }
    }

    /// How much the moving parts move now, 0 to 1: always 1 for a fan or pump, a slider's
    /// speed, whether a valve is open (energised).
    #[inline]
    pub(crate) fn activity(&self) -> f64 {
        match self {
            MachineVoice::Fan(_) | MachineVoice::Pump(_) => 1.0,
            MachineVoice::Slider(slider) => slider.speed(),
            MachineVoice::Valve(valve) => valve.energised(),
        }
    }

    /// The period of a cyclic machine (slider strokes, valve openings), s.
    pub(crate) fn cycle_s(&self) -> Option<f64> {
        match self {
            MachineVoice::Fan(_) | MachineVoice::Pump(_) => None,
            MachineVoice::Slider(slider) => Some(slider.cycle_s()),
            MachineVoice::Valve(valve) => Some(valve.cycle_s()),
        }
    }
}
