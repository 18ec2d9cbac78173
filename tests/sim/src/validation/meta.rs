//! Names, labels, annotations and finalizers.
//!
//! Follows staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go
//! (IsDNS1123Label, IsDNS1123Subdomain, IsDNS1035Label, IsQualifiedName,
//! IsValidLabelValue, RegexError), staging/src/k8s.io/apimachinery/pkg/api/
//! validation/objectmeta.go (ValidateObjectMeta, ValidateAnnotations,
//! TotalAnnotationSizeLimitB) and staging/src/k8s.io/apimachinery/pkg/apis/
//! meta/v1/validation/validation.go (ValidateLabels), with the name rule of
//! each kind from pkg/apis/core/validation/validation.go (ValidateNamespaceName
//! is a DNS label, ValidateServiceName a DNS-1035 label, most others DNS
//! subdomains) and pkg/apis/rbac/validation (path-segment names).

use super::{str_of, too_long};
use crate::error::FieldError;
use crate::resources::ResDef;
use regex::Regex;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
pub const QUALIFIED_NAME_MAX: usize = 63;
pub const LABEL_VALUE_MAX: usize = 63;
/// TotalAnnotationSizeLimitB: keys plus values of all annotations.
pub const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn anchored(fmt: &str) -> Regex {
    Regex::new(&format!("^{fmt}$")).expect("validation regex")
}

fn re(which: usize) -> &'static Regex {
    static RES: OnceLock<[Regex; 4]> = OnceLock::new();
    &RES.get_or_init(|| {
        [
            anchored(DNS1123_LABEL_FMT),
            anchored(DNS1123_SUBDOMAIN_FMT),
            anchored(DNS1035_LABEL_FMT),
            anchored(QUALIFIED_NAME_FMT),
        ]
    })[which]
}

/// apimachinery's RegexError: `msg (e.g. 'a',  or 'b', regex used for validation is 'fmt')`.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s += " or ";
        }
        s += &format!("'{e}', ");
    }
    s + &format!("regex used for validation is '{fmt}')")
}

pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

pub fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !re(0).is_match(v) {
        errs.push(regex_error(
            DNS1123_LABEL_MSG,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

pub fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !re(1).is_match(v) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

pub fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !re(2).is_match(v) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

pub fn is_qualified_name(v: &str) -> Vec<String> {
    let mut errs = vec![];
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [n] => *n,
        [prefix, n] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *n
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !re(3).is_match(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

pub fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > LABEL_VALUE_MAX {
        errs.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !v.is_empty() && !re(3).is_match(v) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            &format!("({QUALIFIED_NAME_FMT})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// ValidatePathSegmentName (RBAC objects, which allow `system:` names).
fn is_path_segment_name(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v == "." || v == ".." {
        errs.push(format!("may not be '{v}'"));
    }
    for bad in ["/", "%"] {
        if v.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// Invalid errors for each message of a string check.
pub fn each(path: &str, v: &str, msgs: Vec<String>) -> Vec<FieldError> {
    msgs.into_iter()
        .map(|m| FieldError::invalid(path, &json!(v), &m))
        .collect()
}

/// ValidateLabels: qualified-name keys, label-syntax values.
pub fn validate_labels(labels: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    for (k, v) in labels.as_object().into_iter().flatten() {
        errs.extend(each(path, k, is_qualified_name(k)));
        errs.extend(each(path, str_of(v), is_valid_label_value(str_of(v))));
    }
    errs
}

/// ValidateAnnotations: case-insensitive qualified-name keys, 256 KiB in total.
pub fn validate_annotations(ann: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    let mut total = 0;
    for (k, v) in ann.as_object().into_iter().flatten() {
        errs.extend(each(path, k, is_qualified_name(&k.to_lowercase())));
        total += k.len() + str_of(v).len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE));
    }
    errs
}

/// ValidateFinalizerName: qualified, or one of the standard names.
fn validate_finalizers(fins: &Value, path: &str) -> Vec<FieldError> {
    const STANDARD: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];
    let mut errs = vec![];
    for f in fins.as_array().into_iter().flatten() {
        let f = str_of(f);
        let msgs = is_qualified_name(f);
        if !msgs.is_empty() {
            errs.extend(each(path, f, msgs));
        } else if !f.contains('/') && !STANDARD.contains(&f) {
            errs.push(FieldError::invalid(
                path,
                &json!(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// The name rule of a kind (the nameFn its Validate* passes to ValidateObjectMeta).
fn name_rule(def: &ResDef) -> fn(&str) -> Vec<String> {
    match (def.storage_group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => is_dns1123_label,
        ("", "services") => is_dns1035_label,
        ("rbac.authorization.k8s.io", _) => is_path_segment_name,
        _ => is_dns1123_subdomain,
    }
}

/// ValidateObjectMeta for built-in kinds (core/v1 Events have their own
/// legacy rules, see `event.rs`).
pub fn validate_object_meta(def: &ResDef, obj: &Value) -> Vec<FieldError> {
    if def.plural == "events" {
        return vec![];
    }
    let md = &obj["metadata"];
    let name = str_of(&md["name"]);
    let mut errs = each("metadata.name", name, name_rule(def)(name));
    if def.namespaced {
        let ns = str_of(&md["namespace"]);
        errs.extend(each("metadata.namespace", ns, is_dns1123_label(ns)));
    }
    errs.extend(validate_labels(&md["labels"], "metadata.labels"));
    errs.extend(validate_annotations(
        &md["annotations"],
        "metadata.annotations",
    ));
    errs.extend(validate_finalizers(
        &md["finalizers"],
        "metadata.finalizers",
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_label_message_is_apimachinerys() {
        assert_eq!(
            is_dns1123_label("Foo_1"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        assert!(is_dns1123_label(&"a".repeat(64))[0].contains("no more than 63"));
        assert!(is_dns1123_subdomain("a.b-c").is_empty());
    }

    #[test]
    fn qualified_names_take_one_prefix() {
        assert!(is_qualified_name("example.com/My_Name.1").is_empty());
        assert_eq!(
            is_qualified_name("/x"),
            vec!["prefix part must be non-empty"]
        );
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist"));
        assert!(is_qualified_name("-x")[0].starts_with("name part must consist"));
        assert!(is_valid_label_value("").is_empty());
        assert!(!is_valid_label_value("a b").is_empty());
    }
}
