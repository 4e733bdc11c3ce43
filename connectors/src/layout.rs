//! Machine identity (and evaluation labels) from a corpus folder's paths.
//!
//! Recognised, so `auscult run --input` and `auscult eval` take public corpora as they come:
//! - DCASE 2020 Task 2: `TYPE/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav`;
//! - MIMII: `TYPE/id_XX/{normal,abnormal}/NNNNNNNN.wav`, also below a `-6_dB_TYPE`-style folder;
//! - a `manifest.csv` at the root (`path,machine_id,machine_type`), which wins over both.
//!
//! The machine id is `TYPE-id_XX`. Files that fit no layout are skipped with a one-line note,
//! and so is anything below a folder named `original_8ch` (the multi-channel originals kept
//! beside the MIMII type folders, which would otherwise count a clip twice). The walk is sorted,
//! so the result never depends on the file system's order.

use crate::wav::MachineFiles;
use auscult_schemas::{MachineId, MachineType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest file name that overrides path-based naming.
pub const MANIFEST: &str = "manifest.csv";
/// Folders whose contents are never read as machine audio.
pub const SKIPPED_FOLDER: &str = "original_8ch";
/// Deepest folder nesting walked.
const MAX_DEPTH: usize = 16;

/// Why a corpus could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: cannot read the folder: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path}: is not a folder")]
    NotAFolder { path: PathBuf },
}

/// Which part of an evaluation a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    Train,
    /// MIMII and manifests do not split; `auscult eval` does.
    Unsplit,
    Test,
}

/// Normal or anomalous, as the corpus labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    Normal,
    Anomalous,
}

/// One audio file with what its path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledFile {
    pub path: PathBuf,
    pub machine_type: MachineType,
    pub machine_id: MachineId,
    pub split: Split,
    pub label: Label,
}

/// Every recognised file, and a note for each one skipped.
#[derive(Debug, Clone, Default)]
pub struct LabelledCorpus {
    pub files: Vec<LabelledFile>,
    pub skipped: Vec<String>,
}

/// Machines with their files in replay order (normal files first: training, then test;
/// then anomalous ones), and a note for each file skipped.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub machines: Vec<MachineFiles>,
    pub skipped: Vec<String>,
}

/// Groups a corpus by machine for streaming.
pub fn discover(dir: &Path) -> Result<Discovery, LayoutError> {
    let corpus = discover_labelled(dir)?;
    let mut by_machine: BTreeMap<MachineId, (MachineType, Vec<&LabelledFile>)> = BTreeMap::new();
    for file in &corpus.files {
        by_machine.entry(file.machine_id.clone()).or_insert_with(|| (file.machine_type.clone(), Vec::new())).1.push(file);
    }
    let machines = by_machine
        .into_iter()
        .map(|(machine_id, (machine_type, mut files))| {
            files.sort_by(|a, b| (a.label, a.split, &a.path).cmp(&(b.label, b.split, &b.path)));
            MachineFiles { machine_id, machine_type, files: files.into_iter().map(|f| f.path.clone()).collect() }
        })
        .collect();
    Ok(Discovery { machines, skipped: corpus.skipped })
}

/// Every WAV file below `dir` with its machine, split and label.
pub fn discover_labelled(dir: &Path) -> Result<LabelledCorpus, LayoutError> {
    if !dir.is_dir() {
        if dir.exists() {
            return Err(LayoutError::NotAFolder { path: dir.to_owned() });
        }
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder");
        return Err(LayoutError::Unreadable { path: dir.to_owned(), source });
    }
    let mut corpus = LabelledCorpus::default();
    let manifest = dir.join(MANIFEST);
    if manifest.is_file() {
        read_manifest(dir, &manifest, &mut corpus);
        return Ok(corpus);
    }
    let mut wavs = Vec::new();
    walk(dir, 0, &mut wavs, &mut corpus.skipped)?;
    for path in wavs {
        if path.iter().any(|part| part == SKIPPED_FOLDER) {
            corpus.skipped.push(format!("{}: below a {SKIPPED_FOLDER} folder (multi-channel originals are not replayed)", path.display()));
            continue;
        }
        match identify(&path) {
            Some(file) => corpus.files.push(file),
            None => corpus.skipped.push(format!("{}: does not fit the DCASE or MIMII layout and is not in a manifest", path.display())),
        }
    }
    Ok(corpus)
}

fn walk(dir: &Path, depth: usize, wavs: &mut Vec<PathBuf>, skipped: &mut Vec<String>) -> Result<(), LayoutError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LayoutError::Unreadable { path: dir.to_owned(), source })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
    paths.sort();
    for path in paths {
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) => {
                skipped.push(format!("{}: cannot read: {error}", path.display()));
                continue;
            }
        };
        let is_wav = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("wav"));
        if metadata.is_dir() && !is_wav {
            if depth + 1 >= MAX_DEPTH {
                skipped.push(format!("{}: deeper than {MAX_DEPTH} folders", path.display()));
            } else if let Err(error) = walk(&path, depth + 1, wavs, skipped) {
                skipped.push(error.to_string());
            }
        } else if is_wav {
            wavs.push(path);
        }
    }
    Ok(())
}

