//! The per-machine normal profile: what a machine's windows look like when it is healthy.
//!
//! A diagonal Gaussian over each window's feature vector (per-band log-mel mean and standard
//! deviation), learned with Welford's running moments in f64, so it needs one pass and no
//! stored audio. Scores are the mean squared z-score over features: about 1 for normal windows
//! whatever the machine, which makes thresholds comparable. Leave-one-out scores of the
//! learning windows calibrate the threshold without scoring a window against itself. After
//! learning, guarded adaptation can follow slow drift with an exponential memory.

/// Running moments of feature vectors (Welford, f64).
#[derive(Debug, Clone, PartialEq)]
pub struct RunningMoments {
    count: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl RunningMoments {
    pub fn new(dimensions: usize) -> Self {
        Self { count: 0, mean: vec![0.0; dimensions], m2: vec![0.0; dimensions] }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds one vector.
    pub fn add(&mut self, values: &[f64]) {
        self.count += 1;
        let count = self.count as f64;
        for ((mean, m2), &value) in self.mean.iter_mut().zip(self.m2.iter_mut()).zip(values) {
            let delta = value - *mean;
            *mean += delta / count;
            *m2 += delta * (value - *mean);
        }
    }
}

/// A learned profile: per-feature mean and standard deviation.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalProfile {
    mean: Vec<f64>,
    variance: Vec<f64>,
    min_variance: f64,
}

impl NormalProfile {
    /// Freezes running moments into a profile; features never vary less than `min_std`.
    pub fn from_moments(moments: &RunningMoments, min_std: f64) -> Self {
        let count = moments.count.max(2) as f64;
        Self {
            mean: moments.mean.clone(),
            variance: moments.m2.iter().map(|m2| m2 / (count - 1.0)).collect(),
            min_variance: min_std * min_std,
        }
    }

    /// Mean squared z-score of a feature vector.
    pub fn score(&self, values: &[f64]) -> f64 {
        score_against(values, &self.mean, &self.variance, self.min_variance)
    }

    /// Signed z-score of feature `index`.
    pub fn z_score(&self, index: usize, value: f64) -> f64 {
        (value - self.mean[index]) / self.variance[index].max(self.min_variance).sqrt()
    }

    /// Moves the profile a step of weight `alpha` towards `values` (exponential forgetting).
    pub fn adapt(&mut self, values: &[f64], alpha: f64) {
        for ((mean, variance), &value) in self.mean.iter_mut().zip(self.variance.iter_mut()).zip(values) {
            let delta = value - *mean;
            *mean += alpha * delta;
            *variance = (1.0 - alpha) * (*variance + alpha * delta * delta);
        }
    }

