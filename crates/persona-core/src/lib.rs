//! Core maths on plain `f32` vectors, accumulated in `f64`: the few operations every persona
//! pipeline needs (means of per-sample vectors, differences, projections, cosines), the maths
//! of persona space ([`pca`]: PCA of role vectors; [`axis`]: the Assistant axis, activation
//! caps and the percentiles that set them), and the statistics its evaluations report.
//!
//! It also holds the one file writer every crate uses for its results ([`fs`]:
//! [`fs::write_atomic`] and the streaming [`fs::AtomicFile`]): a result file is either the old
//! one or the complete new one, never half written.

pub mod axis;
pub mod fs;
pub mod pca;
pub mod stats;

pub use axis::{assistant_axis, cap_ceiling, cap_floor, percentile, percentiles};
pub use pca::{Pca, PcaError, PcaMethod};

/// Element-wise mean of equally long vectors (each weighted equally), or `None` if there are
/// none or their lengths differ.
pub fn mean<'a>(vectors: impl IntoIterator<Item = &'a [f32]>) -> Option<Vec<f32>> {
    let mut acc: Vec<f64> = Vec::new();
    let mut n = 0usize;
    for v in vectors {
        if n == 0 {
            acc = vec![0.0; v.len()];
        } else if v.len() != acc.len() {
            return None;
        }
        for (a, x) in acc.iter_mut().zip(v) {
            *a += *x as f64;
        }
        n += 1;
    }
    (n > 0).then(|| acc.into_iter().map(|a| (a / n as f64) as f32).collect())
}

/// `a − b`.
pub fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

pub fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

/// `h·v/‖v‖`: the projection of `h` on the direction of `v`, in the units of `h`.
pub fn projection(h: &[f32], v: &[f32]) -> f64 {
    dot(h, v) / norm(v)
}

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let d = norm(a) * norm(b);
    if d == 0.0 {
        0.0
    } else {
        dot(a, b) / d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_weights_vectors_equally() {
        let a = [1.0f32, 2.0];
        let b = [3.0f32, -2.0];
        assert_eq!(mean([&a[..], &b[..]]), Some(vec![2.0, 0.0]));
        assert_eq!(mean(std::iter::empty::<&[f32]>()), None);
        let c = [1.0f32];
        assert_eq!(mean([&a[..], &c[..]]), None);
    }

    #[test]
    fn projections_and_cosines() {
        assert_eq!(sub(&[3.0, 1.0], &[1.0, 1.0]), vec![2.0, 0.0]);
        assert!((projection(&[3.0, 4.0], &[0.0, 10.0]) - 4.0).abs() < 1e-12);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert_eq!(norm(&[3.0, 4.0]), 5.0);
    }
}
