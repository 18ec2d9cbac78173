//! CRD validation rules refused at CRD creation: rules that do not compile,
//! and rules whose estimated cost exceeds the per-rule budget.
//! Follows staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/compilation.go
//! (StaticEstimatedCostLimit, the cost of unbounded strings and lists from
//! the request size limit) and pkg/apis/apiextensions/validation/validation.go
//! (getCostErrorMessage). The estimate is a simplification of cel-go's
//! checker.Cost: per rule, string functions cost by the traversed length
//! (0.1 per byte; `matches` times 0.25 per pattern byte) and list macros
//! multiply their body by the list's maximum size.

use crate::error::FieldError;
use serde_json::Value;

/// The largest cost a single rule may be estimated to have.
pub const STATIC_ESTIMATED_COST_LIMIT: f64 = 10_000_000.0;
/// Unbounded strings and lists are bounded by the request size (3 MiB).
pub const MAX_REQUEST_SIZE_BYTES: f64 = 3.0 * 1024.0 * 1024.0;
const STRING_TRAVERSAL_COST_FACTOR: f64 = 0.1;
const REGEX_STRING_LENGTH_COST_FACTOR: f64 = 0.25;
const MACROS: [&str; 5] = [".all(", ".exists(", ".exists_one(", ".map(", ".filter("];
const STRING_FUNCTIONS: [&str; 4] = [".contains(", ".startsWith(", ".endsWith(", ".matches("];

/// The largest serialized size of a value of this schema, and of one element.
fn max_string_len(s: &Value) -> f64 {
    s["maxLength"]
        .as_f64()
        .unwrap_or(MAX_REQUEST_SIZE_BYTES - 2.0)
}

fn min_serialized_size(s: &Value) -> f64 {
    // The smallest JSON of each type plus its separator (compilation.go
    // estimateMinSizeJSON).
    match s["type"].as_str().unwrap_or("") {
        "string" => 3.0,
        "boolean" => 5.0,
        "object" | "array" => 3.0,
        _ => 2.0,
    }
}

fn max_items(s: &Value) -> f64 {
    s["maxItems"]
        .as_f64()
        .unwrap_or_else(|| (MAX_REQUEST_SIZE_BYTES / min_serialized_size(&s["items"])).floor())
}

/// The pattern of the first `.matches('...')`.
fn pattern_len(rule: &str) -> f64 {
    rule.split(".matches(")
        .nth(1)
        .and_then(|r| {
            let q = r.chars().next()?;
            let body = &r[1..];
            Some(body.find(q).unwrap_or(body.len()) as f64)
        })
        .unwrap_or(1.0)
}

/// String functions applied in a rule, each over a string of `len` bytes.
fn string_cost(rule: &str, len: f64) -> f64 {
    let traversal = (len * STRING_TRAVERSAL_COST_FACTOR).ceil();
    let mut cost = 0.0;
    for f in STRING_FUNCTIONS {
        let n = rule.matches(f).count() as f64;
        cost += if f == ".matches(" {
            n * traversal * (pattern_len(rule) * REGEX_STRING_LENGTH_COST_FACTOR).ceil()
        } else {
            n * traversal
        };
    }
    cost
}

/// The estimated cost of a rule at a schema node.
pub fn estimate(rule: &str, s: &Value) -> f64 {
    let base = 1.0 + rule.matches("self").count() as f64;
    match s["type"].as_str().unwrap_or("") {
        "string" => base + string_cost(rule, max_string_len(s)),
        "array" if MACROS.iter().any(|m| rule.contains(m)) => {
            let item = &s["items"];
            let per_item = 1.0
                + string_cost(
                    rule,
                    if item["type"] == "string" {
                        max_string_len(item)
                    } else {
                        1.0
                    },
                );
            base + max_items(s) * per_item
        }
        _ => base,
    }
}

/// validation.go getCostErrorMessage.
fn cost_error_message(cost: f64, limit: f64) -> String {
    let factor = cost / limit;
    let f = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!("estimated rule cost exceeds budget by factor of {f} (try simplifying the rule(s), or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")
}

fn walk(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for (i, r) in s["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let rule = r["rule"].as_str().unwrap_or("");
        let field = format!("{path}.x-kubernetes-validations[{i}].rule");
        if let Err(e) = crate::k8scel::compile(rule) {
            errs.push(FieldError::invalid(
                &field,
                &Value::String(rule.into()),
                &format!("compilation failed: {e}"),
            ));
            continue;
        }
        let cost = estimate(rule, s);
        if cost > STATIC_ESTIMATED_COST_LIMIT {
            errs.push(FieldError::other(
                &field,
                "FieldValueForbidden",
                format!(
                    "Forbidden: {}",
                    cost_error_message(cost, STATIC_ESTIMATED_COST_LIMIT)
                ),
            ));
        }
    }
    for (k, c) in s["properties"].as_object().into_iter().flatten() {
        walk(c, &format!("{path}.properties[{k}]"), errs);
    }
    if s["items"].is_object() {
        walk(&s["items"], &format!("{path}.items"), errs);
    }
    if s["additionalProperties"].is_object() {
        walk(
            &s["additionalProperties"],
            &format!("{path}.additionalProperties"),
            errs,
        );
    }
}

/// The rule errors of every version's schema of a CRD.
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = vec![];
    for (i, v) in crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let schema = &v["schema"]["openAPIV3Schema"];
        if schema.is_object() {
            walk(
                schema,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                &mut errs,
            );
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounded_rules_pass_unbounded_lists_do_not() {
        let path = json!({"type": "string", "maxLength": 1024});
        assert!(
            estimate(
                "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')",
                &path
            ) < 10_000.0
        );
        let names = json!({"type": "array", "items": {"type": "string"}});
        assert!(
            estimate(
                "self.all(n, n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",
                &names
            ) > STATIC_ESTIMATED_COST_LIMIT * 100.0
        );
        let bounded =
            json!({"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 64}});
        assert!(
            estimate(
                "self.all(n, n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",
                &bounded
            ) < 10_000.0
        );
    }
}
