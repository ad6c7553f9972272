//! NUMERIC's values that are not finite numbers: `NaN`, `Infinity` and `-Infinity`
//! (PostgreSQL 14 and later).
//!
//! A finite NUMERIC is a `Datum::Numeric(Decimal)`; the three special values are a
//! `Datum::NumericSpecial`, so every finite code path keeps its `Decimal` and only the places
//! that must know about the special values (input, output, comparison, arithmetic, casts,
//! the storage encodings, a few functions) match the second variant.
//!
//! The order is PostgreSQL's: `-Infinity` < every finite value < `Infinity` < `NaN`, and
//! unlike floating point, `NaN = NaN` holds. The key encoding (`kv::keys`) keeps that order:
//! a numeric key starts with the float image of the value, and the float images of
//! `-Infinity`, `Infinity` and `NaN` sort below, above and above that of any finite
//! `Decimal` (which never exceeds 8·10^28).
//!
//! # Implementation caveats
//!
//! - `exp`, `ln`, `power` and friends evaluate in double precision, so on special values they
//!   return float results rather than PostgreSQL's numeric ones.

use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::error::{Error, ErrorKind, Result};
use crate::sql::types::Datum;

/// A NUMERIC value that is not a finite number. The derived order is the SQL order among
/// the three (`-Infinity` < `Infinity` < `NaN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NumericSpecial {
    NegInfinity,
    Infinity,
    NaN,
}

impl NumericSpecial {
    /// PostgreSQL's input forms: case-insensitive, surrounded by any whitespace.
    pub fn parse(s: &str) -> Option<NumericSpecial> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("nan") {
            Some(NumericSpecial::NaN)
        } else if ["infinity", "+infinity", "inf", "+inf"]
            .iter()
            .any(|w| t.eq_ignore_ascii_case(w))
        {
            Some(NumericSpecial::Infinity)
        } else if t.eq_ignore_ascii_case("-infinity") || t.eq_ignore_ascii_case("-inf") {
            Some(NumericSpecial::NegInfinity)
        } else {
            None
        }
    }

    /// The output form.
    pub fn name(self) -> &'static str {
        match self {
            NumericSpecial::NegInfinity => "-Infinity",
            NumericSpecial::Infinity => "Infinity",
            NumericSpecial::NaN => "NaN",
        }
    }

    pub fn to_f64(self) -> f64 {
        match self {
            NumericSpecial::NegInfinity => f64::NEG_INFINITY,
            NumericSpecial::Infinity => f64::INFINITY,
            NumericSpecial::NaN => f64::NAN,
        }
    }

    /// The special value a non-finite double converts to (`None` for a finite one).
    pub fn from_f64(f: f64) -> Option<NumericSpecial> {
        if f.is_nan() {
            Some(NumericSpecial::NaN)
        } else if f == f64::INFINITY {
            Some(NumericSpecial::Infinity)
        } else if f == f64::NEG_INFINITY {
            Some(NumericSpecial::NegInfinity)
        } else {
            None
        }
    }

    pub fn abs(self) -> NumericSpecial {
        match self {
            NumericSpecial::NaN => NumericSpecial::NaN,
            _ => NumericSpecial::Infinity,
        }
    }

    /// `sign()`: ±1 for the infinities, NaN for NaN.
    pub fn sign(self) -> Datum {
        match self {
            NumericSpecial::NegInfinity => Datum::Numeric(Decimal::NEGATIVE_ONE),
            NumericSpecial::Infinity => Datum::Numeric(Decimal::ONE),
            NumericSpecial::NaN => Datum::NumericSpecial(NumericSpecial::NaN),
        }
    }

    /// How the special value compares with any finite one.
    pub fn cmp_finite(self) -> Ordering {
        match self {
            NumericSpecial::NegInfinity => Ordering::Less,
            _ => Ordering::Greater,
        }
    }

    /// The error of a cast to an integer type (PostgreSQL reports 0A000 here).
    pub fn integer_cast_error(self, type_name: &str) -> Error {
        let what = match self {
            NumericSpecial::NaN => "NaN",
            _ => "infinity",
        };
        Error::new(
            ErrorKind::FeatureNotSupported,
            format!("cannot convert {what} to {type_name}"),
        )
    }

    /// `numeric(p, s)` accepts NaN but not the infinities.
    pub fn check_typmod(self, precision: u32, scale: u32) -> Result<NumericSpecial> {
        if self == NumericSpecial::NaN {
            return Ok(self);
        }
        Err(
            Error::out_of_range("numeric field overflow").with_detail(format!(
                "A field with precision {precision}, scale {scale} cannot hold an infinite value."
            )),
        )
    }

    /// `sqrt()`: the square root of -Infinity is an error, as for any negative number.
    pub fn sqrt(self) -> Result<NumericSpecial> {
        match self {
            NumericSpecial::NegInfinity => Err(negative_sqrt_error()),
            other => Ok(other),
        }
    }
}

