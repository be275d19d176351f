//! Principal component analysis of a few hundred vectors: persona space.
//!
//! Persona space is the PCA of the role vectors at one layer (one row per role, mean-centred
//! only, no scaling), as in the Assistant-axis method (docs/assistant-axis.md
//! §5, after Lu et al. 2026). Inputs are `f32` rows; everything is computed in `f64`.
//!
//! # Two routes to the same decomposition
//!
//! With the centred data `X` (`n × d`), the principal directions are the eigenvectors of the
//! `d × d` scatter matrix `XᵀX`, and its non-zero eigenvalues are those of the `n × n` Gram
//! matrix `XXᵀ`: if `XXᵀu = λu` then `XᵀX(Xᵀu) = λ(Xᵀu)`, with `‖Xᵀu‖ = √λ`.
//! Persona space has a few hundred roles (about 200–460) in a residual stream of 576 (the
//! embedded SmolLM2) to 4096–8192 dimensions, so `n < d` and the Gram route is far cheaper:
//! for 200 × 4096 it forms a 200 × 200 matrix (≈ 1.6·10⁸ flops, 320 KB) where the scatter
//! matrix would be 4096 × 4096 (≈ 3.4·10⁹ flops to form, ≈ 7·10¹⁰ to diagonalise, 134 MB).
//! [`PcaMethod::Auto`] therefore takes the Gram route when `n < d` and the covariance route
//! otherwise (many samples of a small vector, e.g. per-response means of a small model).
//! Both give the same spectrum and directions (tested).
//!
//! Both routes square the data's condition number: eigenvalues below [`RANK_RTOL`] × the
//! largest (standard deviations below 10⁻⁶ of the first) are treated as zero, and asking for
//! more components than remain is an error rather than a direction made of rounding noise.
//!
//! # Sign convention
//!
//! A principal direction is defined up to sign. Each component is returned with its
//! largest-magnitude coordinate positive (the first such coordinate on exact ties), which
//! makes the result deterministic; callers that need a meaningful orientation (e.g. PC1 with
//! the Assistant end positive, as the reference does) call [`Pca::orient_toward`].

use std::fmt;

use nalgebra::{DMatrix, SymmetricEigen};

/// Eigenvalues at or below this fraction of the largest count as zero (see the module docs).
pub const RANK_RTOL: f64 = 1e-12;

/// Which matrix the decomposition diagonalises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcaMethod {
    /// [`PcaMethod::Gram`] when there are fewer rows than dimensions, else
    /// [`PcaMethod::Covariance`]. [`Pca::method`] records the route actually taken.
    Auto,
    /// The `n × n` Gram matrix `XXᵀ` of the centred rows.
    Gram,
    /// The `d × d` scatter matrix `XᵀX` of the centred rows.
    Covariance,
}

/// Why a PCA could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum PcaError {
    /// No rows at all.
    NoRows,
    /// A single row has no variance to analyse (centred, it is zero).
    SingleRow,
    /// The rows have no coordinates.
    EmptyRows,
    /// `row` has `len` values where row 0 has `expected`.
    RaggedRows {
        row: usize,
        len: usize,
        expected: usize,
    },
    /// A NaN or infinity at (`row`, `col`).
    NonFinite { row: usize, col: usize },
    /// More components than `n` centred rows in `d` dimensions can span: `max` = min(n − 1, d).
    TooManyComponents { k: usize, max: usize },
    /// More components than the data's numerical rank (see [`RANK_RTOL`]).
    RankDeficient { k: usize, rank: usize },
    /// Every row is the same vector.
    NoVariance,
}

impl fmt::Display for PcaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcaError::NoRows => write!(f, "PCA needs at least 2 rows, got none"),
            PcaError::SingleRow => write!(f, "PCA needs at least 2 rows, got 1"),
            PcaError::EmptyRows => write!(f, "PCA rows have no values"),
            PcaError::RaggedRows { row, len, expected } => write!(
                f,
                "PCA rows differ in length: row {row} has {len} values, row 0 has {expected}"
            ),
            PcaError::NonFinite { row, col } => {
                write!(f, "PCA input is not finite at row {row}, column {col}")
            }
            PcaError::TooManyComponents { k, max } => write!(
                f,
                "asked for {k} principal components, but the rows span at most {max} \
                 (min(rows − 1, dimensions))"
            ),
            PcaError::RankDeficient { k, rank } => write!(
                f,
                "asked for {k} principal components, but the centred rows have numerical rank {rank}"
            ),
            PcaError::NoVariance => write!(f, "PCA rows are all identical: no variance"),
        }
    }
}

