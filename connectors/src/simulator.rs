//! The built-in machine simulator: deterministic synthetic machines, healthy or failing.
//!
//! Used by `auscult demo`, `auscult run --simulate`, `auscult simulate` (a labelled corpus in the
//! DCASE 2020 layout) and the tests. Four machine types with their own sound (a fan's blade pass
//! and broadband rush, a pump's motor harmonics and flow, a slide rail's strokes, a valve's
//! clicks), each instance with its own parameters, slowly wandering in pitch and level so a
//! detector must learn a distribution, not a constant; factory background mixed at a chosen SNR.
//! Faults live in a known frequency region ([`Fault::band_hz`]) so explanations can be checked.
//! Everything is a function of the seed: the same spec gives the same samples whatever the
//! sizes of the render calls. Synthesis runs far faster than real time (recursive oscillators,
//! biquad-shaped noise, parameters updated per block of samples).

use auscult_schemas::{AudioChunk, ChunkOrigin, MachineId, MachineType, SampleFormat};
use std::path::{Path, PathBuf};

/// The machine types the simulator knows.
pub const MACHINE_TYPES: [&str; 4] = ["fan", "pump", "slider", "valve"];
/// Samples between updates of the slowly varying parameters.
const BLOCK: u64 = 256;
/// RMS level of a machine's own sound in the output (full scale is 1.0).
const MACHINE_RMS: f64 = 0.06;
/// Time constant of the pitch and level wander, in blocks (about 2 s at 16 kHz).
const WANDER_BLOCKS: f64 = 125.0;
/// Standard deviation of the level wander (3 %).
const LEVEL_WANDER: f64 = 0.03;
/// Seconds rendered to measure a machine's and its background's power at construction.
const CALIBRATION_S: f64 = 2.0;

/// A small, fast, seedable generator (SplitMix64).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn mix_seed(parts: &[u64]) -> u64 {
    let mut rng = Rng::new(0x0123_4567_89ab_cdef);
    for &part in parts {
        rng.0 ^= part;
        rng.next_u64();
    }
    rng.next_u64()
}

