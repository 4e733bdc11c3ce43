//! K-fold cross-validation splits of an unsplit (MIMII-layout) corpus.
//!
//! Per machine, its normal clips sorted by path (n of them) are dealt into K folds: fold k tests
//! the normals with index i where `i * K / n == k` (integer division), so each fold is a
//! contiguous run of `n / K` or `n / K + 1` clips and every normal is tested in exactly one fold;
//! every fold also tests every anomalous clip, and learns from the other normals. The folds
//! depend only on the file names, never on the worker count. A corpus that fixes its own
//! train/test split (DCASE folders, a manifest's `split` column) is refused: that split is its
//! evaluation, and cross-validating across it would train on its test clips.

use super::{files_by_machine, MachineClips};
use auscult_connectors::layout::{Label, LabelledFile, Split};
use auscult_schemas::{MachineId, MachineType};

/// The fewest folds that cross-validate (one fold would train on nothing).
pub const MIN_FOLDS: usize = 2;

/// Why a corpus cannot be cross-validated with the folds asked for.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error("--folds {folds}: at least {MIN_FOLDS} folds are needed")]
    TooFewFolds { folds: usize },
    #[error(
        "machine {machine} has a fixed train/test split (DCASE train/test folders or a manifest's split column); \
         --folds needs an unsplit corpus (MIMII layout)"
    )]
    FixedSplit { machine: MachineId },
    #[error("machine {machine} has {normals} normal clips, fewer than --folds {folds}")]
    TooFewNormals { machine: MachineId, normals: usize, folds: usize },
}

/// The fold (0-based) that tests the normal clip at `index` of `normals`, with `folds` folds.
pub fn fold_of(index: usize, normals: usize, folds: usize) -> usize {
    index * folds / normals
}

/// Every machine's `folds` splits, sorted by machine then fold.
pub fn fold_corpus(files: &[LabelledFile], folds: usize) -> Result<Vec<MachineClips>, FoldError> {
    if folds < MIN_FOLDS {
        return Err(FoldError::TooFewFolds { folds });
    }
    let mut splits = Vec::new();
    for ((machine_type, machine_id), machine_files) in files_by_machine(files) {
        if machine_files.iter().any(|file| file.split != Split::Unsplit) {
            return Err(FoldError::FixedSplit { machine: machine_id });
        }
        let normals = machine_files.iter().filter(|file| file.label == Label::Normal).count();
        if normals < folds {
            return Err(FoldError::TooFewNormals { machine: machine_id, normals, folds });
        }
        splits.extend((0..folds).map(|fold| fold_clips(&machine_type, &machine_id, &machine_files, fold, folds)));
    }
    Ok(splits)
}

/// Fold `fold` of `folds` of one machine whose unsplit `files` are sorted by path: the test clips
/// in path order (every anomalous clip and this fold's normals), the other normals to learn from.
pub fn fold_clips(
    machine_type: &MachineType,
    machine_id: &MachineId,
    files: &[&LabelledFile],
    fold: usize,
    folds: usize,
) -> MachineClips {
    let normals = files.iter().filter(|file| file.label == Label::Normal).count();
    let mut train = Vec::new();
    let mut test = Vec::new();
    let mut normal_index = 0;
    for file in files {
        if file.label == Label::Anomalous {
            test.push((file.path.clone(), true));
            continue;
        }
        if fold_of(normal_index, normals, folds) == fold {
            test.push((file.path.clone(), false));
        } else {
            train.push(file.path.clone());
        }
        normal_index += 1;
    }
    MachineClips { machine_type: machine_type.clone(), machine_id: machine_id.clone(), train, test, fold: Some(fold) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn file(machine: &str, label: Label, split: Split, name: &str) -> LabelledFile {
        let folder = if label == Label::Anomalous { "abnormal" } else { "normal" };
        LabelledFile {
            path: PathBuf::from(format!("fan/{machine}/{folder}/{name}.wav")),
            machine_type: MachineType::new("fan").expect("a valid type"),
            machine_id: MachineId::new(format!("fan-{machine}")).expect("a valid id"),
            split,
            label,
        }
    }

    /// `normals` normal and `anomalous` anomalous unsplit clips per machine, listed out of order.
    fn corpus(machines: &[&str], normals: usize, anomalous: usize) -> Vec<LabelledFile> {
        let mut files = Vec::new();
        for machine in machines {
            for index in (0..normals).rev() {
                files.push(file(machine, Label::Normal, Split::Unsplit, &format!("{index:08}")));
            }
            for index in 0..anomalous {
                files.push(file(machine, Label::Anomalous, Split::Unsplit, &format!("{index:08}")));
            }
        }
        files
    }

    #[test]
    fn folds_partition_each_machines_normals_exactly_once() {
        for (normals, folds) in [(10, 5), (10, 3), (7, 7), (11, 2)] {
            let splits = fold_corpus(&corpus(&["id_00", "id_02"], normals, 4), folds).unwrap();
            assert_eq!(splits.len(), 2 * folds);
            for machine in splits.chunks(folds) {
                let mut tested = Vec::new();
                for (fold, split) in machine.iter().enumerate() {
                    assert_eq!(split.fold, Some(fold));
                    let test_normals: BTreeSet<&PathBuf> =
                        split.test.iter().filter(|(_, anomalous)| !anomalous).map(|(path, _)| path).collect();
                    let size = test_normals.len();
                    assert!(size == normals / folds || size == normals / folds + 1, "{normals}/{folds}: {size}");
                    assert!(split.train.iter().all(|path| !test_normals.contains(path)));
                    assert_eq!(split.train.len() + size, normals);
                    tested.extend(test_normals);
                }
                let distinct: BTreeSet<&PathBuf> = tested.iter().copied().collect();
                assert_eq!((tested.len(), distinct.len()), (normals, normals), "{normals}/{folds}");
            }
        }
    }

    #[test]
    fn every_fold_tests_every_anomalous_clip() {
        for split in fold_corpus(&corpus(&["id_00"], 10, 5), 5).unwrap() {
            let anomalous: Vec<&PathBuf> =
                split.test.iter().filter(|(_, anomalous)| *anomalous).map(|(path, _)| path).collect();
            assert_eq!(anomalous.len(), 5);
            assert!(anomalous.iter().all(|path| path.to_string_lossy().contains("/abnormal/")));
        }
    }

    #[test]
    fn ten_normals_in_five_folds_are_dealt_in_pairs_by_path() {
        let splits = fold_corpus(&corpus(&["id_00"], 10, 1), 5).unwrap();
        for (fold, split) in splits.iter().enumerate() {
            let names: Vec<String> = split
                .test
                .iter()
                .filter(|(_, anomalous)| !anomalous)
                .map(|(path, _)| path.file_stem().unwrap().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, [format!("{:08}", 2 * fold), format!("{:08}", 2 * fold + 1)]);
        }
    }

    #[test]
    fn a_fixed_split_too_few_folds_or_too_few_normals_is_refused() {
        let mut files = corpus(&["id_00"], 10, 2);
        assert!(matches!(fold_corpus(&files, 1), Err(FoldError::TooFewFolds { folds: 1 })));
        let error = fold_corpus(&files, 11).unwrap_err();
        assert_eq!(error.to_string(), "machine fan-id_00 has 10 normal clips, fewer than --folds 11");
        files.push(file("id_02", Label::Normal, Split::Train, "normal_id_02_00000000"));
        let error = fold_corpus(&files, 5).unwrap_err();
        assert!(matches!(&error, FoldError::FixedSplit { machine } if machine.as_str() == "fan-id_02"), "{error}");
    }
}
