//! Checkpoints of the per-machine state, so that a restarted pipeline continues where the
//! last one stopped instead of learning every machine again.
//!
//! The dataflow cuts the capture-time axis at boundaries every `stream.checkpoint_s`. When a
//! worker's monitors have processed every epoch up to a boundary and none after it, the worker
//! writes the state of all its machines to `DIR/worker-W/<covered_until_us>.ckpt`, where
//! `covered_until_us` is the capture time (µs) the state covers up to, exclusive. A file is
//! written to a temporary name, synced and renamed, so a file that exists is complete.
//!
//! Offsets of the audio topic are committed only up to a boundary that every worker's
//! checkpoint and every sink have made durable; just before committing, a worker records that
//! boundary in `DIR/worker-W/committed`. A restart takes the largest recorded boundary `R`
//! and, for each machine, its newest snapshot covering at most `R`: the state after exactly
//! the audio whose outputs are durable. Audio the topic replays from the committed offsets
//! that the state has already seen is dropped by its sequence numbers; the rest is processed
//! as an uninterrupted run would have.
//!
//! All workers and processes of a run must see the same `DIR` (one host, or a shared volume);
//! a cluster without one keeps its state in a compacted Kafka topic instead ([`changelog`]).
//! The number of workers may change between runs: every worker reads every folder and keeps
//! the machines it owns now.

pub mod changelog;

use crate::config::Config;
use crate::model::{MachineMonitor, MonitorSnapshot, RestoreError};
use auscult_schemas::features::FEATURE_VERSION;
use auscult_schemas::MachineId;
use bincode::Options;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Version of the checkpoint file layout.
const FORMAT: u32 = 2;
const MARKER: &str = "committed";
const EXTENSION: &str = "ckpt";

/// Why checkpoints could not be written or read; each names the file and says why in one
/// line (the cause is part of the message, not a separate source, so it is printed once).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("checkpoint {path}: cannot encode: {cause}")]
    Encode { path: PathBuf, cause: bincode::Error },
    #[error("checkpoint {path}: unreadable (damaged, or not an auscult checkpoint): {cause}")]
    Decode { path: PathBuf, cause: bincode::Error },
    #[error("checkpoint {path}: written with {found}, this run computes {expected}; restart with the same feature and model settings, or with another --state folder")]
    Settings { path: PathBuf, found: String, expected: String },
    #[error("checkpoint {path}: layout version {found}, this build reads {FORMAT}")]
    Format { path: PathBuf, found: u32 },
    #[error("checkpoint marker {path}: {reason}")]
    Marker { path: PathBuf, reason: String },
    #[error("checkpoint {path}: {cause}")]
    Restore { path: PathBuf, cause: RestoreError },
    #[error("checkpoint {path}: {reason}")]
    Record { path: PathBuf, reason: String },
}

/// One worker's checkpoint file.
#[derive(Serialize, Deserialize)]
struct CheckpointFile<'a> {
    format: u32,
    /// The feature and model settings the state was learned with.
    settings: String,
    covered_until_us: i64,
    machines: Vec<MonitorSnapshot<'a>>,
}

/// The feature and model settings a machine's state depends on; a checkpoint is only restored
/// into a run with the same.
pub fn settings_fingerprint(config: &Config) -> String {
    let features = &config.features;
    let model = &config.model;
    format!(
        "{FEATURE_VERSION} n_fft={} hop={} n_mels={} fmin={} fmax={:?} window_frames={} span_windows={} model_bands={}",
        features.n_fft,
        features.hop_length,
        features.n_mels,
        features.fmin_hz,
        features.fmax_hz,
        model.window_frames,
        model.span_windows,
        model.model_bands
    )
}

/// Where one worker writes its checkpoints.
pub struct CheckpointStore {
    root: PathBuf,
    dir: PathBuf,
    settings: String,
}

