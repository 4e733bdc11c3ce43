//! Full-covariance Gaussian arithmetic on packed triangular matrices.
//!
//! A machine's normal sound moves many bands together (load, speed and level change the whole
//! spectrum at once), so the profile models the covariance of its features, not only their
//! variances: a coherent change that normal operation shows is cheap, a change in one band that
//! normal operation never makes is expensive. Few minutes of audio cannot estimate a full
//! covariance, so it is shrunk towards a scaled identity by the Oracle Approximating Shrinkage
//! rule (Chen et al. 2010, as scikit-learn's `OAS`). Symmetric and triangular matrices are stored
//! packed (lower triangle, row by row: `d (d + 1) / 2` values), which halves the state.

/// Index of element (`row`, `column`), `column <= row`, in a packed lower triangle.
#[inline]
fn packed(row: usize, column: usize) -> usize {
    row * (row + 1) / 2 + column
}

/// Values in a packed lower triangle of dimension `dimensions`.
pub fn packed_len(dimensions: usize) -> usize {
    dimensions * (dimensions + 1) / 2
}

/// Running mean and co-moment matrix (sum of outer products of deviations) of vectors, in f64,
/// updated one vector at a time (Welford's method generalised to covariances).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CoMoments {
    pub(crate) count: u64,
    pub(crate) mean: Vec<f64>,
    /// Packed lower triangle of the co-moment matrix.
    pub(crate) comoment: Vec<f64>,
    /// Scratch (not checkpointed; sized on first use).
    #[serde(skip)]
    delta: Vec<f64>,
}