impl std::error::Error for PcaError {}

/// A fitted PCA: the mean, the first `k` principal directions and the full variance spectrum.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Mean of the rows (`d`), subtracted before projecting.
    pub mean: Vec<f64>,
    /// The first `k` principal directions, unit vectors of length `d`, by decreasing
    /// variance, each with its largest-magnitude coordinate positive unless re-oriented.
    pub components: Vec<Vec<f64>>,
    /// Variance along every principal direction the rows can span, decreasing:
    /// eigenvalues of `XᵀX` divided by `n − 1`, `min(n − 1, d)` of them (not only `k`;
    /// numerically-zero ones are clamped at 0).
    pub explained_variance: Vec<f64>,
    /// `explained_variance` over the total variance (the trace, `Σ‖x − mean‖² / (n − 1)`):
    /// sums to 1 up to rounding.
    pub explained_variance_ratio: Vec<f64>,
    /// Total variance, `Σ‖x − mean‖² / (n − 1)`.
    pub total_variance: f64,
    /// Numerical rank of the centred rows (eigenvalues above [`RANK_RTOL`] × the largest).
    pub rank: usize,
    /// Number of rows fitted.
    pub n_samples: usize,
    /// The route taken: [`PcaMethod::Gram`] or [`PcaMethod::Covariance`].
    pub method: PcaMethod,
}

impl Pca {
    /// PCA of `rows` (`n` rows of dimension `d`, mean-centred, not scaled), keeping `k`
    /// components; the route is chosen by size ([`PcaMethod::Auto`]).
    pub fn fit<R: AsRef<[f32]>>(rows: &[R], k: usize) -> Result<Pca, PcaError> {
        Pca::fit_with(rows, k, PcaMethod::Auto)
    }

