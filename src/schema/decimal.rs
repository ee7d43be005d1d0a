//! Decimal128 (IEEE 754-2008 BID) to and from Arrow's `decimal(p,s)` integers, exactly.
//!
//! The bson crate keeps Decimal128 opaque (bytes and a display string), so the few lines of bit layout live here.

const EXPONENT_BIAS: i32 = 6176;

/// A decoded Decimal128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// `(-1)^negative * coefficient * 10^exponent`.
    Finite {
        negative: bool,
        coefficient: u128,
        exponent: i32,
    },
    Infinity {
        negative: bool,
    },
    NaN,
}

pub fn decode(d: &bson::Decimal128) -> Decoded {
    let v = u128::from_le_bytes(d.bytes());
    let negative = v >> 127 == 1;
    let combination = (v >> 122) & 0x1f;
    if combination == 0x1f {
        return Decoded::NaN;
    }
    if combination == 0x1e {
        return Decoded::Infinity { negative };
    }
    let (exponent_bits, coefficient) = if (v >> 125) & 0b11 == 0b11 {
        // "11" form: the coefficient would exceed 10^34 - 1, which the spec defines as non-canonical zero.
        ((v >> 111) & 0x3fff, 0)
    } else {
        ((v >> 113) & 0x3fff, v & ((1u128 << 113) - 1))
    };
    let coefficient = if coefficient > 9_999_999_999_999_999_999_999_999_999_999_999 { 0 } else { coefficient };
    Decoded::Finite { negative, coefficient, exponent: exponent_bits as i32 - EXPONENT_BIAS }
}

/// Encodes `unscaled * 10^-scale` (as Arrow stores a decimal) as Decimal128.
pub fn encode(unscaled: i128, scale: u8) -> bson::Decimal128 {
    let negative = unscaled < 0;
    let coefficient = unscaled.unsigned_abs();
    let exponent = (EXPONENT_BIAS - scale as i32) as u128;
    let mut v = (exponent << 113) | coefficient;
    if negative {
        v |= 1u128 << 127;
    }
    bson::Decimal128::from_bytes(v.to_le_bytes())
}

/// `unscaled` for a column of the given scale, or None when it does not fit exactly in an i128.
pub fn to_unscaled(d: &bson::Decimal128, scale: u8) -> Option<i128> {
    match decode(d) {
        Decoded::Finite { negative, coefficient, exponent } => {
            let shift = exponent + scale as i32;
            if shift < 0 {
                return None; // would need rounding: inference never lets this happen
            }
            let mut v = i128::try_from(coefficient).ok()?;
            for _ in 0..shift {
                v = v.checked_mul(10)?;
            }
            Some(if negative { -v } else { v })
        }
        _ => None,
    }
}

/// Decimal digits of a coefficient (0 has one digit).
pub fn digits(mut n: u128) -> u32 {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> bson::Decimal128 {
        s.parse().unwrap()
    }

    #[test]
    fn decodes_display_forms() {
        assert_eq!(decode(&dec("1234.50")), Decoded::Finite { negative: false, coefficient: 123450, exponent: -2 });
        assert_eq!(decode(&dec("-0.001")), Decoded::Finite { negative: true, coefficient: 1, exponent: -3 });
        assert_eq!(decode(&dec("1E+40")), Decoded::Finite { negative: false, coefficient: 1, exponent: 40 });
        assert_eq!(decode(&dec("NaN")), Decoded::NaN);
        assert_eq!(decode(&dec("-Infinity")), Decoded::Infinity { negative: true });
    }

    #[test]
    fn round_trips_through_unscaled() {
        for (s, scale, unscaled) in [("1234.50", 2, 123450i128), ("1234.5", 3, 1234500), ("-7", 0, -7), ("0.000", 3, 0)]
        {
            assert_eq!(to_unscaled(&dec(s), scale), Some(unscaled), "{s}");
            let back = encode(unscaled, scale);
            assert_eq!(to_unscaled(&back, scale), Some(unscaled));
        }
        assert_eq!(encode(123450, 2).to_string(), "1234.50");
        assert_eq!(to_unscaled(&dec("1.25"), 1), None);
    }
}
