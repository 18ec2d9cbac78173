//! The API server's pod rules for the fields a user sets on the build pod
//! (`spec.tolerations`, `spec.resources`), so `render` refuses offline, and
//! the controller before applying a Job, what the server would refuse.
//! Follows pkg/apis/core/validation/validation.go (ValidateTolerations,
//! validateTaintEffect, ValidateResourceRequirements,
//! ValidateResourceQuantityValue, validateContainerResourceName) and
//! pkg/apis/core/helper/helpers.go (IsNativeResource, IsExtendedResourceName,
//! IsHugePageResourceName, IsOvercommitAllowed). Each error names the spec
//! field to fix.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::quantity::{self, Quantity};
use super::{valid_label_key, valid_label_value, Report};
use crate::api;

/// The toleration operators (core.TolerationOperator).
const TOLERATION_OPERATORS: [&str; 2] = ["Equal", "Exists"];
/// The taint effects a toleration may name (validateTaintEffect).
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
/// The only effect `tolerationSeconds` applies to.
const NO_EXECUTE: &str = "NoExecute";
/// Container resources without a domain (IsStandardContainerResourceName).
const STANDARD_CONTAINER_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
/// The resources a hugepages resource needs beside it (HugePages require cpu or memory).
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];
const HUGEPAGES_PREFIX: &str = "hugepages-";
/// A domain that makes a resource name native (IsNativeResource).
const NATIVE_DOMAIN: &str = "kubernetes.io/";
/// Extended resource names must make a valid quota name with this prefix.
const QUOTA_REQUESTS_PREFIX: &str = "requests.";

/// ValidateTolerations, one rule a function, each at `spec.tolerations[i]`.
pub(super) fn check_tolerations(tolerations: &[Toleration], report: &mut Report) {
    for (i, toleration) in tolerations.iter().enumerate() {
        let field = format!("spec.tolerations[{i}]");
        toleration_key(toleration, &field, report);
        toleration_empty_key(toleration, &field, report);
        toleration_seconds(toleration, &field, report);
        toleration_operator_and_value(toleration, &field, report);
        toleration_effect(toleration, &field, report);
    }
}

/// A key, when set, is a qualified name (a label key).
fn toleration_key(t: &Toleration, field: &str, report: &mut Report) {
    match t.key.as_deref() {
        Some(key) if !key.is_empty() && !valid_label_key(key) => report(
            &format!("{field}.key"),
            format!("{key:?} is not a valid qualified name (an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"),
        ),
        _ => {}
    }
}

/// An empty key matches every taint, which only `Exists` can say.
fn toleration_empty_key(t: &Toleration, field: &str, report: &mut Report) {
    if t.key.as_deref().unwrap_or("").is_empty() && t.operator.as_deref() != Some("Exists") {
        report(
            &format!("{field}.operator"),
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"".into(),
        );
    }
}

/// `tolerationSeconds` bounds an eviction, so only NoExecute may have it.
fn toleration_seconds(t: &Toleration, field: &str, report: &mut Report) {
    if t.toleration_seconds.is_some() && t.effect.as_deref() != Some(NO_EXECUTE) {
        report(
            &format!("{field}.effect"),
            "effect must be 'NoExecute' when `tolerationSeconds` is set".into(),
        );
    }
}

/// Equal (the default) compares a label value; Exists takes no value.
/// Upstream reports both value errors at `.operator`; the field to fix is
/// the value, so it is named here.
fn toleration_operator_and_value(t: &Toleration, field: &str, report: &mut Report) {
    let value = t.value.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" if !valid_label_value(value) => report(
            &format!("{field}.value"),
            format!("{value:?} is not a valid label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"),
        ),
        "Exists" if !value.is_empty() => report(
            &format!("{field}.value"),
            "value must be empty when `operator` is 'Exists'".into(),
        ),
        "" | "Equal" | "Exists" => {}
        other => report(
            &format!("{field}.operator"),
            format!(
                "Unsupported value: {other:?}: supported values: {}",
                quoted(&TOLERATION_OPERATORS)
            ),
        ),
    }
}

/// An effect, when set, is one of the taint effects.
fn toleration_effect(t: &Toleration, field: &str, report: &mut Report) {
    match t.effect.as_deref() {
        Some(effect) if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) => report(
            &format!("{field}.effect"),
            format!(
                "Unsupported value: {effect:?}: supported values: {}",
                quoted(&TAINT_EFFECTS)
            ),
        ),
        _ => {}
    }
}

fn quoted(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    quoted.join(", ")
}

/// ValidateResourceRequirements for the build container, at `spec.resources`.
pub(super) fn check_resources(resources: &ResourceRequirements, report: &mut Report) {
    let empty = BTreeMap::new();
    let limits = resources.limits.as_ref().unwrap_or(&empty);
    let requests = resources.requests.as_ref().unwrap_or(&empty);
    for (path, list) in [
        ("spec.resources.limits", limits),
        ("spec.resources.requests", requests),
    ] {
        if list.len() > api::MAX_RESOURCES_ENTRIES {
            report(
                path,
                format!(
                    "has {} entries; at most {}",
                    list.len(),
                    api::MAX_RESOURCES_ENTRIES
                ),
            );
            return;
        }
    }
    let limits_parsed = quantities(limits, "spec.resources.limits", report);
    let requests_parsed = quantities(requests, "spec.resources.requests", report);
    for (name, request) in &requests_parsed {
        let field = format!("spec.resources.requests.{name}");
        match limits_parsed.get(name) {
            Some(limit) => {
                let limit_text = limits.get(*name).map_or("", |q| q.0.as_str());
                request_within_limit(name, request, (limit, limit_text), &field, report)
            }
            None if !overcommit_allowed(name) => report(
                "spec.resources.limits",
                format!("Limit must be set for non overcommitable resources ({name})"),
            ),
            None => {}
        }
    }
    hugepages_need_cpu_or_memory(limits, requests, report);
    if let Some(claims) = &resources.claims {
        no_resource_claims(claims, report);
    }
}