    /// [`Pca::fit`] through a chosen route.
    pub fn fit_with<R: AsRef<[f32]>>(
        rows: &[R],
        k: usize,
        method: PcaMethod,
    ) -> Result<Pca, PcaError> {
        let n = rows.len();
        match n {
            0 => return Err(PcaError::NoRows),
            1 => return Err(PcaError::SingleRow),
            _ => {}
        }
        let d = rows[0].as_ref().len();
        if d == 0 {
            return Err(PcaError::EmptyRows);
        }
        for (i, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != d {
                return Err(PcaError::RaggedRows {
                    row: i,
                    len: row.len(),
                    expected: d,
                });
            }
            if let Some(col) = row.iter().position(|v| !v.is_finite()) {
                return Err(PcaError::NonFinite { row: i, col });
            }
        }
        let max = (n - 1).min(d);
        if k > max {
            return Err(PcaError::TooManyComponents { k, max });
        }

        let mut mean = vec![0.0f64; d];
        for row in rows {
            for (m, v) in mean.iter_mut().zip(row.as_ref()) {
                *m += *v as f64;
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        let x = DMatrix::<f64>::from_fn(n, d, |i, j| rows[i].as_ref()[j] as f64 - mean[j]);
        let total_ss = x.norm_squared();
        if total_ss == 0.0 {
            return Err(PcaError::NoVariance);
        }

        let method = match method {
            PcaMethod::Auto if n < d => PcaMethod::Gram,
            PcaMethod::Auto => PcaMethod::Covariance,
            m => m,
        };
        let scatter = match method {
            PcaMethod::Gram => {
                let xt = x.transpose();
                xt.tr_mul(&xt) // (Xᵀ)ᵀXᵀ = XXᵀ, n × n
            }
            _ => x.tr_mul(&x), // XᵀX, d × d
        };
        let eig = SymmetricEigen::new(scatter);
        let mut order: Vec<usize> = (0..eig.eigenvalues.len()).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let lambda: Vec<f64> = order[..max]
            .iter()
            .map(|&i| eig.eigenvalues[i].max(0.0))
            .collect();
        let tol = RANK_RTOL * lambda[0];
        let rank = lambda.iter().take_while(|&&l| l > tol).count();
        if k > rank {
            return Err(PcaError::RankDeficient { k, rank });
        }

        let components = order[..k]
            .iter()
            .map(|&i| {
                let e = eig.eigenvectors.column(i);
                let v = match method {
                    PcaMethod::Gram => x.tr_mul(&e), // Xᵀu, norm √λ
                    _ => e.into_owned(),
                };
                let norm = v.norm();
                let mut v: Vec<f64> = v.iter().map(|c| c / norm).collect();
                fix_sign(&mut v);
                v
            })
            .collect();
        let dof = (n - 1) as f64;
        Ok(Pca {
            mean,
            components,
            explained_variance: lambda.iter().map(|l| l / dof).collect(),
            explained_variance_ratio: lambda.iter().map(|l| l / total_ss).collect(),
            total_variance: total_ss / dof,
            rank,
            n_samples: n,
            method,
        })
    }

    /// Dimension of the rows.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Number of components kept (`k`).
    pub fn n_components(&self) -> usize {
        self.components.len()
    }

    /// Scores of `row` on the kept components: `(row − mean)·cᵢ`.
    ///
    /// # Panics
    /// If `row` does not have the fitted dimension.
    pub fn project(&self, row: &[f32]) -> Vec<f64> {
        assert_eq!(
            row.len(),
            self.dim(),
            "PCA projection of a {}-vector on a {}-dimensional fit",
            row.len(),
            self.dim()
        );
        self.components
            .iter()
            .map(|c| {
                row.iter()
                    .zip(&self.mean)
                    .zip(c)
                    .map(|((x, m), c)| (*x as f64 - m) * c)
                    .sum()
            })
            .collect()
    }

    /// [`Pca::project`] of every row (e.g. each role's loadings on the first components).
    ///
    /// # Panics
    /// If a row does not have the fitted dimension.
    pub fn loadings<R: AsRef<[f32]>>(&self, rows: &[R]) -> Vec<Vec<f64>> {
        rows.iter().map(|r| self.project(r.as_ref())).collect()
    }

    /// Flips component `i` if it points away from `direction` (negative dot product), so
    /// that, e.g., PC1 has the Assistant end positive. Returns whether it flipped.
    ///
    /// # Panics
    /// If `i` is not a kept component or `direction` does not have the fitted dimension.
    pub fn orient_toward(&mut self, i: usize, direction: &[f32]) -> bool {
        let flip = self.dot_component(i, direction) < 0.0;
        if flip {
            for c in &mut self.components[i] {
                *c = -*c;
            }
        }
        flip
    }

    /// Cosine between component `i` and `v` (e.g. the Assistant axis and PC1); 0 for a zero `v`.
    ///
    /// # Panics
    /// If `i` is not a kept component or `v` does not have the fitted dimension.
    pub fn cosine_to(&self, i: usize, v: &[f32]) -> f64 {
        let norm = crate::norm(v);
        let dot = self.dot_component(i, v);
        if norm == 0.0 {
            0.0
        } else {
            dot / norm
        }
    }

    /// Cumulative explained-variance ratio over the spectrum.
    pub fn cumulative_variance_ratio(&self) -> Vec<f64> {
        self.explained_variance_ratio
            .iter()
            .scan(0.0, |acc, r| {
                *acc += r;
                Some(*acc)
            })
            .collect()
    }

    /// The fewest components that explain at least `fraction` of the variance (e.g. 0.7),
    /// allowing 1e-12 of rounding; `None` if the spectrum never gets there.
    pub fn components_for(&self, fraction: f64) -> Option<usize> {
        self.cumulative_variance_ratio()
            .iter()
            .position(|&c| c >= fraction - 1e-12)
            .map(|i| i + 1)
    }

    fn dot_component(&self, i: usize, v: &[f32]) -> f64 {
        assert!(
            i < self.components.len(),
            "component {i} of a PCA that kept {}",
            self.components.len()
        );
        assert_eq!(
            v.len(),
            self.dim(),
            "a {}-vector against a {}-dimensional PCA",
            v.len(),
            self.dim()
        );
        self.components[i]
            .iter()
            .zip(v)
            .map(|(c, x)| c * *x as f64)
            .sum()
    }
}

/// Makes the largest-magnitude coordinate (the first one on exact ties) positive.
fn fix_sign(v: &mut [f64]) {
    let mut best = 0;
    for (i, c) in v.iter().enumerate() {
        if c.abs() > v[best].abs() {
            best = i;
        }
    }
    if v[best] < 0.0 {
        for c in v.iter_mut() {
            *c = -*c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of B⊗B with B = [[2,3,6],[3,−6,2],[6,2,−3]] (BBᵀ = 49·I): 9 mutually orthogonal
    /// integer vectors of norm 49, each with a unique largest-magnitude coordinate (±36).
    fn directions() -> Vec<[f64; 9]> {
        let b = [[2.0, 3.0, 6.0], [3.0, -6.0, 2.0], [6.0, 2.0, -3.0]];
        let mut out = Vec::new();
        for bi in &b {
            for bj in &b {
                let mut r = [0.0; 9];
                for p in 0..3 {
                    for q in 0..3 {
                        r[3 * p + q] = bi[p] * bj[q];
                    }
                }
                out.push(r);
            }
        }
        out
    }

    /// Sylvester Hadamard matrix of order `n` (a power of 2): its columns other than the
    /// first sum to zero and are mutually orthogonal.
    fn hadamard(n: usize) -> Vec<Vec<f64>> {
        let mut h = vec![vec![1.0]];
        while h.len() < n {
            let m = h.len();
            let mut g = vec![vec![0.0; 2 * m]; 2 * m];
            for i in 0..m {
                for j in 0..m {
                    g[i][j] = h[i][j];
                    g[i][j + m] = h[i][j];
                    g[i + m][j] = h[i][j];
                    g[i + m][j + m] = -h[i][j];
                }
            }
            h = g;
        }
        h
    }

    /// `n` rows (n a power of 2) in 9 dimensions: offset + Σᵢ scaleᵢ·H[row][i+1]·dirᵢ.
    /// Exact in f32. Scores on direction i are zero-mean and orthogonal across i, so the
    /// scatter matrix is exactly Σᵢ scaleᵢ²·n·‖dirᵢ‖²·d̂ᵢd̂ᵢᵀ.
    struct Synthetic {
        rows: Vec<Vec<f32>>,
        offset: Vec<f32>,
        dirs: Vec<Vec<f64>>, // unit, sign-fixed
        scores: Vec<Vec<f64>>,
        eigen: Vec<f64>, // eigenvalues of XᵀX, decreasing
    }

    fn synthetic(n: usize, scales: &[f64]) -> Synthetic {
        let h = hadamard(n);
        let dirs = directions();
        let offset: Vec<f32> = (0..9).map(|j| (j as f32) * 3.0 - 7.0).collect();
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|r| {
                (0..9)
                    .map(|j| {
                        let mut v = offset[j] as f64;
                        for (i, s) in scales.iter().enumerate() {
                            v += s * h[r][i + 1] * dirs[i][j];
                        }
                        v as f32
                    })
                    .collect()
            })
            .collect();
        // The sign convention by hand: each direction's unique ±36 coordinate made positive.
        let unit: Vec<Vec<f64>> = dirs[..scales.len()]
            .iter()
            .map(|dir| {
                let big = dir.iter().find(|c| c.abs() == 36.0).unwrap();
                dir.iter().map(|c| c * big.signum() / 49.0).collect()
            })
            .collect();
        // Score of row r on unit direction i: scaleᵢ·H[r][i+1]·(dirᵢ·d̂ᵢ), with dirᵢ·d̂ᵢ = ±49.
        let scores = (0..n)
            .map(|r| {
                scales
                    .iter()
                    .enumerate()
                    .map(|(i, s)| s * h[r][i + 1] * dot(&dirs[i], &unit[i]))
                    .collect()
            })
            .collect();
        let eigen = scales
            .iter()
            .map(|s| s * s * n as f64 * 49.0 * 49.0)
            .collect();
        Synthetic {
            rows,
            offset,
            dirs: unit,
            scores,
            eigen,
        }
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn check_recovers(s: &Synthetic, pca: &Pca, n: usize) {
        let total: f64 = s.eigen.iter().sum();
        let m = s.eigen.len();
        assert_eq!(pca.explained_variance.len(), (n - 1).min(9));
        for i in 0..m {
            let c = &pca.components[i];
            assert!((dot(c, c) - 1.0).abs() < 1e-12);
            assert!(dot(c, &s.dirs[i]).abs() > 1.0 - 1e-9, "component {i}");
            // The sign convention picks exactly the sign-fixed direction.
            for (a, b) in c.iter().zip(&s.dirs[i]) {
                assert!(
                    (a - b).abs() < 1e-9,
                    "component {i}: {c:?} vs {:?}",
                    s.dirs[i]
                );
            }
            let want = s.eigen[i] / (n - 1) as f64;
            assert!((pca.explained_variance[i] - want).abs() < 1e-9 * want);
            assert!((pca.explained_variance_ratio[i] - s.eigen[i] / total).abs() < 1e-9);
        }
        for i in m..pca.explained_variance.len() {
            assert!(pca.explained_variance_ratio[i].abs() < 1e-9);
        }
        let sum: f64 = pca.explained_variance_ratio.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12, "{sum}");
        assert!((pca.total_variance - total / (n - 1) as f64).abs() < 1e-9 * pca.total_variance);
        assert_eq!(pca.rank, m);
        for (p, o) in pca.mean.iter().zip(&s.offset) {
            assert_eq!(*p, *o as f64);
        }
        // Loadings are the known scores; the mean projects to zero.
        let loadings = pca.loadings(&s.rows);
        for (got, want) in loadings.iter().zip(&s.scores) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-9 * (1.0 + w.abs()), "{g} vs {w}");
            }
        }
        let mean: Vec<f32> = pca.mean.iter().map(|&m| m as f32).collect();
        assert!(pca.project(&mean).iter().all(|v| v.abs() < 1e-9));
    }

