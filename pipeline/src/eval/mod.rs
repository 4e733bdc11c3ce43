//! Offline evaluation on labelled corpora, through the stream's own code path.
//!
//! For each machine (type and id) a [`MachineMonitor`] learns from the training normals,
//! exactly as the stream learns (the same decoding, features, windows and profile), then
//! scores every test clip as the stream scores windows; a clip's score is the mean of its
//! windows' scores. Reported per machine: AUC and pAUC (DCASE's metrics), and, at the
//! machine's calibrated warning threshold with the stream's alert hysteresis, the false-alarm
//! rate, recall and F1 over clips. With [`folds`], an unsplit corpus is evaluated K times, each
//! fold exactly as the single split is, and [`summary`] aggregates the folds.

pub mod folds;
pub mod metrics;
pub mod summary;

use crate::config::Config;
use crate::model::alert::AlertTracker;
use crate::model::{MachineMonitor, MonitorOutput};
use auscult_connectors::layout::{Label, LabelledFile, Split};
use auscult_connectors::wav::WavChunkReader;
use auscult_schemas::{AudioChunk, BandDeviation, ChunkOrigin, MachineId, MachineType};
use metrics::DetectionCounts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The false-positive-rate bound of pAUC (DCASE uses 0.1).
pub const PAUC_MAX_FPR: f64 = 0.1;

/// The clips of one machine, split for evaluation.
#[derive(Debug, Clone)]
pub struct MachineClips {
    pub machine_type: MachineType,
    pub machine_id: MachineId,
    pub train: Vec<PathBuf>,
    /// Test clips and whether each is anomalous.
    pub test: Vec<(PathBuf, bool)>,
    /// The cross-validation fold this split is (0-based); `None` for the single split.
    pub fold: Option<usize>,
}

/// A corpus's files by machine (sorted by type, then id), each machine's sorted by path.
fn files_by_machine(files: &[LabelledFile]) -> BTreeMap<(MachineType, MachineId), Vec<&LabelledFile>> {
    let mut by_machine: BTreeMap<(MachineType, MachineId), Vec<&LabelledFile>> = BTreeMap::new();
    for file in files {
        by_machine.entry((file.machine_type.clone(), file.machine_id.clone())).or_default().push(file);
    }
    for machine_files in by_machine.values_mut() {
        machine_files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    by_machine
}

/// Groups a labelled corpus by machine and splits it: DCASE folders say train and test;
/// MIMII-style unsplit folders test on every anomalous clip plus as many normal clips (the
/// first ones by name, as the MIMII baseline does) and train on the remaining normals.
pub fn split_corpus(files: &[LabelledFile]) -> Vec<MachineClips> {
    files_by_machine(files)
        .into_iter()
        .map(|((machine_type, machine_id), files)| {
            let mut train = Vec::new();
            let mut test = Vec::new();
            let unsplit_anomalous =
                files.iter().filter(|f| f.split == Split::Unsplit && f.label == Label::Anomalous).count();
            let mut unsplit_normals_for_test = unsplit_anomalous;
            for file in files {
                let anomalous = file.label == Label::Anomalous;
                match file.split {
                    Split::Train if !anomalous => train.push(file.path.clone()),
                    Split::Train | Split::Test => test.push((file.path.clone(), anomalous)),
                    Split::Unsplit if anomalous => test.push((file.path.clone(), true)),
                    Split::Unsplit if unsplit_normals_for_test > 0 => {
                        unsplit_normals_for_test -= 1;
                        test.push((file.path.clone(), false));
                    }
                    Split::Unsplit => train.push(file.path.clone()),
                }
            }
            MachineClips { machine_type, machine_id, train, test, fold: None }
        })
        .collect()
}

/// One test clip's result.
#[derive(Debug, Clone, Serialize)]
pub struct ClipScore {
    pub path: PathBuf,
    pub anomalous: bool,
    pub score: f64,
    /// Whether the stream's alert state machine opened an alert during the clip.
    pub flagged: bool,
    /// The most deviating bands of the clip's highest-scoring window.
    pub top_bands: Vec<BandDeviation>,
}

/// One machine's row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct MachineResult {
    pub machine_type: MachineType,
    pub machine_id: MachineId,
    /// The cross-validation fold (0-based); absent for the single split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    pub train_clips: usize,
    /// The training clips, in the order they were learned (peers can reuse the exact split).
    pub train_files: Vec<PathBuf>,
    pub test_normal: usize,
    pub test_anomalous: usize,
    pub auc: Option<f64>,
    pub pauc: Option<f64>,
    pub threshold: Option<f64>,
    pub false_alarm_rate: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub clips: Vec<ClipScore>,
    /// Files that could not be read, one line each.
    pub skipped: Vec<String>,
}

/// Why a machine could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{machine}{}: no training clip could be learned from", .fold.map(|k| format!(" fold {k}")).unwrap_or_default())]
    NothingLearned { machine: MachineId, fold: Option<usize> },
}

/// Evaluates every split (a machine, or one fold of a machine) on `workers` threads, results in
/// the order of `machines`; `on_done` is called after each.
pub fn evaluate(
    machines: &[MachineClips],
    config: &Config,
    workers: usize,
    on_done: &(dyn Fn(&MachineResult) + Sync),
) -> Vec<Result<MachineResult, EvalError>> {
    let mut config = config.clone();
    config.model.learning_s = f64::INFINITY;
    config.model.adapt = false;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<MachineResult, EvalError>>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(machines.len()).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(machine) = machines.get(index) else { break };
                let result = evaluate_machine(machine, &config);
                if let Ok(row) = &result {
                    on_done(row);
                }
                results.lock().expect("not poisoned")[index] = Some(result);
            });
        }
    });
    results.into_inner().expect("not poisoned").into_iter().map(|r| r.expect("every machine was evaluated")).collect()
}

