//! The per-machine normal profile: what a machine's spans look like when it is healthy.
//!
//! Each span's feature vector (per-group mean, standard deviation and maximum of the log-mel
//! levels, see `span`) is standardised by the learning spans' mean and variance per feature
//! (plus a variance floor, so that a band that never moved while learning cannot make a later
//! change look infinitely anomalous); the directions of coherent variation that the learning
//! audio gives evidence for are taken out (`subspace`: none with a minute of audio, a few with
//! more); what remains is scored.
//!
//! Why not a full covariance: a machine learns from a few minutes of audio, often one, and its
//! spans overlap, so that is tens of independent observations of a few hundred features. On
//! real MIMII recordings the full, shrunk covariance of the earlier model scored AUC 0.61 where
//! this scores 0.84 (BENCHMARKS.md).
//!
//! The score of a span is the mean of its largest squared standardised residuals (the top
//! `TOP_FRACTION` of its features): a fault often lives in a few bands (a bearing's tone, a
//! leak's hiss), and averaging over every feature would dilute it by their number, while a
//! broadband change still moves many. Normal spans score about 4 whatever the machine.
//! Thresholds come from held-out scores of the kept learning spans (see `subspace::choose`).
//! After learning, guarded adaptation can follow slow drift of the mean, and of the spread
//! where a drift widens it (never narrower than learned).

use super::subspace::{choose, Standardisation, Subspace};
use serde::{Deserialize, Serialize};

/// The share of a span's features, the most deviating ones, whose squared residuals make its score.
pub const TOP_FRACTION: f64 = 0.1;
/// A normal variable's standard deviation over its mean absolute deviation, sqrt(pi / 2).
const MEAN_ABSOLUTE_TO_SD: f64 = 1.253_314_137_315_500_3;

/// Running sums of the learning spans about a reference (the first span), in f64: exact
/// means and variances in one pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningMoments {
    reference: Option<Vec<f64>>,
    count: u64,
    sum: Vec<f64>,
    sum_squares: Vec<f64>,
}

impl LearningMoments {
    pub fn new(dimensions: usize) -> Self {
        Self { reference: None, count: 0, sum: vec![0.0; dimensions], sum_squares: vec![0.0; dimensions] }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn dimensions(&self) -> usize {
        self.sum.len()
    }

    pub fn add(&mut self, values: &[f64]) {
        let reference = self.reference.get_or_insert_with(|| values.to_vec());
        self.count += 1;
        for (((sum, squares), value), r) in
            self.sum.iter_mut().zip(&mut self.sum_squares).zip(values).zip(reference.iter())
        {
            let centred = value - r;
            *sum += centred;
            *squares += centred * centred;
        }
    }

    /// Each feature's mean and population variance plus `floor` (`None` before any span).
    pub fn standardisation(&self, floor: f64) -> Option<Standardisation> {
        let reference = self.reference.as_ref()?;
        let count = self.count as f64;
        let mut mean = Vec::with_capacity(reference.len());
        let mut variance = Vec::with_capacity(reference.len());
        for ((r, sum), squares) in reference.iter().zip(&self.sum).zip(&self.sum_squares) {
            let centred_mean = sum / count;
            mean.push(r + centred_mean);
            variance.push((squares / count - centred_mean * centred_mean).max(0.0) + floor);
        }
        Some(Standardisation { mean, variance, floor })
    }

    pub fn heap_bytes(&self) -> usize {
        (self.sum.capacity() + self.sum_squares.capacity() + self.reference.as_ref().map_or(0, Vec::capacity)) * 8
    }
}

/// A learned profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalProfile {
    /// The standardisation in force: the learned one, its mean and (widened) variance adapted.
    standard: Standardisation,
    subspace: Subspace,
    /// Each feature's variance as learned (floor included): the adapted spread never goes below it.
    learned_variance: Vec<f64>,
    /// An exponential memory of each adapted span's absolute deviation from the mean, begun at
    /// the learned standard deviation's equivalent (a robust scale: one odd span moves it by
    /// its deviation, not by the square of it).
    tracked_deviation: Vec<f64>,
}

