//! Threshold calibration: from a machine's own normal scores to a threshold that normal audio
//! exceeds at a chosen rate.
//!
//! The configured rate is that of false *alerts*, what a plant is paged for; an alert opens
//! when `k` of `n` non-overlapping spans are over the threshold, so the share of spans over it
//! may be far higher ([`span_rate_for_alert_rate`]): 1 alert in 1,000 spans under a 2-of-3
//! rule is 1 span in 54. That quantile lies within reach of a minute of evidence, where a
//! 1-in-1,000 span quantile is a guess from its tail.
//!
//! The held-out scores are summarised by a gamma distribution (moments fit, as the DCASE
//! 2021-2023 baselines do) and the threshold is its upper quantile, by the Wilson–Hilferty
//! cube-root normal approximation. The threshold is never below the largest calibration
//! score, so a machine never alarms on the very audio it learned from.

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub fn normal_quantile(probability: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    const LOW: f64 = 0.02425;
    let p = probability.clamp(1e-300, 1.0 - 1e-16);
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// A gamma distribution fitted to positive scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaFit {
    pub shape: f64,
    pub scale: f64,
}

impl GammaFit {
    /// Fits by moments; `None` with fewer than two scores or no spread.
    pub fn fit(scores: &[f64]) -> Option<Self> {
        if scores.len() < 2 {
            return None;
        }
        let count = scores.len() as f64;
        let mean = scores.iter().sum::<f64>() / count;
        let variance = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / (count - 1.0);
        if !(mean > 0.0 && variance > 0.0) {
            return None;
        }
        Some(Self { shape: mean * mean / variance, scale: variance / mean })
    }

    /// The value exceeded with probability `tail` (Wilson–Hilferty).
    pub fn upper_quantile(&self, tail: f64) -> f64 {
        let z = normal_quantile(1.0 - tail);
        let k = self.shape;
        let cube = 1.0 - 1.0 / (9.0 * k) + z * (1.0 / (9.0 * k)).sqrt();
        k * self.scale * cube.max(0.0).powi(3)
    }
}

/// Robust distances (median absolute deviations of the log score) above the median beyond
/// which a calibration score is taken for an outlier: a learning window that caught a
/// transient (a door, a start-up) must not set the machine's threshold.
pub const OUTLIER_MADS: f64 = 5.0;

