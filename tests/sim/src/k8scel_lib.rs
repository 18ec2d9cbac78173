//! Kubernetes' CEL extension libraries, on the `cel` crate's function API:
//! - lists (staging/src/k8s.io/apiserver/pkg/cel/library/lists.go):
//!   `isSorted()`, `sum()`, `min()`, `max()` on lists of ints, doubles or
//!   strings (`indexOf`/`lastIndexOf` on lists are not provided: the
//!   strings library's overloads own those names here);
//! - quantity (library/quantity.go): `quantity(s)`, `isQuantity(s)`, and on
//!   a quantity `sign()`, `isInteger()`, `asInteger()`,
//!   `asApproximateFloat()`, `compareTo(q)`, `isGreaterThan(q)`,
//!   `isLessThan(q)`, `add(q|int)`, `sub(q|int)`.
//!
//! The strings library (cel-go ext.Strings: `join`, `split`, `lowerAscii`,
//! `upperAscii`, `trim`, `replace`, `indexOf`, `lastIndexOf`, `substring`,
//! `charAt`, `reverse`, `strings.quote`) is the `cel` crate's own
//! `extensions::strings`, registered on the environment in `k8scel`.
//!
//! A quantity is a CEL map tagged with `__quantity` holding its value
//! (as a double: quantities beyond 2^53 lose precision here, where
//! upstream keeps them exact) and its text.

use cel::extractors::{Arguments, This};
use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, Value};
use std::collections::HashMap;
use std::sync::Arc;

const TAG: &str = "__quantity";

fn quantity_value(v: f64, text: String) -> Value {
    let mut m: HashMap<Key, Value> = HashMap::new();
    m.insert(Key::String(Arc::new(TAG.into())), Value::Float(v));
    m.insert(
        Key::String(Arc::new("string".into())),
        Value::String(Arc::new(text)),
    );
    Value::Map(Map { map: Arc::new(m) })
}

fn as_quantity(v: &Value, f: &str) -> Result<f64, ExecutionError> {
    match v {
        Value::Map(m) => match m.map.get(&Key::String(Arc::new(TAG.into()))) {
            Some(Value::Float(x)) => Ok(*x),
            _ => Err(ExecutionError::function_error(f, "no such overload")),
        },
        Value::Int(i) => Ok(*i as f64),
        _ => Err(ExecutionError::function_error(f, "no such overload")),
    }
}

fn list_items(v: &Value, f: &str) -> Result<Arc<Vec<Value>>, ExecutionError> {
    match v {
        Value::List(l) => Ok(l.clone()),
        _ => Err(ExecutionError::function_error(f, "no such overload")),
    }
}

/// The order lists.go compares elements by (ints, doubles, strings).
fn compare(a: &Value, b: &Value, f: &str) -> Result<std::cmp::Ordering, ExecutionError> {
    use std::cmp::Ordering;
    let bad = || ExecutionError::function_error(f, "no such overload");
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::UInt(x), Value::UInt(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => return Err(bad()),
    })
}

fn extreme(v: &Value, f: &str, want: std::cmp::Ordering) -> Result<Value, ExecutionError> {
    let items = list_items(v, f)?;
    let mut best = items
        .first()
        .cloned()
        .ok_or_else(|| ExecutionError::function_error(f, format!("{f} called on empty list")))?;
    for it in items.iter().skip(1) {
        if compare(it, &best, f)? == want {
            best = it.clone();
        }
    }
    Ok(best)
}

