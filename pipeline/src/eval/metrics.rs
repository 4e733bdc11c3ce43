//! Detection metrics as the DCASE challenge reports them.
//!
//! AUC is the Mann–Whitney statistic (ties count half). pAUC is scikit-learn's
//! `roc_auc_score(y_true, y_score, max_fpr=p)`: the area under the ROC curve up to a false
//! positive rate of `p` (the curve interpolated linearly at `p`), standardized by the McClish
//! correction so that 0.5 is chance and 1 is perfect. Both are exact for any ties.

/// Area under the ROC curve; `None` without both classes.
pub fn auc(normal_scores: &[f64], anomalous_scores: &[f64]) -> Option<f64> {
    if normal_scores.is_empty() || anomalous_scores.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for &anomalous in anomalous_scores {
        for &normal in normal_scores {
            wins += if anomalous > normal {
                1.0
            } else if anomalous == normal {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (normal_scores.len() * anomalous_scores.len()) as f64)
}

/// The ROC curve's points (fpr, tpr), thresholds from high to low, ties merged, from (0, 0).
fn roc_points(normal_scores: &[f64], anomalous_scores: &[f64]) -> Vec<(f64, f64)> {
    let mut labelled: Vec<(f64, bool)> = normal_scores
        .iter()
        .map(|&score| (score, false))
        .chain(anomalous_scores.iter().map(|&score| (score, true)))
        .collect();
    labelled.sort_by(|a, b| b.0.total_cmp(&a.0));
    let negatives = normal_scores.len() as f64;
    let positives = anomalous_scores.len() as f64;
    let mut points = vec![(0.0, 0.0)];
    let (mut false_positives, mut true_positives) = (0.0, 0.0);
    for (index, &(score, anomalous)) in labelled.iter().enumerate() {
        if anomalous {
            true_positives += 1.0;
        } else {
            false_positives += 1.0;
        }
        let last_of_tie = labelled.get(index + 1).is_none_or(|next| next.0 != score);
        if last_of_tie {
            points.push((false_positives / negatives, true_positives / positives));
        }
    }
    points
}

/// Standardized partial AUC up to `max_fpr` (scikit-learn's `max_fpr`); `None` without both classes.
pub fn partial_auc(normal_scores: &[f64], anomalous_scores: &[f64], max_fpr: f64) -> Option<f64> {
    if normal_scores.is_empty() || anomalous_scores.is_empty() {
        return None;
    }
    let points = roc_points(normal_scores, anomalous_scores);
    let mut area = 0.0;
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x0 >= max_fpr {
            break;
        }
        let (x_end, y_end) =
            if x1 > max_fpr { (max_fpr, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)) } else { (x1, y1) };
        area += (x_end - x0) * (y0 + y_end) / 2.0;
    }
    let min_area = 0.5 * max_fpr * max_fpr;
    let max_area = max_fpr;
    Some(0.5 * (1.0 + (area - min_area) / (max_area - min_area)))
}

/// Arithmetic mean; `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Harmonic mean (as DCASE ranks systems); `None` when empty or any value is not positive.
pub fn harmonic_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|&v| v <= 0.0) {
        return None;
    }
    Some(values.len() as f64 / values.iter().map(|v| 1.0 / v).sum::<f64>())
}

/// Population standard deviation (ddof=0, as NumPy's `std`); `None` when empty.
pub fn std_dev(values: &[f64]) -> Option<f64> {
    let centre = mean(values)?;
    mean(&values.iter().map(|v| (v - centre) * (v - centre)).collect::<Vec<_>>()).map(f64::sqrt)
}

/// Clip counts at a threshold: how many normal clips were flagged (false alarms) and how many
/// anomalous ones (detections). Counts add, so rates can be pooled over folds or machines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectionCounts {
    pub normal: usize,
    pub false_alarms: usize,
    pub anomalous: usize,
    pub detected: usize,
}

impl DetectionCounts {
    /// Counts one clip.
    pub fn count(&mut self, anomalous: bool, flagged: bool) {
        if anomalous {
            self.anomalous += 1;
            self.detected += usize::from(flagged);
        } else {
            self.normal += 1;
            self.false_alarms += usize::from(flagged);
        }
    }

    /// Share of normal clips flagged; `None` without normal clips.
    pub fn false_alarm_rate(&self) -> Option<f64> {
        (self.normal > 0).then(|| self.false_alarms as f64 / self.normal as f64)
    }

    /// Share of anomalous clips flagged; `None` without anomalous clips.
    pub fn recall(&self) -> Option<f64> {
        (self.anomalous > 0).then(|| self.detected as f64 / self.anomalous as f64)
    }

    /// Share of flagged clips that are anomalous; `None` when nothing was flagged.
    pub fn precision(&self) -> Option<f64> {
        let flagged = self.false_alarms + self.detected;
        (flagged > 0).then(|| self.detected as f64 / flagged as f64)
    }

    /// F1 of precision and recall; 0 when there are anomalous clips but none was detected.
    pub fn f1(&self) -> Option<f64> {
        match (self.precision(), self.recall()) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (_, Some(_)) => Some(0.0),
            _ => None,
        }
    }
}

impl std::ops::AddAssign for DetectionCounts {
    fn add_assign(&mut self, other: DetectionCounts) {
        self.normal += other.normal;
        self.false_alarms += other.false_alarms;
        self.anomalous += other.anomalous;
        self.detected += other.detected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_reversed_separation() {
        assert_eq!(auc(&[0.1, 0.2], &[0.3, 0.4]), Some(1.0));
        assert_eq!(auc(&[0.3, 0.4], &[0.1, 0.2]), Some(0.0));
        assert_eq!(partial_auc(&[0.1, 0.2], &[0.3, 0.4], 0.1), Some(1.0));
        assert_eq!(auc(&[1.0], &[1.0]), Some(0.5));
        assert_eq!(auc(&[], &[1.0]), None);
    }

    #[test]
    fn harmonic_mean_is_below_the_mean_when_values_differ() {
        assert!((harmonic_mean(&[1.0, 0.5]).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!(harmonic_mean(&[1.0, 0.0]).is_none());
    }

    #[test]
    fn std_dev_is_the_population_one() {
        // Mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, / 4 = 1.25.
        assert!((std_dev(&[1.0, 2.0, 3.0, 4.0]).unwrap() - 1.25_f64.sqrt()).abs() < 1e-12);
        assert_eq!(std_dev(&[0.7]), Some(0.0));
        assert_eq!(std_dev(&[]), None);
    }

    #[test]
    fn pooled_counts_give_pooled_rates() {
        let mut fold_0 = DetectionCounts::default();
        fold_0.count(false, true);
        fold_0.count(false, false);
        fold_0.count(true, true);
        let mut fold_1 = DetectionCounts::default();
        fold_1.count(false, false);
        fold_1.count(true, false);
        fold_1.count(true, true);
        let mut pooled = fold_0;
        pooled += fold_1;
        assert_eq!(pooled, DetectionCounts { normal: 3, false_alarms: 1, anomalous: 3, detected: 2 });
        assert_eq!(pooled.false_alarm_rate(), Some(1.0 / 3.0));
        assert_eq!(pooled.recall(), Some(2.0 / 3.0));
        assert_eq!(pooled.precision(), Some(2.0 / 3.0));
        assert!((pooled.f1().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let missed = DetectionCounts { normal: 2, false_alarms: 0, anomalous: 2, detected: 0 };
        assert_eq!((missed.precision(), missed.f1()), (None, Some(0.0)));
        assert_eq!(DetectionCounts::default().f1(), None);
    }
}
