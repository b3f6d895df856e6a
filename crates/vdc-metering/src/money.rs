//! Fixed-point numbers with six decimals: [`Money`] for prices and charges,
//! [`Qty`] for the usage quantities a bill prices. Money never goes through
//! a float.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Millionths in one unit.
const SCALE: i64 = 1_000_000;

// === types ===

/// An amount of money in millionths of the currency unit (the currency is
/// the operator's business). Written and read as a decimal with up to six
/// places: `12.345678`, `0.0004`, `-1`. Sums saturate rather than wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// A non-negative usage quantity (CPU-minutes, GiB-minutes, …) in
/// millionths: `Qty(1_500_000)` is 1.5. Bills add quantities as integers,
/// so a bill's totals are exactly the sums of its lines.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Qty(pub u64);

/// A decimal amount that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid amount: {reason}")]
pub struct MoneyError {
    pub input: String,
    pub reason: &'static str,
}

// === impl Money ===

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_micros(micros: i64) -> Money {
        Money(micros)
    }

    /// Millionths of the currency unit.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Whole units: `Money::from_units(3)` is `3.000000`; saturates.
    pub const fn from_units(units: i64) -> Money {
        Money(units.saturating_mul(SCALE))
    }

    /// The price of `qty` at `self` per unit, rounded to the nearest
    /// millionth (halves away from zero), computed in integers.
    pub fn times(self, qty: Qty) -> Money {
        let product = i128::from(self.0) * i128::from(qty.0);
        let scale = i128::from(SCALE);
        let half = scale / 2;
        let rounded = if product >= 0 {
            (product + half) / scale
        } else {
            (product - half) / scale
        };
        Money(i64::try_from(rounded).unwrap_or(if rounded > 0 { i64::MAX } else { i64::MIN }))
    }
}

impl fmt::Display for Money {
    /// Always six decimals: `12.345678`, `0.000400`, `-0.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = SCALE.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / scale, abs % scale)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// A decimal with up to six places and an optional leading `-`:
    /// `12.345678`, `0.0004`, `3`, `.5`. No exponent, no thousands
    /// separators, no currency sign.
    fn from_str(s: &str) -> Result<Money, MoneyError> {
        let err = |reason| MoneyError {
            input: s.to_owned(),
            reason,
        };
        let text = s.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(err("expected a decimal number such as 0.0004"));
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                "expected digits with an optional `.` and up to six decimals, like 12.345678",
            ));
        }
        if frac.len() > 6 {
            return Err(err("expected at most six decimals (millionths)"));
        }
        let too_large = || err("too large: expected at most 9223372036854 units");
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let frac_micros: i64 = if frac.is_empty() {
            0
        } else {
            // Pad to six places: ".5" is 500000 millionths.
            format!("{frac:0<6}").parse().map_err(|_| too_large())?
        };
        let micros = whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(frac_micros))
            .ok_or_else(too_large)?;
        Ok(Money(if negative { -micros } else { micros }))
    }
}

impl Add for Money {
    type Output = Money;

    fn add(self, o: Money) -> Money {
        Money(self.0.saturating_add(o.0))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, o: Money) {
        *self = *self + o;
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

/// Money is written as a decimal string (`"0.000400"`) so that no reader
/// takes it for a float.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Money is read from a decimal string, an integer (whole units) or a float
/// written with at most six decimals (`cpu_minute = 0.0004` in a TOML file:
/// the float's shortest decimal form is read, so `0.0004` means exactly
/// 400 millionths).
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        struct MoneyVisitor;

        impl Visitor<'_> for MoneyVisitor {
            type Value = Money;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount with up to six decimals, such as \"0.0004\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
                v.checked_mul(SCALE)
                    .map(Money)
                    .ok_or_else(|| E::custom(format!("{v} is too large an amount")))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(|v| v.checked_mul(SCALE))
                    .map(Money)
                    .ok_or_else(|| E::custom(format!("{v} is too large an amount")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
                if !v.is_finite() {
                    return Err(E::custom(format!("{v} is not an amount")));
                }
                // `Display` of an f64 is its shortest round-trip decimal,
                // never in exponent form: exactly what the user wrote.
                v.to_string().parse().map_err(E::custom)
            }
        }

        d.deserialize_any(MoneyVisitor)
    }
}

// === impl Qty ===

impl Qty {
    pub const ZERO: Qty = Qty(0);

