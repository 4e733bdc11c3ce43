//! Aggregates of cross-validated results, for one machine, a machine type or all machines.
//!
//! A group of (machine, fold) results is summarized as `bench/peers.py` summarizes its peers, so
//! the two tables compare: the mean AUC (pAUC) is the mean over machines of each machine's mean
//! over its folds; its spread is the population standard deviation (ddof=0) over folds of the
//! per-fold means over those machines; the harmonic means (DCASE's ranking) are over machines of
//! their fold means. False alarms and detections are pooled over every fold's test clips (each
//! normal clip is tested in one fold, each anomalous clip once per fold). For a single machine
//! these are its fold mean, its standard deviation over folds and its pooled rates. A metric a
//! fold leaves undefined (AUC without both classes) is left out of the means; a result without a
//! fold counts as fold 0.

use super::metrics::{harmonic_mean, mean, std_dev, DetectionCounts};
use super::{detection_counts, MachineResult};
use auscult_schemas::{MachineId, MachineType};
use serde::Serialize;
use std::collections::BTreeMap;

/// One fold's mean over the machines of a group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FoldMean {
    pub fold: usize,
    pub auc: Option<f64>,
    pub pauc: Option<f64>,
}

/// The aggregates of a group of (machine, fold) results.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldSummary {
    /// Distinct machines in the group.
    pub machines: usize,
    /// Distinct folds in the group.
    pub folds: usize,
    pub auc_mean: Option<f64>,
    pub auc_std_over_folds: Option<f64>,
    pub pauc_mean: Option<f64>,
    pub pauc_std_over_folds: Option<f64>,
    pub hmean_auc: Option<f64>,
    pub hmean_pauc: Option<f64>,
    /// False alarms and detections over every fold's test clips.
    pub detection: DetectionCounts,
    /// Each fold's mean over the machines, by fold.
    pub per_fold: Vec<FoldMean>,
}

/// Results grouped by machine (sorted by type, then id), each machine's in the given order.
pub fn by_machine(rows: &[MachineResult]) -> BTreeMap<(&MachineType, &MachineId), Vec<&MachineResult>> {
    let mut groups: BTreeMap<(&MachineType, &MachineId), Vec<&MachineResult>> = BTreeMap::new();
    for row in rows {
        groups.entry((&row.machine_type, &row.machine_id)).or_default().push(row);
    }
    groups
}

/// The mean of a metric over the rows that define it.
fn mean_of(rows: &[&MachineResult], metric: fn(&MachineResult) -> Option<f64>) -> Option<f64> {
    mean(&rows.iter().filter_map(|row| metric(row)).collect::<Vec<_>>())
}

