//! Faults a simulated machine may develop, each living in a known frequency region.
//!
//! A fault is an additive sound (a whine, rubbing bursts, a hiss, a raised rotation tone), a
//! change to the machine's own sound (imbalance modulates it at the rotation rate, a clog drops
//! a pump's pitch and hardens its upper harmonics), or both. [`Fault::band_hz`] says where it
//! mostly lives, so an explanation ("band 3.2 to 3.4 kHz rose") can be checked against it.
//! How loud the additive part is comes from the severity, set by calibration relative to the
//! machine's own power in that band (see `calibration`).

use super::dsp::{log_normal_gain, playable_hz, BandFilter, Oscillator, Wander, MAX_FREQ_RATIO};
use super::random::{mix_seed, Rng};
use super::voice::BlockContext;
use std::f64::consts::TAU;
use std::fmt;

/// A fault a machine may develop.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A failing bearing: a new narrow whine, slightly frequency-modulated, following the shaft speed.
    BearingWhine { freq_hz: f64 },
    /// Imbalance: the machine's sound modulated at the rotation rate, and a raised rotation tone.
    Imbalance,
    /// Rubbing: scraping noise in `low_hz..high_hz` over part of most revolutions.
    Rub { low_hz: f64, high_hz: f64 },
    /// A leak: continuous hiss in `low_hz..high_hz`.
    Leak { low_hz: f64, high_hz: f64 },
    /// A clog: the pump labours; its harmonics drop in pitch, the upper ones get louder, flow weakens.
    Clog,
}

/// Half-width of a bearing whine's band, relative to its frequency.
const WHINE_BAND_SHARE: f64 = 0.03;
/// A whine's vibrato depth (relative frequency deviation).
const WHINE_VIBRATO_DEPTH: f64 = 0.003;
/// Imbalance modulation depth at severity 1.
const IMBALANCE_MAX_DEPTH: f64 = 0.6;
/// A clog's pitch drop at severity 1 (relative).
const CLOG_MAX_PITCH_DROP: f64 = 0.04;
/// A clog's gain on the upper harmonics at severity 1 is 1 + this (+3 dB).
const CLOG_MAX_UPPER_RISE: f64 = 0.41;
/// A clog's loss of flow noise at severity 1 (relative amplitude).
const CLOG_MAX_FLOW_LOSS: f64 = 0.3;
/// The highest pump harmonic a clog audibly changes.
const CLOG_TOP_HARMONIC: f64 = 12.0;
/// Slow amplitude flutter of whines and hisses, dB.
const FLUTTER_DB: f64 = 1.0;
/// Correlation time of the flutter, s.
const FLUTTER_S: f64 = 0.3;
/// The random stream fault kinds and frequencies are drawn from.
const PICK_STREAM: u64 = 0xfa17;

impl Fault {
    /// Where the fault mostly lives, Hz, on a machine turning at `rotation_hz`; for a sample
    /// rate below 16 kHz the simulator moves bands above 0.45 of the rate down to it.
    pub fn band_hz(&self, rotation_hz: f64) -> (f64, f64) {
        match self {
            Fault::BearingWhine { freq_hz } => (freq_hz * (1.0 - WHINE_BAND_SHARE), freq_hz * (1.0 + WHINE_BAND_SHARE)),
            Fault::Imbalance => (rotation_hz * 0.5, rotation_hz * 2.5),
            Fault::Rub { low_hz, high_hz } | Fault::Leak { low_hz, high_hz } => (*low_hz, *high_hz),
            Fault::Clog => (rotation_hz * (1.0 - CLOG_MAX_PITCH_DROP) * 0.9, rotation_hz * CLOG_TOP_HARMONIC),
        }
    }

