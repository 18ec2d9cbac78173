//! Structural-schema handling for custom resources: defaulting, pruning and
//! OpenAPI value validation with apiextensions-apiserver's error wording.
//! `x-kubernetes-validations` (CEL) rules are evaluated by `cel.rs`.

use crate::error::FieldError;
use serde_json::{json, Value};

/// Apply `default:` values and drop unknown fields, below the root's
/// apiVersion/kind/metadata.
/// Returns the paths of pruned fields.
pub fn default_and_prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = vec![];
    walk_default_prune(obj, schema, true, "", &mut pruned);
    pruned
}

fn walk_default_prune(v: &mut Value, s: &Value, root: bool, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            if let Some(props) = props {
                for (k, ps) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = ps.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
            }
            let preserve = s["x-kubernetes-preserve-unknown-fields"] == true;
            let embedded = s["x-kubernetes-embedded-resource"] == true;
            let addl = s.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let keep_meta =
                    (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                if keep_meta {
                    continue;
                }
                let child = props.and_then(|p| p.get(&k)).or(addl);
                match child {
                    Some(cs) => walk_default_prune(
                        m.get_mut(&k).unwrap(),
                        cs,
                        false,
                        &join(path, &k),
                        pruned,
                    ),
                    None if preserve
                        || s.get("additionalProperties") == Some(&Value::Bool(true)) => {}
                    None => {
                        m.remove(&k);
                        pruned.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (n, i) in items.iter_mut().enumerate() {
                    walk_default_prune(i, is, false, &format!("{path}[{n}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        _ => true,
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Validate a custom resource (everything below the root's metadata).
pub fn validate(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = vec![];
    walk_validate(obj, schema, "", true, &mut errs);
    errs
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn walk_validate(v: &Value, s: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if s["nullable"] != true && s.get("type").is_some() {
            let t = s["type"].as_str().unwrap_or("");
            errs.push(FieldError::other(
                path,
                "FieldValueTypeInvalid",
                format!("Invalid value: \"null\": {path} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = s["x-kubernetes-int-or-string"] == true;
    if let Some(t) = s["type"].as_str() {
        if !type_ok(v, t) && !(int_or_string && (v.is_string() || v.is_i64())) {
            let a = type_name(v);
            errs.push(FieldError::other(
                path,
                "FieldValueTypeInvalid",
                format!("Invalid value: \"{a}\": {path} in body must be of type {t}: \"{a}\""),
            ));
            return;
        }
    }
    if let Some(en) = s["enum"].as_array() {
        if !en.contains(v) {
            let sup: Vec<String> = en.iter().map(crate::error::go_value).collect();
            errs.push(FieldError::other(
                path,
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {}: supported values: {}",
                    crate::error::go_value(v),
                    sup.join(", ")
                ),
            ));
        }
    }
    match v {
        Value::String(st) => {
            let len = st.chars().count() as f64;
            if let Some(p) = s["pattern"].as_str() {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(st) => errs.push(FieldError::invalid(
                        path,
                        v,
                        &format!("{path} in body should match '{p}'"),
                    )),
                    _ => {}
                }
            }
            if let Some(m) = s.get("maxLength").filter(|m| len > num(m)) {
                errs.push(FieldError::other(
                    path,
                    "FieldValueTooLong",
                    format!("Too long: may not be more than {} bytes", fmt_num(num(m))),
                ));
            }
            if let Some(m) = s.get("minLength").filter(|m| len < num(m)) {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    &format!(
                        "{path} in body should be at least {} chars long",
                        fmt_num(num(m))
                    ),
                ));
            }
        }
        Value::Number(_) => {
            let x = num(v);
            if let Some(m) = s.get("minimum") {
                let excl = s["exclusiveMinimum"] == true;
                if x < num(m) || (excl && x == num(m)) {
                    let rel = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        v,
                        &format!("{path} in body should be {rel} {}", fmt_num(num(m))),
                    ));
                }
            }
            if let Some(m) = s.get("maximum") {
                let excl = s["exclusiveMaximum"] == true;
                if x > num(m) || (excl && x == num(m)) {
                    let rel = if excl {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        v,
                        &format!("{path} in body should be {rel} {}", fmt_num(num(m))),
                    ));
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as f64;
            if let Some(m) = s.get("minItems").filter(|m| n < num(m)) {
                errs.push(FieldError::invalid(
                    path,
                    &json!(items.len()),
                    &format!(
                        "{path} in body should have at least {} items",
                        fmt_num(num(m))
                    ),
                ));
            }
            if let Some(m) = s.get("maxItems").filter(|m| n > num(m)) {
                errs.push(FieldError::other(
                    path,
                    "FieldValueTooMany",
                    format!(
                        "Too many: {}: must have at most {} items",
                        items.len(),
                        fmt_num(num(m))
                    ),
                ));
            }
            if s["x-kubernetes-list-type"] == "set" || s["uniqueItems"] == true {
                for (i, it) in items.iter().enumerate() {
                    if items[..i].contains(it) {
                        errs.push(FieldError::other(
                            &format!("{path}[{i}]"),
                            "FieldValueDuplicate",
                            format!("Duplicate value: {it}"),
                        ));
                    }
                }
            }
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    walk_validate(it, is, &format!("{path}[{i}]"), false, errs);
                }
            }
        }
        Value::Object(m) => {
            for r in s["required"].as_array().into_iter().flatten() {
                if let Some(k) = r.as_str() {
                    if !m.contains_key(k) {
                        errs.push(FieldError::required(&join(path, k), ""));
                    }
                }
            }
            if let Some(mx) = s.get("maxProperties").filter(|mx| m.len() as f64 > num(mx)) {
                errs.push(FieldError::other(
                    path,
                    "FieldValueTooMany",
                    format!(
                        "Too many: {}: must have at most {} items",
                        m.len(),
                        fmt_num(num(mx))
                    ),
                ));
            }
            if let Some(mn) = s
                .get("minProperties")
                .filter(|mn| (m.len() as f64) < num(mn))
            {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    &format!(
                        "{path} in body should have at least {} properties",
                        fmt_num(num(mn))
                    ),
                ));
            }
            let props = s.get("properties").and_then(Value::as_object);
            let addl = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in m {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(cs) = props.and_then(|p| p.get(k)).or(addl) {
                    walk_validate(c, cs, &join(path, k), false, errs);
                }
            }
        }
        _ => {}
    }
    // Value-validation combinators (structural schemas allow them without types).
    if let Some(all) = s["allOf"].as_array() {
        for sub in all {
            walk_validate(v, sub, path, root, errs);
        }
    }
    let passes = |sub: &Value| {
        let mut e = vec![];
        walk_validate(v, sub, path, root, &mut e);
        e.is_empty()
    };
    if let Some(one) = s["oneOf"].as_array() {
        if one.iter().filter(|sub| passes(sub)).count() != 1 {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!(
                    "{} must validate one and only one schema (oneOf)",
                    if path.is_empty() { "body" } else { path }
                ),
            ));
        }
    }
    if let Some(any) = s["anyOf"].as_array() {
        if !any.iter().any(passes) {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!(
                    "{} must validate at least one schema (anyOf)",
                    if path.is_empty() { "body" } else { path }
                ),
            ));
        }
    }
    if let Some(not) = s.get("not") {
        if passes(not) {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!(
                    "{} must not validate the schema (not)",
                    if path.is_empty() { "body" } else { path }
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_prunes_validates() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "pattern": "^[a-z./-]+$"},
                "tags": {"type": "array", "default": ["latest"], "items": {"type": "string"}},
                "platforms": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["linux/amd64", "linux/arm64"]}},
                "backoffLimit": {"type": "integer", "minimum": 0}}}}});
        let mut o = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"image": "Bad", "junk": 1, "platforms": ["linux/s390x"], "backoffLimit": -1}});
        default_and_prune(&mut o, &schema);
        assert_eq!(o["spec"]["tags"], json!(["latest"]));
        assert!(o["spec"].get("junk").is_none());
        let errs: Vec<String> = validate(&o, &schema)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(errs.contains(&"spec.image: Invalid value: \"Bad\": spec.image in body should match '^[a-z./-]+$'".to_string()), "{errs:?}");
        assert!(errs.contains(&"spec.platforms[0]: Unsupported value: \"linux/s390x\": supported values: \"linux/amd64\", \"linux/arm64\"".to_string()), "{errs:?}");
        assert!(errs.contains(&"spec.backoffLimit: Invalid value: -1: spec.backoffLimit in body should be greater than or equal to 0".to_string()), "{errs:?}");
    }
}
