//! Machine identity (and evaluation labels) from a corpus folder's paths.
//!
//! Recognised, so `auscult run --input` and `auscult eval` take public corpora as they come:
//! - DCASE 2020 Task 2: `TYPE/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav`; the split comes
//!   from the folder, the label from the file name;
//! - MIMII: `TYPE/id_XX/{normal,abnormal}/NNNNNNNN.wav`, also below a `-6_dB_TYPE`-style folder
//!   (TYPE is the folder right above `id_XX`; a leading `-6_dB_` on it is dropped); unsplit;
//! - a `manifest.csv` at the root, which wins over both: a header naming at least the columns
//!   `path,machine_id,machine_type` (paths relative to the root), optionally `label`
//!   (`normal`, or `anomaly`/`anomalous`/`abnormal`) and `split` (`train`, `test`). Plain
//!   comma-separated fields, no quoting.
//!
//! The machine id is `TYPE-id_XX`. Files that fit no layout are skipped with a one-line note, and
//! so is each folder named `original_8ch` below the root (the multi-channel originals kept beside
//! the MIMII type folders, which would otherwise count a clip twice), with one note per folder.
//!
//! Promises: the walk is sorted and the result never depends on the file system's order;
//! symbolic links to folders are followed, each real folder walked at most once (no loops),
//! under its real path when the walk reaches it both ways; `.wav` is
//! matched in any case; a machine's files are in replay order, normal audio first (training,
//! then unsplit, then test), then anomalous audio, each group by path, so a streaming run learns
//! from normal audio before it meets an anomaly.

use crate::wav::MachineFiles;
use auscult_schemas::{MachineId, MachineType};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The manifest file name that overrides path-based naming.
pub const MANIFEST: &str = "manifest.csv";
/// Folders whose contents are never read as machine audio.
pub const SKIPPED_FOLDER: &str = "original_8ch";
/// Deepest folder nesting walked below the root.
pub const MAX_DEPTH: usize = 16;
/// The columns a manifest must have.
const MANIFEST_REQUIRED: [&str; 3] = ["path", "machine_id", "machine_type"];
/// The note for a file that fits no layout.
const NO_LAYOUT: &str = "does not fit the DCASE or MIMII layout and is not in a manifest";

/// Why a corpus could not be read at all (a file that cannot be used is a note, not an error).
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: cannot read the folder: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path}: is not a folder")]
    NotAFolder { path: PathBuf },
    #[error("{path}: cannot read the manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },
}

/// Which part of an evaluation a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    Train,
    /// MIMII and manifests without a `split` column do not split; `auscult eval` does.
    Unsplit,
    Test,
}

/// Normal or anomalous, as the corpus labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    Normal,
    Anomalous,
}

/// One audio file with what its path (or the manifest) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledFile {
    pub path: PathBuf,
    pub machine_type: MachineType,
    pub machine_id: MachineId,
    pub split: Split,
    pub label: Label,
}

/// Every recognised file (sorted by machine, then replay order), and a note for each skipped.
#[derive(Debug, Clone, Default)]
pub struct LabelledCorpus {
    pub files: Vec<LabelledFile>,
    pub skipped: Vec<String>,
}

/// Machines sorted by id with their files in replay order, and a note for each file skipped.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub machines: Vec<MachineFiles>,
    pub skipped: Vec<String>,
}

/// Groups a corpus by machine for streaming.
pub fn discover(dir: &Path) -> Result<Discovery, LayoutError> {
    let corpus = discover_labelled(dir)?;
    let mut machines: Vec<MachineFiles> = Vec::new();
    for file in corpus.files {
        match machines.last_mut() {
            Some(machine) if machine.machine_id == file.machine_id => machine.files.push(file.path),
            _ => machines.push(MachineFiles {
                machine_id: file.machine_id,
                machine_type: file.machine_type,
                files: vec![file.path],
            }),
        }
    }
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
        read_manifest(dir, &manifest, &mut corpus)?;
    } else {
        let mut walk = Walk::default();
        walk.folder(dir, 0)?;
        corpus.skipped = walk.skipped;
        for path in walk.wavs {
            match identify(&path) {
                Some(file) => corpus.files.push(file),
                None => corpus.skipped.push(format!("{}: {NO_LAYOUT}", path.display())),
            }
        }
    }
    // Machines by id; within one, normal before anomalous, train before test, then by path.
    corpus
        .files
        .sort_by(|a, b| (&a.machine_id, a.label, a.split, &a.path).cmp(&(&b.machine_id, b.label, b.split, &b.path)));
    Ok(corpus)
}

