//! Job validation.
//!
//! Follows pkg/apis/batch/validation/validation.go: ValidateJob,
//! validateGeneratedSelector, ValidateJobSpec/validateJobSpec (non-negative
//! counts, completionMode, podReplacementPolicy, the template's
//! restartPolicy), validatePodFailurePolicy and its rule checks.

use super::{duplicate, invalid_omit, nonnegative, not_supported, str_of, too_many};
use crate::error::FieldError;
use crate::selectors::LabelSelector;
use serde_json::{json, Value};
use std::collections::HashSet;

const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
const MAX_ON_EXIT_CODES_VALUES: usize = 255;
const MAX_ON_POD_CONDITIONS_PATTERNS: usize = 20;
/// sets.List order (sorted), as upstream prints them.
const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
const EXIT_CODE_OPERATORS: [&str; 2] = ["In", "NotIn"];
const CONDITION_STATUSES: [&str; 3] = ["False", "True", "Unknown"];

/// `["a" "b"]`, Go's %q of a string slice.
fn go_list(vs: &[&str]) -> String {
    let q: Vec<String> = vs.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", q.join(" "))
}

/// Go's %#v of a []int32, as field.Invalid prints it.
fn go_int32s(vs: &[i64]) -> String {
    let items: Vec<String> = vs.iter().map(i64::to_string).collect();
    format!("[]int32{{{}}}", items.join(", "))
}

