//! `auscult simulate`: a labelled corpus of simulated machines in the DCASE 2020 Task 2 layout.
//!
//! Writes `TYPE/train/normal_id_XX_NNNNNNNN.wav`, `TYPE/test/normal_id_XX_NNNNNNNN.wav` and
//! `TYPE/test/anomaly_id_XX_NNNNNNNN.wav` (16-bit PCM mono; ids 00, 02, 04, ... as in DCASE;
//! clips numbered from 00000000 in each group), which [`crate::layout`] reads back as machine
//! `TYPE-id_XX`. Each clip is another take of the same machine (its own random course, the same
//! machine parameters and the same fixed gains, its own operating point and path to the
//! microphone); each anomalous clip holds one fault from its start, its kind and band varied, its
//! severity spread over [`MIN_SEVERITY`] to [`MAX_SEVERITY`], its duty over [`MIN_DUTY`] to 1
//! (log-uniform) and its reshaping of the machine's sound over [`MIN_RESHAPE_DB`] to
//! [`MAX_RESHAPE_DB`], so some are subtle and some come and go.
//!
//! What the take and fault numbers were matched to: `bench/corpus_stats.py` on the real MIMII
//! clips (-6 dB): how much takes differ in band shape, how far faults move a clip's mean and peak
//! levels against that, and whether the frames' full covariance helps the clip-mean distance
//! (it does not, on real clips). BENCHMARKS.md has the columns, real and simulated, side by side.
//!
//! Promises: the same spec writes byte-identical files (clips are independent, so writing them
//! on several threads changes nothing); each file appears whole or not at all (written under a
//! temporary name, then renamed).

use super::random::{mix_seed, Rng};
use super::to_i16;
use super::{Fault, SimulatedMachine, SimulatedMachineSpec, DEFAULT_SAMPLE_RATE_HZ, DEFAULT_SNR_DB, MACHINE_TYPES};
use auscult_schemas::chunk::{MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ};
use auscult_schemas::{route_hash, MachineId, MachineType};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The mildest fault severity in a corpus.
pub const MIN_SEVERITY: f64 = 0.3;
/// The strongest fault severity in a corpus.
pub const MAX_SEVERITY: f64 = 1.0;
/// The least share of time an anomalous clip's fault sounds (it is drawn log-uniformly up to 1).
pub const MIN_DUTY: f64 = 0.1;
/// The least and the most an anomalous clip's fault changes how the machine runs, dB.
pub const MIN_RESHAPE_DB: f64 = 1.5;
pub const MAX_RESHAPE_DB: f64 = 5.0;
/// Longest clip, s (a 16-bit mono WAV must stay under 4 GiB).
const MAX_CLIP_S: f64 = 3_600.0;
/// Most threads writing clips.
const MAX_WRITERS: usize = 8;
/// Frames rendered and written at a time (bounds memory whatever the clip length).
const RENDER_FRAMES: usize = 1 << 16;
/// The random stream an anomalous clip's fault is drawn from.
const ANOMALY_STREAM: u64 = 3;

/// What corpus to write.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusSpec {
    /// Machine types, each once, among [`MACHINE_TYPES`].
    pub types: Vec<MachineType>,
    /// Machines per type, ids 00, 02, 04, ...
    pub ids_per_type: usize,
    /// Normal clips per machine in `train/`.
    pub train_clips: usize,
    /// Normal clips per machine in `test/`.
    pub test_normal_clips: usize,
    /// Anomalous clips per machine in `test/`.
    pub test_anomaly_clips: usize,
    /// Seconds per clip (0 to 3,600).
    pub clip_s: f64,
    pub sample_rate_hz: u32,
    /// Machine over background, dB, on average over a machine's clips.
    pub snr_db: f64,
    /// The same seed writes the same bytes.
    pub seed: u64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        Self {
            types: MACHINE_TYPES
                .iter()
                .map(|name| MachineType::new(*name).expect("the known types are valid names"))
                .collect(),
            ids_per_type: 3,
            train_clips: 30,
            test_normal_clips: 15,
            test_anomaly_clips: 15,
            clip_s: 10.0,
            sample_rate_hz: DEFAULT_SAMPLE_RATE_HZ,
            snr_db: DEFAULT_SNR_DB,
            seed: 1,
        }
    }
}

