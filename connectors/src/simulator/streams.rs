//! The normal sound of one machine in its place: its voice and the factory background, with the
//! machine's slow pitch and level wander, before any gain.
//!
//! Random streams are kept apart so that what must not change does not: the machine's
//! parameters come from (seed, machine id) only, so every take of a machine is the same machine;
//! the background's character from (seed, machine id) too (the place); the take decides where
//! each wander and timer starts, the noise itself, and for a recorded take its operating point
//! (levels, speed, how busy the factory is) and its path to the microphone (`recording`). Voice, background and fault each
//! draw from their own stream, so a faulty machine sounds exactly like its healthy twin until
//! the fault's onset.

use super::background::Background;
use super::calibration::CALIBRATION_TAKE;
use super::dsp::{log_normal_gain, Wander};
use super::random::{mix_seed, Rng};
use super::voice::{BlockContext, MachineVoice};
use auscult_schemas::{route_hash, MachineId};

/// Samples between updates of the slowly varying parameters (pitch, levels, filters).
pub(crate) const BLOCK: u64 = 64;
/// Shortest correlation time of a machine's pitch and level wander, s.
const MIN_WANDER_S: f64 = 1.0;
/// Longest correlation time of a machine's pitch and level wander, s: short against a minute,
/// so the first minute of a live stream already shows how much a healthy machine varies.
const MAX_WANDER_S: f64 = 5.0;
/// The live take: the machine at its nominal operating point.
pub(crate) const LIVE_TAKE: u64 = 0;
/// Spread of a recorded take's overall level (recording gain) around the nominal, dB. The three
/// spreads together give normal clips of one machine a clip-level loudness spread of about 0.5 dB,
/// as measured on the real MIMII -6 dB clips (0.2 to 1.1 dB per machine; 1.5 dB before).
const TAKE_RECORDING_LEVEL_DB: f64 = 0.3;
/// Spread of a recorded take's machine level (its load) on top of that, dB.
const TAKE_MACHINE_LEVEL_DB: f64 = 0.4;
/// Spread of a recorded take's background level (the factory's activity) on top of that, dB.
const TAKE_BACKGROUND_LEVEL_DB: f64 = 0.5;
/// Spread of a recorded take's speed (pitch) around the nominal, relative.
const TAKE_PITCH: f64 = 0.01;

/// A recorded take's distant impacts come up to this many times more or less often than the
/// place's usual (log-uniform): how busy the factory was while it was recorded.
const TAKE_BUSYNESS: f64 = 6.0;

/// Names of the independent random streams of one machine (mixed into its seeds).
#[derive(Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    MachineParams = 1,
    PlaceParams = 2,
    Start = 3,
    Voice = 4,
    Background = 5,
    FaultParams = 6,
    FaultStart = 7,
    Fault = 8,
    Recording = 9,
    FaultEpisodes = 10,
}

/// The seed of one of a machine's random streams; `take` 0 for parameters (they never vary).
pub(crate) fn stream_seed(seed: u64, machine_id: &MachineId, take: u64, stream: Stream) -> u64 {
    mix_seed(&[seed, route_hash(machine_id), take, stream as u64])
}

/// A machine's voice and background, rendering raw (unscaled) samples.
pub(crate) struct Streams {
    pub(crate) voice: MachineVoice,
    background: Background,
    pitch: Wander,
    level: Wander,
    voice_rng: Rng,
    background_rng: Rng,
    pitch_factor: f64,
    level_gain: f64,
    /// This take's operating point: factors on the machine's level, the background's, the pitch.
    take_machine_gain: f64,
    take_background_gain: f64,
    take_pitch: f64,
    /// Calibration holds the slow level wanders of machine and background still, so gains are
    /// set on the nominal levels (every wander keeps its mean power at the nominal level).
    levels_wander: bool,
}

