//! Validation of built-in objects as the real API server does it, for the
//! fields the operator and its users touch. Each module cites the upstream
//! file it follows; the messages are apimachinery's field.Error texts
//! (staging/src/k8s.io/apimachinery/pkg/util/validation/field/errors.go).

pub mod apps;
pub mod event;
pub mod job;
pub mod meta;
pub mod pod;
pub mod quantity;

use crate::error::{go_value, FieldError};
use crate::resources::ResDef;
use serde_json::Value;

/// Validation of a built-in object on create or update (`old` set), after
/// defaulting. Custom resources are validated by their schema instead.
pub fn validate(def: &ResDef, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    if def.is_crd {
        return vec![];
    }
    let mut errs = meta::validate_object_meta(def, obj);
    match (def.storage_group.as_str(), def.plural.as_str()) {
        ("", "pods") => errs.extend(pod::validate_pod_spec(&obj["spec"], "spec")),
        ("batch", "jobs") => errs.extend(job::validate_job(obj, old.is_none())),
        ("apps", "deployments" | "replicasets") => errs.extend(apps::validate(obj)),
        _ => {}
    }
    errs
}

/// field.NotSupported: `Unsupported value: "x": supported values: "a", "b"`.
pub fn not_supported(path: &str, value: &Value, valid: &[&str]) -> FieldError {
    let quoted: Vec<String> = valid.iter().map(|v| format!("{v:?}")).collect();
    FieldError::other(
        path,
        "FieldValueNotSupported",
        format!(
            "Unsupported value: {}: supported values: {}",
            go_value(value),
            quoted.join(", ")
        ),
    )
}

/// field.Duplicate.
pub fn duplicate(path: &str, value: &Value) -> FieldError {
    FieldError::other(
        path,
        "FieldValueDuplicate",
        format!("Duplicate value: {}", go_value(value)),
    )
}

/// field.NotFound.
pub fn not_found(path: &str, value: &Value) -> FieldError {
    FieldError::other(
        path,
        "FieldValueNotFound",
        format!("Not found: {}", go_value(value)),
    )
}

/// field.TooMany.
pub fn too_many(path: &str, actual: usize, max: usize) -> FieldError {
    FieldError::other(
        path,
        "FieldValueTooMany",
        format!("Too many: {actual}: must have at most {max} items"),
    )
}

/// field.TooLong (the value is not printed).
pub fn too_long(path: &str, max: usize) -> FieldError {
    FieldError::other(
        path,
        "FieldValueTooLong",
        format!("Too long: may not be more than {max} bytes"),
    )
}

/// field.Forbidden.
pub fn forbidden(path: &str, detail: &str) -> FieldError {
    FieldError::other(path, "FieldValueForbidden", format!("Forbidden: {detail}"))
}

/// field.Invalid with field.OmitValueType{}: the value is not printed.
pub fn invalid_omit(path: &str, detail: &str) -> FieldError {
    FieldError::other(
        path,
        "FieldValueInvalid",
        format!("Invalid value: {detail}"),
    )
}

/// ValidateNonnegativeField (pkg/apis/core/validation/validation.go).
pub fn nonnegative(v: &Value, path: &str) -> Option<FieldError> {
    v.as_i64()
        .filter(|n| *n < 0)
        .map(|_| FieldError::invalid(path, v, IS_NEGATIVE))
}

pub const IS_NEGATIVE: &str = "must be greater than or equal to 0";

pub fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
