//! The built-in machine simulator: deterministic synthetic machines, healthy or failing.
//!
//! Used by `auscult demo`, `auscult run --simulate`, `auscult simulate` (a labelled corpus in the
//! DCASE 2020 layout, see [`write_corpus`]) and the tests. Four machine types with their own sound
//! (a fan's blade pass and air rush, a pump's motor harmonics and flow, a slide rail's strokes, a
//! valve's clicks and hiss); each instance has its own parameters, drawn from (seed, machine id),
//! so two fans differ. Normal sound is not a constant: pitch and level wander over seconds; gusts,
//! turbulence, crackle, impacts and timing jitter come and go. A detector must learn a
//! distribution, yet the wanders are stationary within a minute, so a live stream's first minute
//! shows how much it varies. A factory background (pink noise, mains hum, rumble, distant impacts)
//! is mixed at `snr_db` (machine power over background power). Each recorded take (corpus clip)
//! sits at its own operating point and reaches the microphone by its own path (`recording`: a
//! colouring of machine and background, the room's reflections), so takes differ in spectral
//! shape as real recordings do; the live take is heard directly.
//!
//! A [`Fault`] lives in a known band ([`SimulatedMachine::fault_band_hz`]); its severity (0 to 1)
//! sets its level relative to the machine's own power in that band (about -5 dB at 0.5: audible,
//! not trivially loud). Two more numbers say how it shows, as real faults differ: its duty (an
//! incipient fault sounds in episodes, as much louder as they are rarer) and how much it changes
//! the way the machine runs (its whole sound louder or quieter and broadly reshaped). A fleet's
//! faults are developed and pure (duty 1, no reshaping), so an explanation can be checked against
//! the fault's band; a corpus draws both per clip.
//!
//! Promises: everything is a function of the spec. The same spec gives the same samples on
//! every run and platform, whatever the sizes of the render calls; a faulty machine is sample
//! for sample its healthy twin until the fault's onset. Synthesis is cheap (recursive
//! oscillators and biquads, slow parameters updated every 64 samples): hundreds of times faster
//! than real time per machine on one core.

mod background;
mod calibration;
mod corpus;
mod cyclic;
mod dsp;
mod fault;
mod random;
mod recording;
mod streams;
mod voice;

pub use corpus::{write_corpus, write_corpus_reporting, CorpusSpec, CorpusSummary, SimulatorError};
pub use fault::Fault;

use auscult_schemas::chunk::{MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ};
use auscult_schemas::time::samples_to_us;
use auscult_schemas::{AudioChunk, ChunkOrigin, MachineId, MachineType, SampleFormat};
use calibration::{calibrate, Calibration, CALIBRATION_TAKE};
use fault::{Episodes, FaultVoice, DUTY_FLOOR};
use random::{mix_seed, Rng};
use recording::{Colour, TakePath};
use streams::{stream_seed, Stream, Streams, BLOCK, LIVE_TAKE};
use voice::BlockContext;

/// The machine types the simulator has a model for.
pub const MACHINE_TYPES: [&str; 4] = ["fan", "pump", "slider", "valve"];
/// Machine over background, dB, when nothing else is asked (MIMII's mildest mix).
pub const DEFAULT_SNR_DB: f64 = 6.0;
/// The rate the simulator is tuned for, Hz (that of MIMII and DCASE).
pub const DEFAULT_SAMPLE_RATE_HZ: u32 = 16_000;
/// SNRs are clamped to ± this many dB.
const MAX_ABS_SNR_DB: f64 = 60.0;
/// The most a fault may reshape the machine's sound, dB.
const RESHAPE_LIMIT_DB: f64 = 12.0;
/// A sample of 1.0 is this in 16-bit PCM.
const I16_FULL_SCALE: f64 = 32_767.0;

/// What to simulate for one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedMachineSpec {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    /// Clamped to the chunk's accepted range.
    pub sample_rate_hz: u32,
    /// With the machine id, decides the machine's own parameters (its sound) and its place.
    pub seed: u64,
    /// Decides the random course of this particular recording: 0 for a live stream; each
    /// corpus clip is another take of the same machine.
    pub take: u64,
    /// Machine signal power over background power, dB (clamped to ±60; not finite means 6).
    pub snr_db: f64,
    /// The fault and its onset in seconds from the start (0: present from the first sample).
    pub fault: Option<(Fault, f64)>,
    /// The fault's severity, 0 to 1 (see the module documentation).
    pub fault_severity: f64,
    /// The share of time the fault sounds, 0.02 to 1: 1 is a developed fault, always there;
    /// less is an intermittent one, in episodes as much louder as they are rarer.
    pub fault_duty: f64,
    /// How much the fault changes the way the machine runs, dB (0 to 12): its whole sound
    /// louder or quieter and broadly reshaped by about this much; 0 leaves only the fault's own
    /// sound, as a fleet's faults do, so an explanation can be checked against its band.
    pub fault_reshape_db: f64,
}

