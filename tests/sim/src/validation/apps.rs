//! Deployment and ReplicaSet validation.
//!
//! Follows pkg/apis/apps/validation/validation.go: ValidateDeploymentSpec /
//! ValidateReplicaSetSpec (non-negative replicas, a required non-empty
//! selector that matches the template's labels, the template's pod spec
//! with restartPolicy Always), ValidateDeploymentStrategy and
//! ValidateRollingUpdateDeployment (maxSurge and maxUnavailable not both 0,
//! maxUnavailable at most 100%), and the immutable selector of apps/v1.

use super::{nonnegative, not_supported, str_of};
use crate::error::FieldError;
use crate::selectors::LabelSelector;
use serde_json::Value;

/// IsNotMoreThan100Percent / ValidatePositiveIntOrPercent.
fn int_or_percent(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Option<i64> {
    match v {
        Value::Null => None,
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            errs.extend(nonnegative(v, path));
            Some(n)
        }
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => {
                if p < 0 {
                    errs.push(FieldError::invalid(path, v, super::IS_NEGATIVE));
                }
                Some(p)
            }
            None => {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                None
            }
        },
        _ => None,
    }
}

pub fn validate(obj: &Value) -> Vec<FieldError> {
    let spec = &obj["spec"];
    let mut errs = vec![];
    errs.extend(nonnegative(&spec["replicas"], "spec.replicas"));
    errs.extend(nonnegative(
        &spec["minReadySeconds"],
        "spec.minReadySeconds",
    ));
    let sel = &spec["selector"];
    let empty = sel["matchLabels"].as_object().is_none_or(|m| m.is_empty())
        && sel["matchExpressions"]
            .as_array()
            .is_none_or(|a| a.is_empty());
    if sel.is_null() {
        errs.push(FieldError::required("spec.selector", ""));
    } else if empty {
        errs.push(FieldError::invalid(
            "spec.selector",
            sel,
            "empty selector is invalid for deployment",
        ));
    } else {
        let labels = &spec["template"]["metadata"]["labels"];
        if !LabelSelector::from_object(sel).matches_labels(labels) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            ));
        }
    }
    let tmpl = &spec["template"];
    errs.extend(super::meta::validate_labels(
        &tmpl["metadata"]["labels"],
        "spec.template.labels",
    ));
    errs.extend(super::pod::validate_pod_spec(
        &tmpl["spec"],
        "spec.template.spec",
    ));
    let rp = &tmpl["spec"]["restartPolicy"];
    if str_of(rp) != "Always" {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            &["Always"],
        ));
    }
    let strategy = &spec["strategy"];
    if !strategy.is_null() {
        match str_of(&strategy["type"]) {
            "Recreate" => {
                if !strategy["rollingUpdate"].is_null() {
                    errs.push(super::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => {
                let ru = &strategy["rollingUpdate"];
                let p = "spec.strategy.rollingUpdate";
                let unavailable = int_or_percent(
                    &ru["maxUnavailable"],
                    &format!("{p}.maxUnavailable"),
                    &mut errs,
                );
                let surge = int_or_percent(&ru["maxSurge"], &format!("{p}.maxSurge"), &mut errs);
                if unavailable == Some(0) && surge == Some(0) {
                    errs.push(FieldError::invalid(
                        &format!("{p}.maxUnavailable"),
                        &ru["maxUnavailable"],
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                if ru["maxUnavailable"].as_str().is_some() && unavailable.is_some_and(|u| u > 100) {
                    errs.push(FieldError::invalid(
                        &format!("{p}.maxUnavailable"),
                        &ru["maxUnavailable"],
                        "must not be greater than 100%",
                    ));
                }
            }
            _ => errs.push(not_supported(
                "spec.strategy.type",
                &strategy["type"],
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    errs
}

/// apps/v1 selectors are immutable (ValidateDeploymentUpdate,
/// ValidateReplicaSetUpdate).
pub fn selector_immutable(old: &Value, new: &Value) -> Vec<FieldError> {
    if old["spec"]["selector"] != new["spec"]["selector"] {
        return vec![FieldError::invalid(
            "spec.selector",
            &new["spec"]["selector"],
            "field is immutable",
        )];
    }
    vec![]
}
