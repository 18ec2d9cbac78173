//! `x-kubernetes-validations`: CRD validation rules evaluated with the
//! `cel` crate (cel-rust, through `crate::k8scel`) against `self` and
//! `oldSelf`, with `message`, `messageExpression` and `fieldPath`; and
//! at CRD creation, the rules' compilation and estimated cost, refused as
//! staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/compilation.go
//! and pkg/apis/apiextensions/validation/validation.go do. A rule that fails
//! at runtime (e.g. a missing key) is skipped rather than enforced;
//! transition rules (using `oldSelf`) run on updates only, and not inside
//! lists.

use crate::error::FieldError;
use crate::k8scel;
use serde_json::Value;

/// Evaluate a rule against `self` (and `oldSelf`); None when not evaluable.
pub fn check(rule: &str, this: &Value, old: Option<&Value>) -> Option<bool> {
    if old.is_none() && rule.contains("oldSelf") {
        return None;
    }
    let p = k8scel::compile(rule).ok()?;
    let null = Value::Null;
    let vars = [("self", this), ("oldSelf", old.unwrap_or(&null))];
    k8scel::eval(&p, &vars, None).ok()?.as_bool()
}

/// A rule's `messageExpression`, when it yields a non-empty single line
/// (validation.go: otherwise `message`, then "failed rule: <rule>").
fn message_expression(expr: &str, this: &Value, old: Option<&Value>) -> Option<String> {
    let p = k8scel::compile(expr).ok()?;
    let null = Value::Null;
    let vars = [("self", this), ("oldSelf", old.unwrap_or(&null))];
    let m = k8scel::eval(&p, &vars, None).ok()?;
    m.as_str()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains('\n'))
}

fn type_word(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::Null => "null",
    }
}

fn walk(v: &Value, old: Option<&Value>, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for r in s["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = r["rule"].as_str().unwrap_or("");
        if check(rule, v, old) == Some(false) {
            let msg = r["messageExpression"]
                .as_str()
                .and_then(|m| message_expression(m, v, old))
                .or_else(|| r["message"].as_str().map(String::from))
                .unwrap_or_else(|| format!("failed rule: {rule}"));
            let field = match r["fieldPath"].as_str() {
                Some(fp) => format!("{path}{fp}"),
                None => path.to_string(),
            };
            errs.push(FieldError::other(
                &field,
                "FieldValueInvalid",
                format!("Invalid value: \"{}\": {msg}", type_word(v)),
            ));
        }
    }
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let addl = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in m {
                if path.is_empty() && k == "metadata" {
                    continue;
                }
                if let Some(cs) = props.and_then(|p| p.get(k)).or(addl) {
                    walk(
                        c,
                        old.and_then(|o| o.get(k)),
                        cs,
                        &crate::schema::join(path, k),
                        errs,
                    );
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    walk(it, None, is, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

pub fn validate(obj: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldError> {
    let mut errs = vec![];
    walk(obj, old, schema, "", &mut errs);
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn common_rules() {
        let src = json!({"git": {"url": "x"}});
        assert_eq!(
            check("has(self.git) != has(self.configMap)", &src, None),
            Some(true)
        );
        assert_eq!(
            check("has(self.git) != has(self.configMap)", &json!({}), None),
            Some(false)
        );
        let s = json!({"platforms": ["linux/amd64", "linux/arm64"], "n": 3});
        assert_eq!(
            check("self.platforms.all(p, p.startsWith('linux/'))", &s, None),
            Some(true)
        );
        assert_eq!(
            check("size(self.platforms) <= 2 && self.n % 2 == 1", &s, None),
            Some(true)
        );
        assert_eq!(
            check(
                "self.platforms.exists_one(p, p == 'linux/arm64') ? self.n > 5 : true",
                &s,
                None
            ),
            Some(false)
        );
        assert_eq!(
            check("'linux/amd64' in self.platforms", &s, None),
            Some(true)
        );
        assert_eq!(
            check("self.n == oldSelf.n", &s, Some(&json!({"n": 3}))),
            Some(true)
        );
        assert_eq!(check("self.n == oldSelf.n", &s, None), None);
        assert_eq!(check("self.unknownFn()", &s, None), None);
        assert_eq!(
            check(
                "!'a/../b'.startsWith('/') && !'a/../b'.matches('(^|/)[.][.](/|$)')",
                &s,
                None
            ),
            Some(false)
        );
    }
}