impl NormalProfile {
    /// The profile of all learning spans, with the subspace the kept `sample` supports, and
    /// the held-out scores of the kept spans. `None` before any span.
    /// `overlap`: spans this many positions apart or closer share audio.
    pub fn learn(
        moments: &LearningMoments,
        sample: &CalibrationSample,
        floor: f64,
        overlap: u64,
    ) -> Option<(Self, Vec<f64>)> {
        let standard = moments.standardisation(floor)?;
        let spans: Vec<Vec<f64>> =
            sample.vectors.iter().map(|(_, vector)| vector.iter().map(|&v| f64::from(v)).collect()).collect();
        let positions: Vec<u64> = sample.vectors.iter().map(|(position, _)| *position).collect();
        let (subspace, held_out) = choose(&spans, &positions, overlap, &standard, score_with);
        let learned_variance = standard.variance.clone();
        let tracked_deviation = learned_variance.iter().map(|variance| variance.sqrt() / MEAN_ABSOLUTE_TO_SD).collect();
        Some((Self { standard, subspace, learned_variance, tracked_deviation }, held_out))
    }

    /// Features per span this profile scores.
    pub fn dimensions(&self) -> usize {
        self.standard.mean.len()
    }

    /// Directions of coherent variation taken out before scoring.
    pub fn rank(&self) -> usize {
        self.subspace.rank()
    }

    /// The mean of the largest `TOP_FRACTION` of a span's squared standardised residuals.
    pub fn score(&self, values: &[f64]) -> f64 {
        score_with(&self.standard, &self.subspace, values)
    }

    /// Signed deviation of feature `index` in `values`, in its own residual standard deviations.
    pub fn deviations(&self, values: &[f64]) -> Vec<f64> {
        let mut z = Vec::new();
        let mut residual = Vec::new();
        self.standard.standardise(values, &mut z);
        self.subspace.residual(&z, &mut residual);
        residual.iter().enumerate().map(|(index, &r)| self.subspace.standardised(index, r)).collect()
    }

    /// Moves the profile a step of weight `alpha` towards `values` (an exponential memory of
    /// about `1 / alpha` spans). The mean follows. The spread follows only where it widens: a
    /// drift that outpaces the mean (a tone rising out of the noise, which moves its band's
    /// spread and peak features) shows as deviations larger than learned, and the variance in
    /// force is the larger of the learned one and the one the memory of absolute deviations
    /// gives. It never narrows below the learned variance, because a spread re-learned from
    /// spans that were chosen for scoring low would narrow with every step until normal audio
    /// alarms; when the drift stops, the memory decays and the learned variance is in force again.
    pub fn adapt(&mut self, values: &[f64], alpha: f64) {
        let features = self
            .standard
            .mean
            .iter_mut()
            .zip(&mut self.standard.variance)
            .zip(&mut self.tracked_deviation)
            .zip(&self.learned_variance)
            .zip(values);
        for ((((mean, variance), tracked), learned), &value) in features {
            let deviation = value - *mean;
            *tracked += alpha * (deviation.abs() - *tracked);
            *variance = (*tracked * MEAN_ABSOLUTE_TO_SD).powi(2).max(*learned);
            *mean += alpha * deviation;
        }
    }

    pub fn heap_bytes(&self) -> usize {
        (self.standard.mean.capacity()
            + self.standard.variance.capacity()
            + self.learned_variance.capacity()
            + self.tracked_deviation.capacity())
            * std::mem::size_of::<f64>()
            + self.subspace.heap_bytes()
    }
}

/// The score of raw span `values` under a standardisation and a subspace.
fn score_with(standard: &Standardisation, subspace: &Subspace, values: &[f64]) -> f64 {
    let mut z = Vec::with_capacity(values.len());
    let mut residual = Vec::with_capacity(values.len());
    standard.standardise(values, &mut z);
    subspace.residual(&z, &mut residual);
    let mut squares: Vec<f64> =
        residual.iter().enumerate().map(|(index, &r)| subspace.standardised(index, r).powi(2)).collect();
    top_mean(&mut squares)
}

/// The mean of the largest `TOP_FRACTION` of `values` (at least one); reorders them.
fn top_mean(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let top = ((values.len() as f64 * TOP_FRACTION).ceil() as usize).clamp(1, values.len());
    if values.len() > top {
        values.select_nth_unstable_by(top - 1, |a, b| b.total_cmp(a));
    }
    values[..top].iter().sum::<f64>() / top as f64
}