impl CheckpointStore {
    /// The folder of worker `worker` (its index across all processes) under `root`.
    pub fn new(root: &Path, worker: usize, config: &Config) -> Self {
        Self {
            root: root.to_path_buf(),
            dir: root.join(format!("worker-{worker}")),
            settings: settings_fingerprint(config),
        }
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, cause: source }
    }

    /// Writes the state of `monitors`, covering capture times before `covered_until_us`.
    pub fn write<'a>(
        &self,
        covered_until_us: i64,
        monitors: impl Iterator<Item = &'a MachineMonitor>,
    ) -> Result<PathBuf, CheckpointError> {
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.dir.join(format!("{covered_until_us:020}.{EXTENSION}"));
        let temporary = path.with_extension("tmp");
        let mut machines: Vec<MonitorSnapshot<'_>> = monitors.map(MachineMonitor::snapshot).collect();
        machines.sort_by(|a, b| a.machine_id().cmp(b.machine_id()));
        let file = CheckpointFile { format: FORMAT, settings: self.settings.clone(), covered_until_us, machines };
        let mut writer = BufWriter::new(File::create(&temporary).map_err(self.io(&temporary))?);
        bincode::DefaultOptions::new()
            .serialize_into(&mut writer, &file)
            .map_err(|source| CheckpointError::Encode { path: temporary.clone(), cause: source })?;
        let file = writer
            .into_inner()
            .map_err(|error| CheckpointError::Io { path: temporary.clone(), cause: error.into_error() })?;
        file.sync_all().map_err(self.io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(self.io(&path))?;
        sync_folder(&self.dir)?;
        Ok(path)
    }

    /// Deletes the folders of workers `peers` and above, left by an earlier run with more
    /// workers. Call it once a boundary at which every worker of this run checkpointed its
    /// restored machines is committed: their state is then in this run's folders.
    pub fn remove_workers_from(&self, peers: usize) -> Result<usize, CheckpointError> {
        let entries = std::fs::read_dir(&self.root).map_err(self.io(&self.root))?;
        let mut removed = 0;
        for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
            let index = path.file_name().and_then(|name| name.to_str()?.strip_prefix("worker-")?.parse::<usize>().ok());
            if index.is_some_and(|index| index >= peers) && path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(self.io(&path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Records that everything before `covered_until_us` is durable (every worker's checkpoint
    /// and every sink), then deletes this worker's files that a restart no longer needs.
    pub fn mark_committed(&self, covered_until_us: i64) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.dir.join(MARKER);
        let temporary = self.dir.join(format!("{MARKER}.tmp"));
        let mut file = File::create(&temporary).map_err(self.io(&temporary))?;
        writeln!(file, "{covered_until_us}").map_err(self.io(&temporary))?;
        file.sync_all().map_err(self.io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(self.io(&path))?;
        sync_folder(&self.dir)?;
        let files = checkpoint_files(&self.dir)?;
        if let Some(&(keep, _)) = files.iter().rev().find(|(covered, _)| *covered <= covered_until_us) {
            for (_, old) in files.iter().filter(|(covered, _)| *covered < keep) {
                std::fs::remove_file(old).map_err(self.io(old))?;
            }
        }
        Ok(())
    }
}

/// Makes a rename in `dir` durable.
fn sync_folder(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|folder| folder.sync_all())
        .map_err(|source| CheckpointError::Io { path: dir.to_path_buf(), cause: source })
}

/// The `.ckpt` files of one worker's folder, oldest first.
fn checkpoint_files(dir: &Path) -> Result<Vec<(i64, PathBuf)>, CheckpointError> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| CheckpointError::Io { path: dir.to_path_buf(), cause: source })?;
    let mut files: Vec<(i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == EXTENSION))
        .filter_map(|path| {
            let covered = path.file_stem()?.to_str()?.parse::<i64>().ok()?;
            Some((covered, path))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// What a restart continues from.
#[derive(Default)]
pub struct Restored {
    /// The boundary the state covers up to (`None`: nothing was checkpointed).
    pub covered_until_us: Option<i64>,
    /// Every machine, as its newest snapshot up to that boundary left it.
    pub monitors: Vec<MachineMonitor>,
    /// The files read (or the changelog records, as `kafka:topic/partition@offset (key)`).
    pub files: Vec<PathBuf>,
}

/// Reads the checkpoints under `root` (made by earlier runs; absent or empty: nothing to
/// restore) into monitors configured by `config`.
pub fn restore(root: &Path, config: &Config) -> Result<Restored, CheckpointError> {
    let mut restored = Restored::default();
    if !root.exists() {
        return Ok(restored);
    }
    let folders: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|source| CheckpointError::Io { path: root.to_path_buf(), cause: source })?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_dir() && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("worker-"))
        })
        .collect();
    let mut boundary: Option<i64> = None;
    for folder in &folders {
        let path = folder.join(MARKER);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CheckpointError::Io { path, cause: source }),
        };
        let covered = text.trim().parse::<i64>().map_err(|error| CheckpointError::Marker {
            path: path.clone(),
            reason: format!("{:?} is not a capture time in µs: {error}", text.trim()),
        })?;
        boundary = boundary.max(Some(covered));
    }
    let Some(boundary) = boundary else {
        return Ok(restored);
    };
    let expected = settings_fingerprint(config);
    let mut newest: HashMap<MachineId, (i64, MonitorSnapshot<'static>, PathBuf)> = HashMap::new();
    for folder in &folders {
        let files = checkpoint_files(folder)?;
        let Some((covered, path)) = files.into_iter().rev().find(|(covered, _)| *covered <= boundary) else {
            continue;
        };
        let io = |cause| CheckpointError::Io { path: path.clone(), cause };
        let opened = File::open(&path).map_err(io)?;
        let length = opened.metadata().map_err(io)?.len();
        // The limit keeps a damaged length prefix from asking for more memory than the file holds.
        let file: CheckpointFile<'static> = bincode::DefaultOptions::new()
            .with_limit(length)
            .deserialize_from(BufReader::new(opened))
            .map_err(|source| CheckpointError::Decode { path: path.clone(), cause: source })?;
        if file.format != FORMAT {
            return Err(CheckpointError::Format { path, found: file.format });
        }
        if file.settings != expected {
            return Err(CheckpointError::Settings { path, found: file.settings, expected });
        }
        for snapshot in file.machines {
            let older = newest.get(snapshot.machine_id()).is_some_and(|(seen, _, _)| *seen >= covered);
            if !older {
                newest.insert(snapshot.machine_id().clone(), (covered, snapshot, path.clone()));
            }
        }
        restored.files.push(path);
    }
    let mut snapshots: Vec<_> = newest.into_values().collect();
    snapshots.sort_by(|a, b| a.1.machine_id().cmp(b.1.machine_id()));
    for (_, snapshot, path) in snapshots {
        let monitor = MachineMonitor::restore(snapshot, config)
            .map_err(|source| CheckpointError::Restore { path, cause: source })?;
        restored.monitors.push(monitor);
    }
    restored.covered_until_us = Some(boundary);
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MonitorOutput;
    use auscult_schemas::{AudioChunk, ChunkOrigin, MachineType, SampleFormat};

    /// A fan's chunk of 250 ms (also used by the changelog's tests).
    pub(super) fn chunk(machine: &MachineId, sequence: u64, samples: &[i16]) -> AudioChunk {
        AudioChunk {
            machine_id: machine.clone(),
            machine_type: MachineType::new("fan").unwrap(),
            sequence,
            capture_start_us: sequence as i64 * 250_000,
            sample_rate_hz: 16_000,
            channels: 1,
            sample_format: SampleFormat::S16le,
            payload: samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
            origin: ChunkOrigin::Simulator { seed: 1 },
        }
    }

    /// A machine's audio: a hum whose level wanders, and a loud whine from `fault_from` on.
    pub(super) fn audio(sequence: u64, fault_from: u64) -> Vec<i16> {
        (0..4000)
            .map(|i| {
                let t = (sequence * 4000 + i) as f64 / 16_000.0;
                let hum = (2.0 * std::f64::consts::PI * 120.0 * t).sin() * (3000.0 + 500.0 * (t * 0.7).sin());
                let noise = ((i * 7919 + sequence * 104_729) % 2000) as f64 - 1000.0;
                let whine =
                    if sequence >= fault_from { (2.0 * std::f64::consts::PI * 3100.0 * t).sin() * 6000.0 } else { 0.0 };
                (hum + noise + whine) as i16
            })
            .collect()
    }

    pub(super) fn config() -> Config {
        let mut config = Config::default();
        config.model.learning_s = 20.0;
        config
    }

    #[test]
    fn a_restored_monitor_continues_exactly_as_one_that_never_stopped() {
        let machine = MachineId::new("fan-01").unwrap();
        let config = config();
        let (chunks, cut, fault) = (400u64, 157u64, 300u64);
        let mut uninterrupted = MachineMonitor::new(machine.clone(), MachineType::new("fan").unwrap(), &config);
        let mut expected = MonitorOutput::default();
        for sequence in 0..chunks {
            uninterrupted.accept(&chunk(&machine, sequence, &audio(sequence, fault)), &mut expected).unwrap();
        }
        assert!(!expected.events.is_empty(), "the fault should raise an alert");

        let root = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(root.path(), 3, &config);
        let mut first = MachineMonitor::new(machine.clone(), MachineType::new("fan").unwrap(), &config);
        let mut got = MonitorOutput::default();
        for sequence in 0..cut {
            first.accept(&chunk(&machine, sequence, &audio(sequence, fault)), &mut got).unwrap();
        }
        store.write(cut as i64 * 250_000, std::iter::once(&first)).unwrap();
        store.mark_committed(cut as i64 * 250_000).unwrap();
        drop(first);

        let restored = restore(root.path(), &config).unwrap();
        assert_eq!(restored.covered_until_us, Some(cut as i64 * 250_000));
        let mut second = restored.monitors.into_iter().next().unwrap();
        // The topic replays from an earlier offset: what the state has seen is dropped.
        for sequence in cut - 5..chunks {
            second.accept(&chunk(&machine, sequence, &audio(sequence, fault)), &mut got).unwrap();
        }
        assert_eq!(got.windows, expected.windows);
        assert_eq!(got.events, expected.events);
        assert_eq!(second.stats().duplicates, 5);
    }

    #[test]
    fn a_checkpoint_past_the_committed_boundary_is_not_restored_and_old_files_are_pruned() {
        let machine = MachineId::new("pump-02").unwrap();
        let config = config();
        let store = CheckpointStore::new(Path::new(""), 0, &config);
        let root = tempfile::tempdir().unwrap();
        let store = CheckpointStore { root: root.path().to_path_buf(), dir: root.path().join("worker-0"), ..store };
        let mut monitor = MachineMonitor::new(machine.clone(), MachineType::new("pump").unwrap(), &config);
        let mut out = MonitorOutput::default();
        for (sequence, covered) in [(40u64, 10_000_000i64), (80, 20_000_000), (120, 30_000_000)] {
            while monitor.stats().chunks < sequence {
                let next = monitor.stats().chunks;
                monitor.accept(&chunk(&machine, next, &audio(next, u64::MAX)), &mut out).unwrap();
            }
            store.write(covered, std::iter::once(&monitor)).unwrap();
        }
        store.mark_committed(20_000_000).unwrap();
        let names: Vec<_> = checkpoint_files(&store.dir).unwrap().into_iter().map(|(covered, _)| covered).collect();
        assert_eq!(names, vec![20_000_000, 30_000_000], "the file before the committed one is not needed");
        let restored = restore(root.path(), &config).unwrap();
        assert_eq!(restored.monitors[0].stats().chunks, 80, "the uncommitted checkpoint was restored");
    }

    #[test]
    fn other_settings_or_a_damaged_file_are_refused_with_the_file_named() {
        let machine = MachineId::new("valve-00").unwrap();
        let config = config();
        let root = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(root.path(), 1, &config);
        let monitor = MachineMonitor::new(machine, MachineType::new("valve").unwrap(), &config);
        let path = store.write(5_000_000, std::iter::once(&monitor)).unwrap();
        store.mark_committed(5_000_000).unwrap();
        let mut other = config.clone();
        other.features.n_mels = 64;
        let error = restore(root.path(), &other).err().unwrap().to_string();
        assert!(error.contains(&path.display().to_string()) && error.contains("n_mels=128"), "{error}");
        std::fs::write(&path, b"not a checkpoint").unwrap();
        let error = restore(root.path(), &config).err().unwrap().to_string();
        assert!(error.contains("unreadable") && error.contains(&path.display().to_string()), "{error}");
        assert!(restore(&root.path().join("absent"), &config).unwrap().monitors.is_empty());
    }

    #[test]
    fn folders_of_workers_beyond_this_run_are_removed_and_its_own_kept() {
        let config = config();
        let root = tempfile::tempdir().unwrap();
        for worker in 0..4 {
            std::fs::create_dir_all(root.path().join(format!("worker-{worker}"))).unwrap();
        }
        std::fs::create_dir_all(root.path().join("notes")).unwrap();
        let store = CheckpointStore::new(root.path(), 0, &config);
        assert_eq!(store.remove_workers_from(2).unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["notes", "worker-0", "worker-1"]);
    }
}