fn name(part: Option<&std::ffi::OsStr>) -> Option<&str> {
    part.and_then(|part| part.to_str())
}

/// Reads the layout from a path's last folders.
fn identify(path: &Path) -> Option<LabelledFile> {
    let stem = name(path.file_stem())?;
    let parent = path.parent()?;
    let folder = name(parent.file_name())?;
    let grandparent = parent.parent()?;
    // DCASE: TYPE/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav
    if folder == "train" || folder == "test" {
        let (label, rest) = if let Some(rest) = stem.strip_prefix("normal_") {
            (Label::Normal, rest)
        } else if let Some(rest) = stem.strip_prefix("anomaly_") {
            (Label::Anomalous, rest)
        } else {
            return None;
        };
        let id = rest.strip_prefix("id_")?.split('_').next()?;
        let machine_type = name(grandparent.file_name())?;
        let split = if folder == "train" { Split::Train } else { Split::Test };
        return labelled(path, machine_type, id, split, label);
    }
    // MIMII: TYPE/id_XX/{normal,abnormal}/NNNNNNNN.wav
    let label = match folder {
        "normal" => Label::Normal,
        "abnormal" => Label::Anomalous,
        _ => return None,
    };
    let id = name(grandparent.file_name())?.strip_prefix("id_")?;
    let machine_type = name(grandparent.parent()?.file_name())?;
    labelled(path, machine_type, id, Split::Unsplit, label)
}

fn labelled(path: &Path, machine_type: &str, id: &str, split: Split, label: Label) -> Option<LabelledFile> {
    let machine_type = MachineType::new(machine_type).ok()?;
    let machine_id = MachineId::new(format!("{machine_type}-id_{id}")).ok()?;
    Some(LabelledFile { path: path.to_owned(), machine_type, machine_id, split, label })
}

fn read_manifest(dir: &Path, manifest: &Path, corpus: &mut LabelledCorpus) {
    let text = match std::fs::read_to_string(manifest) {
        Ok(text) => text,
        Err(error) => {
            corpus.skipped.push(format!("{}: cannot read: {error}", manifest.display()));
            return;
        }
    };
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if line.trim().is_empty() || (index == 0 && fields.first() == Some(&"path")) {
            continue;
        }
        let parsed = match fields.as_slice() {
            [path, machine_id, machine_type] => MachineId::new(*machine_id)
                .and_then(|id| MachineType::new(*machine_type).map(|machine_type| (dir.join(path), id, machine_type)))
                .map_err(|error| error.to_string()),
            _ => Err(format!("expected 3 fields (path,machine_id,machine_type), found {}", fields.len())),
        };
        match parsed {
            Ok((path, machine_id, machine_type)) => {
                corpus.files.push(LabelledFile { path, machine_type, machine_id, split: Split::Unsplit, label: Label::Normal })
            }
            Err(reason) => corpus.skipped.push(format!("{} line {line_number}: {reason}", manifest.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, relative: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[test]
    fn dcase_layout_names_machines_and_splits() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["fan/train/normal_id_00_00000000.wav", "fan/test/anomaly_id_00_00000000.wav", "fan/test/normal_id_02_00000001.wav", "fan/test/readme.wav"] {
            touch(dir.path(), file);
        }
        let corpus = discover_labelled(dir.path()).unwrap();
        assert_eq!(corpus.files.len(), 3);
        assert_eq!(corpus.skipped.len(), 1);
        let anomaly = corpus.files.iter().find(|f| f.label == Label::Anomalous).unwrap();
        assert_eq!((anomaly.machine_id.as_str(), anomaly.split), ("fan-id_00", Split::Test));
        let discovery = discover(dir.path()).unwrap();
        assert_eq!(discovery.machines.len(), 2);
        // Normal (training) audio comes before anomalous audio in a machine's replay.
        assert!(discovery.machines[0].files[0].ends_with("normal_id_00_00000000.wav"));
    }

    #[test]
    fn the_shared_mimii_clips_are_twelve_machines_and_the_originals_are_skipped() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mimii");
        let discovery = discover(&root).unwrap();
        assert_eq!(discovery.machines.len(), 12);
        assert!(discovery.machines.iter().all(|machine| machine.files.len() == 15));
        assert!(discovery.skipped.iter().any(|note| note.contains("original_8ch")));
        let fan = &discovery.machines[0];
        assert_eq!(fan.machine_id.as_str(), "fan-id_00");
        assert!(fan.files[..10].iter().all(|path| path.to_string_lossy().contains("/normal/")));
    }

    #[test]
    fn a_manifest_wins_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "x/a.wav");
        std::fs::write(dir.path().join(MANIFEST), "path,machine_id,machine_type\nx/a.wav,press-1,press\nbroken line\n").unwrap();
        let corpus = discover_labelled(dir.path()).unwrap();
        assert_eq!(corpus.files.len(), 1);
        assert_eq!(corpus.files[0].machine_type.as_str(), "press");
        assert_eq!(corpus.skipped.len(), 1);
        assert!(corpus.skipped[0].contains("line 3"), "{}", corpus.skipped[0]);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let error = discover(Path::new("/no/such/corpus")).err().unwrap();
        assert!(error.to_string().contains("/no/such/corpus"));
    }
}
