//! `x-kubernetes-validations` (CEL) rules: see README for what is evaluated.

use crate::error::FieldError;
use serde_json::Value;

pub fn validate(_obj: &Value, _old: Option<&Value>, _schema: &Value) -> Vec<FieldError> {
    vec![]
}