    /// A short name: `bearing_whine`, `imbalance`, `rub`, `leak`, `clog`.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::BearingWhine { .. } => "bearing_whine",
            Fault::Imbalance => "imbalance",
            Fault::Rub { .. } => "rub",
            Fault::Leak { .. } => "leak",
            Fault::Clog => "clog",
        }
    }

    /// A fault that suits `machine_type`, its kind and frequencies drawn from `choice`:
    /// fan: imbalance, bearing whine, rub; pump: clog, leak, bearing whine, imbalance;
    /// slider: rub, bearing whine, leak; valve: leak, rub; any other: whine, rub, leak.
    pub fn pick(machine_type: &str, choice: u64) -> Fault {
        let mut rng = Rng::new(mix_seed(&[choice, PICK_STREAM]));
        let kinds: &[&str] = match machine_type {
            "fan" => &["imbalance", "bearing_whine", "rub"],
            "pump" => &["clog", "leak", "bearing_whine", "imbalance"],
            "slider" => &["rub", "bearing_whine", "leak"],
            "valve" => &["leak", "rub"],
            _ => &["bearing_whine", "rub", "leak"],
        };
        match kinds[rng.below(kinds.len() as u64) as usize] {
            "imbalance" => Fault::Imbalance,
            "clog" => Fault::Clog,
            "bearing_whine" => Fault::BearingWhine { freq_hz: rng.log_range(1_500.0, 6_000.0).round() },
            "rub" => {
                let low_hz = rng.log_range(600.0, 2_500.0).round();
                Fault::Rub { low_hz, high_hz: (low_hz * 1.5).round() }
            }
            _ => {
                let low_hz = rng.log_range(2_500.0, 5_000.0).round();
                Fault::Leak { low_hz, high_hz: (low_hz * 1.4).round() }
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::BearingWhine { freq_hz } => write!(f, "bearing whine at {freq_hz:.0} Hz"),
            Fault::Imbalance => f.write_str("imbalance"),
            Fault::Rub { low_hz, high_hz } => write!(f, "rub at {low_hz:.0}-{high_hz:.0} Hz"),
            Fault::Leak { low_hz, high_hz } => write!(f, "leak at {low_hz:.0}-{high_hz:.0} Hz"),
            Fault::Clog => f.write_str("clog"),
        }
    }
}

/// The sound of a fault on one machine; `level` (set by calibration) scales its additive part.
#[derive(Clone)]
pub(crate) struct FaultVoice {
    fault: Fault,
    severity: f64,
    rate_hz: f64,
    rotation_hz: f64,
    band_hz: (f64, f64),
    level: f64,
    tone: Oscillator,
    vibrato_hz: f64,
    vibrato_phase: f64,
    block_s: f64,
    flutter: Wander,
    flutter_gain: f64,
    noise: BandFilter,
    /// Share of a revolution a rub's contact lasts.
    contact_share: f64,
    /// Chance that a revolution rubs at all.
    contact_chance: f64,
    contact_length: u64,
    contact_elapsed: u64,
    contact_strength: f64,
    samples_per_turn: u64,
    samples_to_turn: u64,
}

impl FaultVoice {
    /// The fault on a machine turning at `rotation_hz`; `params` draws its character (vibrato,
    /// burst shape), `start` where it begins.
    pub(crate) fn new(
        fault: &Fault,
        severity: f64,
        rotation_hz: f64,
        rate_hz: f64,
        block_s: f64,
        params: &mut Rng,
        start: &mut Rng,
    ) -> Self {
        let (low, high) = fault.band_hz(rotation_hz);
        let top = MAX_FREQ_RATIO * rate_hz;
        let band_hz = if high > top {
            // Keep the band's width ratio, moved down under the top.
            (playable_hz(low * top / high, rate_hz), top)
        } else {
            (low, high)
        };
        let mut tone = Oscillator::new(start.range(0.0, TAU));
        tone.set_frequency(Self::centre(band_hz), rate_hz);
        let samples_per_turn = ((rate_hz / rotation_hz.max(1.0)) as u64).max(1);
        Self {
            fault: fault.clone(),
            severity,
            rate_hz,
            rotation_hz,
            band_hz,
            level: 1.0,
            tone,
            vibrato_hz: params.range(2.0, 6.0),
            vibrato_phase: start.range(0.0, TAU),
            block_s,
            flutter: Wander::new(FLUTTER_DB, FLUTTER_S, block_s, start),
            flutter_gain: 1.0,
            noise: BandFilter::new(band_hz.0, band_hz.1, rate_hz),
            contact_share: params.range(0.2, 0.5),
            contact_chance: params.range(0.7, 1.0),
            contact_length: 0,
            contact_elapsed: 0,
            contact_strength: 0.0,
            samples_per_turn,
            samples_to_turn: start.below(samples_per_turn),
        }
    }

    fn centre(band_hz: (f64, f64)) -> f64 {
        (band_hz.0 * band_hz.1).sqrt()
    }

    /// Where the fault lives on this machine at this rate, Hz.
    pub(crate) fn band_hz(&self) -> (f64, f64) {
        self.band_hz
    }

    /// Whether the fault adds a sound of its own (a clog only changes the machine's).
    pub(crate) fn has_additive_part(&self) -> bool {
        !matches!(self.fault, Fault::Clog)
    }

    pub(crate) fn set_level(&mut self, level: f64) {
        self.level = level;
    }

    /// What the fault does to the machine's own sound, for the voice's block update.
    pub(crate) fn machine_context(&self) -> BlockContext {
        match self.fault {
            Fault::Clog => BlockContext {
                pitch: 1.0 - CLOG_MAX_PITCH_DROP * self.severity,
                upper_harmonic_gain: 1.0 + CLOG_MAX_UPPER_RISE * self.severity,
                noise_gain: 1.0 - CLOG_MAX_FLOW_LOSS * self.severity,
            },
            _ => BlockContext::default(),
        }
    }