pub fn install(ctx: &mut Context) {
    let _ = ctx.add_function("isSorted", |This(this): This<Value>| {
        let items = list_items(&this, "isSorted")?;
        for w in items.windows(2) {
            if compare(&w[0], &w[1], "isSorted")? == std::cmp::Ordering::Greater {
                return Ok::<Value, ExecutionError>(Value::Bool(false));
            }
        }
        Ok(Value::Bool(true))
    });
    let _ = ctx.add_function("sum", |This(this): This<Value>| {
        let items = list_items(&this, "sum")?;
        if items.iter().all(|i| matches!(i, Value::Int(_))) {
            let mut s: i64 = 0;
            for i in items.iter() {
                if let Value::Int(x) = i {
                    s = s
                        .checked_add(*x)
                        .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?;
                }
            }
            return Ok::<Value, ExecutionError>(Value::Int(s));
        }
        let mut s = 0.0;
        for i in items.iter() {
            match i {
                Value::Float(x) => s += x,
                Value::Int(x) => s += *x as f64,
                _ => return Err(ExecutionError::function_error("sum", "no such overload")),
            }
        }
        Ok(Value::Float(s))
    });
    let _ = ctx.add_function("min", |This(this): This<Value>| {
        extreme(&this, "min", std::cmp::Ordering::Less)
    });
    let _ = ctx.add_function("max", |This(this): This<Value>| {
        extreme(&this, "max", std::cmp::Ordering::Greater)
    });
    let _ = ctx.add_function("quantity", |s: Arc<String>| {
        crate::validation::quantity::parse_str(&s)
            .map(|v| quantity_value(v, s.to_string()))
            .map_err(|e| ExecutionError::function_error("quantity", e))
    });
    let _ = ctx.add_function("isQuantity", |s: Arc<String>| {
        Value::Bool(crate::validation::quantity::parse_str(&s).is_ok())
    });
    let _ = ctx.add_function("sign", |This(this): This<Value>| {
        let q = as_quantity(&this, "sign")?;
        Ok::<Value, ExecutionError>(Value::Int(if q > 0.0 {
            1
        } else if q < 0.0 {
            -1
        } else {
            0
        }))
    });
    let _ = ctx.add_function("isInteger", |This(this): This<Value>| {
        let q = as_quantity(&this, "isInteger")?;
        Ok::<Value, ExecutionError>(Value::Bool(q.fract() == 0.0 && q.abs() < i64::MAX as f64))
    });
    let _ = ctx.add_function("asInteger", |This(this): This<Value>| {
        let q = as_quantity(&this, "asInteger")?;
        if q.fract() != 0.0 || q.abs() >= i64::MAX as f64 {
            return Err(ExecutionError::function_error(
                "asInteger",
                "cannot convert value to integer",
            ));
        }
        Ok::<Value, ExecutionError>(Value::Int(q as i64))
    });
    let _ = ctx.add_function("asApproximateFloat", |This(this): This<Value>| {
        Ok::<Value, ExecutionError>(Value::Float(as_quantity(&this, "asApproximateFloat")?))
    });
    let _ = ctx.add_function("compareTo", |This(this): This<Value>, other: Value| {
        let (a, b) = (
            as_quantity(&this, "compareTo")?,
            as_quantity(&other, "compareTo")?,
        );
        Ok::<Value, ExecutionError>(Value::Int(match a.partial_cmp(&b) {
            Some(std::cmp::Ordering::Less) => -1,
            Some(std::cmp::Ordering::Greater) => 1,
            _ => 0,
        }))
    });
    let _ = ctx.add_function("isGreaterThan", |This(this): This<Value>, other: Value| {
        let (a, b) = (
            as_quantity(&this, "isGreaterThan")?,
            as_quantity(&other, "isGreaterThan")?,
        );
        Ok::<Value, ExecutionError>(Value::Bool(a > b))
    });
    let _ = ctx.add_function("isLessThan", |This(this): This<Value>, other: Value| {
        let (a, b) = (
            as_quantity(&this, "isLessThan")?,
            as_quantity(&other, "isLessThan")?,
        );
        Ok::<Value, ExecutionError>(Value::Bool(a < b))
    });
    let arith = |f: &'static str, sign: f64| {
        move |This(this): This<Value>, Arguments(args): Arguments| {
            let a = as_quantity(&this, f)?;
            let b = as_quantity(args.first().unwrap_or(&Value::Null), f)?;
            let v = a + sign * b;
            Ok::<Value, ExecutionError>(quantity_value(v, format_quantity(v)))
        }
    };
    let _ = ctx.add_function("add", arith("add", 1.0));
    let _ = ctx.add_function("sub", arith("sub", -1.0));
}

/// A result's text: an integer as is, else in milli-units.
fn format_quantity(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{}m", (v * 1000.0).round() as i64)
    }
}