pub fn validate_job(job: &Value, _create: bool) -> Vec<FieldError> {
    let spec = &job["spec"];
    let mut errs = vec![];
    errs.extend(validate_generated_selector(job));
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        errs.extend(nonnegative(&spec[f], &format!("spec.{f}")));
    }
    let cm = &spec["completionMode"];
    if !cm.is_null() && !matches!(str_of(cm), "NonIndexed" | "Indexed") {
        errs.push(not_supported(
            "spec.completionMode",
            cm,
            &["NonIndexed", "Indexed"],
        ));
    }
    let pfp = &spec["podFailurePolicy"];
    if !pfp.is_null() {
        errs.extend(validate_pod_failure_policy(spec, "spec.podFailurePolicy"));
    }
    let prp = &spec["podReplacementPolicy"];
    if !prp.is_null() {
        if !pfp.is_null() {
            if str_of(prp) != "Failed" {
                errs.push(not_supported("spec.podReplacementPolicy", prp, &["Failed"]));
            }
        } else if !matches!(str_of(prp), "Failed" | "TerminatingOrFailed") {
            errs.push(not_supported(
                "spec.podReplacementPolicy",
                prp,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let tmpl = &spec["template"];
    errs.extend(super::meta::validate_labels(
        &tmpl["metadata"]["labels"],
        "spec.template.labels",
    ));
    errs.extend(super::meta::validate_annotations(
        &tmpl["metadata"]["annotations"],
        "spec.template.annotations",
    ));
    errs.extend(super::pod::validate_pod_spec(
        &tmpl["spec"],
        "spec.template.spec",
    ));
    // The template's restartPolicy: defaulted to Always when unset, so
    // Always and "" are both "Required".
    let rp = &tmpl["spec"]["restartPolicy"];
    let rp_path = "spec.template.spec.restartPolicy";
    match str_of(rp) {
        "Always" | "" => errs.push(FieldError::required(
            rp_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {
            if !pfp.is_null() && str_of(rp) != "Never" {
                errs.push(FieldError::invalid(
                    rp_path,
                    rp,
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        _ => errs.push(not_supported(rp_path, rp, &["OnFailure", "Never"])),
    }
    // Whether manual or generated, the selector must match the pods it makes.
    if spec["selector"].is_null() {
        errs.push(FieldError::required("spec.selector", ""));
    } else if !LabelSelector::from_object(&spec["selector"])
        .matches_labels(&tmpl["metadata"]["labels"])
    {
        {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                &tmpl["metadata"]["labels"],
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs
}

/// validateGeneratedSelector: without manualSelector, the template carries
/// the generated labels and the selector is the generated one.
fn validate_generated_selector(job: &Value) -> Vec<FieldError> {
    let spec = &job["spec"];
    if spec["manualSelector"] == json!(true) || spec["selector"].is_null() {
        return vec![];
    }
    let uid = str_of(&job["metadata"]["uid"]);
    let name = str_of(&job["metadata"]["name"]);
    let labels = &spec["template"]["metadata"]["labels"];
    let mut errs = vec![];
    for (k, want) in [
        ("controller-uid", uid),
        ("job-name", name),
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
    ] {
        // ValidateHasLabel: the detail is the expected value.
        let p = format!("spec.template.metadata.labels[{k}]");
        match labels[k].as_str() {
            None => errs.push(FieldError::required(&p, want)),
            Some(v) if v != want => errs.push(FieldError::invalid(&p, labels, want)),
            _ => {}
        }
    }
    let expected = json!({"controller-uid": uid, "job-name": name,
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name});
    {
        if !LabelSelector::from_object(&spec["selector"]).matches_labels(&expected) {
            errs.push(FieldError::invalid(
                "spec.selector",
                &spec["selector"],
                "`selector` not auto-generated",
            ));
        }
    }
    errs
}

fn validate_pod_failure_policy(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    let rules = spec["podFailurePolicy"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rules_path = format!("{path}.rules");
    if rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        errs.push(too_many(
            &rules_path,
            rules.len(),
            MAX_POD_FAILURE_POLICY_RULES,
        ));
    }
    let tspec = &spec["template"]["spec"];
    let containers: HashSet<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| tspec[*k].as_array().into_iter().flatten())
        .map(|c| str_of(&c["name"]))
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{rules_path}[{i}]");
        let action = &rule["action"];
        match str_of(action) {
            "" => errs.push(FieldError::required(
                &format!("{rp}.action"),
                &format!("valid values: {}", go_list(&ACTIONS)),
            )),
            "FailIndex" if spec["backoffLimitPerIndex"].is_null() => {
                errs.push(FieldError::invalid(
                    &format!("{rp}.action"),
                    action,
                    "requires the backoffLimitPerIndex to be set",
                ))
            }
            a if !ACTIONS.contains(&a) => {
                errs.push(not_supported(&format!("{rp}.action"), action, &ACTIONS))
            }
            _ => {}
        }
        let oec = &rule["onExitCodes"];
        let opc = rule["onPodConditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !oec.is_null() {
            errs.extend(validate_on_exit_codes(
                oec,
                &format!("{rp}.onExitCodes"),
                &containers,
            ));
        }
        if !opc.is_empty() {
            let pp = format!("{rp}.onPodConditions");
            if opc.len() > MAX_ON_POD_CONDITIONS_PATTERNS {
                errs.push(too_many(&pp, opc.len(), MAX_ON_POD_CONDITIONS_PATTERNS));
            }
            for (j, pat) in opc.iter().enumerate() {
                let t = str_of(&pat["type"]);
                errs.extend(super::meta::each(
                    &format!("{pp}[{j}].type"),
                    t,
                    super::meta::is_qualified_name(t),
                ));
                let st = &pat["status"];
                let sp = format!("{pp}[{j}].status");
                match str_of(st) {
                    "" => errs.push(FieldError::required(
                        &sp,
                        &format!("valid values: {}", go_list(&CONDITION_STATUSES)),
                    )),
                    s if !CONDITION_STATUSES.contains(&s) => {
                        errs.push(not_supported(&sp, st, &CONDITION_STATUSES))
                    }
                    _ => {}
                }
            }
        }
        if !oec.is_null() && !opc.is_empty() {
            errs.push(invalid_omit(
                &rp,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            ));
        }
        if oec.is_null() && opc.is_empty() {
            errs.push(invalid_omit(
                &rp,
                "specifying one of OnExitCodes and OnPodConditions is required",
            ));
        }
    }
    errs
}

fn validate_on_exit_codes(oec: &Value, path: &str, containers: &HashSet<&str>) -> Vec<FieldError> {
    let mut errs = vec![];
    let op = &oec["operator"];
    let op_path = format!("{path}.operator");
    match str_of(op) {
        "" => errs.push(FieldError::required(
            &op_path,
            &format!("valid values: {}", go_list(&EXIT_CODE_OPERATORS)),
        )),
        o if !EXIT_CODE_OPERATORS.contains(&o) => {
            errs.push(not_supported(&op_path, op, &EXIT_CODE_OPERATORS))
        }
        _ => {}
    }
    if let Some(c) = oec["containerName"].as_str() {
        if !containers.contains(c) {
            errs.push(FieldError::invalid(
                &format!("{path}.containerName"),
                &json!(c),
                "must be one of the container or initContainer names in the pod template",
            ));
        }
    }
    let values: Vec<i64> = oec["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    let vp = format!("{path}.values");
    if values.is_empty() {
        errs.push(FieldError::other(
            &vp,
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: at least one value is required",
                go_int32s(&values)
            ),
        ));
    } else if values.len() > MAX_ON_EXIT_CODES_VALUES {
        errs.push(too_many(&vp, values.len(), MAX_ON_EXIT_CODES_VALUES));
    }
    let mut seen = HashSet::new();
    let mut ordered = true;
    for (j, v) in values.iter().enumerate() {
        let p = format!("{vp}[{j}]");
        if str_of(op) == "In" && *v == 0 {
            errs.push(FieldError::invalid(
                &p,
                &json!(v),
                "must not be 0 for the In operator",
            ));
        }
        if !seen.insert(*v) {
            errs.push(duplicate(&p, &json!(v)));
        }
        if j > 0 && values[j - 1] > *v {
            ordered = false;
        }
    }
    if !ordered {
        errs.push(FieldError::other(
            &vp,
            "FieldValueInvalid",
            format!("Invalid value: {}: must be ordered", go_int32s(&values)),
        ));
    }
    errs
}