/// The scores without outliers: those whose logarithm lies more than [`OUTLIER_MADS`] scaled
/// median absolute deviations above the median log score.
pub fn without_outliers(scores: &[f64]) -> Vec<f64> {
    let mut logs: Vec<f64> = scores.iter().filter(|&&s| s > 0.0).map(|s| s.ln()).collect();
    if logs.len() < 4 {
        return scores.to_vec();
    }
    logs.sort_by(f64::total_cmp);
    let median = logs[logs.len() / 2];
    let mut deviations: Vec<f64> = logs.iter().map(|l| (l - median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let spread = 1.4826 * deviations[deviations.len() / 2];
    if spread <= 0.0 {
        return scores.to_vec();
    }
    let limit = (median + OUTLIER_MADS * spread).exp();
    scores.iter().copied().filter(|&s| s <= limit).collect()
}

/// The threshold that normal scores like these exceed at `span_rate`: the gamma upper quantile,
/// never less than the largest score; outliers (see [`without_outliers`]) are left out first.
pub fn calibrate(scores: &[f64], span_rate: f64) -> f64 {
    let scores = without_outliers(scores);
    let largest = scores.iter().copied().fold(0.0f64, f64::max);
    match GammaFit::fit(&scores) {
        Some(fit) => fit.upper_quantile(span_rate).max(largest),
        None => largest.max(f64::MIN_POSITIVE) * 2.0,
    }
}

/// The share `p` of spans over a threshold at which a rule that opens an alert when `k` of
/// `n` independent spans are over it opens with probability `alert_rate`:
/// `P(Binomial(n, p) >= k) = alert_rate`, solved by bisection (the left side grows with `p`).
/// Spans a span apart share no audio, so independence is the natural first model; the long
/// healthy runs of BENCHMARKS.md measure how well it holds.
pub fn span_rate_for_alert_rate(alert_rate: f64, k: usize, n: usize) -> f64 {
    let n = n.max(1);
    let k = k.clamp(1, n);
    let opens =
        |p: f64| (k..=n).map(|j| binomial(n, j) * p.powi(j as i32) * (1.0 - p).powi((n - j) as i32)).sum::<f64>();
    let (mut low, mut high) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let middle = 0.5 * (low + high);
        if opens(middle) < alert_rate {
            low = middle;
        } else {
            high = middle;
        }
    }
    0.5 * (low + high)
}

/// `n` choose `j`, as a float.
fn binomial(n: usize, j: usize) -> f64 {
    (0..j).fold(1.0, |product, i| product * (n - i) as f64 / (i + 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_tables() {
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((normal_quantile(0.999) - 3.090_232_306).abs() < 1e-8);
        assert!((normal_quantile(0.01) + 2.326_347_874).abs() < 1e-8);
    }

    #[test]
    fn gamma_quantile_is_close_to_chi_square_tables() {
        // Chi-square with 10 degrees of freedom is gamma(shape 5, scale 2); its 0.999 quantile is 29.588.
        let fit = GammaFit { shape: 5.0, scale: 2.0 };
        assert!((fit.upper_quantile(1e-3) - 29.588).abs() < 0.5, "{}", fit.upper_quantile(1e-3));
    }

    #[test]
    fn one_span_rules_keep_the_rate_and_persistence_rules_raise_it() {
        assert!((span_rate_for_alert_rate(1e-3, 1, 1) - 1e-3).abs() < 1e-12);
        // 2 of 3: 3p^2 - 2p^3 = 1e-3 at p = 0.01840.
        let p = span_rate_for_alert_rate(1e-3, 2, 3);
        assert!((p - 0.018_40).abs() < 1e-4, "{p}");
        assert!((3.0 * p * p - 2.0 * p * p * p - 1e-3).abs() < 1e-9);
        // 3 of 3: p^3.
        assert!((span_rate_for_alert_rate(1e-6, 3, 3) - 1e-2).abs() < 1e-9);
        // Rarer alerts need rarer spans.
        assert!(span_rate_for_alert_rate(1e-5, 2, 3) < p);
    }

    #[test]
    fn the_threshold_is_the_gamma_quantile_above_the_evidence() {
        // Scores of a gamma(4, 1): mean 4, variance 4.
        let scores: Vec<f64> = (0..400).map(|i| 4.0 + 2.0 * normal_quantile((i as f64 + 0.5) / 400.0)).collect();
        let fit = GammaFit::fit(&scores).unwrap();
        assert_eq!(calibrate(&scores, 0.002), fit.upper_quantile(0.002));
        assert!(fit.upper_quantile(0.002) > 11.0 && fit.upper_quantile(0.002) < 14.0);
        // Far fewer scores than 1 / rate: the largest of them is the floor.
        let few = [3.0, 3.5, 4.0, 4.5, 9.0];
        assert!(calibrate(&few, 0.4) >= 9.0);
    }

    #[test]
    fn rarer_false_alarms_need_higher_thresholds() {
        let scores: Vec<f64> = (1..=60).map(|i| 1.0 + (i as f64 * 0.37).sin().abs()).collect();
        let warning = calibrate(&scores, 1e-3);
        let alarm = calibrate(&scores, 1e-5);
        assert!(alarm > warning && warning >= scores.iter().copied().fold(0.0, f64::max));
    }

    #[test]
    fn one_wild_learning_window_does_not_set_the_threshold() {
        let clean: Vec<f64> = (1..=100).map(|i| 1.0 + 0.2 * (i as f64 * 0.61).sin()).collect();
        let mut with_outlier = clean.clone();
        with_outlier.push(40.0);
        let threshold = calibrate(&with_outlier, 1e-3);
        assert!((threshold - calibrate(&clean, 1e-3)).abs() < 0.05, "{threshold}");
        assert!(threshold < 2.0);
        // Within the spread, a high score is not an outlier.
        assert_eq!(without_outliers(&clean).len(), clean.len());
    }
}