/// Summarizes a group of (machine, fold) results.
pub fn summarize(rows: &[&MachineResult]) -> FoldSummary {
    let mut machines: BTreeMap<(&MachineType, &MachineId), Vec<&MachineResult>> = BTreeMap::new();
    let mut folds: BTreeMap<usize, Vec<&MachineResult>> = BTreeMap::new();
    let mut detection = DetectionCounts::default();
    for &row in rows {
        machines.entry((&row.machine_type, &row.machine_id)).or_default().push(row);
        folds.entry(row.fold.unwrap_or(0)).or_default().push(row);
        detection += detection_counts(&row.clips);
    }
    let machine_means = |metric: fn(&MachineResult) -> Option<f64>| -> Vec<f64> {
        machines.values().filter_map(|machine_rows| mean_of(machine_rows, metric)).collect()
    };
    let machine_auc = machine_means(|row| row.auc);
    let machine_pauc = machine_means(|row| row.pauc);
    let per_fold: Vec<FoldMean> = folds
        .iter()
        .map(|(&fold, fold_rows)| FoldMean {
            fold,
            auc: mean_of(fold_rows, |row| row.auc),
            pauc: mean_of(fold_rows, |row| row.pauc),
        })
        .collect();
    let spread = |metric: fn(&FoldMean) -> Option<f64>| -> Option<f64> {
        std_dev(&per_fold.iter().filter_map(metric).collect::<Vec<_>>())
    };
    FoldSummary {
        machines: machines.len(),
        folds: folds.len(),
        auc_mean: mean(&machine_auc),
        auc_std_over_folds: spread(|fold| fold.auc),
        pauc_mean: mean(&machine_pauc),
        pauc_std_over_folds: spread(|fold| fold.pauc),
        hmean_auc: harmonic_mean(&machine_auc),
        hmean_pauc: harmonic_mean(&machine_pauc),
        detection,
        per_fold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::ClipScore;
    use std::path::PathBuf;

    /// A result with the given AUC and pAUC, and one clip per `(anomalous, flagged)`.
    fn row(machine: &str, fold: usize, auc: Option<f64>, pauc: f64, clips: &[(bool, bool)]) -> MachineResult {
        let clips = clips
            .iter()
            .map(|&(anomalous, flagged)| ClipScore {
                path: PathBuf::from("clip.wav"),
                anomalous,
                score: 1.0,
                flagged,
                top_bands: Vec::new(),
            })
            .collect();
        MachineResult {
            machine_type: MachineType::new("fan").expect("a valid type"),
            machine_id: MachineId::new(machine).expect("a valid id"),
            fold: Some(fold),
            train_clips: 8,
            train_files: Vec::new(),
            test_normal: 0,
            test_anomalous: 0,
            auc,
            pauc: Some(pauc),
            threshold: None,
            false_alarm_rate: None,
            recall: None,
            f1: None,
            clips,
            skipped: Vec::new(),
        }
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|value| (value - expected).abs() < 1e-12)
    }

    #[test]
    fn means_over_machines_and_spread_over_folds_by_hand() {
        // Machine a: AUC 0.8, 0.6 (mean 0.7, std 0.1); b: 1.0, 0.4 (mean 0.7, std 0.3).
        // Per-fold means over machines: 0.9, 0.5, so the group's spread is 0.2, not a mean of 0.1 and 0.3.
        let rows = [
            row("fan-a", 0, Some(0.8), 0.6, &[(false, true), (true, true)]),
            row("fan-a", 1, Some(0.6), 0.5, &[(false, false), (true, false)]),
            row("fan-b", 0, Some(1.0), 1.0, &[(false, false), (true, true)]),
            row("fan-b", 1, Some(0.4), 0.5, &[(false, false), (true, true)]),
        ];
        let all: Vec<&MachineResult> = rows.iter().collect();
        let group = summarize(&all);
        assert_eq!((group.machines, group.folds), (2, 2));
        assert!(close(group.auc_mean, 0.7) && close(group.auc_std_over_folds, 0.2), "{group:?}");
        assert!(close(group.hmean_auc, 0.7), "{group:?}");
        // pAUC: machine means 0.55 and 0.75; per-fold means 0.8 and 0.5.
        assert!(close(group.pauc_mean, 0.65) && close(group.pauc_std_over_folds, 0.15), "{group:?}");
        assert!(close(group.hmean_pauc, 2.0 / (1.0 / 0.55 + 1.0 / 0.75)), "{group:?}");
        assert_eq!(group.per_fold.iter().map(|fold| fold.fold).collect::<Vec<_>>(), [0, 1]);
        assert!(close(group.per_fold[0].auc, 0.9) && close(group.per_fold[1].auc, 0.5));
        assert_eq!(group.detection, DetectionCounts { normal: 4, false_alarms: 1, anomalous: 4, detected: 3 });
        let machine_b = summarize(&all[2..]);
        assert!(close(machine_b.auc_mean, 0.7) && close(machine_b.auc_std_over_folds, 0.3), "{machine_b:?}");
        assert_eq!(machine_b.detection.recall(), Some(1.0));
    }

    #[test]
    fn a_fold_without_an_auc_is_left_out() {
        let rows = [row("fan-a", 0, Some(0.8), 0.6, &[]), row("fan-a", 1, None, 0.6, &[])];
        let group = summarize(&rows.iter().collect::<Vec<_>>());
        assert!(close(group.auc_mean, 0.8) && close(group.auc_std_over_folds, 0.0), "{group:?}");
        assert_eq!(group.per_fold[1].auc, None);
    }

    #[test]
    fn results_group_by_machine_in_sorted_order() {
        let rows = [row("fan-b", 0, None, 0.5, &[]), row("fan-a", 1, None, 0.5, &[]), row("fan-a", 0, None, 0.5, &[])];
        let groups = by_machine(&rows);
        let order: Vec<(&str, Vec<Option<usize>>)> =
            groups.iter().map(|((_, id), rows)| (id.as_str(), rows.iter().map(|row| row.fold).collect())).collect();
        assert_eq!(order, [("fan-a", vec![Some(1), Some(0)]), ("fan-b", vec![Some(0)])]);
    }
}