impl SimulatedMachineSpec {
    /// A healthy machine at 16 kHz and 6 dB SNR, take 0.
    pub fn healthy(machine_id: MachineId, machine_type: MachineType, seed: u64) -> Self {
        Self {
            machine_id,
            machine_type,
            sample_rate_hz: DEFAULT_SAMPLE_RATE_HZ,
            seed,
            take: 0,
            snr_db: DEFAULT_SNR_DB,
            fault: None,
            fault_severity: 0.0,
            fault_duty: 1.0,
            fault_reshape_db: 0.0,
        }
    }

    /// The spec with every number in its range.
    fn sanitised(mut self) -> Self {
        self.sample_rate_hz = self.sample_rate_hz.clamp(MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ);
        self.snr_db =
            if self.snr_db.is_finite() { self.snr_db.clamp(-MAX_ABS_SNR_DB, MAX_ABS_SNR_DB) } else { DEFAULT_SNR_DB };
        self.fault_severity = if self.fault_severity.is_finite() { self.fault_severity.clamp(0.0, 1.0) } else { 0.0 };
        self.fault_duty = if self.fault_duty.is_finite() { self.fault_duty.clamp(DUTY_FLOOR, 1.0) } else { 1.0 };
        self.fault_reshape_db =
            if self.fault_reshape_db.is_finite() { self.fault_reshape_db.clamp(0.0, RESHAPE_LIMIT_DB) } else { 0.0 };
        if let Some((_, onset_s)) = &mut self.fault {
            *onset_s = if onset_s.is_finite() { onset_s.max(0.0) } else { 0.0 };
        }
        self
    }

    fn stream(&self, take: u64, stream: Stream) -> Rng {
        Rng::new(stream_seed(self.seed, &self.machine_id, take, stream))
    }

    /// Measures the machine's normal sound for its gains (independent of take and fault).
    fn calibrate(&self) -> Calibration {
        let rate_hz = f64::from(self.sample_rate_hz);
        let streams = Streams::new(self.machine_type.as_str(), &self.machine_id, self.seed, CALIBRATION_TAKE, rate_hz);
        calibrate(streams, self.snr_db, rate_hz)
    }
}

/// A fault on its way: its sound, when it sounds, what it does to the machine, its random
/// streams, when it starts.
struct ActiveFault {
    voice: FaultVoice,
    rng: Rng,
    episodes: Episodes,
    /// The factor on the fault's sound for this block (from `episodes`).
    episode_gain: f64,
    reshape: Option<Colour>,
    episode_rng: Rng,
    onset_frame: u64,
}

/// One sample of a machine's output, split into its parts (gains applied).
#[derive(Debug, Clone, Copy)]
struct Parts {
    machine: f64,
    fault: f64,
    background: f64,
}

/// One simulated machine: call [`render`](Self::render) or [`next_chunk`](Self::next_chunk).
pub struct SimulatedMachine {
    spec: SimulatedMachineSpec,
    streams: Streams,
    fault: Option<ActiveFault>,
    path: TakePath,
    machine_gain: f64,
    background_gain: f64,
    samples_done: u64,
    chunks_done: u64,
    clipped_samples: u64,
}

impl SimulatedMachine {
    /// Builds the machine and calibrates its gains (renders about 12 s of audio once).
    pub fn new(spec: SimulatedMachineSpec) -> Self {
        let spec = spec.sanitised();
        let calibration = spec.calibrate();
        Self::with_calibration(spec, &calibration)
    }