    /// Once per block: follow the machine's pitch, step vibrato and flutter.
    pub(crate) fn block(&mut self, machine_pitch: f64, rng: &mut Rng) {
        self.flutter_gain = self.flutter.step_gain(rng);
        self.vibrato_phase = (self.vibrato_phase + TAU * self.vibrato_hz * self.block_s) % TAU;
        match self.fault {
            Fault::BearingWhine { .. } => {
                let vibrato = 1.0 + WHINE_VIBRATO_DEPTH * self.vibrato_phase.sin();
                let freq_hz = Self::centre(self.band_hz) * machine_pitch * vibrato;
                self.tone.set_frequency(playable_hz(freq_hz, self.rate_hz), self.rate_hz);
            }
            Fault::Imbalance => self.tone.set_frequency(self.rotation_hz * machine_pitch, self.rate_hz),
            _ => {}
        }
        self.samples_per_turn = ((self.rate_hz / (self.rotation_hz * machine_pitch).max(1.0)) as u64).max(1);
    }

    /// The next sample: the additive sound (times `level`) and the factor on the machine's
    /// sound. `activity` (0 to 1) says how much the machine's moving parts move now: a bearing
    /// whines, a shaft rubs and an imbalance shakes only while they turn; a leak hisses anyway.
    #[inline]
    pub(crate) fn sample(&mut self, activity: f64, rng: &mut Rng) -> (f64, f64) {
        match self.fault {
            Fault::BearingWhine { .. } => (activity * self.level * self.flutter_gain * self.tone.next(), 1.0),
            Fault::Imbalance => {
                let turn = activity * self.tone.next();
                (self.level * turn, 1.0 + IMBALANCE_MAX_DEPTH * self.severity * turn)
            }
            Fault::Rub { .. } => (activity * self.level * self.rub(rng), 1.0),
            Fault::Leak { .. } => (self.level * self.flutter_gain * self.noise.process(rng.white()), 1.0),
            Fault::Clog => (0.0, 1.0),
        }
    }

    /// Rubbing: most revolutions, a scrape of band noise under a smooth (sine-squared)
    /// envelope lasting part of the revolution.
    #[inline]
    fn rub(&mut self, rng: &mut Rng) -> f64 {
        if self.samples_to_turn == 0 {
            self.samples_to_turn = self.samples_per_turn;
            if rng.chance(self.contact_chance) {
                self.contact_length = ((self.samples_per_turn as f64 * self.contact_share) as u64).max(1);
                self.contact_elapsed = 0;
                self.contact_strength = rng.range(0.7, 1.0);
            }
        }
        self.samples_to_turn -= 1;
        let noise = self.noise.process(rng.white());
        if self.contact_elapsed >= self.contact_length {
            return 0.0;
        }
        let envelope = (std::f64::consts::PI * self.contact_elapsed as f64 / self.contact_length as f64).sin().powi(2);
        self.contact_elapsed += 1;
        self.contact_strength * envelope * noise
    }
}

/// Mean length of one episode of an intermittent fault, s (a rattle, a catch, a sputter).
const EPISODE_MEAN_S: f64 = 0.3;
/// Spread of one episode's level around the fault's, dB.
const EPISODE_LEVEL_DB: f64 = 3.0;
/// Share of the way an episode's envelope moves to its target each block (about 10 ms at 16 kHz).
const EPISODE_SMOOTHING: f64 = 0.4;
/// The least share of time a fault may sound.
pub(crate) const DUTY_FLOOR: f64 = 0.02;

/// When an intermittent fault sounds: episodes of random length whose share of the time is the
/// fault's duty, each at its own level. The fault's mean power stays what its severity gives
/// (an episode is louder by `1 / sqrt(duty)`): an incipient fault is not quieter, only rarer.
/// A duty of 1 is a developed fault, sounding all the time; it draws no random numbers.
#[derive(Debug, Clone)]
pub(crate) struct Episodes {
    duty: f64,
    mean_on_blocks: f64,
    mean_off_blocks: f64,
    on: bool,
    blocks_left: u64,
    target: f64,
    envelope: f64,
}