/// What [`write_corpus`] wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorpusSummary {
    pub files: usize,
    pub machines: usize,
    pub anomalous_files: usize,
    pub audio_s: f64,
    /// Samples that reached full scale (calibration leaves headroom: expect 0).
    pub clipped_samples: u64,
}

/// Why a corpus could not be written. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("machine type {0:?} is not one the simulator has a model for (fan, pump, slider, valve)")]
    UnknownType(String),
    #[error("corpus spec: {0}")]
    InvalidSpec(String),
}

/// One clip to write.
struct Clip {
    path: PathBuf,
    spec: SimulatedMachineSpec,
    machine: usize,
}

/// Checks the spec: known types, each once; a sane rate and clip length.
fn check(spec: &CorpusSpec) -> Result<(), SimulatorError> {
    for (index, machine_type) in spec.types.iter().enumerate() {
        if !MACHINE_TYPES.contains(&machine_type.as_str()) {
            return Err(SimulatorError::UnknownType(machine_type.to_string()));
        }
        if spec.types[..index].contains(machine_type) {
            return Err(SimulatorError::InvalidSpec(format!("machine type {machine_type} is listed twice")));
        }
    }
    if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&spec.sample_rate_hz) {
        let rate = spec.sample_rate_hz;
        return Err(SimulatorError::InvalidSpec(format!(
            "sample rate {rate} Hz is outside {MIN_SAMPLE_RATE_HZ}..={MAX_SAMPLE_RATE_HZ} Hz"
        )));
    }
    if !(spec.clip_s.is_finite() && spec.clip_s > 0.0 && spec.clip_s <= MAX_CLIP_S) {
        return Err(SimulatorError::InvalidSpec(format!(
            "clip length {} s is outside (0, {MAX_CLIP_S}] s",
            spec.clip_s
        )));
    }
    Ok(())
}

/// Every clip of the corpus, in a fixed order, with the machine it belongs to.
fn plan(dir: &Path, spec: &CorpusSpec) -> (Vec<SimulatedMachineSpec>, Vec<Clip>) {
    let mut machines = Vec::new();
    let mut clips = Vec::new();
    for machine_type in &spec.types {
        for id in (0..spec.ids_per_type).map(|index| index * 2) {
            let machine_id =
                MachineId::new(format!("{machine_type}-id_{id:02}")).expect("a valid type and digits make a valid id");
            let base = SimulatedMachineSpec {
                snr_db: spec.snr_db,
                sample_rate_hz: spec.sample_rate_hz,
                ..SimulatedMachineSpec::healthy(machine_id, machine_type.clone(), spec.seed)
            };
            let groups = [
                ("train", "normal", spec.train_clips),
                ("test", "normal", spec.test_normal_clips),
                ("test", "anomaly", spec.test_anomaly_clips),
            ];
            let mut take = 0u64;
            for (split, label, count) in groups {
                for clip in 0..count {
                    take += 1;
                    let mut clip_spec = SimulatedMachineSpec { take, ..base.clone() };
                    if label == "anomaly" {
                        let choice = mix_seed(&[spec.seed, take, ANOMALY_STREAM, route_hash(&base.machine_id)]);
                        clip_spec.fault = Some((Fault::pick(machine_type.as_str(), choice), 0.0));
                        let mut draws = Rng::new(choice);
                        clip_spec.fault_severity = draws.range(MIN_SEVERITY, MAX_SEVERITY);
                        clip_spec.fault_duty = draws.log_range(MIN_DUTY, 1.0);
                        clip_spec.fault_reshape_db = draws.range(MIN_RESHAPE_DB, MAX_RESHAPE_DB);
                    }
                    let name = format!("{label}_id_{id:02}_{clip:08}.wav");
                    clips.push(Clip {
                        path: dir.join(machine_type.as_str()).join(split).join(name),
                        spec: clip_spec,
                        machine: machines.len(),
                    });
                }
            }
            machines.push(base);
        }
    }
    (machines, clips)
}

/// Writes the corpus below `dir` (folders are created; existing files of the same names are replaced).
pub fn write_corpus(dir: &Path, spec: &CorpusSpec) -> Result<CorpusSummary, SimulatorError> {
    write_corpus_reporting(dir, spec, &|_, _| {})
}