impl std::ops::Neg for NumericSpecial {
    type Output = NumericSpecial;

    fn neg(self) -> NumericSpecial {
        match self {
            NumericSpecial::NegInfinity => NumericSpecial::Infinity,
            NumericSpecial::Infinity => NumericSpecial::NegInfinity,
            NumericSpecial::NaN => NumericSpecial::NaN,
        }
    }
}

/// `generate_series` over NUMERIC refuses a special start, stop or step (argument `index`
/// 0, 1 or 2) with PostgreSQL's 22023 messages; `None` when all are finite.
pub fn series_argument_error(args: &[Datum]) -> Option<Error> {
    args.iter().enumerate().find_map(|(i, d)| match d {
        Datum::NumericSpecial(x) => {
            let what = ["start value", "stop value", "step size"][i.min(2)];
            let bad = match x {
                NumericSpecial::NaN => "NaN",
                _ => "infinity",
            };
            Some(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("{what} cannot be {bad}"),
            ))
        }
        _ => None,
    })
}

/// PostgreSQL's error for the square root of a negative number (2201F).
pub fn negative_sqrt_error() -> Error {
    Error::new(
        ErrorKind::InvalidArgumentForPowerFunction,
        "cannot take square root of a negative number",
    )
}

/// A NUMERIC operand, finite or not.
#[derive(Clone, Copy, Debug)]
pub enum NumericValue {
    Finite(Decimal),
    Special(NumericSpecial),
}

/// A binary arithmetic operator over NUMERIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumericOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl NumericValue {
    /// The operand an integer or numeric datum stands for (`None` for other kinds).
    pub fn of(d: &Datum) -> Option<NumericValue> {
        match d {
            Datum::Int(i) => Some(NumericValue::Finite(Decimal::from(*i))),
            Datum::Numeric(n) => Some(NumericValue::Finite(*n)),
            Datum::NumericSpecial(s) => Some(NumericValue::Special(*s)),
            _ => None,
        }
    }

    /// The sign of the value: -1, 0 or 1 (NaN has none and is never asked).
    fn signum(self) -> i32 {
        match self {
            NumericValue::Finite(d) if d.is_zero() => 0,
            NumericValue::Finite(d) if d.is_sign_negative() => -1,
            NumericValue::Finite(_) => 1,
            NumericValue::Special(NumericSpecial::NegInfinity) => -1,
            NumericValue::Special(_) => 1,
        }
    }

    fn is_zero(self) -> bool {
        matches!(self, NumericValue::Finite(d) if d.is_zero())
    }
}

fn infinity_with_sign(sign: i32) -> Datum {
    Datum::NumericSpecial(if sign < 0 {
        NumericSpecial::NegInfinity
    } else {
        NumericSpecial::Infinity
    })
}

