//! The Assistant axis, its activation caps, and the percentiles that set them.
//!
//! After Lu et al. 2026, "The Assistant Axis" (docs/assistant-axis.md §4, §6 and
//! §7): per layer, the axis is the default (Assistant) vector minus the mean of the role
//! vectors, kept unnormalised; a cap holds the projection of a hidden state on the axis at a
//! threshold τ per layer, chosen as a percentile of the projections of per-response mean
//! activations of role and default rollouts.
//!
//! The caps here work on plain vectors: they are the reference that the engine's tensor
//! implementation of docs/design.md's intervention table is tested against.

/// The Assistant axis at one layer: `default_mean − mean(role_means)` (each role weighted
/// equally), unnormalised, computed in `f64`.
///
/// # Panics
/// If there are no role vectors or any vector's length differs from `default_mean`'s.
pub fn assistant_axis(default_mean: &[f32], role_means: &[Vec<f32>]) -> Vec<f32> {
    assert!(
        !role_means.is_empty(),
        "the Assistant axis needs at least one role vector"
    );
    let d = default_mean.len();
    let mut acc = vec![0.0f64; d];
    for (k, r) in role_means.iter().enumerate() {
        assert_eq!(
            r.len(),
            d,
            "role vector {k} has {} values, the default vector {d}",
            r.len()
        );
        for (a, x) in acc.iter_mut().zip(r) {
            *a += *x as f64;
        }
    }
    let n = role_means.len() as f64;
    default_mean
        .iter()
        .zip(acc)
        .map(|(x, a)| (*x as f64 - a / n) as f32)
        .collect()
}

/// The `p`-th percentile (`p` in 0–100) of `values`, by numpy's default method ("linear",
/// type 7 of Hyndman & Fan): with the values sorted ascending as `x₀ ≤ … ≤ x₍ₙ₋₁₎`,
/// `h = (n − 1)·p/100`, the result is `x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋)`, interpolated as
/// numpy's `_lerp` does (from the upper value when the fraction is ≥ ½), so results match
/// `np.percentile(values, p)`. E.g. `[1, 2, 3, 4]`, p25 → 1.75.
///
/// `None` if `values` is empty or holds a NaN or infinity, or `p` is outside 0–100.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    percentiles(values, &[p]).map(|v| v[0])
}