impl Episodes {
    /// Episodes with share `duty` of the time (clamped to [`DUTY_FLOOR`]..1), blocks of `block_s`;
    /// `start` decides whether the first block is in an episode.
    pub(crate) fn new(duty: f64, block_s: f64, start: &mut Rng) -> Self {
        let duty = if duty.is_finite() { duty.clamp(DUTY_FLOOR, 1.0) } else { 1.0 };
        let mean_on_blocks = (EPISODE_MEAN_S / block_s).max(1.0);
        let mut episodes = Self {
            duty,
            mean_on_blocks,
            mean_off_blocks: mean_on_blocks * (1.0 - duty) / duty,
            on: false,
            blocks_left: 0,
            target: 1.0,
            envelope: 1.0,
        };
        if duty < 1.0 {
            episodes.on = start.chance(duty);
            episodes.begin(start);
            episodes.envelope = episodes.target;
        }
        episodes
    }

    fn begin(&mut self, rng: &mut Rng) {
        let mean = if self.on { self.mean_on_blocks } else { self.mean_off_blocks };
        self.blocks_left = (rng.exponential(mean).round() as u64).max(1);
        self.target = if self.on { log_normal_gain(EPISODE_LEVEL_DB, rng) / self.duty.sqrt() } else { 0.0 };
    }

    /// Once per block: the factor on the fault's sound for this block.
    pub(crate) fn step(&mut self, rng: &mut Rng) -> f64 {
        if self.duty >= 1.0 {
            return 1.0;
        }
        if self.blocks_left == 0 {
            self.on = !self.on;
            self.begin(rng);
        }
        self.blocks_left -= 1;
        self.envelope += EPISODE_SMOOTHING * (self.target - self.envelope);
        self.envelope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_sound_their_share_of_the_time_and_keep_the_mean_power() {
        let block_s = 64.0 / 16_000.0;
        for duty in [0.05, 0.2, 0.6] {
            let mut rng = Rng::new(11);
            let mut episodes = Episodes::new(duty, block_s, &mut rng);
            let blocks = 2_000_000;
            let (mut sounding, mut power) = (0u64, 0.0);
            for _ in 0..blocks {
                let gain = episodes.step(&mut rng);
                sounding += u64::from(episodes.on);
                power += gain * gain;
            }
            let share = sounding as f64 / f64::from(blocks);
            assert!((share / duty - 1.0).abs() < 0.1, "duty {duty}: sounding {share}");
            let mean_power = power / f64::from(blocks);
            assert!((mean_power - 1.0).abs() < 0.15, "duty {duty}: mean power {mean_power}");
        }
    }

    #[test]
    fn a_developed_fault_sounds_always_and_draws_nothing() {
        let mut rng = Rng::new(3);
        let mut episodes = Episodes::new(1.0, 0.004, &mut rng);
        let before = rng.clone().next_u64();
        assert!((0..1_000).all(|_| episodes.step(&mut rng) == 1.0));
        assert_eq!(rng.next_u64(), before, "a continuous fault must not move the fault's random course");
        let mut clamped = Episodes::new(f64::NAN, 0.004, &mut rng);
        assert_eq!(clamped.step(&mut rng), 1.0, "a duty that is not a number is a developed fault");
    }

    #[test]
    fn picked_faults_suit_the_machine_and_vary_with_the_choice() {
        for (machine_type, allowed) in [
            ("fan", &["imbalance", "bearing_whine", "rub"][..]),
            ("pump", &["clog", "leak", "bearing_whine", "imbalance"][..]),
            ("slider", &["rub", "bearing_whine", "leak"][..]),
            ("valve", &["leak", "rub"][..]),
        ] {
            let names: std::collections::BTreeSet<&str> =
                (0..40).map(|choice| Fault::pick(machine_type, choice).name()).collect();
            assert_eq!(names.len(), allowed.len(), "{machine_type}: {names:?}");
            assert!(names.iter().all(|name| allowed.contains(name)));
        }
        assert_eq!(Fault::pick("fan", 9), Fault::pick("fan", 9));
    }

    #[test]
    fn bands_sit_where_the_fault_sounds() {
        assert_eq!(Fault::Rub { low_hz: 800.0, high_hz: 1_200.0 }.band_hz(30.0), (800.0, 1_200.0));
        let (low, high) = Fault::BearingWhine { freq_hz: 3_000.0 }.band_hz(30.0);
        assert!(low < 3_000.0 && high > 3_000.0 && high - low < 200.0);
        let (low, high) = Fault::Imbalance.band_hz(30.0);
        assert!(low < 30.0 && high > 30.0);
        // At 8 kHz a 5-7 kHz leak moves under Nyquist, keeping its width ratio.
        let mut rng = Rng::new(1);
        let leak = Fault::Leak { low_hz: 5_000.0, high_hz: 7_000.0 };
        let voice = FaultVoice::new(&leak, 0.5, 30.0, 8_000.0, 0.008, &mut rng.clone(), &mut rng);
        let (low, high) = voice.band_hz();
        assert!(high <= 3_600.0 && (high / low - 1.4).abs() < 1e-9, "{low}..{high}");
    }
}