/// A sorted, loop-free walk collecting `.wav` files.
#[derive(Default)]
struct Walk {
    wavs: Vec<PathBuf>,
    skipped: Vec<String>,
    /// Real paths of the folders entered, so a link back up is entered only once.
    visited: BTreeSet<PathBuf>,
}

impl Walk {
    fn folder(&mut self, dir: &Path, depth: usize) -> Result<(), LayoutError> {
        let unreadable = |source| LayoutError::Unreadable { path: dir.to_owned(), source };
        let real = dir.canonicalize().map_err(unreadable)?;
        if !self.visited.insert(real) {
            self.skipped.push(format!("{}: a link to a folder already walked; not entered again", dir.display()));
            return Ok(());
        }
        let entries = std::fs::read_dir(dir).map_err(unreadable)?;
        // Sorted by path, links after real entries, so a folder is found under its real path
        // whenever the walk can reach it that way.
        let mut paths: Vec<(bool, PathBuf)> = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => paths.push((entry.file_type().is_ok_and(|kind| kind.is_symlink()), entry.path())),
                Err(error) => self.skipped.push(format!("{}: cannot list an entry: {error}", dir.display())),
            }
        }
        paths.sort();
        for (_, path) in paths {
            // `metadata` follows links: a link to a folder is walked, a link to a file is read.
            let metadata = match std::fs::metadata(&path) {
                Ok(metadata) => metadata,
                Err(error) => {
                    self.skipped.push(format!("{}: cannot read: {error}", path.display()));
                    continue;
                }
            };
            if metadata.is_dir() {
                if path.file_name().is_some_and(|name| name == SKIPPED_FOLDER) {
                    let note = "multi-channel originals are not replayed (the mono copies beside it are)";
                    self.skipped.push(format!("{}: skipped: {note}", path.display()));
                } else if depth + 1 > MAX_DEPTH {
                    self.skipped.push(format!("{}: deeper than {MAX_DEPTH} folders; not walked", path.display()));
                } else if let Err(error) = self.folder(&path, depth + 1) {
                    self.skipped.push(error.to_string());
                }
            } else if path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("wav")) {
                self.wavs.push(path);
            }
        }
        Ok(())
    }
}

fn name(part: Option<&std::ffi::OsStr>) -> Option<&str> {
    part.and_then(|part| part.to_str())
}

/// A MIMII type folder may carry the SNR (`-6_dB_fan`) when no inner type folder exists.
fn strip_snr_prefix(folder: &str) -> &str {
    let Some((level, rest)) = folder.split_once("_dB_") else {
        return folder;
    };
    let digits = level.strip_prefix('-').unwrap_or(level);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) && !rest.is_empty() {
        rest
    } else {
        folder
    }
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
        let (id, clip) = rest.strip_prefix("id_")?.split_once('_')?;
        if clip.is_empty() {
            return None;
        }
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
    let machine_type = strip_snr_prefix(name(grandparent.parent()?.file_name())?);
    labelled(path, machine_type, id, Split::Unsplit, label)
}

fn labelled(path: &Path, machine_type: &str, id: &str, split: Split, label: Label) -> Option<LabelledFile> {
    if id.is_empty() {
        return None;
    }
    let machine_type = MachineType::new(machine_type).ok()?;
    let machine_id = MachineId::new(format!("{machine_type}-id_{id}")).ok()?;
    Some(LabelledFile { path: path.to_owned(), machine_type, machine_id, split, label })
}

/// Where each manifest column is.
struct ManifestColumns {
    path: usize,
    machine_id: usize,
    machine_type: usize,
    label: Option<usize>,
    split: Option<usize>,
    count: usize,
}

impl ManifestColumns {
    fn from_header(header: &str) -> Result<Self, String> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |wanted: &str| names.iter().position(|name| name.eq_ignore_ascii_case(wanted));
        let missing: Vec<&str> = MANIFEST_REQUIRED.into_iter().filter(|column| find(column).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!("the header lacks the column(s) {}", missing.join(", ")));
        }
        Ok(Self {
            path: find("path").unwrap_or_default(),
            machine_id: find("machine_id").unwrap_or_default(),
            machine_type: find("machine_type").unwrap_or_default(),
            label: find("label"),
            split: find("split"),
            count: names.len(),
        })
    }

    fn parse(&self, dir: &Path, line: &str) -> Result<LabelledFile, String> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != self.count {
            return Err(format!("expected {} fields, found {}", self.count, fields.len()));
        }
        let relative = fields[self.path];
        if relative.is_empty() {
            return Err("the path is empty".to_owned());
        }
        let machine_id = MachineId::new(fields[self.machine_id]).map_err(|error| error.to_string())?;
        let machine_type = MachineType::new(fields[self.machine_type]).map_err(|error| error.to_string())?;
        let label = match self.label.map(|column| fields[column].to_ascii_lowercase()) {
            None => Label::Normal,
            Some(text) => match text.as_str() {
                "" | "normal" => Label::Normal,
                "anomaly" | "anomalous" | "abnormal" => Label::Anomalous,
                _ => return Err(format!("label {text:?} is not normal or anomaly")),
            },
        };
        let split = match self.split.map(|column| fields[column].to_ascii_lowercase()) {
            None => Split::Unsplit,
            Some(text) => match text.as_str() {
                "" => Split::Unsplit,
                "train" => Split::Train,
                "test" => Split::Test,
                _ => return Err(format!("split {text:?} is not train or test")),
            },
        };
        let path = dir.join(relative);
        if !path.is_file() {
            return Err(format!("{} is not a file", path.display()));
        }
        Ok(LabelledFile { path, machine_type, machine_id, split, label })
    }
}

