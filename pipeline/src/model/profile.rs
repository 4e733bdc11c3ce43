//! The per-machine normal profile: what a machine's windows look like when it is healthy.
//!
//! A Gaussian over each window's feature vector (per-band time-pooled log-mel levels, see
//! `window`), with a full covariance shrunk by OAS (see `covariance`), learned with running
//! co-moments in f64, so it needs one pass and no stored audio. The score of a window is its
//! squared Mahalanobis distance divided by the number of features: about 1 for normal windows
//! whatever the machine, which makes thresholds comparable. Held-out scores of the learning
//! windows calibrate the threshold without scoring a window against itself. After learning,
//! guarded adaptation can follow slow drift of the mean with an exponential memory.

use super::covariance::{
    cholesky_in_place, packed_len, shrink_in_place, whitened_norm_squared, CoMoments, NotPositiveDefinite,
};

/// A learned profile: the mean, the Cholesky factor of the shrunk covariance, and each
/// feature's variance (for explanations).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NormalProfile {
    mean: Vec<f64>,
    factor: Vec<f64>,
    variance: Vec<f64>,
    /// Scratch of `score` (not checkpointed).
    #[serde(skip)]
    residual: Vec<f64>,
    #[serde(skip)]
    scratch: Vec<f64>,
}

impl NormalProfile {
    /// Freezes running co-moments into a profile; `floor` (a variance, dB²) is added to every
    /// feature's variance so a band that never moved while learning cannot make a later change
    /// look infinitely anomalous.
    pub fn from_moments(moments: &CoMoments, floor: f64) -> Result<Self, NotPositiveDefinite> {
        let dimensions = moments.dimensions();
        let mut factor = moments.comoment.clone();
        shrink_in_place(&mut factor, dimensions, moments.count as f64, floor);
        let variance = (0..dimensions).map(|row| factor[packed_len(row + 1) - 1]).collect();
        cholesky_in_place(&mut factor, dimensions)?;
        Ok(Self {
            mean: moments.mean.clone(),
            factor,
            variance,
            residual: Vec::with_capacity(dimensions),
            scratch: Vec::with_capacity(dimensions),
        })
    }

    /// Features per window this profile scores.
    pub fn dimensions(&self) -> usize {
        self.mean.len()
    }

    /// Squared Mahalanobis distance of a feature vector over the number of features.
    pub fn score(&mut self, values: &[f64]) -> f64 {
        self.residual.clear();
        self.residual.extend(values.iter().zip(&self.mean).map(|(value, mean)| value - mean));
        whitened_norm_squared(&self.factor, &self.residual, &mut self.scratch) / self.mean.len().max(1) as f64
    }

    /// Signed z-score of feature `index` against its own variance.
    pub fn z_score(&self, index: usize, value: f64) -> f64 {
        (value - self.mean[index]) / self.variance[index].sqrt()
    }

    /// Moves the profile's mean a step of weight `alpha` towards `values` (an exponential
    /// memory of about `1 / alpha` windows). Only the mean follows: drift moves a machine's
    /// level, and a spread re-learned from windows that were chosen for scoring low would
    /// narrow with every step until normal audio alarms.
    pub fn adapt(&mut self, values: &[f64], alpha: f64) {
        for (mean, &value) in self.mean.iter_mut().zip(values) {
            *mean += alpha * (value - *mean);
        }
    }

    pub fn heap_bytes(&self) -> usize {
        (self.mean.capacity()
            + self.factor.capacity()
            + self.variance.capacity()
            + self.residual.capacity()
            + self.scratch.capacity())
            * std::mem::size_of::<f64>()
    }
}

/// Learning windows kept for calibration, thinned deterministically to stay under a bound.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationSample {
    capacity: usize,
    stride: u64,
    seen: u64,
    vectors: Vec<Vec<f32>>,
}

