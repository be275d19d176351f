//! Elementwise maths written so that loops over slices vectorize.

/// e^x for x ≤ 0, to about 2 ulp, in straight-line arithmetic the compiler vectorizes (libm's
/// `expf` is a call per element). Below −87 it returns 0.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    // n = round(x / ln 2) with the 1.5·2^23 trick; r = x − n·ln 2 in [−ln2/2, ln2/2].
    let n = (x * LOG2E + 12_582_912.0) - 12_582_912.0;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    // e^r by its Taylor polynomial to degree 6.
    let mut p: f32 = 1.0 / 720.0;
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    // Scale by 2^n through the exponent bits.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// A sum in eight independent lanes, so it vectorizes.
#[inline(always)]
pub fn sum_lanes(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_approximation_is_accurate() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -(i as f32) * 87.0 / 200_000.0;
            let got = super::exp_nonpositive(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert_eq!(super::exp_nonpositive(0.0), 1.0);
        assert_eq!(
            super::exp_nonpositive(-1000.0),
            super::exp_nonpositive(-87.0)
        );
    }
}