/// Feeds one clip as its own stretch of audio (a sequence gap before it restarts the STFT);
/// returns the windows it produced, or the reason it could not be read.
fn feed_clip(
    monitor: &mut MachineMonitor,
    path: &std::path::Path,
    sequence: &mut u64,
    config: &Config,
) -> Result<MonitorOutput, String> {
    let mut reader = WavChunkReader::open(path).map_err(|error| error.to_string())?;
    let info = reader.info();
    let frames_per_chunk = (u64::from(info.sample_rate_hz) * u64::from(config.stream.chunk_ms) / 1000).max(1) as usize;
    let mut out = MonitorOutput::default();
    *sequence += 1;
    let mut frames_so_far = 0u64;
    while let Some(payload) = reader.next_payload(frames_per_chunk).map_err(|error| error.to_string())? {
        let frames = payload.len() / (info.sample_format.bytes_per_sample() * usize::from(info.channels)).max(1);
        let chunk = AudioChunk {
            machine_id: monitor.machine_id().clone(),
            machine_type: monitor.machine_type().clone(),
            sequence: *sequence,
            capture_start_us: auscult_schemas::time::samples_to_us(frames_so_far, info.sample_rate_hz),
            sample_rate_hz: info.sample_rate_hz,
            channels: info.channels,
            sample_format: info.sample_format,
            payload,
            origin: ChunkOrigin::File { path: path.display().to_string() },
        };
        monitor.accept(&chunk, &mut out).map_err(|error| format!("{}: {error}", path.display()))?;
        *sequence += 1;
        frames_so_far += frames as u64;
    }
    *sequence += 1;
    Ok(out)
}

fn evaluate_machine(machine: &MachineClips, config: &Config) -> Result<MachineResult, EvalError> {
    let mut monitor = MachineMonitor::new(machine.machine_id.clone(), machine.machine_type.clone(), config);
    let mut sequence = 0u64;
    let mut skipped = Vec::new();
    for path in &machine.train {
        if let Err(error) = feed_clip(&mut monitor, path, &mut sequence, config) {
            skipped.push(error);
        }
    }
    if !monitor.finish_learning() {
        return Err(EvalError::NothingLearned { machine: machine.machine_id.clone(), fold: machine.fold });
    }
    let (warning, alarm) = monitor.thresholds().expect("learning finished");
    monitor.explain_every_window(true);
    let mut clips = Vec::new();
    for (path, anomalous) in &machine.test {
        match feed_clip(&mut monitor, path, &mut sequence, config) {
            Ok(out) => {
                let scores: Vec<f64> = out.windows.iter().filter_map(|window| window.score).collect();
                let Some(score) = metrics::mean(&scores) else {
                    skipped.push(format!(
                        "{}: shorter than one span ({} windows of {} frames)",
                        path.display(),
                        config.model.span_windows,
                        config.model.window_frames
                    ));
                    continue;
                };
                // Flagged: the clip's score is over the warning threshold (a 10 s clip holds one
                // span), or the stream's alert logic opens an alert on its spans.
                let mut tracker = AlertTracker::new(config.alerts.clone(), config.model.span_windows as usize);
                let alert = scores.iter().any(|&s| tracker.observe(s, warning, alarm).is_some());
                let flagged = score > warning || alert;
                let top_bands = out
                    .windows
                    .iter()
                    .zip(&out.explanations)
                    .filter(|(window, _)| window.score.is_some())
                    .max_by(|a, b| a.0.score.unwrap_or(0.0).total_cmp(&b.0.score.unwrap_or(0.0)))
                    .map(|(_, bands)| bands.clone())
                    .unwrap_or_default();
                clips.push(ClipScore { path: path.clone(), anomalous: *anomalous, score, flagged, top_bands });
            }
            Err(error) => skipped.push(error),
        }
    }
    let normal: Vec<f64> = clips.iter().filter(|c| !c.anomalous).map(|c| c.score).collect();
    let anomalous: Vec<f64> = clips.iter().filter(|c| c.anomalous).map(|c| c.score).collect();
    let detection = detection_counts(&clips);
    Ok(MachineResult {
        machine_type: machine.machine_type.clone(),
        machine_id: machine.machine_id.clone(),
        fold: machine.fold,
        train_clips: machine.train.len(),
        train_files: machine.train.clone(),
        test_normal: normal.len(),
        test_anomalous: anomalous.len(),
        auc: metrics::auc(&normal, &anomalous),
        pauc: metrics::partial_auc(&normal, &anomalous, PAUC_MAX_FPR),
        threshold: Some(warning),
        false_alarm_rate: detection.false_alarm_rate(),
        recall: detection.recall(),
        f1: detection.f1(),
        clips,
        skipped,
    })
}

/// The clips' false alarms and detections at the threshold they were flagged with.
pub fn detection_counts(clips: &[ClipScore]) -> DetectionCounts {
    let mut counts = DetectionCounts::default();
    for clip in clips {
        counts.count(clip.anomalous, clip.flagged);
    }
    counts
}