    #[test]
    fn gram_route_recovers_known_decomposition() {
        // 8 rows < 9 dimensions: the Gram route.
        let s = synthetic(8, &[5.0, 4.0, 3.0, 1.0]);
        let pca = Pca::fit(&s.rows, 4).unwrap();
        assert_eq!(pca.method, PcaMethod::Gram);
        check_recovers(&s, &pca, 8);
    }

    #[test]
    fn covariance_route_recovers_known_decomposition() {
        // 16 rows > 9 dimensions: the covariance route; 6 directions.
        let s = synthetic(16, &[7.0, 5.0, 4.0, 3.0, 2.0, 0.5]);
        let pca = Pca::fit(&s.rows, 6).unwrap();
        assert_eq!(pca.method, PcaMethod::Covariance);
        check_recovers(&s, &pca, 16);
        // Full rank in 9 dimensions: all 9 directions, the spectrum sums to 1.
        let s = synthetic(16, &[9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
        let pca = Pca::fit(&s.rows, 9).unwrap();
        check_recovers(&s, &pca, 16);
    }

    #[test]
    fn routes_agree_on_the_same_data() {
        let s = synthetic(8, &[5.0, 4.0, 3.0, 1.0]);
        let g = Pca::fit_with(&s.rows, 4, PcaMethod::Gram).unwrap();
        let c = Pca::fit_with(&s.rows, 4, PcaMethod::Covariance).unwrap();
        assert_eq!(c.method, PcaMethod::Covariance);
        check_recovers(&s, &c, 8);
        for (a, b) in g.components.iter().zip(&c.components) {
            assert!(dot(a, b) > 1.0 - 1e-9);
        }

        // Irregular data, both shapes (n < d and n > d).
        let mut state = 0x1234_5678_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for (n, d, k) in [(12usize, 30usize, 6usize), (40, 10, 5)] {
            let rows: Vec<Vec<f32>> = (0..n)
                .map(|i| {
                    (0..d)
                        .map(|j| next() * (1.0 + (j % 4) as f32) + i as f32 * 0.01)
                        .collect()
                })
                .collect();
            let g = Pca::fit_with(&rows, k, PcaMethod::Gram).unwrap();
            let c = Pca::fit_with(&rows, k, PcaMethod::Covariance).unwrap();
            assert_eq!(g.explained_variance.len(), c.explained_variance.len());
            for (a, b) in g.explained_variance.iter().zip(&c.explained_variance) {
                assert!((a - b).abs() < 1e-9 * g.explained_variance[0], "{a} vs {b}");
            }
            for (a, b) in g.components.iter().zip(&c.components) {
                assert!(dot(a, b) > 1.0 - 1e-9, "{}", dot(a, b));
            }
            let sum: f64 = g.explained_variance_ratio.iter().sum();
            assert!((sum - 1.0).abs() < 1e-12);
            let mean: Vec<f32> = g.mean.iter().map(|&m| m as f32).collect();
            // f32 rounding of the mean only.
            assert!(g.project(&mean).iter().all(|v| v.abs() < 1e-6));
        }
    }

    #[test]
    fn orientation_cosines_and_cumulative_variance() {
        let s = synthetic(8, &[5.0, 4.0, 3.0, 1.0]);
        let mut pca = Pca::fit(&s.rows, 2).unwrap();
        let away: Vec<f32> = s.dirs[0].iter().map(|c| (-c * 49.0) as f32).collect();
        assert!((pca.cosine_to(0, &away) + 1.0).abs() < 1e-9);
        assert!(pca.cosine_to(1, &away).abs() < 1e-9);
        let before = pca.project(&s.rows[0]);
        assert!(pca.orient_toward(0, &away));
        assert!(!pca.orient_toward(0, &away));
        assert!((pca.cosine_to(0, &away) - 1.0).abs() < 1e-9);
        assert_eq!(pca.project(&s.rows[0])[0], -before[0]);
        assert_eq!(pca.cosine_to(0, &[0.0; 9]), 0.0);

        // Eigenvalues ∝ 25, 16, 9, 1 of 51.
        let cum = pca.cumulative_variance_ratio();
        assert!((cum[1] - 41.0 / 51.0).abs() < 1e-12);
        assert_eq!(pca.components_for(0.49), Some(1));
        assert_eq!(pca.components_for(0.5), Some(2));
        assert_eq!(pca.components_for(1.0), Some(4));
        assert_eq!(pca.components_for(1.1), None);
        assert_eq!(pca.n_components(), 2);
        assert_eq!(pca.dim(), 9);
    }

    #[test]
    fn clear_errors() {
        let none: Vec<Vec<f32>> = vec![];
        assert_eq!(Pca::fit(&none, 1), Err(PcaError::NoRows));
        assert_eq!(Pca::fit(&[vec![1.0f32, 2.0]], 1), Err(PcaError::SingleRow));
        assert_eq!(
            Pca::fit(&[Vec::<f32>::new(), vec![]], 0),
            Err(PcaError::EmptyRows)
        );
        assert_eq!(
            Pca::fit(&[vec![1.0f32, 2.0], vec![1.0], vec![0.0, 0.0]], 1),
            Err(PcaError::RaggedRows {
                row: 1,
                len: 1,
                expected: 2
            })
        );
        assert_eq!(
            Pca::fit(&[vec![1.0f32, 2.0], vec![1.0, f32::NAN]], 1),
            Err(PcaError::NonFinite { row: 1, col: 1 })
        );
        assert_eq!(
            Pca::fit(&[vec![1.0f32, 2.0], vec![f32::INFINITY, 0.0]], 1),
            Err(PcaError::NonFinite { row: 1, col: 0 })
        );
        // 3 rows span at most 2 dimensions; 5 rows in 2 dimensions at most 2.
        let rows = vec![
            vec![1.0f32, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        assert_eq!(
            Pca::fit(&rows, 3),
            Err(PcaError::TooManyComponents { k: 3, max: 2 })
        );
        assert!(Pca::fit(&rows, 2).is_ok());
        let flat = vec![vec![1.0f32, 2.0]; 5];
        assert_eq!(
            Pca::fit(&flat, 3),
            Err(PcaError::TooManyComponents { k: 3, max: 2 })
        );
        assert_eq!(Pca::fit(&flat, 1), Err(PcaError::NoVariance));
        // Four directions in 8 rows: a fifth component would be rounding noise.
        let s = synthetic(8, &[5.0, 4.0, 3.0, 1.0]);
        for method in [PcaMethod::Gram, PcaMethod::Covariance] {
            assert_eq!(
                Pca::fit_with(&s.rows, 5, method),
                Err(PcaError::RankDeficient { k: 5, rank: 4 })
            );
        }
        // k = 0 still gives the spectrum.
        let pca = Pca::fit(&s.rows, 0).unwrap();
        assert!(pca.components.is_empty() && pca.explained_variance.len() == 7);
        assert!(PcaError::TooManyComponents { k: 3, max: 2 }
            .to_string()
            .contains("at most 2"));
    }
}