/// Each entry's name and quantity; the parsed ones are returned for the
/// request/limit comparison.
fn quantities<'a>(
    list: &'a BTreeMap<String, ApiQuantity>,
    path: &str,
    report: &mut Report,
) -> BTreeMap<&'a str, Quantity> {
    let mut parsed = BTreeMap::new();
    for (name, value) in list {
        let field = format!("{path}.{name}");
        resource_name(name, &field, report);
        match quantity::parse(&value.0) {
            Err(reason) => report(&field, format!("{:?}: {reason}", value.0)),
            Ok(q) => {
                quantity_value(name, &value.0, &q, &field, report);
                parsed.insert(name.as_str(), q);
            }
        }
    }
    parsed
}

/// validateContainerResourceName: a qualified name; without a domain, a
/// standard container resource; with a foreign domain, an extended resource.
fn resource_name(name: &str, field: &str, report: &mut Report) {
    if !valid_label_key(name) {
        report(field, format!("{name:?} is not a valid resource name"));
    } else if !name.contains('/') {
        if !STANDARD_CONTAINER_RESOURCES.contains(&name) && !name.starts_with(HUGEPAGES_PREFIX) {
            report(
                field,
                format!(
                    "{name:?} must be a standard resource for containers ({})",
                    STANDARD_CONTAINER_RESOURCES.join(", ")
                ),
            );
        }
    } else if !native(name) && !extended(name) {
        report(
            field,
            format!("{name:?} doesn't follow extended resource name standard"),
        );
    }
}

/// ValidateResourceQuantityValue: never negative; extended resources count
/// whole devices; hugepages come in whole pages.
fn quantity_value(name: &str, text: &str, q: &Quantity, field: &str, report: &mut Report) {
    if q.is_negative() {
        report(
            field,
            format!("{text:?} must be greater than or equal to 0"),
        );
    }
    if extended(name) && !q.is_integer() {
        report(field, format!("{text:?} must be an integer"));
    }
    if let Some(page) = name.strip_prefix(HUGEPAGES_PREFIX) {
        match quantity::parse(page) {
            Ok(size) if q.is_positive_multiple_of(&size) => {}
            _ => report(
                field,
                format!("{text:?} is not positive integer multiple of {name}"),
            ),
        }
    }
}

/// Requests never exceed limits; resources that cannot be overcommitted
/// (extended, hugepages) request exactly their limit.
fn request_within_limit(
    name: &str,
    request: &Quantity,
    (limit, limit_text): (&Quantity, &str),
    field: &str,
    report: &mut Report,
) {
    let order = request.compare(limit);
    if !overcommit_allowed(name) && order.is_ne() {
        report(
            field,
            format!("must be equal to {name} limit of {limit_text}"),
        );
    } else if order.is_gt() {
        report(
            field,
            format!("must be less than or equal to {name} limit of {limit_text}"),
        );
    }
}

fn hugepages_need_cpu_or_memory(
    limits: &BTreeMap<String, ApiQuantity>,
    requests: &BTreeMap<String, ApiQuantity>,
    report: &mut Report,
) {
    let names = || limits.keys().chain(requests.keys());
    let hugepages = names().any(|n| n.starts_with(HUGEPAGES_PREFIX));
    if hugepages && !names().any(|n| QOS_RESOURCES.contains(&n.as_str())) {
        report("spec.resources", "HugePages require cpu or memory".into());
    }
}

/// A claim must name one of the pod's resourceClaims, and build pods have none.
fn no_resource_claims(claims: &[k8s_openapi::api::core::v1::ResourceClaim], report: &mut Report) {
    for (i, claim) in claims.iter().enumerate() {
        let field = format!("spec.resources.claims[{i}]");
        if claim.name.is_empty() {
            report(&field, "a name is required".into());
        } else {
            report(
                &field,
                format!(
                    "{:?} must be one of the names in pod.spec.resourceClaims which is empty (build pods claim no devices)",
                    claim.name
                ),
            );
        }
    }
}

/// IsNativeResource: no domain, or a kubernetes.io one.
fn native(name: &str) -> bool {
    !name.contains('/') || name.contains(NATIVE_DOMAIN)
}

/// IsExtendedResourceName: a foreign domain, and a valid quota name too.
fn extended(name: &str) -> bool {
    !native(name)
        && !name.starts_with(QUOTA_REQUESTS_PREFIX)
        && valid_label_key(&format!("{QUOTA_REQUESTS_PREFIX}{name}"))
}

/// IsOvercommitAllowed: native resources other than hugepages.
fn overcommit_allowed(name: &str) -> bool {
    native(name) && !name.starts_with(HUGEPAGES_PREFIX)
}
