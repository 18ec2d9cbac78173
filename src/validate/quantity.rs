//! `resource.Quantity` as the API server reads it, so `validate()` refuses
//! offline a quantity the server cannot decode, and compares requests with
//! limits. Follows apimachinery pkg/api/resource/quantity.go
//! (ParseQuantity, parseQuantityString, ErrFormatWrong, ErrSuffix) and
//! suffix.go (newSuffixer, interpret).

use std::cmp::Ordering;

/// ErrFormatWrong's text.
pub const FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// ErrSuffix's text.
pub const SUFFIX_WRONG: &str = "unable to parse quantity's suffix";
/// The characters a suffix starts with (parseQuantityString).
const SUFFIX_CHARS: &[u8] = b"eEinumkKMGTP";
/// The binary suffixes and their powers of two.
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
/// The decimal SI suffixes and their powers of ten.
const DECIMAL_SUFFIXES: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
/// Exact comparisons count in billionths (the Quantity's smallest scale).
const NANO_DIGITS: i32 = 9;

/// A parsed quantity: `digits` (a decimal integer whose last `fraction`
/// digits follow the point) times 2^`binary` times 10^`decimal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    digits: String,
    fraction: usize,
    binary: u32,
    decimal: i32,
}

/// Parses `text` as the API server does, or gives its error's text.
pub fn parse(text: &str) -> Result<Quantity, &'static str> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(FORMAT_WRONG);
    }
    let digits_from = |mut pos: usize| {
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        pos
    };
    let (negative, mut pos) = match bytes[0] {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let integer_end = digits_from(pos);
    let integer = &text[pos..integer_end];
    pos = integer_end;
    let mut fraction = "";
    if bytes.get(pos) == Some(&b'.') {
        let end = digits_from(pos + 1);
        fraction = &text[pos + 1..end];
        pos = end;
    }
    let suffix_start = pos;
    while pos < bytes.len() && SUFFIX_CHARS.contains(&bytes[pos]) {
        pos += 1;
    }
    if matches!(bytes.get(pos), Some(b'-' | b'+')) {
        pos += 1;
    }
    if digits_from(pos) != bytes.len() {
        return Err(FORMAT_WRONG);
    }
    let (binary, decimal) = interpret(&text[suffix_start..]).ok_or(SUFFIX_WRONG)?;
    Ok(Quantity {
        negative,
        digits: format!("{integer}{fraction}"),
        fraction: fraction.len(),
        binary,
        decimal,
    })
}

/// A suffix as powers of two and ten: SI, binary, or an exponent.
fn interpret(suffix: &str) -> Option<(u32, i32)> {
    if let Some((_, e)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some((0, *e));
    }
    if let Some((_, e)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some((*e, 0));
    }
    let exponent = suffix.strip_prefix(['e', 'E']).filter(|e| !e.is_empty())?;
    // Upstream parses 64 bits and keeps 32.
    exponent.parse::<i64>().ok().map(|e| (0, e as i32))
}

impl Quantity {
    fn is_zero(&self) -> bool {
        self.digits.bytes().all(|b| b == b'0')
    }

    pub fn is_negative(&self) -> bool {
        self.negative && !self.is_zero()
    }

    /// The value in billionths, when it is a whole number of them and fits.
    fn nanos(&self) -> Option<i128> {
        let digits = self.digits.trim_start_matches('0');
        let mut value: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        value = value.checked_mul(1u128 << self.binary)?;
        let fraction = i32::try_from(self.fraction).ok()?;
        let scale = self
            .decimal
            .checked_add(NANO_DIGITS)?
            .checked_sub(fraction)?;
        let power = 10u128.checked_pow(scale.unsigned_abs())?;
        let magnitude = if scale >= 0 {
            value.checked_mul(power)?
        } else if value.is_multiple_of(power) {
            value / power
        } else {
            return None;
        };
        let magnitude = i128::try_from(magnitude).ok()?;
        Some(if self.negative { -magnitude } else { magnitude })
    }

    /// An approximation, for values beyond the exact range.
    fn approximate(&self) -> f64 {
        let digits: f64 = self.digits.parse().unwrap_or(0.0);
        let fraction = i32::try_from(self.fraction).unwrap_or(i32::MAX);
        let value = digits
            * 2f64.powi(self.binary as i32)
            * 10f64.powi(self.decimal.saturating_sub(fraction));
        if self.negative {
            -value
        } else {
            value
        }
    }

    /// Compares values: exactly in billionths, else approximately.
    pub fn compare(&self, other: &Quantity) -> Ordering {
        match (self.nanos(), other.nanos()) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self
                .approximate()
                .partial_cmp(&other.approximate())
                .unwrap_or(Ordering::Equal),
        }
    }

    /// Whether the value is a whole number (MilliValue() % 1000 == 0).
    pub fn is_integer(&self) -> bool {
        match self.nanos() {
            Some(n) => n % 10i128.pow(NANO_DIGITS as u32) == 0,
            None => self.approximate().fract() == 0.0,
        }
    }

    /// Whether the value is a positive whole multiple of `unit`.
    pub fn is_positive_multiple_of(&self, unit: &Quantity) -> bool {
        match (self.nanos(), unit.nanos()) {
            (Some(v), Some(u)) if u > 0 => v > 0 && v % u == 0,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_of_parse_quantity() {
        for valid in [
            "0", "1", "500m", "1.5", "2Gi", "1e3", "1E-3", "+1", "-1", ".5", "1.", "0.1Ki", "1E",
            "5n", "12e+2", "+", ".",
        ] {
            assert!(parse(valid).is_ok(), "{valid}");
        }
        for (invalid, error) in [
            ("", FORMAT_WRONG),
            ("garbage", FORMAT_WRONG),
            ("1 ", FORMAT_WRONG),
            ("1.5.3", FORMAT_WRONG),
            ("--1", SUFFIX_WRONG),
            ("1Mb", FORMAT_WRONG),
            ("1Gi5x", FORMAT_WRONG),
            ("1e", SUFFIX_WRONG),
            ("1Ki5", SUFFIX_WRONG),
            ("1mi", SUFFIX_WRONG),
            ("1KK", SUFFIX_WRONG),
        ] {
            assert_eq!(parse(invalid), Err(error), "{invalid:?}");
        }
    }

    #[test]
    fn values_compare_exactly() {
        let q = |s| parse(s).unwrap();
        assert_eq!(q("1").compare(&q("1000m")), Ordering::Equal);
        assert_eq!(q("1Gi").compare(&q("1073741824")), Ordering::Equal);
        assert_eq!(q("1G").compare(&q("1Gi")), Ordering::Less);
        assert_eq!(q("2").compare(&q("1500m")), Ordering::Greater);
        assert_eq!(q("0.1").compare(&q("100m")), Ordering::Equal);
        assert_eq!(q("1e30").compare(&q("1e29")), Ordering::Greater);
        assert_eq!(q("-1").compare(&q("0")), Ordering::Less);
        assert!(q("-1").is_negative() && !q("-0").is_negative());
        assert!(q("2").is_integer() && q("2000m").is_integer() && !q("1.5").is_integer());
        assert!(q("4Mi").is_positive_multiple_of(&q("2Mi")));
        assert!(!q("3Mi").is_positive_multiple_of(&q("2Mi")));
        assert!(!q("0").is_positive_multiple_of(&q("2Mi")));
    }
}