impl Streams {
    pub(crate) fn new(machine_type: &str, machine_id: &MachineId, seed: u64, take: u64, rate_hz: f64) -> Self {
        let block_s = BLOCK as f64 / rate_hz;
        let mut params = Rng::new(stream_seed(seed, machine_id, 0, Stream::MachineParams));
        let mut place = Rng::new(stream_seed(seed, machine_id, 0, Stream::PlaceParams));
        let mut start = Rng::new(stream_seed(seed, machine_id, take, Stream::Start));
        let voice = MachineVoice::new(machine_type, &mut params, &mut start, rate_hz, block_s);
        let pitch_std = params.range(0.003, 0.012);
        let pitch_time_s = params.range(MIN_WANDER_S, MAX_WANDER_S);
        let level_std_db = params.range(0.5, 1.0);
        let level_time_s = params.range(MIN_WANDER_S, MAX_WANDER_S);
        let mut background = Background::new(&mut place, &mut start, rate_hz, block_s);
        let pitch = Wander::new(pitch_std, pitch_time_s, block_s, &mut start);
        let level = Wander::new(level_std_db, level_time_s, block_s, &mut start);
        let (take_machine_gain, take_background_gain, take_pitch) = if take == LIVE_TAKE || take == CALIBRATION_TAKE {
            (1.0, 1.0, 1.0)
        } else {
            let recording = log_normal_gain(TAKE_RECORDING_LEVEL_DB, &mut start);
            let machine = recording * log_normal_gain(TAKE_MACHINE_LEVEL_DB, &mut start);
            let background_gain = recording * log_normal_gain(TAKE_BACKGROUND_LEVEL_DB, &mut start);
            let pitch = 1.0 + TAKE_PITCH * start.normal();
            let busyness = start.log_range(1.0 / TAKE_BUSYNESS, TAKE_BUSYNESS);
            background.busier(busyness, &mut start);
            (machine, background_gain, pitch)
        };
        Self {
            voice,
            background,
            pitch,
            level,
            voice_rng: Rng::new(stream_seed(seed, machine_id, take, Stream::Voice)),
            background_rng: Rng::new(stream_seed(seed, machine_id, take, Stream::Background)),
            pitch_factor: 1.0,
            level_gain: 1.0,
            take_machine_gain,
            take_background_gain,
            take_pitch,
            levels_wander: true,
        }
    }

    /// Holds the machine's and the background's levels at their nominal values (for calibration).
    pub(crate) fn hold_levels(mut self) -> Self {
        self.levels_wander = false;
        self
    }

    /// Once per block: step the wanders and pass the pitch (times any fault's) to the voice.
    pub(crate) fn block(&mut self, fault: &BlockContext) {
        self.pitch_factor = self.take_pitch * (1.0 + self.pitch.step(&mut self.voice_rng));
        let level_gain = self.level.step_gain(&mut self.voice_rng);
        self.level_gain = if self.levels_wander { level_gain } else { 1.0 };
        let context = BlockContext { pitch: self.pitch_factor * fault.pitch, ..*fault };
        self.voice.block(&context, &mut self.voice_rng);
        self.background.block(self.levels_wander, &mut self.background_rng);
    }

    /// The machine's wandering pitch factor (about 1).
    pub(crate) fn pitch(&self) -> f64 {
        self.pitch_factor
    }

    /// How much the machine's moving parts move at the last sample (see `MachineVoice::activity`).
    #[inline]
    pub(crate) fn activity(&self) -> f64 {
        self.voice.activity()
    }

    /// The machine's current level factor (its take's operating point times its slow wander);
    /// a fault's sound, made by the machine, follows it.
    #[inline]
    pub(crate) fn machine_level(&self) -> f64 {
        self.take_machine_gain * self.level_gain
    }

    /// The next raw machine and background samples.
    #[inline]
    pub(crate) fn sample(&mut self) -> (f64, f64) {
        let machine = self.machine_level() * self.voice.sample(&mut self.voice_rng);
        (machine, self.take_background_gain * self.background.sample(&mut self.background_rng))
    }
}
