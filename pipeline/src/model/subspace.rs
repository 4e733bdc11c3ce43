//! Coherent variation: the few directions in which a machine's normal spans move together,
//! as many as its learning audio gives evidence for.
//!
//! Load, speed and level move many bands at once; a diagonal profile counts such a coherent
//! move once per band and takes normal operation for a fault. Probabilistic PCA (Tipping and
//! Bishop) on the standardised learning spans finds those directions; the rank is chosen by
//! held-out likelihood over contiguous folds of the kept learning spans, so one minute of
//! audio (a handful of spans) keeps rank 0, the plain diagonal profile, and more audio may
//! earn more. A span is then scored on what is left once its coherent move is taken out.
//!
//! Everything here works on the kept calibration spans (at most a few dozen), through their
//! Gram matrix, so a machine's state stays small and the fit takes milliseconds.

use serde::{Deserialize, Serialize};

/// Most directions of coherent variation a profile keeps.
pub const MAX_RANK: usize = 16;
/// Folds of the rank choice (fewer with fewer kept spans).
const FOLDS: usize = 5;

/// The principal directions of one set of standardised spans.
#[derive(Debug, Clone, PartialEq)]
struct Principal {
    /// Unit directions, largest variance first, each of the spans' dimension.
    directions: Vec<Vec<f64>>,
    /// Variance along each direction.
    variances: Vec<f64>,
    /// Mean squared length of the spans (the total variance).
    total: f64,
}

impl Principal {
    /// The first `max_rank` principal directions of `rows`, from the eigenvectors of their
    /// Gram matrix (rows are few, dimensions many).
    fn of(rows: &[Vec<f64>], max_rank: usize) -> Self {
        let count = rows.len();
        let mut gram = vec![0.0; count * count];
        for i in 0..count {
            for j in 0..=i {
                let dot: f64 = rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum::<f64>() / count as f64;
                gram[i * count + j] = dot;
                gram[j * count + i] = dot;
            }
        }
        let total: f64 = (0..count).map(|i| gram[i * count + i]).sum();
        let (values, vectors) = symmetric_eigen(gram, count);
        let dimensions = rows.first().map_or(0, Vec::len);
        let mut directions = Vec::new();
        let mut variances = Vec::new();
        for (value, vector) in values.into_iter().zip(vectors).take(max_rank) {
            if value <= 1e-12 * total.max(f64::MIN_POSITIVE) {
                break;
            }
            let mut direction = vec![0.0; dimensions];
            for (row, &weight) in rows.iter().zip(&vector) {
                for (d, &v) in direction.iter_mut().zip(row) {
                    *d += weight * v;
                }
            }
            let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
            direction.iter_mut().for_each(|v| *v /= norm);
            directions.push(direction);
            variances.push(value);
        }
        Self { directions, variances, total }
    }

    /// Log-likelihood (up to a constant common to every rank) of `z` under the PPCA model of
    /// rank `rank`: variance `variances[j]` along the first `rank` directions and the mean of
    /// the rest in every other.
    fn log_likelihood(&self, z: &[f64], rank: usize) -> f64 {
        let dimensions = z.len() as f64;
        let kept: f64 = self.variances[..rank].iter().sum();
        let rest = ((self.total - kept) / (dimensions - rank as f64)).max(1e-9);
        let mut quadratic = 0.0;
        let mut explained = 0.0;
        for (direction, &variance) in self.directions[..rank].iter().zip(&self.variances) {
            let projection: f64 = direction.iter().zip(z).map(|(u, v)| u * v).sum();
            quadratic += projection * projection / variance;
            explained += projection * projection;
        }
        let length: f64 = z.iter().map(|v| v * v).sum();
        quadratic += (length - explained).max(0.0) / rest;
        let log_det: f64 =
            self.variances[..rank].iter().map(|v| v.ln()).sum::<f64>() + (dimensions - rank as f64) * rest.ln();
        -0.5 * (quadratic + log_det)
    }
}

/// The coherent part of a profile: directions taken out of a standardised span before it is
/// scored, and the variance of what remains in each feature (as a share of the profile's
/// variance; 1 everywhere at rank 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subspace {
    directions: Vec<Vec<f64>>,
    residual_scale: Vec<f64>,
}

impl Subspace {
    /// Rank 0: nothing taken out.
    pub fn none(dimensions: usize) -> Self {
        Self { directions: Vec::new(), residual_scale: vec![1.0; dimensions] }
    }

    pub fn rank(&self) -> usize {
        self.directions.len()
    }

    /// The subspace of the first `rank` directions of `principal`, the principal directions of
    /// standardised spans `rows`; `floor_share[i]` is the variance floor's share of feature
    /// `i`'s profile variance, which the residual keeps.
    fn fit(principal: &Principal, rank: usize, rows: &[Vec<f64>], floor_share: &[f64]) -> Self {
        let directions = principal.directions.iter().take(rank).cloned().collect();
        let mut subspace = Self { directions, residual_scale: vec![0.0; floor_share.len()] };
        let mut residual = Vec::new();
        for row in rows {
            subspace.residual(row, &mut residual);
            for (scale, r) in subspace.residual_scale.iter_mut().zip(&residual) {
                *scale += r * r / rows.len() as f64;
            }
        }
        for (scale, share) in subspace.residual_scale.iter_mut().zip(floor_share) {
            *scale += share;
        }
        subspace
    }