impl CoMoments {
    pub fn new(dimensions: usize) -> Self {
        Self {
            count: 0,
            mean: vec![0.0; dimensions],
            comoment: vec![0.0; packed_len(dimensions)],
            delta: vec![0.0; dimensions],
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn dimensions(&self) -> usize {
        self.mean.len()
    }

    /// Adds one vector.
    pub fn add(&mut self, values: &[f64]) {
        self.delta.resize(self.mean.len(), 0.0);
        self.count += 1;
        let count = self.count as f64;
        for ((delta, mean), &value) in self.delta.iter_mut().zip(self.mean.iter_mut()).zip(values) {
            *delta = value - *mean;
            *mean += *delta / count;
        }
        let weight = (count - 1.0) / count;
        for row in 0..self.delta.len() {
            let scaled = weight * self.delta[row];
            let start = packed(row, 0);
            for (cell, &delta) in self.comoment[start..=start + row].iter_mut().zip(&self.delta) {
                *cell += scaled * delta;
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        (self.mean.capacity() + self.comoment.capacity() + self.delta.capacity()) * std::mem::size_of::<f64>()
    }
}

/// Turns a packed co-moment matrix of `count` vectors into the OAS-shrunk covariance, in place,
/// and adds `floor` to its diagonal. Returns the shrinkage (0: the sample covariance, 1: a
/// scaled identity).
pub fn shrink_in_place(matrix: &mut [f64], dimensions: usize, count: f64, floor: f64) -> f64 {
    let count = count.max(1.0);
    let d = dimensions as f64;
    let mut trace = 0.0;
    let mut sum_squares = 0.0;
    for row in 0..dimensions {
        for column in 0..=row {
            let value = matrix[packed(row, column)] / count;
            matrix[packed(row, column)] = value;
            sum_squares += if row == column { value * value } else { 2.0 * value * value };
        }
        trace += matrix[packed(row, row)];
    }
    let mu = trace / d;
    let alpha = sum_squares / (d * d);
    let numerator = alpha + mu * mu;
    let denominator = (count + 1.0) * (alpha - mu * mu / d);
    let shrinkage = if dimensions < 2 || denominator <= 0.0 { 1.0 } else { (numerator / denominator).min(1.0) };
    for row in 0..dimensions {
        for column in 0..=row {
            matrix[packed(row, column)] *= 1.0 - shrinkage;
        }
        matrix[packed(row, row)] += shrinkage * mu + floor;
    }
    shrinkage
}

/// Why a covariance could not be factored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the covariance is not positive definite (pivot {pivot})")]
pub struct NotPositiveDefinite {
    pub pivot: usize,
}

/// The dot product of two equally long slices, in four independent sums so the compiler can
/// vectorise it (the Cholesky factorisation and the whitening spend their time here).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut sums = [0.0f64; 4];
    let (a_chunks, b_chunks) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..4 {
            sums[lane] += x[lane] * y[lane];
        }
    }
    (sums[0] + sums[1]) + (sums[2] + sums[3]) + tail
}

/// Replaces a packed symmetric positive definite matrix by its lower Cholesky factor `L`
/// (`A = L Lᵀ`), in place.
pub fn cholesky_in_place(matrix: &mut [f64], dimensions: usize) -> Result<(), NotPositiveDefinite> {
    for row in 0..dimensions {
        let row_start = packed(row, 0);
        for column in 0..=row {
            let column_start = packed(column, 0);
            let sum = matrix[row_start + column]
                - dot(&matrix[row_start..row_start + column], &matrix[column_start..column_start + column]);
            if row == column {
                if sum <= 0.0 || !sum.is_finite() {
                    return Err(NotPositiveDefinite { pivot: row });
                }
                matrix[row_start + row] = sum.sqrt();
            } else {
                matrix[row_start + column] = sum / matrix[column_start + column];
            }
        }
    }
    Ok(())
}

/// `‖L⁻¹ r‖²` for a packed lower factor `L`: the squared Mahalanobis length of `residual`.
/// `scratch` holds the whitened residual afterwards.
pub fn whitened_norm_squared(factor: &[f64], residual: &[f64], scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    let mut total = 0.0;
    for (row, &value) in residual.iter().enumerate() {
        let start = packed(row, 0);
        let coefficients = &factor[start..start + row];
        let whitened = (value - dot(coefficients, scratch)) / factor[start + row];
        total += whitened * whitened;
        scratch.push(whitened);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(packed_matrix: &[f64], dimensions: usize) -> Vec<Vec<f64>> {
        let mut out = vec![vec![0.0; dimensions]; dimensions];
        for row in 0..dimensions {
            for column in 0..=row {
                out[row][column] = packed_matrix[packed(row, column)];
                out[column][row] = packed_matrix[packed(row, column)];
            }
        }
        out
    }

    fn data() -> Vec<Vec<f64>> {
        (0..40)
            .map(|i| {
                let t = i as f64;
                vec![1e4 + (t * 0.37).sin(), (t * 0.37).sin() * 2.0 + (t * 1.7).cos() * 0.1, (t * 0.11).cos(), t % 3.0]
            })
            .collect()
    }

    #[test]
    fn co_moments_equal_the_two_pass_sample_covariance() {
        let data = data();
        let mut moments = CoMoments::new(4);
        data.iter().for_each(|v| moments.add(v));
        let n = data.len() as f64;
        let mean: Vec<f64> = (0..4).map(|j| data.iter().map(|v| v[j]).sum::<f64>() / n).collect();
        let matrix = dense(&moments.comoment, 4);
        for a in 0..4 {
            for b in 0..4 {
                let expected: f64 = data.iter().map(|v| (v[a] - mean[a]) * (v[b] - mean[b])).sum();
                assert!((matrix[a][b] - expected).abs() < 1e-9 * expected.abs().max(1.0), "{a},{b}");
            }
        }
    }

    #[test]
    fn oas_shrinkage_equals_scikit_learns() {
        // scikit-learn 1.7.2, `OAS().fit(X)` on `data()`: shrinkage_ 0.13719544804362682,
        // covariance_[0,0] 0.5557093186253409, [1,0] 0.8582591246828124, [3,2] -0.01648378629349612.
        let data = data();
        let mut moments = CoMoments::new(4);
        data.iter().for_each(|v| moments.add(v));
        let mut matrix = moments.comoment.clone();
        let shrinkage = shrink_in_place(&mut matrix, 4, data.len() as f64, 0.0);
        assert!((shrinkage - 0.137_195_448_043_626_82).abs() < 1e-10, "{shrinkage}");
        assert!((matrix[packed(0, 0)] - 0.555_709_318_625_340_9).abs() < 1e-10);
        assert!((matrix[packed(1, 0)] - 0.858_259_124_682_812_4).abs() < 1e-10);
        assert!((matrix[packed(3, 2)] + 0.016_483_786_293_496_12).abs() < 1e-10);
    }

    #[test]
    fn cholesky_factors_and_whitens_exactly() {
        let data = data();
        let mut moments = CoMoments::new(4);
        data.iter().for_each(|v| moments.add(v));
        let mut covariance = moments.comoment.clone();
        shrink_in_place(&mut covariance, 4, data.len() as f64, 0.01);
        let mut factor = covariance.clone();
        cholesky_in_place(&mut factor, 4).unwrap();
        // L Lᵀ = A
        let l = dense(&factor, 4);
        let a = dense(&covariance, 4);
        for i in 0..4 {
            for j in 0..4 {
                let product: f64 = (0..=i.min(j)).map(|k| l[i][k] * l[j][k]).sum();
                assert!((product - a[i][j]).abs() < 1e-9, "{i},{j}");
            }
        }
        // the whitened norm is rᵀ A⁻¹ r: check A (A⁻¹ r) = r through the factor
        let r = [1.0, 0.5, -0.25, 3.0];
        let mut scratch = Vec::new();
        let norm = whitened_norm_squared(&factor, &r, &mut scratch);
        let mut solution = vec![0.0; 4];
        for i in (0..4).rev() {
            let sum: f64 = (i + 1..4).map(|k| l[k][i] * solution[k]).sum();
            solution[i] = (scratch[i] - sum) / l[i][i];
        }
        let quadratic: f64 = r.iter().zip(&solution).map(|(a, b)| a * b).sum();
        assert!((norm - quadratic).abs() < 1e-9 * quadratic.abs().max(1.0));
    }

    #[test]
    fn a_singular_matrix_is_refused_not_factored() {
        let mut matrix = vec![1.0, 1.0, 1.0];
        assert_eq!(cholesky_in_place(&mut matrix, 2), Err(NotPositiveDefinite { pivot: 1 }));
    }
}