/// Learning spans kept for calibration and for the subspace, thinned deterministically to
/// stay under a bound and spread over the whole learning audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSample {
    capacity: usize,
    stride: u64,
    seen: u64,
    /// Each kept span with its position (see [`CalibrationSample::offer`]).
    vectors: Vec<(u64, Vec<f32>)>,
}

impl CalibrationSample {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(2), stride: 1, seen: 0, vectors: Vec::new() }
    }

    /// Offers the learning span at `position`: the index of its last window in the machine's
    /// audio, with a jump at every gap, so that spans of different stretches are never near.
    /// Keeps every `stride`-th, halving the sample when full.
    pub fn offer(&mut self, position: u64, values: &[f64]) {
        if self.seen.is_multiple_of(self.stride) {
            if self.vectors.len() == self.capacity {
                let mut index = 0;
                self.vectors.retain(|_| {
                    index += 1;
                    index % 2 == 1
                });
                self.stride *= 2;
            }
            if self.seen.is_multiple_of(self.stride) {
                self.vectors.push((position, values.iter().map(|&v| v as f32).collect()));
            }
        }
        self.seen += 1;
    }

    pub fn heap_bytes(&self) -> usize {
        self.vectors.iter().map(|(_, v)| v.capacity() * 4).sum::<usize>() + self.vectors.capacity() * 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::subspace::tests::noise;

    fn learned(spans: &[Vec<f64>], floor: f64) -> (NormalProfile, Vec<f64>) {
        let mut moments = LearningMoments::new(spans[0].len());
        let mut sample = CalibrationSample::new(64);
        for (position, span) in spans.iter().enumerate() {
            moments.add(span);
            sample.offer(position as u64, span);
        }
        NormalProfile::learn(&moments, &sample, floor, 0).unwrap()
    }

    #[test]
    fn the_standardisation_is_each_features_mean_and_population_variance_plus_the_floor() {
        let spans: Vec<Vec<f64>> = (0..10).map(|i| vec![(i as f64).sqrt() - 50.0, (i as f64 * 1.3).cos()]).collect();
        let mut moments = LearningMoments::new(2);
        spans.iter().for_each(|span| moments.add(span));
        let standard = moments.standardisation(0.5).unwrap();
        for d in 0..2 {
            let mean = spans.iter().map(|v| v[d]).sum::<f64>() / 10.0;
            let variance = spans.iter().map(|v| (v[d] - mean).powi(2)).sum::<f64>() / 10.0;
            assert!((standard.mean[d] - mean).abs() < 1e-12);
            assert!((standard.variance[d] - variance - 0.5).abs() < 1e-9);
        }
    }

    #[test]
    fn the_score_is_the_mean_of_the_largest_tenth_of_the_squared_deviations() {
        let profile = NormalProfile {
            standard: Standardisation { mean: vec![0.0; 20], variance: vec![1.0; 20], floor: 0.0 },
            subspace: Subspace::none(20),
            learned_variance: vec![1.0; 20],
            tracked_deviation: vec![1.0 / MEAN_ABSOLUTE_TO_SD; 20],
        };
        let mut values = vec![0.5; 20];
        values[3] = 3.0;
        values[17] = -2.0;
        // 20 features: the two largest, 9 and 4.
        assert!((profile.score(&values) - 6.5).abs() < 1e-12);
        // A deviation in one feature weighs a tenth, not a twentieth.
        let mut one = vec![0.0; 20];
        one[0] = 4.0;
        assert!((profile.score(&one) - 8.0).abs() < 1e-12);
        assert!((profile.deviations(&one)[0] - 4.0).abs() < 1e-12);
    }

    #[test]
    fn with_a_handful_of_spans_the_profile_is_diagonal_and_held_out_scores_are_out_of_sample() {
        let spans: Vec<Vec<f64>> = (0..8).map(|i| (0..20).map(|d| noise(i, d) - 40.0).collect()).collect();
        let (profile, held_out) = learned(&spans, 0.01);
        assert_eq!(profile.rank(), 0);
        assert_eq!(held_out.len(), 8);
        let in_sample: f64 = spans.iter().map(|span| profile.score(span)).sum::<f64>() / 8.0;
        let out_of_sample: f64 = held_out.iter().sum::<f64>() / 8.0;
        assert!(out_of_sample > in_sample, "held out {out_of_sample} vs in sample {in_sample}");
    }

    #[test]
    fn a_coherent_move_of_many_bands_costs_less_than_the_same_move_in_one_once_learned() {
        // 60 spans whose features all follow one level, plus small noise of their own.
        let spans: Vec<Vec<f64>> = (0..60)
            .map(|i| {
                let level = (i as f64 * 0.77).sin() * 3.0;
                (0..20).map(|d| level + noise(i, d) * 0.3).collect()
            })
            .collect();
        let (profile, _) = learned(&spans, 0.01);
        assert!(profile.rank() >= 1, "the shared level earns a direction");
        let together = vec![4.0; 20];
        let mut alone = vec![0.0; 20];
        alone[5] = 4.0;
        assert!(
            profile.score(&alone) > 5.0 * profile.score(&together),
            "{} vs {}",
            profile.score(&alone),
            profile.score(&together)
        );
    }

    #[test]
    fn the_calibration_sample_stays_bounded_and_spread() {
        let mut sample = CalibrationSample::new(16);
        for i in 0..1000 {
            sample.offer(i, &[i as f64]);
        }
        assert!(sample.vectors.len() <= 16);
        assert_eq!(sample.vectors.first().unwrap().0, 0);
        assert!(sample.vectors.last().unwrap().0 > 800, "the sample covers only up to {:?}", sample.vectors.last());
    }

    #[test]
    fn adaptation_follows_a_shift_slowly() {
        let spans: Vec<Vec<f64>> = (0..100).map(|i| vec![(i % 2) as f64, ((i / 2) % 2) as f64]).collect();
        let (mut profile, _) = learned(&spans, 0.01);
        let before = profile.score(&[3.0, 0.5]);
        let mut once = profile.clone();
        once.adapt(&[3.0, 0.5], 0.01);
        // A span 5 sd out widens the spread by alpha x 5 sd's worth (about 10 % in variance) and
        // moves the mean by alpha of its deviation.
        assert!(once.score(&[3.0, 0.5]) > before * 0.85, "one span must not move the profile much");
        for _ in 0..300 {
            profile.adapt(&[3.0, 0.5], 0.01);
        }
        assert!(profile.score(&[3.0, 0.5]) < before / 2.0);
    }

    #[test]
    fn the_spread_widens_under_a_drift_that_outpaces_the_mean_and_returns_when_it_stops() {
        let spans: Vec<Vec<f64>> = (0..100).map(|i| vec![(i % 2) as f64, ((i / 2) % 2) as f64]).collect();
        let (mut profile, _) = learned(&spans, 0.01);
        let learned_variance = profile.standard.variance.clone();
        // Feature 0 drifts by 0.05 a span, steadily: the mean lags by about 0.05 / alpha.
        let mut level = 0.5;
        for _ in 0..500 {
            level += 0.05;
            profile.adapt(&[level, 0.5], 0.05);
        }
        assert!(
            profile.standard.variance[0] > 2.0 * learned_variance[0],
            "the drifting feature's spread did not widen: {:?} against {learned_variance:?}",
            profile.standard.variance
        );
        assert_eq!(profile.standard.variance[1], learned_variance[1], "a steady feature keeps its learned spread");
        // The drift stops: once the mean has caught up, the learned spread is in force again.
        for _ in 0..500 {
            profile.adapt(&[level, 0.5], 0.05);
        }
        assert_eq!(profile.standard.variance, learned_variance);
    }

    #[test]
    fn the_spread_never_narrows_below_the_learned_one() {
        let spans: Vec<Vec<f64>> = (0..100).map(|i| vec![(i % 2) as f64 * 2.0, ((i / 2) % 2) as f64]).collect();
        let (mut profile, _) = learned(&spans, 0.01);
        let learned_variance = profile.standard.variance.clone();
        // Spans that sit at the mean, as adaptation's chosen spans tend to.
        for _ in 0..1_000 {
            profile.adapt(&[1.0, 0.5], 0.05);
        }
        assert_eq!(profile.standard.variance, learned_variance);
    }
}