    /// The nearest quantity to `x`; negative and NaN read as zero, and
    /// values too large saturate.
    pub fn from_f64(x: f64) -> Qty {
        // `as` saturates and maps NaN to zero.
        Qty((x * 1e6).round() as u64)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl fmt::Display for Qty {
    /// Always six decimals: `1.500000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl Add for Qty {
    type Output = Qty;

    fn add(self, o: Qty) -> Qty {
        Qty(self.0.saturating_add(o.0))
    }
}

impl AddAssign for Qty {
    fn add_assign(&mut self, o: Qty) {
        *self = *self + o;
    }
}

impl Sum for Qty {
    fn sum<I: Iterator<Item = Qty>>(iter: I) -> Qty {
        iter.fold(Qty::ZERO, Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_six_decimals() {
        let m = |s: &str| s.parse::<Money>().map(|m| m.micros());
        assert_eq!(m("12.345678"), Ok(12_345_678));
        assert_eq!(m("0.0004"), Ok(400));
        assert_eq!(m("3"), Ok(3_000_000));
        assert_eq!(m(".5"), Ok(500_000));
        assert_eq!(m("7."), Ok(7_000_000));
        assert_eq!(m("-0.000001"), Ok(-1));
        assert_eq!(Money::from_micros(12_345_678).to_string(), "12.345678");
        assert_eq!(Money::from_micros(400).to_string(), "0.000400");
        assert_eq!(Money::from_micros(-1).to_string(), "-0.000001");
        assert_eq!(Money::from_micros(-1_500_000).to_string(), "-1.500000");
        assert_eq!(Money::from_units(2).to_string(), "2.000000");
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for bad in [
            "",
            ".",
            "-",
            "1e-3",
            "1,5",
            "$3",
            "0.0000001",
            "1.2.3",
            "--1",
        ] {
            let e = bad.parse::<Money>().unwrap_err();
            assert_eq!(e.input, bad);
        }
        let e = "99999999999999999999".parse::<Money>().unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let e = "0.0000001".parse::<Money>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"0.0000001\" is not a valid amount: expected at most six decimals (millionths)"
        );
    }

    #[test]
    fn round_trips_through_display() {
        for micros in [0, 1, -1, 999_999, 1_000_000, i64::MAX, i64::MIN + 1] {
            let m = Money::from_micros(micros);
            assert_eq!(m.to_string().parse::<Money>(), Ok(m));
        }
    }

    #[test]
    fn times_rounds_half_away_from_zero_in_integers() {
        let price = Money::from_micros(400); // 0.0004 per unit
        assert_eq!(price.times(Qty(1_500_000)), Money::from_micros(600));
        // 0.0004 × 0.00125 = 0.0000005: a half millionth rounds up.
        assert_eq!(price.times(Qty(1_250)), Money::from_micros(1));
        assert_eq!(price.times(Qty(1_249)), Money::from_micros(0));
        assert_eq!(
            Money::from_micros(-400).times(Qty(1_250)),
            Money::from_micros(-1)
        );
        assert_eq!(
            Money::from_micros(i64::MAX).times(Qty(u64::MAX)),
            Money::from_micros(i64::MAX)
        );
    }

    #[test]
    fn serde_reads_strings_integers_and_short_floats() {
        let read = |json: &str| serde_json::from_str::<Money>(json).map(Money::micros);
        assert_eq!(read("\"0.0004\"").ok(), Some(400));
        assert_eq!(read("2").ok(), Some(2_000_000));
        assert_eq!(read("0.0004").ok(), Some(400));
        assert_eq!(read("0.1").ok(), Some(100_000));
        assert!(read("0.00000001").is_err());
        assert!(read("\"abc\"").is_err());
        assert_eq!(
            serde_json::to_string(&Money::from_micros(400))
                .ok()
                .as_deref(),
            Some("\"0.000400\"")
        );
    }

    #[test]
    fn quantities_convert_from_floats_and_sum_exactly() {
        assert_eq!(Qty::from_f64(1.5), Qty(1_500_000));
        assert_eq!(Qty::from_f64(-1.0), Qty(0));
        assert_eq!(Qty::from_f64(f64::NAN), Qty(0));
        assert_eq!(Qty::from_f64(0.000_000_4), Qty(0));
        assert_eq!(Qty::from_f64(0.000_000_6), Qty(1));
        assert_eq!(Qty(1_500_000).to_string(), "1.500000");
        assert_eq!([Qty(1), Qty(2)].into_iter().sum::<Qty>(), Qty(3));
        assert_eq!(Qty(2_500_000).as_f64(), 2.5);
    }
}
