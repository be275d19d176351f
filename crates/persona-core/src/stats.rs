//! Statistics for the evaluations: correlations, rank correlations and intervals.

/// Pearson's r, or `None` with fewer than 3 pairs or no variance on either side.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Ranks from 1, ties sharing their average rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's ρ: Pearson's r of the ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// Mean and a normal-approximation 95 % interval (±1.96 standard errors); the interval is
/// `None` with fewer than 2 values.
pub fn mean_ci95(x: &[f64]) -> Option<(f64, Option<(f64, f64)>)> {
    let n = x.len();
    if n == 0 {
        return None;
    }
    let m = x.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Some((m, None));
    }
    let var = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = 1.96 * (var / n as f64).sqrt();
    Some((m, Some((m - half, m + half))))
}

/// Wilson score 95 % interval of a proportion `k / n` (well behaved at 0 and n, unlike the
/// normal approximation); `None` when `n` is 0.
pub fn proportion_ci95(k: usize, n: usize) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let z = 1.96_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// A small deterministic generator (SplitMix64): reproducible resampling, initialisation and
/// shuffling.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [−1, 1).
    pub fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Percentile bootstrap 95 % interval of Pearson's r over resampled pairs (`resamples`
/// draws, seeded). Resamples without a defined r are skipped; `None` if most are.
pub fn pearson_bootstrap_ci95(
    x: &[f64],
    y: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    let n = x.len().min(y.len());
    pearson(x, y)?;
    let mut rng = SplitMix(seed);
    let mut rs = Vec::with_capacity(resamples);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for i in 0..n {
            let k = rng.below(n);
            bx[i] = x[k];
            by[i] = y[k];
        }
        if let Some(r) = pearson(&bx, &by) {
            rs.push(r);
        }
    }
    if rs.len() * 2 < resamples {
        return None;
    }
    rs.sort_by(f64::total_cmp);
    let at = |q: f64| rs[((rs.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_published_values() {
        // 5/10: 0.2366–0.7634; 0/10: 0–0.2775 (Wilson 1927; Newcombe 1998, table I).
        let (lo, hi) = proportion_ci95(5, 10).unwrap();
        assert!(
            (lo - 0.2366).abs() < 1e-4 && (hi - 0.7634).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = proportion_ci95(0, 10).unwrap();
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(proportion_ci95(0, 0), None);
    }

    #[test]
    fn pearson_of_known_data() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 4.0, 5.0, 4.0, 5.0];
        // Σdxdy = 6, Σdx² = 10, Σdy² = 6.
        let want = 6.0 / (10.0f64 * 6.0).sqrt();
        assert!((pearson(&x, &y).unwrap() - want).abs() < 1e-12);
        assert!((pearson(&x, &x.map(|v| -3.0 * v + 1.0)).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&x, &[1.0; 5]), None);
        assert_eq!(pearson(&x[..2], &y[..2]), None);
    }

    #[test]
    fn spearman_uses_average_ranks() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        // Monotone but not linear: ρ = 1.
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [1.0, 8.0, 27.0, 64.0];
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mean_interval_is_symmetric_and_shrinks() {
        let (m, ci) = mean_ci95(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(m, 2.0);
        let (lo, hi) = ci.unwrap();
        assert!((hi - m - 1.96 / 3f64.sqrt()).abs() < 1e-12 && (m - lo - (hi - m)).abs() < 1e-12);
        assert_eq!(mean_ci95(&[4.0]), Some((4.0, None)));
    }

    #[test]
    fn bootstrap_interval_contains_r_and_is_reproducible() {
        let x: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| v + ((v * 7.0) % 11.0) * 3.0).collect();
        let r = pearson(&x, &y).unwrap();
        let (lo, hi) = pearson_bootstrap_ci95(&x, &y, 1000, 1).unwrap();
        assert!(lo < r && r < hi && hi - lo < 0.5, "{lo} {r} {hi}");
        assert_eq!(pearson_bootstrap_ci95(&x, &y, 1000, 1), Some((lo, hi)));
    }
}