/// Reads the manifest; each bad line becomes a note naming the manifest and the line.
fn read_manifest(dir: &Path, manifest: &Path, corpus: &mut LabelledCorpus) -> Result<(), LayoutError> {
    let refused = |reason: String| LayoutError::Manifest { path: manifest.to_owned(), reason };
    let text = std::fs::read_to_string(manifest).map_err(|error| refused(error.to_string()))?;
    let mut lines = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| refused("it is empty".to_owned()))?;
    let columns = ManifestColumns::from_header(header.trim_start_matches('\u{feff}')).map_err(refused)?;
    let mut seen = BTreeSet::new();
    let mut machine_types: BTreeMap<MachineId, MachineType> = BTreeMap::new();
    for (index, line) in lines {
        let line_number = index + 1;
        let file = columns.parse(dir, line).and_then(|file| {
            if !seen.insert(file.path.clone()) {
                return Err(format!("{} is listed twice", file.path.display()));
            }
            match machine_types.get(&file.machine_id) {
                Some(known) if *known != file.machine_type => Err(format!(
                    "machine {} was given type {known} on an earlier line, here {}",
                    file.machine_id, file.machine_type
                )),
                _ => Ok(file),
            }
        });
        match file {
            Ok(file) => {
                machine_types.insert(file.machine_id.clone(), file.machine_type.clone());
                corpus.files.push(file);
            }
            Err(reason) => corpus.skipped.push(format!("{} line {line_number}: {reason}", manifest.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, relative: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    fn ids(discovery: &Discovery) -> Vec<&str> {
        discovery.machines.iter().map(|machine| machine.machine_id.as_str()).collect()
    }

    #[test]
    fn dcase_layout_names_machines_splits_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "dev/fan/test/anomaly_id_00_00000000.wav",
            "dev/fan/test/normal_id_00_00000001.WAV",
            "dev/fan/train/normal_id_00_00000000.wav",
            "dev/fan/train/normal_id_02_00000000.wav",
            "dev/fan/test/readme.wav",
            "dev/fan/test/notes.txt",
        ] {
            touch(dir.path(), file);
        }
        let corpus = discover_labelled(dir.path()).unwrap();
        let seen: Vec<(&str, Split, Label)> =
            corpus.files.iter().map(|file| (file.machine_id.as_str(), file.split, file.label)).collect();
        assert_eq!(
            seen,
            vec![
                ("fan-id_00", Split::Train, Label::Normal),
                ("fan-id_00", Split::Test, Label::Normal),
                ("fan-id_00", Split::Test, Label::Anomalous),
                ("fan-id_02", Split::Train, Label::Normal),
            ]
        );
        assert_eq!(corpus.skipped.len(), 1);
        assert!(corpus.skipped[0].contains("readme.wav") && corpus.skipped[0].contains(NO_LAYOUT));
        let discovery = discover(dir.path()).unwrap();
        assert_eq!(ids(&discovery), vec!["fan-id_00", "fan-id_02"]);
        let replay: Vec<String> = discovery.machines[0]
            .files
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            replay,
            vec!["normal_id_00_00000000.wav", "normal_id_00_00000001.WAV", "anomaly_id_00_00000000.wav"]
        );
    }

    #[test]
    fn mimii_layout_takes_the_type_above_the_id_and_drops_an_snr_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "-6_dB_pump/pump/id_02/abnormal/00000000.wav",
            "-6_dB_pump/pump/id_02/normal/00000001.wav",
            "-6_dB_pump/pump/id_02/normal/00000000.wav",
            "6_dB_valve/id_04/normal/00000000.wav",
            "slider/id_00/unlabelled/00000000.wav",
        ] {
            touch(dir.path(), file);
        }
        let corpus = discover_labelled(dir.path()).unwrap();
        let seen: Vec<(&str, &str, Split, Label)> = corpus
            .files
            .iter()
            .map(|file| (file.machine_type.as_str(), file.machine_id.as_str(), file.split, file.label))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("pump", "pump-id_02", Split::Unsplit, Label::Normal),
                ("pump", "pump-id_02", Split::Unsplit, Label::Normal),
                ("pump", "pump-id_02", Split::Unsplit, Label::Anomalous),
                ("valve", "valve-id_04", Split::Unsplit, Label::Normal),
            ]
        );
        assert!(corpus.files[0].path.ends_with("normal/00000000.wav"));
        assert_eq!(corpus.skipped.len(), 1);
        assert!(corpus.skipped[0].contains("unlabelled"));
    }

    #[test]
    fn the_shared_mimii_clips_are_twelve_machines_and_the_originals_are_skipped_with_a_note() {
        let root = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .join("../../shared/data/mimii");
        let discovery = discover(&root).unwrap();
        let mut expected = Vec::new();
        for machine_type in ["fan", "pump", "slider", "valve"] {
            for id in ["id_00", "id_02", "id_04"] {
                expected.push(format!("{machine_type}-{id}"));
            }
        }
        assert_eq!(ids(&discovery), expected);
        assert!(discovery.machines.iter().all(|machine| machine.files.len() == 15));
        assert_eq!(discovery.skipped.len(), 1, "{:?}", discovery.skipped);
        assert!(discovery.skipped[0].contains("original_8ch"));
        let fan = &discovery.machines[0];
        assert!(fan.files[..10].iter().all(|path| path.to_string_lossy().contains("/normal/")));
        assert!(fan.files[10..].iter().all(|path| path.to_string_lossy().contains("/abnormal/")));
    }

    #[test]
    fn a_corpus_root_inside_an_original_8ch_folder_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "original_8ch/fan/id_00/normal/00000000.wav");
        let discovery = discover(&dir.path().join("original_8ch")).unwrap();
        assert_eq!(ids(&discovery), vec!["fan-id_00"]);
    }

    #[test]
    fn a_manifest_wins_and_each_bad_line_is_named_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["x/a.wav", "x/b.wav", "fan/train/normal_id_00_00000000.wav"] {
            touch(dir.path(), file);
        }
        let manifest = "machine_type,path,machine_id,label\n\
                        press,x/a.wav,press-1,normal\n\
                        broken line\n\
                        press,x/missing.wav,press-1,normal\n\
                        press,x/b.wav,press 1,normal\n\
                        press,x/b.wav,press-1,anomaly\n\
                        press,x/a.wav,press-1,normal\n";
        std::fs::write(dir.path().join(MANIFEST), manifest).unwrap();
        let corpus = discover_labelled(dir.path()).unwrap();
        let seen: Vec<(&str, Label)> = corpus.files.iter().map(|file| (file.machine_id.as_str(), file.label)).collect();
        assert_eq!(seen, vec![("press-1", Label::Normal), ("press-1", Label::Anomalous)]);
        assert_eq!(corpus.files[0].machine_type.as_str(), "press");
        let lines: Vec<bool> = [3, 4, 5, 7]
            .iter()
            .map(|line| corpus.skipped.iter().any(|note| note.contains(&format!("manifest.csv line {line}:"))))
            .collect();
        assert_eq!(lines, vec![true; 4], "{:?}", corpus.skipped);
        assert_eq!(corpus.skipped.len(), 4);
    }

    #[test]
    fn a_manifest_without_the_required_columns_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), "file,machine\nx/a.wav,press-1\n").unwrap();
        let error = discover(dir.path()).unwrap_err();
        assert!(matches!(error, LayoutError::Manifest { .. }));
        assert!(error.to_string().contains("manifest.csv") && error.to_string().contains("machine_type"), "{error}");
    }

    #[test]
    fn links_to_folders_are_followed_once_and_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "data/fan/id_00/normal/00000000.wav");
        std::os::unix::fs::symlink(dir.path().join("data"), dir.path().join("data/fan/loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("data"), dir.path().join("alias")).unwrap();
        let discovery = discover(dir.path()).unwrap();
        assert_eq!(ids(&discovery), vec!["fan-id_00"]);
        assert_eq!(discovery.machines[0].files.len(), 1);
        assert_eq!(discovery.skipped.len(), 2, "{:?}", discovery.skipped);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let error = discover(Path::new("/no/such/corpus")).unwrap_err();
        assert!(error.to_string().contains("/no/such/corpus"));
    }
}