impl CalibrationSample {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(2), stride: 1, seen: 0, vectors: Vec::new() }
    }

    /// Offers one learning window; keeps every `stride`-th, halving the sample when full.
    pub fn offer(&mut self, values: &[f64]) {
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
                self.vectors.push(values.iter().map(|&v| v as f32).collect());
            }
        }
        self.seen += 1;
    }

    /// Held-out scores of the kept windows against `moments` (which include them all): each
    /// window is scored against the profile learned without it and without its `radius`
    /// neighbours on either side, because neighbouring windows of a machine are alike and
    /// leaving one out alone would score it against its near-twins and make thresholds too low.
    pub fn held_out_scores(&self, moments: &CoMoments, floor: f64, radius: usize) -> Vec<f64> {
        let dimensions = moments.dimensions();
        let total = moments.count as f64;
        let mut rest = CoMoments::new(dimensions);
        let mut block_mean = vec![0.0; dimensions];
        let mut difference = vec![0.0; dimensions];
        let mut values = vec![0.0; dimensions];
        (0..self.vectors.len())
            .filter_map(|index| {
                let first = index.saturating_sub(radius);
                let last = (index + radius).min(self.vectors.len() - 1);
                let block = &self.vectors[first..=last];
                let block_count = block.len() as f64;
                let rest_count = total - block_count;
                if rest_count < 2.0 {
                    return None;
                }
                block_mean.iter_mut().for_each(|v| *v = 0.0);
                for vector in block {
                    for (sum, &v) in block_mean.iter_mut().zip(vector) {
                        *sum += f64::from(v) / block_count;
                    }
                }
                // Rest = all - block: means, then co-moments (the block's own about its mean,
                // and the shift between the two means).
                for d in 0..dimensions {
                    rest.mean[d] = (total * moments.mean[d] - block_count * block_mean[d]) / rest_count;
                    difference[d] = block_mean[d] - rest.mean[d];
                }
                rest.comoment.copy_from_slice(&moments.comoment);
                let shift = block_count * rest_count / total;
                let mut cell = 0;
                for row in 0..dimensions {
                    for column in 0..=row {
                        let mut own = 0.0;
                        for vector in block {
                            own += (f64::from(vector[row]) - block_mean[row])
                                * (f64::from(vector[column]) - block_mean[column]);
                        }
                        rest.comoment[cell] -= own + shift * difference[row] * difference[column];
                        cell += 1;
                    }
                }
                rest.count = rest_count as u64;
                let mut profile = NormalProfile::from_moments(&rest, floor).ok()?;
                values.iter_mut().zip(&self.vectors[index]).for_each(|(value, &s)| *value = f64::from(s));
                Some(profile.score(&values))
            })
            .collect()
    }

    pub fn heap_bytes(&self) -> usize {
        self.vectors.iter().map(|v| v.capacity() * 4).sum::<usize>() + self.vectors.capacity() * 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<Vec<f64>> {
        (0..30)
            .map(|i| vec![(i as f64).sqrt(), (i as f64 * 1.3).cos(), (i as f64 * 0.4).sin() + 0.1 * i as f64])
            .collect()
    }

    #[test]
    fn held_out_scores_equal_refitting_without_the_block() {
        let data = data();
        let mut all = CoMoments::new(3);
        let mut sample = CalibrationSample::new(64);
        for v in &data {
            all.add(v);
            sample.offer(v);
        }
        let stored = |i: usize| -> Vec<f64> { data[i].iter().map(|&v| f64::from(v as f32)).collect() };
        let scores = sample.held_out_scores(&all, 0.01, 0);
        let mut without_first = CoMoments::new(3);
        data[1..].iter().for_each(|v| without_first.add(v));
        let expected = NormalProfile::from_moments(&without_first, 0.01).unwrap().score(&stored(0));
        assert!((scores[0] - expected).abs() < 1e-4 * expected, "{} vs {expected}", scores[0]);
        let blocks = sample.held_out_scores(&all, 0.01, 2);
        let mut without_block = CoMoments::new(3);
        data.iter().enumerate().filter(|(i, _)| !(3..=7).contains(i)).for_each(|(_, v)| without_block.add(v));
        let expected = NormalProfile::from_moments(&without_block, 0.01).unwrap().score(&stored(5));
        assert!((blocks[5] - expected).abs() < 1e-3 * expected, "{} vs {expected}", blocks[5]);
    }

    #[test]
    fn the_calibration_sample_stays_bounded_and_spread() {
        let mut sample = CalibrationSample::new(16);
        for i in 0..1000 {
            sample.offer(&[i as f64]);
        }
        assert!(sample.vectors.len() <= 16);
        let first = sample.vectors.first().unwrap()[0];
        let last = sample.vectors.last().unwrap()[0];
        assert_eq!(first, 0.0);
        assert!(last > 800.0, "the sample covers only up to {last}");
    }

    #[test]
    fn a_coherent_change_costs_less_than_the_same_change_in_one_band() {
        // Two bands that always move together: a joint move is normal, a lone move is not.
        let mut moments = CoMoments::new(2);
        for i in 0..200 {
            let level = (i as f64 * 0.77).sin() * 3.0;
            moments.add(&[level + (i as f64 * 2.9).cos() * 0.1, level + (i as f64 * 1.3).sin() * 0.1]);
        }
        let mut profile = NormalProfile::from_moments(&moments, 0.01).unwrap();
        let together = profile.score(&[2.0, 2.0]);
        let alone = profile.score(&[2.0, 0.0]);
        assert!(alone > 20.0 * together, "alone {alone}, together {together}");
    }

    #[test]
    fn adaptation_follows_a_shift_slowly() {
        let mut moments = CoMoments::new(2);
        for i in 0..100 {
            moments.add(&[(i % 2) as f64, ((i / 2) % 2) as f64]);
        }
        let mut profile = NormalProfile::from_moments(&moments, 0.01).unwrap();
        let before = profile.score(&[3.0, 0.5]);
        let mut once = profile.clone();
        once.adapt(&[3.0, 0.5], 0.01);
        assert!(once.score(&[3.0, 0.5]) > before * 0.9, "one window must not move the profile much");
        for _ in 0..300 {
            profile.adapt(&[3.0, 0.5], 0.01);
        }
        assert!(profile.score(&[3.0, 0.5]) < before / 2.0);
    }
}