    /// Builds the machine with gains measured before (by `spec.calibrate()` of the same machine).
    fn with_calibration(spec: SimulatedMachineSpec, calibration: &Calibration) -> Self {
        let spec = spec.sanitised();
        let rate_hz = f64::from(spec.sample_rate_hz);
        let streams = Streams::new(spec.machine_type.as_str(), &spec.machine_id, spec.seed, spec.take, rate_hz);
        let fault = spec.fault.as_ref().map(|(fault, onset_s)| {
            let block_s = BLOCK as f64 / rate_hz;
            let (mut params, mut start) =
                (spec.stream(spec.take, Stream::FaultParams), spec.stream(spec.take, Stream::FaultStart));
            let rotation_hz = streams.voice.rotation_hz();
            let mut voice =
                FaultVoice::new(fault, spec.fault_severity, rotation_hz, rate_hz, block_s, &mut params, &mut start);
            let mut probe_rng = spec.stream(CALIBRATION_TAKE, Stream::Fault);
            voice.set_level(calibration.fault_level(&voice, spec.fault_severity, &mut probe_rng));
            let onset_frame = (onset_s * rate_hz).round() as u64;
            let mut episode_rng = spec.stream(spec.take, Stream::FaultEpisodes);
            let reshape = (spec.fault_reshape_db > 0.0)
                .then(|| Colour::reshaping(rate_hz, spec.fault_reshape_db, &mut episode_rng));
            let episodes = Episodes::new(spec.fault_duty, block_s, &mut episode_rng);
            ActiveFault {
                voice,
                rng: spec.stream(spec.take, Stream::Fault),
                episodes,
                episode_gain: 1.0,
                reshape,
                episode_rng,
                onset_frame,
            }
        });
        let path = if spec.take == LIVE_TAKE || spec.take == CALIBRATION_TAKE {
            TakePath::Direct
        } else {
            TakePath::recorded(rate_hz, &mut spec.stream(spec.take, Stream::Recording))
        };
        Self {
            path,
            machine_gain: calibration.machine_gain,
            background_gain: calibration.background_gain,
            spec,
            streams,
            fault,
            samples_done: 0,
            chunks_done: 0,
            clipped_samples: 0,
        }
    }

    /// The spec, with its numbers brought into range.
    pub fn spec(&self) -> &SimulatedMachineSpec {
        &self.spec
    }

    /// The machine's strongest tone at nominal pitch (blade pass, motor, hum), Hz.
    pub fn fundamental_hz(&self) -> f64 {
        self.streams.voice.fundamental_hz()
    }

    /// The machine's shaft rotation rate at nominal pitch, Hz.
    pub fn rotation_hz(&self) -> f64 {
        self.streams.voice.rotation_hz()
    }

    /// Where the fault mostly lives on this machine, Hz; `None` for a healthy machine.
    pub fn fault_band_hz(&self) -> Option<(f64, f64)> {
        self.fault.as_ref().map(|fault| fault.voice.band_hz())
    }

    /// Samples rendered so far.
    pub fn samples_rendered(&self) -> u64 {
        self.samples_done
    }

    /// Samples that reached full scale and were clipped (calibration leaves headroom: expect 0).
    pub fn clipped_samples(&self) -> u64 {
        self.clipped_samples
    }

    #[inline]
    fn next_parts(&mut self) -> Parts {
        let index = self.samples_done;
        self.samples_done += 1;
        let fault = self.fault.as_mut().filter(|fault| index >= fault.onset_frame);
        if index.is_multiple_of(BLOCK) {
            let context = fault.as_ref().map_or_else(BlockContext::default, |fault| fault.voice.machine_context());
            self.streams.block(&context);
        }
        let (mut machine, background) = self.streams.sample();
        let (added, modulation) = match fault {
            Some(fault) => {
                if index.is_multiple_of(BLOCK) {
                    fault.voice.block(self.streams.pitch(), &mut fault.rng);
                    fault.episode_gain = fault.episodes.step(&mut fault.episode_rng);
                }
                if let Some(reshape) = &mut fault.reshape {
                    machine = reshape.process(machine);
                }
                let (added, modulation) = fault.voice.sample(self.streams.activity(), &mut fault.rng);
                // Between episodes a modulating fault (imbalance) fades with its sound; a developed
                // one (gain 1) modulates exactly as it always did.
                let depth = fault.episode_gain;
                let modulation = if depth >= 1.0 { modulation } else { 1.0 + (modulation - 1.0) * depth };
                (added * depth, modulation)
            }
            None => (0.0, 1.0),
        };
        Parts {
            machine: self.machine_gain * machine * modulation,
            fault: self.machine_gain * self.streams.machine_level() * added,
            background: self.background_gain * background,
        }
    }