/// [`write_corpus`], calling `progress(clips written, clips in all)` after each clip (from the
/// writer threads).
pub fn write_corpus_reporting(
    dir: &Path,
    spec: &CorpusSpec,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<CorpusSummary, SimulatorError> {
    check(spec)?;
    let (machines, clips) = plan(dir, spec);
    let written = AtomicUsize::new(0);
    let calibrations: Vec<_> = machines.iter().map(|machine| machine.clone().sanitised().calibrate()).collect();
    let frames = (spec.clip_s * f64::from(spec.sample_rate_hz)).round().max(1.0) as usize;
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Result<u64, SimulatorError>>>> =
        Mutex::new((0..clips.len()).map(|_| None).collect());
    let writers =
        std::thread::available_parallelism().map_or(1, usize::from).clamp(1, MAX_WRITERS).min(clips.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..writers {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(clip) = clips.get(index) else { break };
                let machine = SimulatedMachine::with_calibration(clip.spec.clone(), &calibrations[clip.machine]);
                let outcome = write_clip(&clip.path, machine, frames);
                outcomes.lock().expect("a writer panicked while holding the lock")[index] = Some(outcome);
                progress(written.fetch_add(1, Ordering::Relaxed) + 1, clips.len());
            });
        }
    });
    let mut summary = CorpusSummary { machines: machines.len(), ..CorpusSummary::default() };
    let outcomes = outcomes.into_inner().expect("the writers have finished");
    for (clip, outcome) in clips.iter().zip(outcomes) {
        let clipped = outcome.expect("every clip was taken by a writer")?;
        summary.files += 1;
        summary.anomalous_files += usize::from(clip.spec.fault.is_some());
        summary.audio_s += frames as f64 / f64::from(spec.sample_rate_hz);
        summary.clipped_samples += clipped;
    }
    Ok(summary)
}