fn name_seed(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A second-order band-pass filter (RBJ cookbook, constant peak gain).
#[derive(Debug, Clone)]
struct BandPass {
    b0: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    x1: f64,
    x2: f64,
    y1: f64,
    y2: f64,
}

impl BandPass {
    fn new(centre_hz: f64, q: f64, rate: f64) -> Self {
        let omega = std::f64::consts::TAU * (centre_hz / rate).min(0.49);
        let alpha = omega.sin() / (2.0 * q);
        let a0 = 1.0 + alpha;
        Self {
            b0: alpha / a0,
            b2: -alpha / a0,
            a1: -2.0 * omega.cos() / a0,
            a2: (1.0 - alpha) / a0,
            x1: 0.0,
            x2: 0.0,
            y1: 0.0,
            y2: 0.0,
        }
    }
    fn band(low_hz: f64, high_hz: f64, rate: f64) -> Self {
        let centre = (low_hz * high_hz).sqrt();
        Self::new(centre, centre / (high_hz - low_hz).max(1.0), rate)
    }
    #[inline]
    fn process(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.b2 * self.x2 - self.a1 * self.y1 - self.a2 * self.y2;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// A sine oscillator by complex rotation; its frequency may change at block boundaries.
#[derive(Debug, Clone)]
struct Oscillator {
    re: f64,
    im: f64,
    step_re: f64,
    step_im: f64,
}

impl Oscillator {
    fn new(phase: f64) -> Self {
        Self { re: phase.cos(), im: phase.sin(), step_re: 1.0, step_im: 0.0 }
    }
    fn set_frequency(&mut self, freq_hz: f64, rate: f64) {
        let step = std::f64::consts::TAU * freq_hz / rate;
        self.step_re = step.cos();
        self.step_im = step.sin();
        // Renormalise so rounding never makes the amplitude drift.
        let norm = (self.re * self.re + self.im * self.im).sqrt();
        self.re /= norm;
        self.im /= norm;
    }
    #[inline]
    fn next(&mut self) -> f64 {
        let value = self.im;
        let re = self.re * self.step_re - self.im * self.step_im;
        self.im = self.re * self.step_im + self.im * self.step_re;
        self.re = re;
        value
    }
}

/// A fault a machine may develop.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A failing bearing: a new narrow whine, slightly frequency-modulated.
    BearingWhine { freq_hz: f64 },
    /// Imbalance: strong modulation at the rotation rate and a louder fundamental.
    Imbalance,
    /// Rubbing: bursts of noise in a band, at the rotation rate.
    Rub { low_hz: f64, high_hz: f64 },
    /// A leak: continuous hiss in a band.
    Leak { low_hz: f64, high_hz: f64 },
    /// A clog: the motor labours, its harmonics drop in pitch and a rough subharmonic appears.
    Clog,
}

impl Fault {
    /// Where the fault mostly lives, Hz (for a machine whose fundamental is `fundamental_hz`).
    pub fn band_hz(&self, fundamental_hz: f64) -> (f64, f64) {
        match self {
            Fault::BearingWhine { freq_hz } => (freq_hz * 0.97, freq_hz * 1.03),
            Fault::Imbalance => (fundamental_hz * 0.5, fundamental_hz * 2.5),
            Fault::Rub { low_hz, high_hz } | Fault::Leak { low_hz, high_hz } => (*low_hz, *high_hz),
            Fault::Clog => (fundamental_hz * 0.4, fundamental_hz * 6.0),
        }
    }

    /// A fault for a machine of type `machine_type`, varied by `choice`.
    pub fn pick(machine_type: &str, choice: u64) -> Fault {
        let mut rng = Rng::new(choice);
        let kind = choice % 3;
        match (machine_type, kind) {
            ("pump", 0) => Fault::Clog,
            ("valve", 0) | ("slider", 0) => {
                let low = rng.range(2_500.0, 5_000.0);
                Fault::Leak { low_hz: low, high_hz: low * 1.4 }
            }
            (_, 1) => Fault::BearingWhine { freq_hz: rng.range(1_500.0, 6_000.0) },
            ("fan", 0) => Fault::Imbalance,
            _ => {
                let low = rng.range(600.0, 2_500.0);
                Fault::Rub { low_hz: low, high_hz: low * 1.5 }
            }
        }
    }
}

/// What to simulate for one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedMachineSpec {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    pub sample_rate_hz: u32,
    /// Decides the machine's own parameters (its sound).
    pub seed: u64,
    /// Decides the random course of this particular recording (0 for a live stream).
    pub take: u64,
    /// Machine signal power over background power, dB.
    pub snr_db: f64,
    /// The fault, its severity (0 to 1) and its onset in seconds from the start.
    pub fault: Option<(Fault, f64)>,
    pub fault_severity: f64,
}

/// The machine's own parameters, from its seed and type.
#[derive(Debug, Clone)]
struct Voice {
    fundamental_hz: f64,
    harmonic_levels: Vec<f64>,
    noise_bands: Vec<(f64, f64, f64)>,
    stroke_period_s: f64,
    click_rate_hz: f64,
    wander: f64,
}

impl Voice {
    fn new(machine_type: &str, rng: &mut Rng) -> Self {
        let (fundamental_hz, harmonics, noise_bands, stroke_period_s, click_rate_hz) = match machine_type {
            "fan" => (
                rng.range(90.0, 280.0),
                6,
                vec![(rng.range(300.0, 700.0), 1.2, 1.0), (rng.range(1_500.0, 3_500.0), 0.8, 0.6)],
                0.0,
                0.0,
            ),
            "pump" => (rng.range(45.0, 62.0), 10, vec![(rng.range(250.0, 900.0), 1.5, 0.7)], 0.0, 0.0),
            "slider" => {
                (rng.range(95.0, 125.0), 3, vec![(rng.range(1_000.0, 3_000.0), 2.0, 0.3)], rng.range(0.7, 1.6), 0.0)
            }
            _ => (rng.range(48.0, 62.0), 2, vec![(rng.range(200.0, 600.0), 1.0, 0.4)], 0.0, rng.range(0.8, 2.5)),
        };
        let harmonic_levels =
            (1..=harmonics).map(|k| rng.range(0.4, 1.0) / f64::from(k).powf(rng.range(0.6, 1.2))).collect();
        Self {
            fundamental_hz,
            harmonic_levels,
            noise_bands,
            stroke_period_s,
            click_rate_hz,
            wander: rng.range(0.003, 0.012),
        }
    }
}

/// One simulated machine: call [`render`](Self::render) or [`next_chunk`](Self::next_chunk).
pub struct SimulatedMachine {
    spec: SimulatedMachineSpec,
    voice: Voice,
    rate: f64,
    rng: Rng,
    samples_done: u64,
    chunks_done: u64,
    harmonics: Vec<Oscillator>,
    noise_filters: Vec<BandPass>,
    event_filter: BandPass,
    background_filters: [BandPass; 2],
    hum: Oscillator,
    fault_osc: Oscillator,
    fault_filter: BandPass,
    pitch: f64,
    level: f64,
    pitch_state: f64,
    level_state: f64,
    event_envelope: f64,
    next_event_s: f64,
    machine_gain: f64,
    background_gain: f64,
    fault_gain: f64,
    background_low: f64,
}

impl SimulatedMachine {
    pub fn new(spec: SimulatedMachineSpec) -> Self {
        let rate = f64::from(spec.sample_rate_hz.max(1_000));
        let mut voice_rng = Rng::new(mix_seed(&[spec.seed, name_seed(spec.machine_id.as_str())]));
        let voice = Voice::new(spec.machine_type.as_str(), &mut voice_rng);
        let fault_band =
            spec.fault.as_ref().map(|(fault, _)| fault.band_hz(voice.fundamental_hz)).unwrap_or((1_000.0, 1_200.0));
        let mut machine = Self {
            harmonics: (0..voice.harmonic_levels.len()).map(|k| Oscillator::new(k as f64)).collect(),
            noise_filters: voice.noise_bands.iter().map(|&(centre, q, _)| BandPass::new(centre, q, rate)).collect(),
            event_filter: BandPass::new(voice.noise_bands[0].0 * 3.0, 3.0, rate),
            background_filters: [BandPass::new(150.0, 0.5, rate), BandPass::new(2_000.0, 0.4, rate)],
            hum: Oscillator::new(0.3),
            fault_osc: Oscillator::new(0.7),
            fault_filter: BandPass::band(fault_band.0, fault_band.1, rate),
            rng: Rng::new(mix_seed(&[spec.seed, name_seed(spec.machine_id.as_str()), spec.take, 1])),
            pitch: 1.0,
            level: 1.0,
            pitch_state: 0.0,
            level_state: 0.0,
            event_envelope: 0.0,
            next_event_s: 0.0,
            machine_gain: 1.0,
            background_gain: 0.0,
            fault_gain: 0.0,
            background_low: 0.0,
            samples_done: 0,
            chunks_done: 0,
            voice,
            rate,
            spec,
        };
        machine.calibrate();
        machine
    }

    pub fn spec(&self) -> &SimulatedMachineSpec {
        &self.spec
    }

    /// The machine's fundamental frequency, Hz.
    pub fn fundamental_hz(&self) -> f64 {
        self.voice.fundamental_hz
    }

    /// Sets the gains from measured powers: the machine at `MACHINE_RMS`, the background at the SNR,
    /// the fault at a level set by its severity relative to the machine.
    fn calibrate(&mut self) {
        let frames = (CALIBRATION_S * self.rate) as usize;
        let mut probe = self.clone_for_calibration();
        let (mut machine_power, mut background_power, mut fault_power) = (0.0, 0.0, 0.0);
        for _ in 0..frames {
            let (machine, background, fault) = probe.parts(true);
            machine_power += machine * machine;
            background_power += background * background;
            fault_power += fault * fault;
        }
        let count = frames as f64;
        self.machine_gain = MACHINE_RMS / (machine_power / count).sqrt().max(1e-12);
        let machine_out = MACHINE_RMS * MACHINE_RMS;
        let background_target = machine_out / 10f64.powf(self.spec.snr_db / 10.0);
        self.background_gain = (background_target / (background_power / count).max(1e-24)).sqrt();
        let severity = self.spec.fault_severity.clamp(0.0, 1.0);
        let fault_db = -20.0 + 18.0 * severity;
        let fault_target = machine_out * 10f64.powf(fault_db / 10.0);
        self.fault_gain = (fault_target / (fault_power / count).max(1e-24)).sqrt();
    }

    fn clone_for_calibration(&self) -> Self {
        let mut spec = self.spec.clone();
        spec.take = u64::MAX;
        Self {
            spec,
            voice: self.voice.clone(),
            rate: self.rate,
            rng: Rng::new(mix_seed(&[self.spec.seed, 99])),
            samples_done: 0,
            chunks_done: 0,
            harmonics: self.harmonics.clone(),
            noise_filters: self.noise_filters.clone(),
            event_filter: self.event_filter.clone(),
            background_filters: self.background_filters.clone(),
            hum: self.hum.clone(),
            fault_osc: self.fault_osc.clone(),
            fault_filter: self.fault_filter.clone(),
            pitch: 1.0,
            level: 1.0,
            pitch_state: 0.0,
            level_state: 0.0,
            event_envelope: 0.0,
            next_event_s: 0.0,
            machine_gain: 1.0,
            background_gain: 1.0,
            fault_gain: 1.0,
            background_low: 0.0,
        }
    }

    /// The next sample's machine sound, background and fault (before gains).
    #[inline]
    fn parts(&mut self, fault_on: bool) -> (f64, f64, f64) {
        if self.samples_done.is_multiple_of(BLOCK) {
            // Pitch and level wander as stationary Ornstein-Uhlenbeck processes: a healthy
            // machine varies, but its first minute already shows how much.
            let keep = 1.0 - 1.0 / WANDER_BLOCKS;
            let push = (2.0 / WANDER_BLOCKS).sqrt();
            self.pitch_state = keep * self.pitch_state + push * self.rng.normal();
            self.level_state = keep * self.level_state + push * self.rng.normal();
            self.pitch = 1.0 + self.voice.wander * self.pitch_state;
            self.level = 1.0 + LEVEL_WANDER * self.level_state;
            let clog = fault_on && matches!(self.spec.fault, Some((Fault::Clog, _)));
            let fundamental = self.voice.fundamental_hz * self.pitch * if clog { 0.96 } else { 1.0 };
            for (k, oscillator) in self.harmonics.iter_mut().enumerate() {
                oscillator.set_frequency(fundamental * (k + 1) as f64, self.rate);
            }
            self.hum.set_frequency(50.0, self.rate);
            let fault_freq = match &self.spec.fault {
                Some((Fault::BearingWhine { freq_hz }, _)) => {
                    freq_hz * (1.0 + 0.004 * (self.samples_done as f64 / self.rate * 3.0).sin())
                }
                Some((Fault::Clog, _)) => fundamental * 0.5,
                _ => fundamental,
            };
            self.fault_osc.set_frequency(fault_freq, self.rate);
        }
        let time_s = self.samples_done as f64 / self.rate;
        self.samples_done += 1;
        let mut machine = 0.0;
        for (oscillator, level) in self.harmonics.iter_mut().zip(&self.voice.harmonic_levels) {
            machine += level * oscillator.next();
        }
        let white = self.rng.normal();
        for (filter, &(_, _, level)) in self.noise_filters.iter_mut().zip(&self.voice.noise_bands) {
            machine += level * 3.0 * filter.process(white);
        }
        // Strokes (slider) and clicks (valve).
        if self.voice.stroke_period_s > 0.0 && time_s >= self.next_event_s {
            self.event_envelope = 1.0;
            self.next_event_s += self.voice.stroke_period_s;
        } else if self.voice.click_rate_hz > 0.0 && time_s >= self.next_event_s {
            self.event_envelope = 1.0;
            self.next_event_s = time_s + -self.rng.uniform().max(1e-9).ln() / self.voice.click_rate_hz;
        }
        if self.event_envelope > 1e-4 {
            let decay = if self.voice.stroke_period_s > 0.0 { 0.9996 } else { 0.995 };
            machine += 4.0 * self.event_envelope * self.event_filter.process(self.rng.normal());
            self.event_envelope *= decay;
        }
        machine *= self.level;
        let background_white = self.rng.normal();
        self.background_low = 0.995 * self.background_low + 0.05 * background_white;
        let background = self.background_low
            + 0.6 * self.background_filters[0].process(background_white)
            + 0.3 * self.background_filters[1].process(self.rng.normal())
            + 0.05 * self.hum.next();
        let fault = if fault_on {
            match &self.spec.fault {
                Some((Fault::BearingWhine { .. }, _)) => self.fault_osc.next(),
                Some((Fault::Imbalance, _)) => {
                    let rotation = (std::f64::consts::TAU * time_s * self.voice.fundamental_hz / 6.0).sin();
                    machine * 0.8 * rotation + self.fault_osc.next()
                }
                Some((Fault::Rub { .. }, _)) => {
                    let rotation = (std::f64::consts::TAU * time_s * self.voice.fundamental_hz / 4.0).sin().max(0.0);
                    rotation * rotation * self.fault_filter.process(self.rng.normal()) * 3.0
                }
                Some((Fault::Leak { .. }, _)) => self.fault_filter.process(self.rng.normal()),
                Some((Fault::Clog, _)) => self.fault_osc.next() * (1.0 + 0.5 * self.rng.normal()),
                None => 0.0,
            }
        } else {
            0.0
        };
        (machine, background, fault)
    }

    /// Fills `out` with the next samples (full scale 1.0).
    pub fn render(&mut self, out: &mut [f32]) {
        for sample in out.iter_mut() {
            let fault_on =
                self.spec.fault.as_ref().is_some_and(|(_, onset_s)| self.samples_done as f64 >= onset_s * self.rate);
            let (machine, background, fault) = self.parts(fault_on);
            let value = self.machine_gain * machine + self.background_gain * background + self.fault_gain * fault;
            *sample = value.clamp(-1.0, 1.0) as f32;
        }
    }

    /// The next `frames` samples as a 16-bit mono chunk; capture time runs on from `start_time_us`.
    pub fn next_chunk(&mut self, frames: usize, start_time_us: i64) -> AudioChunk {
        let capture_start_us =
            start_time_us + auscult_schemas::time::samples_to_us(self.samples_done, self.spec.sample_rate_hz);
        let mut samples = vec![0.0f32; frames];
        self.render(&mut samples);
        let payload = samples.iter().flat_map(|&s| ((s * 32_767.0).round() as i16).to_le_bytes()).collect();
        let chunk = AudioChunk {
            machine_id: self.spec.machine_id.clone(),
            machine_type: self.spec.machine_type.clone(),
            sequence: self.chunks_done,
            capture_start_us,
            sample_rate_hz: self.spec.sample_rate_hz,
            channels: 1,
            sample_format: SampleFormat::S16le,
            payload,
            origin: ChunkOrigin::Simulator { seed: self.spec.seed },
        };
        self.chunks_done += 1;
        chunk
    }
}

/// A fleet of simulated machines for a live run.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    pub machines: usize,
    pub seed: u64,
    pub sample_rate_hz: u32,
    pub snr_db: f64,
    /// Every `faulty_every`-th machine (the 4th, 8th, ...) develops a fault.
    pub faulty_every: usize,
    pub fault_onset_s: f64,
    pub fault_severity: f64,
}

