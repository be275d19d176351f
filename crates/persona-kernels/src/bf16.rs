//! bf16 as raw bits: conversions written as plain integer arithmetic so loops vectorize.

/// f32 → bf16, rounding to nearest even.
#[inline(always)]
pub(crate) fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
pub(crate) fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}
