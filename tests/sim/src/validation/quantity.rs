//! resource.Quantity parsing, as the decoder does it before validation.
//!
//! Follows staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go
//! (ParseQuantity, parseQuantityString, ErrFormatWrong, ErrSuffix): a value
//! that does not parse fails decoding (400 "cannot be handled as a Job"),
//! not validation.

use serde_json::Value;

/// ErrFormatWrong's text.
pub const FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// ErrSuffix's text.
pub const SUFFIX_WRONG: &str = "unable to parse quantity's suffix";

/// The value of a quantity (a JSON string or number), or the decoder's error.
pub fn parse(v: &Value) -> Result<f64, &'static str> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(FORMAT_WRONG),
    };
    parse_str(&s)
}

pub fn parse_str(s: &str) -> Result<f64, &'static str> {
    if s.is_empty() {
        return Err("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
    }
    // Sign, then digits with at most one '.', then the suffix.
    let (neg, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    if num.is_empty() || num.matches('.').count() > 1 || num == "." {
        return Err(FORMAT_WRONG);
    }
    if !suffix
        .chars()
        .all(|c| "eEinumkKMGTP+-0123456789".contains(c))
    {
        return Err(FORMAT_WRONG);
    }
    let mut value: f64 = num.parse().map_err(|_| FORMAT_WRONG)?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| SUFFIX_WRONG)?;
            10f64.powi(exp)
        }
        _ => return Err(SUFFIX_WRONG),
    };
    value *= mult;
    Ok(if neg { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_suffixes_kubernetes_accepts() {
        assert_eq!(parse(&json!("500m")).unwrap(), 0.5);
        assert_eq!(parse(&json!("1Gi")).unwrap(), 1073741824.0);
        assert_eq!(parse(&json!(2)).unwrap(), 2.0);
        assert_eq!(parse(&json!("1e3")).unwrap(), 1000.0);
        assert_eq!(parse(&json!("-1")).unwrap(), -1.0);
        assert_eq!(parse(&json!("garbage")), Err(FORMAT_WRONG));
        assert_eq!(parse(&json!("1Xi")), Err(FORMAT_WRONG));
        assert_eq!(parse(&json!("1iK")), Err(SUFFIX_WRONG));
    }
}