impl Default for FleetSpec {
    fn default() -> Self {
        Self {
            machines: 8,
            seed: 1,
            sample_rate_hz: 16_000,
            snr_db: 6.0,
            faulty_every: 4,
            fault_onset_s: 100.0,
            fault_severity: 0.8,
        }
    }
}

/// The machines of a fleet: types rotate through fan, pump, slider, valve (shifted every four
/// machines so faulty ones differ in type); ids are `TYPE-NN`.
pub fn fleet(spec: &FleetSpec) -> Vec<SimulatedMachineSpec> {
    (0..spec.machines)
        .map(|index| {
            let machine_type = MACHINE_TYPES[(index + index / MACHINE_TYPES.len()) % MACHINE_TYPES.len()];
            let faulty = spec.faulty_every > 0 && index % spec.faulty_every == spec.faulty_every - 1;
            let fault = faulty
                .then(|| (Fault::pick(machine_type, mix_seed(&[spec.seed, index as u64, 7])), spec.fault_onset_s));
            SimulatedMachineSpec {
                machine_id: MachineId::new(format!("{machine_type}-{index:02}")).expect("generated ids are valid"),
                machine_type: MachineType::new(machine_type).expect("known types are valid"),
                sample_rate_hz: spec.sample_rate_hz,
                seed: mix_seed(&[spec.seed, index as u64]),
                take: 0,
                snr_db: spec.snr_db,
                fault,
                fault_severity: spec.fault_severity,
            }
        })
        .collect()
}