    /// `z` less its projection on the directions.
    pub fn residual(&self, z: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(z);
        for direction in &self.directions {
            let projection: f64 = direction.iter().zip(z).map(|(u, v)| u * v).sum();
            for (value, u) in out.iter_mut().zip(direction) {
                *value -= projection * u;
            }
        }
    }

    /// Feature `i`'s residual in units of its own residual spread.
    pub fn standardised(&self, index: usize, residual: f64) -> f64 {
        residual / self.residual_scale[index].sqrt()
    }

    pub fn heap_bytes(&self) -> usize {
        (self.directions.iter().map(Vec::capacity).sum::<usize>() + self.residual_scale.capacity()) * 8
    }
}

/// Each feature's mean and variance (with the variance floor), to standardise raw spans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardisation {
    pub mean: Vec<f64>,
    /// Population variance plus the floor.
    pub variance: Vec<f64>,
    pub floor: f64,
}

impl Standardisation {
    /// The standardisation of some spans (at least one).
    pub fn of(spans: &[&Vec<f64>], floor: f64) -> Self {
        let count = spans.len().max(1) as f64;
        let dimensions = spans.first().map_or(0, |span| span.len());
        let mut mean = vec![0.0; dimensions];
        for span in spans {
            mean.iter_mut().zip(span.iter()).for_each(|(m, v)| *m += v / count);
        }
        let mut variance = vec![floor; dimensions];
        for span in spans {
            for ((var, m), v) in variance.iter_mut().zip(&mean).zip(span.iter()) {
                *var += (v - m) * (v - m) / count;
            }
        }
        Self { mean, variance, floor }
    }

    pub fn standardise(&self, values: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(values.iter().zip(&self.mean).zip(&self.variance).map(|((v, m), var)| (v - m) / var.sqrt()));
    }

    /// The floor's share of each feature's variance.
    fn floor_shares(&self) -> Vec<f64> {
        self.variance.iter().map(|var| self.floor / var).collect()
    }
}

/// The rank with the best held-out likelihood, the subspace of that rank fitted to every span
/// under the standardisation `all`, and each span's held-out score at that rank (for the
/// thresholds), where `score` scores a raw span under a standardisation and subspace.
/// Spans are split into contiguous folds: neighbouring spans are alike, so a random split
/// would leak; and a fold's spans are never learned from spans within `overlap` positions of
/// them (spans that share windows), so that held-out means held out.
pub fn choose(
    spans: &[Vec<f64>],
    positions: &[u64],
    overlap: u64,
    all: &Standardisation,
    score: impl Fn(&Standardisation, &Subspace, &[f64]) -> f64,
) -> (Subspace, Vec<f64>) {
    let count = spans.len();
    let folds = FOLDS.min(count);
    if folds < 2 {
        return (Subspace::none(all.mean.len()), Vec::new());
    }
    let max_rank = MAX_RANK.min((count - count.div_ceil(folds)).saturating_sub(2));
    let mut scored = vec![false; count];
    let mut likelihood = vec![0.0; max_rank + 1];
    // Held-out scores per rank, in span order.
    let mut held_out = vec![vec![0.0; count]; max_rank + 1];
    let mut z = Vec::new();
    for fold in 0..folds {
        let range = fold * count / folds..(fold + 1) * count / folds;
        let (first, last) = (positions[range.start], positions[range.end - 1]);
        let near =
            |position: u64| first.saturating_sub(overlap) <= position && position <= last.saturating_add(overlap);
        let train: Vec<&Vec<f64>> = spans.iter().zip(positions).filter(|(_, &p)| !near(p)).map(|(s, _)| s).collect();
        if train.len() < 2 {
            continue;
        }
        let standard = Standardisation::of(&train, all.floor);
        let rows: Vec<Vec<f64>> = train
            .iter()
            .map(|span| {
                standard.standardise(span, &mut z);
                z.clone()
            })
            .collect();
        let principal = Principal::of(&rows, max_rank);
        let shares = standard.floor_shares();
        for rank in 0..=max_rank {
            if rank > principal.directions.len() {
                likelihood[rank] = f64::NEG_INFINITY;
                continue;
            }
            let subspace = Subspace::fit(&principal, rank, &rows, &shares);
            for index in range.clone() {
                standard.standardise(&spans[index], &mut z);
                likelihood[rank] += principal.log_likelihood(&z, rank);
                held_out[rank][index] = score(&standard, &subspace, &spans[index]);
                scored[index] = true;
            }
        }
    }
    let best = (0..=max_rank).fold(0, |best, rank| if likelihood[rank] > likelihood[best] { rank } else { best });
    let rows: Vec<Vec<f64>> = spans
        .iter()
        .map(|span| {
            all.standardise(span, &mut z);
            z.clone()
        })
        .collect();
    let held_out = held_out[best].iter().zip(&scored).filter(|(_, &s)| s).map(|(&h, _)| h).collect();
    (Subspace::fit(&Principal::of(&rows, best), best, &rows, &all.floor_shares()), held_out)
}