    pub fn heap_bytes(&self) -> usize {
        (self.mean.capacity() + self.variance.capacity()) * std::mem::size_of::<f64>()
    }
}

fn score_against(values: &[f64], mean: &[f64], variance: &[f64], min_variance: f64) -> f64 {
    let total: f64 = values
        .iter()
        .zip(mean)
        .zip(variance)
        .map(|((&value, &mean), &variance)| {
            let delta = value - mean;
            delta * delta / variance.max(min_variance)
        })
        .sum();
    total / values.len().max(1) as f64
}

/// Learning windows kept for calibration, thinned deterministically to stay under a bound.
#[derive(Debug, Clone, PartialEq)]
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
    /// window is scored against the moments without it and without its `radius` neighbours on
    /// either side, because neighbouring windows of a machine are alike and leaving one out
    /// alone would score it against its near-twins and make thresholds too low.
    pub fn held_out_scores(&self, moments: &RunningMoments, min_std: f64, radius: usize) -> Vec<f64> {
        let dimensions = moments.mean.len();
        let mut mean = vec![0.0; dimensions];
        let mut variance = vec![0.0; dimensions];
        let mut values = vec![0.0; dimensions];
        let mut block_mean = vec![0.0; dimensions];
        let mut block_m2 = vec![0.0; dimensions];
        let total = moments.count as f64;
        (0..self.vectors.len())
            .map(|index| {
                let first = index.saturating_sub(radius);
                let last = (index + radius).min(self.vectors.len() - 1);
                // Mean and M2 of the block (exact two-pass over a few vectors).
                let block = &self.vectors[first..=last];
                let block_count = block.len() as f64;
                block_mean.iter_mut().for_each(|v| *v = 0.0);
                block_m2.iter_mut().for_each(|v| *v = 0.0);
                for vector in block {
                    for (sum, &v) in block_mean.iter_mut().zip(vector) {
                        *sum += f64::from(v) / block_count;
                    }
                }
                for vector in block {
                    for ((m2, &m), &v) in block_m2.iter_mut().zip(&block_mean).zip(vector) {
                        *m2 += (f64::from(v) - m) * (f64::from(v) - m);
                    }
                }
                let rest = (total - block_count).max(2.0);
                for d in 0..dimensions {
                    let rest_mean = (total * moments.mean[d] - block_count * block_mean[d]) / rest;
                    let delta = block_mean[d] - rest_mean;
                    let rest_m2 = (moments.m2[d] - block_m2[d] - delta * delta * block_count * rest / total).max(0.0);
                    mean[d] = rest_mean;
                    variance[d] = rest_m2 / (rest - 1.0).max(1.0);
                }
                values.iter_mut().zip(&self.vectors[index]).for_each(|(value, &s)| *value = f64::from(s));
                score_against(&values, &mean, &variance, min_std * min_std)
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

    #[test]
    fn welford_matches_two_pass_statistics() {
        let data: Vec<Vec<f64>> = (0..50).map(|i| vec![1e6 + (i as f64 * 0.7).sin(), i as f64]).collect();
        let mut moments = RunningMoments::new(2);
        data.iter().for_each(|v| moments.add(v));
        let profile = NormalProfile::from_moments(&moments, 0.0);
        let mean0 = data.iter().map(|v| v[0]).sum::<f64>() / 50.0;
        let var0 = data.iter().map(|v| (v[0] - mean0).powi(2)).sum::<f64>() / 49.0;
        assert!((profile.mean[0] - mean0).abs() < 1e-9);
        assert!((profile.variance[0] - var0).abs() / var0 < 1e-9);
    }

    #[test]
    fn held_out_scores_equal_refitting_without_the_block() {
        let data: Vec<Vec<f64>> = (0..12).map(|i| vec![(i as f64).sqrt(), (i as f64 * 1.3).cos()]).collect();
        let mut all = RunningMoments::new(2);
        let mut sample = CalibrationSample::new(64);
        for v in &data {
            all.add(v);
            sample.offer(v);
        }
        let scores = sample.held_out_scores(&all, 0.0, 0);
        let mut without_first = RunningMoments::new(2);
        data[1..].iter().for_each(|v| without_first.add(v));
        let refit = NormalProfile::from_moments(&without_first, 0.0);
        let stored: Vec<f64> = data[0].iter().map(|&v| f64::from(v as f32)).collect();
        assert!((scores[0] - refit.score(&stored)).abs() < 1e-4, "{} vs {}", scores[0], refit.score(&stored));
        let blocks = sample.held_out_scores(&all, 0.0, 2);
        let mut without_block = RunningMoments::new(2);
        data.iter().enumerate().filter(|(i, _)| !(3..=7).contains(i)).for_each(|(_, v)| without_block.add(v));
        let stored: Vec<f64> = data[5].iter().map(|&v| f64::from(v as f32)).collect();
        let refit = NormalProfile::from_moments(&without_block, 0.0);
        assert!((blocks[5] - refit.score(&stored)).abs() < 1e-3, "{} vs {}", blocks[5], refit.score(&stored));
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
    fn adaptation_follows_a_shift_slowly() {
        let mut moments = RunningMoments::new(1);
        for i in 0..100 {
            moments.add(&[(i % 2) as f64]);
        }
        let mut profile = NormalProfile::from_moments(&moments, 0.0);
        let before = profile.score(&[3.0]);
        for _ in 0..200 {
            profile.adapt(&[3.0], 0.01);
        }
        assert!(profile.score(&[3.0]) < before / 2.0);
    }
}