/// Arithmetic where at least one operand is special, by PostgreSQL's rules (`numeric.c`):
/// NaN absorbs everything (even a zero divisor), `Infinity - Infinity` and `Infinity * 0`
/// are NaN, a finite value over an infinity is 0, and dividing an infinity by zero is still
/// an error.
pub fn special_arith(op: NumericOp, a: NumericValue, b: NumericValue) -> Result<Datum> {
    use NumericSpecial::*;
    use NumericValue::*;
    let nan = Datum::NumericSpecial(NaN);
    if matches!(a, Special(NaN)) || matches!(b, Special(NaN)) {
        return Ok(nan);
    }
    let zero_div = || Error::new(ErrorKind::DivisionByZero, "division by zero");
    Ok(match op {
        NumericOp::Add | NumericOp::Sub => {
            let b_sign = if op == NumericOp::Sub {
                -b.signum()
            } else {
                b.signum()
            };
            match (a, b) {
                (Special(_), Special(_)) if a.signum() != b_sign => nan,
                (Special(_), _) => infinity_with_sign(a.signum()),
                _ => infinity_with_sign(b_sign),
            }
        }
        NumericOp::Mul => {
            if a.is_zero() || b.is_zero() {
                nan
            } else {
                infinity_with_sign(a.signum() * b.signum())
            }
        }
        NumericOp::Div => match (a, b) {
            (Special(_), Special(_)) => nan,
            (Special(_), _) if b.is_zero() => return Err(zero_div()),
            (Special(_), _) => infinity_with_sign(a.signum() * b.signum()),
            // A finite dividend over an infinite divisor.
            _ => Datum::Numeric(Decimal::ZERO),
        },
        NumericOp::Mod => match (a, b) {
            (Special(_), _) if b.is_zero() => return Err(zero_div()),
            (Special(_), _) => nan,
            // A finite dividend modulo an infinity is the dividend itself.
            (Finite(x), _) => Datum::Numeric(x),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> NumericValue {
        match NumericSpecial::parse(s) {
            Some(sp) => NumericValue::Special(sp),
            None => NumericValue::Finite(s.parse().unwrap()),
        }
    }

    fn show(d: Result<Datum>) -> String {
        match d {
            Ok(Datum::Numeric(n)) => n.to_string(),
            Ok(Datum::NumericSpecial(s)) => s.name().to_string(),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("error {}", e.sqlstate()),
        }
    }

    /// Each case is PostgreSQL 15's answer.
    #[test]
    fn arithmetic_matches_postgres() {
        let cases = [
            (NumericOp::Sub, "inf", "inf", "NaN"),
            (NumericOp::Add, "inf", "-inf", "NaN"),
            (NumericOp::Add, "inf", "inf", "Infinity"),
            (NumericOp::Sub, "1", "inf", "-Infinity"),
            (NumericOp::Sub, "-inf", "inf", "-Infinity"),
            (NumericOp::Mul, "inf", "0", "NaN"),
            (NumericOp::Mul, "0", "-inf", "NaN"),
            (NumericOp::Mul, "-2", "-inf", "Infinity"),
            (NumericOp::Div, "5", "-inf", "0"),
            (NumericOp::Div, "-inf", "-3", "Infinity"),
            (NumericOp::Div, "inf", "0", "error 22012"),
            (NumericOp::Div, "nan", "0", "NaN"),
            (NumericOp::Div, "inf", "-inf", "NaN"),
            (NumericOp::Mod, "inf", "0", "error 22012"),
            (NumericOp::Mod, "inf", "3", "NaN"),
            (NumericOp::Mod, "1", "inf", "1"),
        ];
        for (op, a, b, want) in cases {
            assert_eq!(show(special_arith(op, v(a), v(b))), want, "{a} {op:?} {b}");
        }
    }

    #[test]
    fn input_forms() {
        assert_eq!(
            NumericSpecial::parse("  +inFInity"),
            Some(NumericSpecial::Infinity)
        );
        assert_eq!(
            NumericSpecial::parse(" -inF "),
            Some(NumericSpecial::NegInfinity)
        );
        assert_eq!(NumericSpecial::parse(" nan "), Some(NumericSpecial::NaN));
        assert_eq!(NumericSpecial::parse("+nan"), None);
        assert_eq!(NumericSpecial::parse("infinit"), None);
    }
}
