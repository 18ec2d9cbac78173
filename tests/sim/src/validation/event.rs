//! Event validation, on the request object before the store's core/v1
//! compatibility fields are filled in.
//!
//! Follows pkg/apis/core/validation/events.go: legacyValidateEvent applies
//! to every request version (the note/message limit of 1024, reason, action
//! and reportingInstance limits only for events with eventTime set, i.e.
//! "new" events, whichever API they are posted through); ValidateEventCreate
//! adds the strict rules (name, eventTime, type, deprecated fields unset,
//! series) for requests through events.k8s.io only. Field paths are the
//! core/v1 names (`message`, `involvedObject`) except where upstream names
//! the events.k8s.io field.

use super::meta::{each, is_dns1123_subdomain, is_qualified_name};
use super::str_of;
use crate::error::FieldError;
use serde_json::{json, Value};

pub const NOTE_LENGTH_LIMIT: usize = 1024;
pub const REASON_LENGTH_LIMIT: usize = 128;
pub const ACTION_LENGTH_LIMIT: usize = 128;
pub const REPORTING_INSTANCE_LENGTH_LIMIT: usize = 128;

fn set(v: &Value) -> bool {
    !v.is_null() && v != &json!("")
}

/// `e` is in the stored core/v1 shape (events.k8s.io fields renamed);
/// `events_api` tells whether the request came through events.k8s.io.
pub fn validate_create(e: &Value, events_api: bool) -> Vec<FieldError> {
    let mut errs = legacy(e, events_api);
    if !events_api {
        return errs;
    }
    let name = str_of(&e["metadata"]["name"]);
    errs.extend(each("metadata.name", name, is_dns1123_subdomain(name)));
    if !e["series"].is_null() {
        if e["series"]["count"].as_i64().unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                &json!(""),
                "should be at least 2",
            ));
        }
        if !set(&e["series"]["lastObservedTime"]) {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    if !set(&e["eventTime"]) {
        errs.push(FieldError::required("eventTime", ""));
    }
    let t = str_of(&e["type"]);
    if t != "Normal" && t != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            &json!(""),
            &format!("has invalid value: {t}"),
        ));
    }
    for (f, shown) in [
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
    ] {
        if set(&e[f]) {
            errs.push(FieldError::invalid(shown, &json!(""), "needs to be unset"));
        }
    }
    if e["count"].as_i64().unwrap_or(0) != 0 {
        errs.push(FieldError::invalid(
            "deprecatedCount",
            &json!(""),
            "needs to be unset",
        ));
    }
    if set(&e["source"]["component"]) || set(&e["source"]["host"]) {
        errs.push(FieldError::invalid(
            "deprecatedSource",
            &json!(""),
            "needs to be unset",
        ));
    }
    errs
}

/// ValidateEventUpdate's legacy part, which applies to every request
/// version (the immutable-field checks of events.k8s.io are not modelled).
pub fn validate_update(e: &Value, events_api: bool) -> Vec<FieldError> {
    legacy(e, events_api)
}

fn legacy(e: &Value, events_api: bool) -> Vec<FieldError> {
    let mut errs = vec![];
    let ns = str_of(&e["metadata"]["namespace"]);
    let inv_ns = str_of(&e["involvedObject"]["namespace"]);
    let mismatch = |errs: &mut Vec<FieldError>| {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            &json!(inv_ns),
            "does not match event.namespace",
        ))
    };
    if !set(&e["eventTime"]) {
        if inv_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                mismatch(&mut errs);
            }
        } else if ns != inv_ns {
            mismatch(&mut errs);
        }
    } else {
        if inv_ns.is_empty() && ns != "default" && ns != "kube-system" {
            mismatch(&mut errs);
        }
        let rc_field = if events_api {
            "reportingController"
        } else {
            "reportingComponent"
        };
        let rc = str_of(&e["reportingComponent"]);
        if rc.is_empty() {
            errs.push(FieldError::required(rc_field, ""));
        }
        errs.extend(each(rc_field, rc, is_qualified_name(rc)));
        let limits = [
            ("reportingInstance", REPORTING_INSTANCE_LENGTH_LIMIT, true),
            ("action", ACTION_LENGTH_LIMIT, true),
            ("reason", REASON_LENGTH_LIMIT, true),
            ("message", NOTE_LENGTH_LIMIT, false),
        ];
        for (f, max, required) in limits {
            let v = str_of(&e[f]);
            if required && v.is_empty() {
                errs.push(FieldError::required(f, ""));
            }
            if v.len() > max {
                errs.push(FieldError::invalid(
                    f,
                    &json!(""),
                    &format!("can have at most {max} characters"),
                ));
            }
        }
    }
    errs.extend(each("namespace", ns, is_dns1123_subdomain(ns)));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_event(note: &str) -> Value {
        json!({"metadata": {"name": "x.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "eventTime": "2025-01-01T00:00:00.000000Z", "type": "Normal",
            "reportingComponent": "multiarch-operator", "reportingInstance": "i",
            "action": "Build", "reason": "Started", "message": note})
    }

    #[test]
    fn note_over_1024_bytes_is_refused_for_new_events() {
        assert!(validate_create(&new_event("ok"), true).is_empty());
        let errs = validate_create(&new_event(&"x".repeat(1025)), true);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "message: Invalid value: \"\": can have at most 1024 characters"
        );
        // Old-style core/v1 events (no eventTime) have no length limits.
        let mut old = new_event(&"x".repeat(2000));
        old["eventTime"] = Value::Null;
        assert!(validate_create(&old, false).is_empty());
        assert_eq!(
            validate_update(&new_event(&"x".repeat(1025)), true).len(),
            1
        );
    }
}