/// A labelled corpus in the DCASE 2020 Task 2 layout.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusSpec {
    pub types: Vec<String>,
    pub ids_per_type: usize,
    pub train_clips: usize,
    pub test_normal_clips: usize,
    pub test_anomaly_clips: usize,
    pub clip_s: f64,
    pub sample_rate_hz: u32,
    pub snr_db: f64,
    pub seed: u64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        Self {
            types: MACHINE_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            ids_per_type: 3,
            train_clips: 30,
            test_normal_clips: 15,
            test_anomaly_clips: 15,
            clip_s: 10.0,
            sample_rate_hz: 16_000,
            snr_db: 6.0,
            seed: 1,
        }
    }
}

/// What [`write_corpus`] wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorpusSummary {
    pub files: usize,
    pub machines: usize,
    pub audio_s: f64,
}

/// Why a corpus could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("machine type {0:?} is not one the simulator knows (fan, pump, slider, valve)")]
    UnknownType(String),
}

/// Writes `TYPE/train/normal_id_XX_NNNNNNNN.wav` and `TYPE/test/{normal,anomaly}_id_XX_NNNNNNNN.wav`
/// (16-bit mono). Each clip is a different take of the same machine; each anomalous clip has one
/// fault of varied kind and severity (0.3 to 1.0) for its whole length.
pub fn write_corpus(dir: &Path, spec: &CorpusSpec) -> Result<CorpusSummary, SimulatorError> {
    let mut summary = CorpusSummary::default();
    let frames = (spec.clip_s * f64::from(spec.sample_rate_hz)).round() as usize;
    for machine_type in &spec.types {
        if !MACHINE_TYPES.contains(&machine_type.as_str()) {
            return Err(SimulatorError::UnknownType(machine_type.clone()));
        }
        for id_index in 0..spec.ids_per_type {
            let id = id_index * 2;
            let base = SimulatedMachineSpec {
                machine_id: MachineId::new(format!("{machine_type}-id_{id:02}")).expect("generated ids are valid"),
                machine_type: MachineType::new(machine_type.clone()).expect("known types are valid"),
                sample_rate_hz: spec.sample_rate_hz,
                seed: mix_seed(&[spec.seed, name_seed(machine_type), id as u64]),
                take: 0,
                snr_db: spec.snr_db,
                fault: None,
                fault_severity: 0.0,
            };
            let clips = [
                ("train", "normal", spec.train_clips),
                ("test", "normal", spec.test_normal_clips),
                ("test", "anomaly", spec.test_anomaly_clips),
            ];
            let mut take = 0u64;
            for (split, label, count) in clips {
                for clip in 0..count {
                    take += 1;
                    let mut machine_spec = SimulatedMachineSpec { take, ..base.clone() };
                    if label == "anomaly" {
                        let choice = mix_seed(&[base.seed, clip as u64, 3]);
                        machine_spec.fault = Some((Fault::pick(machine_type, choice), 0.0));
                        machine_spec.fault_severity = 0.3 + 0.7 * Rng::new(choice).uniform();
                    }
                    let path = dir.join(machine_type).join(split).join(format!("{label}_id_{id:02}_{clip:08}.wav"));
                    write_clip(&path, SimulatedMachine::new(machine_spec), frames)?;
                    summary.files += 1;
                    summary.audio_s += spec.clip_s;
                }
            }
            summary.machines += 1;
        }
    }
    Ok(summary)
}