/// Eigenvalues (largest first) and unit eigenvectors of a symmetric `n` x `n` matrix (row
/// major), by cyclic Jacobi rotations: exact to rounding for the few dozen rows used here.
fn symmetric_eigen(mut matrix: Vec<f64>, n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut vectors = vec![0.0; n * n];
    for i in 0..n {
        vectors[i * n + i] = 1.0;
    }
    let scale: f64 = matrix.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| matrix[i * n + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-14 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = matrix[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (matrix[q * n + q] - matrix[p * n + p]) / (2.0 * apq);
                let t = theta.signum().max(0.0).mul_add(2.0, -1.0) / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (matrix[k * n + p], matrix[k * n + q]);
                    matrix[k * n + p] = c * akp - s * akq;
                    matrix[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (matrix[p * n + k], matrix[q * n + k]);
                    matrix[p * n + k] = c * apk - s * aqk;
                    matrix[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (vectors[k * n + p], vectors[k * n + q]);
                    vectors[k * n + p] = c * vkp - s * vkq;
                    vectors[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| matrix[b * n + b].total_cmp(&matrix[a * n + a]).then(a.cmp(&b)));
    let values = order.iter().map(|&i| matrix[i * n + i]).collect();
    let vectors = order.iter().map(|&i| (0..n).map(|k| vectors[k * n + i]).collect()).collect();
    (values, vectors)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_eigenpairs_of_a_symmetric_matrix() {
        let matrix = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0];
        let (values, vectors) = symmetric_eigen(matrix.clone(), 3);
        assert!(values.windows(2).all(|pair| pair[0] >= pair[1]), "{values:?}");
        assert!((values.iter().sum::<f64>() - 8.0).abs() < 1e-12, "the trace is kept");
        for (value, vector) in values.iter().zip(&vectors) {
            for row in 0..3 {
                let product: f64 = (0..3).map(|k| matrix[row * 3 + k] * vector[k]).sum();
                assert!((product - value * vector[row]).abs() < 1e-10, "A v = lambda v fails");
            }
            assert!((vector.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    /// Deterministic noise in [-1, 1), independent across (i, d) (a hash, not a low-rank pattern).
    pub(crate) fn noise(i: usize, d: usize) -> f64 {
        let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (d as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Spans that move along one shared direction plus small independent noise.
    fn coherent(count: usize, dimensions: usize) -> Vec<Vec<f64>> {
        (0..count)
            .map(|i| {
                let level = (i as f64 * 0.77).sin() * 3.0;
                (0..dimensions).map(|d| level + noise(i, d) * 0.3).collect()
            })
            .collect()
    }

    fn unit(dimensions: usize) -> Standardisation {
        Standardisation { mean: vec![0.0; dimensions], variance: vec![1.0; dimensions], floor: 0.0 }
    }

    fn positions(count: usize) -> Vec<u64> {
        (0..count as u64).collect()
    }

    fn residual_score(_: &Standardisation, subspace: &Subspace, raw: &[f64]) -> f64 {
        residual_norm(subspace, raw)
    }

    fn residual_norm(subspace: &Subspace, z: &[f64]) -> f64 {
        let mut residual = Vec::new();
        subspace.residual(z, &mut residual);
        residual.iter().enumerate().map(|(i, r)| subspace.standardised(i, *r).powi(2)).sum()
    }

    #[test]
    fn evidence_of_a_coherent_move_earns_a_direction_and_noise_does_not() {
        let spans = coherent(40, 12);
        let (subspace, held_out) = choose(&spans, &positions(spans.len()), 0, &unit(12), residual_score);
        assert_eq!(subspace.rank(), 1, "one shared direction");
        assert_eq!(held_out.len(), 40);
        // A move along the shared direction is normal; the same size in one feature is not.
        let together = vec![2.0; 12];
        let mut alone = vec![0.0; 12];
        alone[3] = 2.0 * 12f64.sqrt();
        assert!(residual_norm(&subspace, &alone) > 20.0 * residual_norm(&subspace, &together));

        // Independent noise only: no direction is supported.
        let independent: Vec<Vec<f64>> = (0..40).map(|i| (0..12).map(|d| noise(i, d)).collect()).collect();
        let (subspace, _) = choose(&independent, &positions(40), 0, &unit(12), residual_score);
        assert_eq!(subspace.rank(), 0);
    }

    #[test]
    fn a_few_spans_keep_rank_zero() {
        let spans = coherent(4, 12);
        let (subspace, _) = choose(&spans, &positions(spans.len()), 0, &unit(12), residual_score);
        assert_eq!(subspace.rank(), 0);
    }
}