    /// Fills `out` with the next samples (full scale 1.0), continuing where the last call ended.
    pub fn render(&mut self, out: &mut [f32]) {
        for sample in out.iter_mut() {
            let parts = self.next_parts();
            let value = self.path.mix(parts.machine + parts.fault, parts.background);
            if value.abs() >= 1.0 {
                self.clipped_samples += 1;
            }
            *sample = value.clamp(-1.0, 1.0) as f32;
        }
    }

    /// The next `frames` samples (at least one) as a 16-bit mono chunk: sequence numbers count
    /// from 0, capture time is `start_time_us` plus the audio rendered before this chunk.
    pub fn next_chunk(&mut self, frames: usize, start_time_us: i64) -> AudioChunk {
        let capture_start_us = start_time_us.saturating_add(samples_to_us(self.samples_done, self.spec.sample_rate_hz));
        let mut samples = vec![0.0f32; frames.max(1)];
        self.render(&mut samples);
        let chunk = AudioChunk {
            machine_id: self.spec.machine_id.clone(),
            machine_type: self.spec.machine_type.clone(),
            sequence: self.chunks_done,
            capture_start_us,
            sample_rate_hz: self.spec.sample_rate_hz,
            channels: 1,
            sample_format: SampleFormat::S16le,
            payload: samples.iter().flat_map(|&sample| to_i16(sample).to_le_bytes()).collect(),
            origin: ChunkOrigin::Simulator { seed: self.spec.seed },
        };
        self.chunks_done += 1;
        chunk
    }
}

/// A sample in [-1, 1] as 16-bit PCM.
fn to_i16(sample: f32) -> i16 {
    (f64::from(sample) * I16_FULL_SCALE).round() as i16
}

/// A fleet of simulated machines for a live run (each machine is its live take, 0).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    pub machines: usize,
    /// Shared by every machine; with its id it decides each machine's sound and fault.
    pub seed: u64,
    pub sample_rate_hz: u32,
    /// Machine over background, dB.
    pub snr_db: f64,
    /// Every `faulty_every`-th machine (the 4th, 8th, ...) develops a fault; 0 for none.
    pub faulty_every: usize,
    /// When the faults start, s from the start of the run.
    pub fault_onset_s: f64,
    /// 0 to 1; the default 1.0 is a developed fault (about 4 dB over the machine in its band),
    /// as a demonstration wants; corpora spread severities to make subtle ones too.
    pub fault_severity: f64,
}

impl Default for FleetSpec {
    fn default() -> Self {
        Self {
            machines: 8,
            seed: 1,
            sample_rate_hz: DEFAULT_SAMPLE_RATE_HZ,
            snr_db: DEFAULT_SNR_DB,
            faulty_every: 4,
            fault_onset_s: 100.0,
            fault_severity: 1.0,
        }
    }
}

/// The random stream fleet faults are picked from.
const FLEET_FAULT_STREAM: u64 = 7;

/// The machines of a fleet. Types rotate through fan, pump, slider, valve, shifted by one every
/// four machines so the faulty ones are not all of one type (`fan-00`, `pump-01`, `slider-02`,
/// `valve-03`, `pump-04`, ..., `fan-07`); ids are `TYPE-NN`. Fault kinds and bands vary with the seed.
pub fn fleet(spec: &FleetSpec) -> Vec<SimulatedMachineSpec> {
    let types = MACHINE_TYPES.len();
    (0..spec.machines)
        .map(|index| {
            let machine_type = MACHINE_TYPES[(index + index / types) % types];
            let faulty = spec.faulty_every > 0 && index % spec.faulty_every == spec.faulty_every - 1;
            let fault = faulty.then(|| {
                let choice = mix_seed(&[spec.seed, index as u64, FLEET_FAULT_STREAM]);
                (Fault::pick(machine_type, choice), spec.fault_onset_s)
            });
            SimulatedMachineSpec {
                machine_id: MachineId::new(format!("{machine_type}-{index:02}"))
                    .expect("a known type and digits make a valid id"),
                machine_type: MachineType::new(machine_type).expect("the known types are valid names"),
                sample_rate_hz: spec.sample_rate_hz,
                seed: spec.seed,
                take: 0,
                snr_db: spec.snr_db,
                fault,
                fault_severity: spec.fault_severity,
                fault_duty: 1.0,
                fault_reshape_db: 0.0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