fn write_clip(path: &Path, mut machine: SimulatedMachine, frames: usize) -> Result<(), SimulatorError> {
    let error = |reason: String| SimulatorError::Write { path: path.to_owned(), reason };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
    }
    let wav_spec = hound::WavSpec {
        channels: 1,
        sample_rate: machine.spec.sample_rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, wav_spec).map_err(|e| error(e.to_string()))?;
    let mut samples = vec![0.0f32; frames];
    machine.render(&mut samples);
    let mut sample_writer = writer.get_i16_writer(frames as u32);
    for sample in samples {
        sample_writer.write_sample((sample * 32_767.0).round() as i16);
    }
    sample_writer.flush().map_err(|e| error(e.to_string()))?;
    writer.finalize().map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(machine_type: &str, fault: Option<(Fault, f64)>) -> SimulatedMachineSpec {
        SimulatedMachineSpec {
            machine_id: MachineId::new(format!("{machine_type}-1")).unwrap(),
            machine_type: MachineType::new(machine_type).unwrap(),
            sample_rate_hz: 16_000,
            seed: 5,
            take: 0,
            snr_db: 6.0,
            fault,
            fault_severity: 0.7,
        }
    }

    fn render(spec: SimulatedMachineSpec, frames: usize) -> Vec<f32> {
        let mut out = vec![0.0; frames];
        SimulatedMachine::new(spec).render(&mut out);
        out
    }

    /// Energy near a frequency (Goertzel over the whole signal).
    fn energy_at(samples: &[f32], freq_hz: f64) -> f64 {
        let coefficient = 2.0 * (std::f64::consts::TAU * freq_hz / 16_000.0).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s0 = f64::from(x) + coefficient * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coefficient * s1 * s2
    }

    #[test]
    fn the_same_spec_gives_the_same_samples_however_rendered() {
        let whole = render(spec("fan", None), 10_000);
        let mut machine = SimulatedMachine::new(spec("fan", None));
        let mut pieces = Vec::new();
        for size in [1, 255, 256, 257, 3000, 6231] {
            let mut out = vec![0.0; size];
            machine.render(&mut out);
            pieces.extend(out);
        }
        assert_eq!(pieces, whole);
        let mut other = spec("fan", None);
        other.machine_id = MachineId::new("fan-2").unwrap();
        assert_ne!(render(other, 10_000), whole);
    }

    #[test]
    fn the_mix_has_the_requested_snr() {
        for snr_db in [-6.0, 0.0, 6.0] {
            let mut machine_only = spec("pump", None);
            machine_only.snr_db = snr_db;
            let mut machine = SimulatedMachine::new(machine_only);
            let (mut signal, mut noise) = (0.0, 0.0);
            for _ in 0..80_000 {
                let (m, b, _) = machine.parts(false);
                signal += (machine.machine_gain * m).powi(2);
                noise += (machine.background_gain * b).powi(2);
            }
            let measured = 10.0 * (signal / noise).log10();
            assert!((measured - snr_db).abs() < 1.0, "asked {snr_db} dB, measured {measured:.2} dB");
        }
    }

    #[test]
    fn a_bearing_whine_raises_its_own_frequency() {
        let whine = Fault::BearingWhine { freq_hz: 3_000.0 };
        let healthy = render(spec("fan", None), 32_000);
        let failing = render(spec("fan", Some((whine, 0.0))), 32_000);
        let ratio = energy_at(&failing, 3_000.0) / energy_at(&healthy, 3_000.0);
        assert!(ratio > 10.0, "whine raised 3 kHz energy only {ratio:.1}x");
        let elsewhere = energy_at(&failing, 700.0) / energy_at(&healthy, 700.0);
        assert!(elsewhere < 3.0, "whine changed 700 Hz {elsewhere:.1}x");
    }

    #[test]
    fn fleets_make_every_fourth_machine_faulty_with_different_types() {
        let machines = fleet(&FleetSpec::default());
        let faulty: Vec<&str> = machines.iter().filter(|m| m.fault.is_some()).map(|m| m.machine_id.as_str()).collect();
        assert_eq!(faulty, vec!["valve-03", "fan-07"]);
    }

    #[test]
    fn a_corpus_has_the_dcase_layout_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = CorpusSpec {
            types: vec!["valve".to_owned()],
            ids_per_type: 2,
            train_clips: 2,
            test_normal_clips: 1,
            test_anomaly_clips: 1,
            clip_s: 0.5,
            ..CorpusSpec::default()
        };
        let summary = write_corpus(dir.path(), &corpus).unwrap();
        assert_eq!(summary.files, 8);
        let train = dir.path().join("valve/train/normal_id_02_00000001.wav");
        let anomaly = dir.path().join("valve/test/anomaly_id_00_00000000.wav");
        assert!(train.is_file() && anomaly.is_file());
        let again = tempfile::tempdir().unwrap();
        write_corpus(again.path(), &corpus).unwrap();
        assert_eq!(
            std::fs::read(&anomaly).unwrap(),
            std::fs::read(again.path().join("valve/test/anomaly_id_00_00000000.wav")).unwrap()
        );
        let reader = hound::WavReader::open(&train).unwrap();
        assert_eq!(reader.duration(), 8_000);
    }
}