/// [`percentile`] at several `ps` (e.g. p1, p25, p50, p75), sorting once.
pub fn percentiles(values: &[f64], ps: &[f64]) -> Option<Vec<f64>> {
    if values.is_empty()
        || values.iter().any(|v| !v.is_finite())
        || ps.iter().any(|p| !(0.0..=100.0).contains(p))
    {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len() - 1;
    Some(
        ps.iter()
            .map(|p| {
                let h = last as f64 * (p / 100.0);
                let lo = (h.floor() as usize).min(last);
                let hi = (lo + 1).min(last);
                let t = h - lo as f64;
                let (a, b) = (sorted[lo], sorted[hi]);
                let diff = b - a;
                if t >= 0.5 {
                    b - diff * (1.0 - t)
                } else {
                    a + diff * t
                }
            })
            .collect(),
    )
}

/// Activation cap, floor (docs/design.md): `h ← h + u·max(τ − h·u, 0)` with `u = axis/‖axis‖`.
/// A projection below `tau` is raised to exactly `tau` (up to `f32` rounding); the part of
/// `h` orthogonal to the axis is unchanged; `h` is returned as is when `h·u ≥ τ` or the
/// axis is zero. Computed in `f64`. (The reference divides by `‖axis‖ + 1e-8`; docs/design.md's
/// exact unit vector differs from it only for near-zero axes.)
///
/// # Panics
/// If `h` and `axis` differ in length.
pub fn cap_floor(h: &[f32], axis: &[f32], tau: f32) -> Vec<f32> {
    cap(h, axis, tau, 1.0)
}

/// Activation cap, ceiling (docs/design.md): `h ← h − u·max(h·u − τ, 0)` with `u = axis/‖axis‖`:
/// a projection above `tau` is lowered to `tau`. Equal to `cap_floor(h, −axis, −τ)` (the
/// reference code's form of the same floor, with `vec = −axis` and a negative cap).
///
/// # Panics
/// If `h` and `axis` differ in length.
pub fn cap_ceiling(h: &[f32], axis: &[f32], tau: f32) -> Vec<f32> {
    cap(h, axis, tau, -1.0)
}

/// Floor along `side·u` at `side·τ`: with `side = −1`, `h + (−u)·max(−τ + h·u, 0)` is the
/// ceiling.
fn cap(h: &[f32], axis: &[f32], tau: f32, side: f64) -> Vec<f32> {
    assert_eq!(
        h.len(),
        axis.len(),
        "capping a {}-vector along a {}-dimensional axis",
        h.len(),
        axis.len()
    );
    let norm = crate::norm(axis);
    if norm == 0.0 {
        return h.to_vec();
    }
    let u: Vec<f64> = axis.iter().map(|a| side * *a as f64 / norm).collect();
    let proj: f64 = h.iter().zip(&u).map(|(x, u)| *x as f64 * u).sum();
    let shift = side * tau as f64 - proj;
    if shift <= 0.0 {
        return h.to_vec();
    }
    h.iter()
        .zip(&u)
        .map(|(x, u)| (*x as f64 + u * shift) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dot, projection};

    #[test]
    fn axis_of_a_hand_made_example() {
        let default = [3.0f32, 1.0, -2.0];
        let roles = vec![
            vec![1.0f32, 1.0, 0.0],
            vec![3.0, -1.0, 0.0],
            vec![2.0, 3.0, 3.0],
        ];
        // Mean of roles (2, 1, 1).
        assert_eq!(assistant_axis(&default, &roles), vec![1.0, 0.0, -3.0]);
        assert_eq!(assistant_axis(&default, &roles[..1]), vec![2.0, 0.0, -2.0]);
    }

    #[test]
    #[should_panic(expected = "role vector 1")]
    fn axis_rejects_ragged_roles() {
        assistant_axis(&[1.0, 2.0], &[vec![1.0, 2.0], vec![1.0]]);
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
        let x = [4.0, 1.0, 3.0, 2.0];
        // np.percentile([1, 2, 3, 4], [0, 25, 50, 75, 100]) = [1, 1.75, 2.5, 3.25, 4]
        assert_eq!(
            percentiles(&x, &[0.0, 25.0, 50.0, 75.0, 100.0]),
            Some(vec![1.0, 1.75, 2.5, 3.25, 4.0])
        );
        // np.percentile(np.arange(1, 11), 1) = 1.09
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!(close(percentile(&ten, 1.0), 1.09));
        // np.percentile([3, 1, 2], 90) = 2.8
        assert!(close(percentile(&[3.0, 1.0, 2.0], 90.0), 2.8));
        // np.percentile([0, 10, 20], 33) = 6.6
        assert!(close(percentile(&[0.0, 10.0, 20.0], 33.0), 6.6));
        // np.percentile([-2.5, 7.25, 0.1, 3.3, 100], [1, 25, 50, 75, 99])
        //   = [-2.396, 0.1, 3.3, 7.25, 96.29]
        let y = [-2.5, 7.25, 0.1, 3.3, 100.0];
        let got = percentiles(&y, &[1.0, 25.0, 50.0, 75.0, 99.0]).unwrap();
        for (g, w) in got.iter().zip([-2.396, 0.1, 3.3, 7.25, 96.29]) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        assert_eq!(percentile(&[5.0], 37.0), Some(5.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&x, 100.5), None);
        assert_eq!(percentile(&x, -1.0), None);
        assert_eq!(percentile(&x, f64::NAN), None);
        assert_eq!(percentile(&[1.0, f64::NAN], 50.0), None);
    }

    /// h·u and the part of h orthogonal to u, in f64.
    fn split(h: &[f32], axis: &[f32]) -> (f64, Vec<f64>) {
        let p = projection(h, axis);
        let n = dot(axis, axis).sqrt();
        let orth = h
            .iter()
            .zip(axis)
            .map(|(x, a)| *x as f64 - p * *a as f64 / n)
            .collect();
        (p, orth)
    }

    #[test]
    fn caps_by_hand() {
        // u = (0.6, 0.8); h·u = 2.2; orthogonal part (−0.32, 0.24).
        let (h, axis) = ([1.0f32, 2.0], [3.0f32, 4.0]);
        assert_eq!(cap_floor(&h, &axis, 2.0), h.to_vec());
        assert_eq!(cap_floor(&h, &axis, 2.2), h.to_vec());
        let f = cap_floor(&h, &axis, 3.0); // + 0.8·u
        assert!(
            (f[0] - 1.48).abs() < 1e-6 && (f[1] - 2.64).abs() < 1e-6,
            "{f:?}"
        );
        assert_eq!(cap_ceiling(&h, &axis, 3.0), h.to_vec());
        let c = cap_ceiling(&h, &axis, 2.0); // − 0.2·u
        assert!(
            (c[0] - 0.88).abs() < 1e-6 && (c[1] - 1.84).abs() < 1e-6,
            "{c:?}"
        );
        // A zero axis caps nothing.
        assert_eq!(cap_floor(&h, &[0.0, 0.0], 10.0), h.to_vec());
        assert_eq!(cap_ceiling(&h, &[0.0, 0.0], -10.0), h.to_vec());
    }

    #[test]
    fn caps_land_on_tau_and_keep_the_orthogonal_part() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        };
        let d = 64;
        let (mut floored, mut ceiled) = (0, 0);
        for _ in 0..200 {
            let h: Vec<f32> = (0..d).map(|_| next()).collect();
            let axis: Vec<f32> = (0..d).map(|_| next()).collect();
            let tau = next() * 3.0;
            let (p, orth) = split(&h, &axis);
            let scale = 1e-5 * (1.0 + orth.iter().map(|v| v * v).sum::<f64>().sqrt());

            let f = cap_floor(&h, &axis, tau);
            if p >= tau as f64 {
                assert_eq!(f, h);
            } else {
                floored += 1;
                let (pf, of) = split(&f, &axis);
                assert!((pf - tau as f64).abs() < scale, "{pf} vs {tau}");
                for (a, b) in of.iter().zip(&orth) {
                    assert!((a - b).abs() < scale);
                }
            }

            let c = cap_ceiling(&h, &axis, tau);
            if p <= tau as f64 {
                assert_eq!(c, h);
            } else {
                ceiled += 1;
                let (pc, oc) = split(&c, &axis);
                assert!((pc - tau as f64).abs() < scale, "{pc} vs {tau}");
                for (a, b) in oc.iter().zip(&orth) {
                    assert!((a - b).abs() < scale);
                }
            }
            // The ceiling is the floor along −axis at −τ, bit for bit.
            let neg: Vec<f32> = axis.iter().map(|a| -a).collect();
            assert_eq!(c, cap_floor(&h, &neg, -tau));
            assert_eq!(f, cap_ceiling(&h, &neg, -tau));
        }
        assert!(floored > 20 && ceiled > 20, "{floored} {ceiled}");
    }
}
