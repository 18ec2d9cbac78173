//! CRD validation rules refused at CRD creation: rules that do not compile,
//! rules whose estimated cost (times how often their node can occur)
//! exceeds the per-expression budget, and versions whose rules together
//! exceed the per-CRD budget (StaticEstimatedCRDCostLimit, naming the most
//! expensive rules as cel_validation.go TotalCost does).
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
fn cost_error_message(what: &str, cost: f64, limit: f64) -> String {
    let factor = cost / limit;
    let f = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!("{what} exceeds budget by factor of {f} (try simplifying the rule(s), or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")
}

/// The largest total estimated cost of a CRD version's rules
/// (validation.go StaticEstimatedCRDCostLimit).
pub const STATIC_ESTIMATED_CRD_COST_LIMIT: f64 = 100_000_000.0;
/// How many of the most expensive rules the total's refusal names
/// (cel_validation.go TotalCost.MostExpensive), and the least share of the
/// CRD limit a rule must cost to be named.
const MOST_EXPENSIVE_NAMED: usize = 4;
const MOST_EXPENSIVE_MIN_SHARE: f64 = 0.01;

/// Rules' costs summed over a schema (cel_validation.go TotalCost).
#[derive(Default)]
struct TotalCost {
    total: f64,
    most_expensive: Vec<(String, f64)>,
}

impl TotalCost {
    fn observe(&mut self, path: &str, cost: f64) {
        self.total += cost;
        if cost < STATIC_ESTIMATED_CRD_COST_LIMIT * MOST_EXPENSIVE_MIN_SHARE {
            return;
        }
        self.most_expensive.push((path.to_string(), cost));
        self.most_expensive
            .sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        self.most_expensive.truncate(MOST_EXPENSIVE_NAMED);
    }
}

/// How many times a child of `s` can occur per occurrence of `s`
/// (cel_validation.go extractMaxElements); unbounded lists and maps are
/// sized from the request limit.
fn max_elements(s: &Value, child: &Value) -> f64 {
    match s["type"].as_str().unwrap_or("") {
        "array" => max_items(s),
        "object" if s["additionalProperties"].is_object() => {
            s["maxProperties"].as_f64().unwrap_or_else(|| {
                (MAX_REQUEST_SIZE_BYTES / (min_serialized_size(child) + 3.0)).floor()
            })
        }
        _ => 1.0,
    }
}

/// `card`: how many times this node can occur in one object (the root once);
/// a rule's cost is its estimate times that (getExpressionCost).
fn walk(s: &Value, path: &str, card: f64, total: &mut TotalCost, errs: &mut Vec<FieldError>) {
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
        let cost = estimate(rule, s) * card;
        if cost > STATIC_ESTIMATED_COST_LIMIT {
            errs.push(FieldError::other(
                &field,
                "FieldValueForbidden",
                format!(
                    "Forbidden: {}",
                    cost_error_message("estimated rule cost", cost, STATIC_ESTIMATED_COST_LIMIT)
                ),
            ));
        }
        total.observe(&field, cost);
    }
    for (k, c) in s["properties"].as_object().into_iter().flatten() {
        walk(c, &format!("{path}.properties[{k}]"), card, total, errs);
    }
    if s["items"].is_object() {
        let n = max_elements(s, &s["items"]);
        walk(&s["items"], &format!("{path}.items"), card * n, total, errs);
    }
    if s["additionalProperties"].is_object() {
        let n = max_elements(s, &s["additionalProperties"]);
        walk(
            &s["additionalProperties"],
            &format!("{path}.additionalProperties"),
            card * n,
            total,
            errs,
        );
    }
}

/// The rule errors of every version's schema of a CRD: each rule within the
/// per-expression limit, and each version's rules together within the
/// per-CRD limit (validation.go ValidateCustomResourceDefinitionValidation).
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
            let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
            let mut total = TotalCost::default();
            walk(schema, &path, 1.0, &mut total, &mut errs);
            if total.total > STATIC_ESTIMATED_CRD_COST_LIMIT {
                for (p, _) in &total.most_expensive {
                    errs.push(crate::validation::forbidden(
                        p,
                        "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
                    ));
                }
                errs.push(crate::validation::forbidden(
                    &path,
                    &cost_error_message(
                        "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                        total.total,
                        STATIC_ESTIMATED_CRD_COST_LIMIT,
                    ),
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd_with(schema: Value) -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}})
    }

    #[test]
    fn rules_inside_lists_cost_per_element_and_the_crd_total_is_bounded() {
        let rules = |n: usize| -> Vec<Value> {
            (0..n)
                .map(|i| json!({"rule": format!("!self.contains('x{i}')")}))
                .collect()
        };
        // Each rule: (2 + 8000 bytes * 0.1) per item * 10,000 items = 8.02M.
        let schema = |n: usize| {
            json!({"type": "object", "properties": {"tags": {"type": "array", "maxItems": 10000,
                "items": {"type": "string", "maxLength": 8000, "x-kubernetes-validations": rules(n)}}}})
        };
        assert!(validate_crd(&crd_with(schema(12))).is_empty());
        let errs = validate_crd(&crd_with(schema(13)));
        let msgs: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        assert_eq!(msgs.len(), 5, "{msgs:#?}");
        let root = "spec.versions[0].schema.openAPIV3Schema";
        assert_eq!(
            msgs[0],
            format!("{root}.properties[tags].items.x-kubernetes-validations[0].rule: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema")
        );
        assert!(
            msgs[4].starts_with(&format!("{root}: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of 1.04")),
            "{}",
            msgs[4]
        );
        // One rule over an unbounded list of bounded strings: the list's
        // size from the request limit times the rule.
        let unbounded = json!({"type": "object", "properties": {"tags": {"type": "array",
            "items": {"type": "string", "maxLength": 128, "x-kubernetes-validations": [{"rule": "self.startsWith('t-')"}]}}}});
        let errs = validate_crd(&crd_with(unbounded));
        assert!(
            errs[0]
                .message
                .contains("estimated rule cost exceeds budget"),
            "{errs:?}"
        );
    }

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