/// Renders and writes one clip under a temporary name, then renames it; returns clipped samples.
fn write_clip(path: &Path, mut machine: SimulatedMachine, frames: usize) -> Result<u64, SimulatorError> {
    let error = |reason: String| SimulatorError::Write { path: path.to_owned(), reason };
    let parent = path.parent().ok_or_else(|| error("no parent folder".to_owned()))?;
    std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
    let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = parent.join(format!(".{file_name}.partial"));
    let wav_spec = hound::WavSpec {
        channels: 1,
        sample_rate: machine.spec().sample_rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let result = (|| {
        let mut writer = hound::WavWriter::create(&temporary, wav_spec)?;
        let mut block = vec![0.0f32; RENDER_FRAMES];
        let mut left = frames;
        while left > 0 {
            let block = &mut block[..left.min(RENDER_FRAMES)];
            machine.render(block);
            let mut sample_writer = writer.get_i16_writer(block.len() as u32);
            for &sample in block.iter() {
                sample_writer.write_sample(to_i16(sample));
            }
            sample_writer.flush()?;
            left -= block.len();
        }
        writer.finalize()
    })();
    if let Err(failure) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(error(failure.to_string()));
    }
    std::fs::rename(&temporary, path).map_err(|e| error(e.to_string()))?;
    Ok(machine.clipped_samples())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{discover_labelled, Label, Split};
    use std::collections::BTreeMap;

    fn small() -> CorpusSpec {
        CorpusSpec {
            types: vec![MachineType::new("fan").unwrap(), MachineType::new("valve").unwrap()],
            ids_per_type: 2,
            train_clips: 2,
            test_normal_clips: 1,
            test_anomaly_clips: 2,
            clip_s: 0.5,
            ..CorpusSpec::default()
        }
    }

    /// Every file below `dir`, relative, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut folders = vec![dir.to_owned()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    found.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    fn samples(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path).unwrap().samples::<i16>().map(Result::unwrap).collect()
    }

    #[test]
    fn a_corpus_has_the_dcase_layout_and_reads_back_with_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let summary = write_corpus(dir.path(), &small()).unwrap();
        let expected = CorpusSummary { files: 20, machines: 4, anomalous_files: 8, audio_s: 10.0, clipped_samples: 0 };
        assert_eq!(summary, expected);
        let written = files(dir.path());
        let mut wanted = Vec::new();
        for machine_type in ["fan", "valve"] {
            for id in ["00", "02"] {
                wanted.push(format!("{machine_type}/train/normal_id_{id}_00000000.wav"));
                wanted.push(format!("{machine_type}/train/normal_id_{id}_00000001.wav"));
                wanted.push(format!("{machine_type}/test/normal_id_{id}_00000000.wav"));
                wanted.push(format!("{machine_type}/test/anomaly_id_{id}_00000000.wav"));
                wanted.push(format!("{machine_type}/test/anomaly_id_{id}_00000001.wav"));
            }
        }
        wanted.sort();
        assert_eq!(written, wanted, "exactly the DCASE names, no temporary files left");
        let corpus = discover_labelled(dir.path()).unwrap();
        assert!(corpus.skipped.is_empty(), "{:?}", corpus.skipped);
        let mut counts: BTreeMap<(String, Split, Label), usize> = BTreeMap::new();
        for file in &corpus.files {
            *counts.entry((file.machine_id.to_string(), file.split, file.label)).or_default() += 1;
        }
        for id in ["fan-id_00", "fan-id_02", "valve-id_00", "valve-id_02"] {
            assert_eq!(counts[&(id.to_owned(), Split::Train, Label::Normal)], 2);
            assert_eq!(counts[&(id.to_owned(), Split::Test, Label::Normal)], 1);
            assert_eq!(counts[&(id.to_owned(), Split::Test, Label::Anomalous)], 2);
        }
        let reader = hound::WavReader::open(dir.path().join("valve/test/anomaly_id_02_00000001.wav")).unwrap();
        let spec = reader.spec();
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 16_000, 16));
        assert_eq!(reader.duration(), 8_000);
    }

    #[test]
    fn writing_the_same_corpus_twice_gives_byte_identical_files() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_corpus(first.path(), &small()).unwrap();
        write_corpus(second.path(), &small()).unwrap();
        let names = files(first.path());
        assert_eq!(names, files(second.path()));
        for name in &names {
            let (a, b) =
                (std::fs::read(first.path().join(name)).unwrap(), std::fs::read(second.path().join(name)).unwrap());
            assert!(a == b, "{name} differs between two runs");
        }
        let other_seed = tempfile::tempdir().unwrap();
        write_corpus(other_seed.path(), &CorpusSpec { seed: 2, ..small() }).unwrap();
        let name = "fan/train/normal_id_00_00000000.wav";
        assert_ne!(
            std::fs::read(first.path().join(name)).unwrap(),
            std::fs::read(other_seed.path().join(name)).unwrap()
        );
    }

    #[test]
    fn clips_of_one_machine_are_different_takes_at_similar_loudness() {
        let dir = tempfile::tempdir().unwrap();
        write_corpus(
            dir.path(),
            &CorpusSpec { types: vec![MachineType::new("pump").unwrap()], clip_s: 2.0, ..small() },
        )
        .unwrap();
        let rms_db = |samples: &[i16]| {
            let power = samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64;
            10.0 * power.log10()
        };
        let first = samples(&dir.path().join("pump/train/normal_id_00_00000000.wav"));
        let second = samples(&dir.path().join("pump/train/normal_id_00_00000001.wav"));
        let other = samples(&dir.path().join("pump/train/normal_id_02_00000000.wav"));
        assert_ne!(first, second);
        assert!((rms_db(&first) - rms_db(&second)).abs() < 6.0);
        assert_ne!(first, other);
    }

    #[test]
    fn a_bad_spec_or_an_unwritable_folder_is_refused_with_a_one_line_reason() {
        let dir = tempfile::tempdir().unwrap();
        let press = CorpusSpec { types: vec![MachineType::new("press").unwrap()], ..small() };
        assert!(matches!(write_corpus(dir.path(), &press), Err(SimulatorError::UnknownType(name)) if name == "press"));
        let twice = CorpusSpec { types: vec![MachineType::new("fan").unwrap(); 2], ..small() };
        assert!(matches!(write_corpus(dir.path(), &twice), Err(SimulatorError::InvalidSpec(_))));
        for bad in [
            CorpusSpec { clip_s: 0.0, ..small() },
            CorpusSpec { clip_s: f64::NAN, ..small() },
            CorpusSpec { sample_rate_hz: 10, ..small() },
        ] {
            assert!(matches!(write_corpus(dir.path(), &bad), Err(SimulatorError::InvalidSpec(_))));
        }
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let error = write_corpus(&file, &small()).unwrap_err();
        assert!(matches!(error, SimulatorError::Write { .. }));
        assert!(error.to_string().contains("a-file") && !error.to_string().contains('\n'), "{error}");
    }
}
