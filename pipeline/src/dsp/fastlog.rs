//! A fast, branch-free `10 * log10(max(x, floor))` for whole arrays.
//!
//! The logarithm is a tenth of a frame's cost with `f32::log10`; this version splits the float
//! into exponent and mantissa and evaluates `log2` of the mantissa with the odd atanh series in
//! `t = (m - 1) / (m + 1)`, which the compiler vectorizes. Its error is below 1e-4 dB over the
//! whole positive float range, far inside the 0.05 dB the features promise.

/// `10 * log10(2)`: dB per octave of power.
const DB_PER_LOG2: f32 = 3.010_3;
/// `2 / ln(2)`: turns the atanh series into log2.
const TWO_OVER_LN2: f32 = 2.885_39;

/// `log2(x)` for a positive, finite, normal `x`.
#[inline(always)]
fn log2_positive(x: f32) -> f32 {
    let bits = x.to_bits();
    // Centre the mantissa on 1 (range [sqrt(1/2), sqrt(2))) to keep |t| <= 0.172.
    let offset_bits = bits.wrapping_sub(0x3f35_04f3);
    let exponent = ((offset_bits as i32) >> 23) as f32;
    let mantissa = f32::from_bits(bits.wrapping_sub(offset_bits & 0xff80_0000));
    let t = (mantissa - 1.0) / (mantissa + 1.0);
    let t2 = t * t;
    let series = t * (1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0))));
    exponent + TWO_OVER_LN2 * series
}

/// Replaces every value by `10 * log10(max(value, floor))`; `floor` must be a positive normal float.
#[inline(always)]
pub fn power_to_db_in_place(values: &mut [f32], floor: f32) {
    for value in values.iter_mut() {
        *value = DB_PER_LOG2 * log2_positive(value.max(floor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn agrees_with_std_log10_within_a_ten_thousandth_of_a_db(exponent in -33.0f64..37.0, mantissa in 1.0f64..10.0) {
            let value = (mantissa * 10f64.powf(exponent)) as f32;
            let mut fast = [value];
            power_to_db_in_place(&mut fast, 1e-10);
            let exact = 10.0 * f64::from(value.max(1e-10)).log10();
            prop_assert!((f64::from(fast[0]) - exact).abs() < 1e-4, "{value}: {} vs {exact}", fast[0]);
        }
    }

    #[test]
    fn zero_and_tiny_values_are_floored() {
        let mut values = [0.0, 1e-30, 1e-10, 1.0];
        power_to_db_in_place(&mut values, 1e-10);
        assert!((values[0] + 100.0).abs() < 1e-4);
        assert!((values[1] + 100.0).abs() < 1e-4);
        assert!((values[2] + 100.0).abs() < 1e-4);
        assert!(values[3].abs() < 1e-5);
    }
}
