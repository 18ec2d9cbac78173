//! A Job's `podFailurePolicy`: matching a failed pod against its rules
//! (follows pkg/controller/job/pod_failure_policy.go, matchPodFailurePolicy)
//! and the API validation of the policy (follows
//! pkg/apis/batch/validation/validation.go, validatePodFailurePolicy).

use crate::error::FieldError;
use serde_json::Value;

/// What a failed pod does to its Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched, or a `Count` rule: counts towards backoffLimit.
    Count,
    /// An `Ignore` rule: not counted, the pod is replaced.
    Ignore,
    /// A `FailJob` rule: the Job fails with this message.
    FailJob(String),
}

/// Most rules a policy may have (maxPodFailurePolicyRules).
pub const MAX_RULES: usize = 20;
/// Most values of an onExitCodes requirement (maxPodFailurePolicyOnExitCodesValues).
pub const MAX_EXIT_CODE_VALUES: usize = 255;
/// Most patterns of an onPodConditions rule (maxPodFailurePolicyOnPodConditionsPatterns).
pub const MAX_CONDITION_PATTERNS: usize = 20;

fn statuses(pod: &Value) -> impl Iterator<Item = &Value> {
    // Containers first, then init containers (matchOnExitCodes).
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["status"]["initContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten(),
        )
}

/// The first terminated, non-zero container status the requirement matches.
fn match_exit_codes<'a>(pod: &'a Value, req: &Value) -> Option<&'a Value> {
    let values: Vec<i64> = req["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    let name = req["containerName"].as_str();
    statuses(pod).find(|cs| {
        let Some(code) = cs["state"]["terminated"]["exitCode"].as_i64() else {
            return false;
        };
        if code == 0 || name.is_some_and(|n| cs["name"] != n) {
            return false;
        }
        match req["operator"].as_str() {
            Some("In") => values.contains(&code),
            Some("NotIn") => !values.contains(&code),
            _ => false,
        }
    })
}

fn match_conditions<'a>(pod: &'a Value, patterns: &[Value]) -> Option<&'a Value> {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            patterns.iter().any(|p| {
                c["type"] == p["type"] && c["status"] == p["status"].as_str().unwrap_or("True")
            })
        })
}

/// The verdict of `policy` (a Job's `spec.podFailurePolicy`) on a failed pod.
/// `FailIndex` needs `backoffLimitPerIndex` (Indexed Jobs, not modelled):
/// it counts like `Count`.
pub fn evaluate(policy: &Value, pod: &Value) -> Verdict {
    let (ns, name) = (
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or(""),
    );
    for (i, rule) in policy["rules"].as_array().into_iter().flatten().enumerate() {
        let action = rule["action"].as_str().unwrap_or("");
        let matched = if let Some(req) = rule.get("onExitCodes").filter(|v| !v.is_null()) {
            match_exit_codes(pod, req).map(|cs| {
                format!(
                    "Container {} for pod {ns}/{name} failed with exit code {} matching {action} rule at index {i}",
                    cs["name"].as_str().unwrap_or(""),
                    cs["state"]["terminated"]["exitCode"]
                )
            })
        } else if let Some(pats) = rule["onPodConditions"].as_array() {
            match_conditions(pod, pats).map(|c| {
                format!(
                    "Pod {ns}/{name} has condition {} matching {action} rule at index {i}",
                    c["type"].as_str().unwrap_or("")
                )
            })
        } else {
            None
        };
        if let Some(msg) = matched {
            match action {
                "Ignore" => return Verdict::Ignore,
                "FailJob" => return Verdict::FailJob(msg),
                "Count" | "FailIndex" => return Verdict::Count,
                _ => {}
            }
        }
    }
    Verdict::Count
}

/// Validation errors of `spec.podFailurePolicy` in a Job spec.
pub fn validate(spec: &Value) -> Vec<FieldError> {
    let Some(policy) = spec.get("podFailurePolicy").filter(|p| !p.is_null()) else {
        return vec![];
    };
    let mut errs = vec![];
    let restart = spec["template"]["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("");
    if restart != "Never" {
        errs.push(FieldError::invalid(
            "spec.template.spec.restartPolicy",
            &Value::String(restart.into()),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
    let rules = policy["rules"].as_array().cloned().unwrap_or_default();
    let path = "spec.podFailurePolicy.rules";
    if rules.len() > MAX_RULES {
        errs.push(FieldError::other(
            path,
            "FieldValueTooMany",
            format!(
                "Too many: {}: must have at most {MAX_RULES} items",
                rules.len()
            ),
        ));
    }
    let containers: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| {
            spec["template"]["spec"][k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
        })
        .collect();
    for (i, r) in rules.iter().enumerate() {
        let rp = format!("{path}[{i}]");
        let action = r["action"].as_str().unwrap_or("");
        match action {
            "" => errs.push(FieldError::required(&format!("{rp}.action"), "")),
            "Ignore" | "FailJob" | "Count" => {}
            "FailIndex" if !spec["backoffLimitPerIndex"].is_null() => {}
            "FailIndex" => errs.push(FieldError::invalid(
                &format!("{rp}.action"),
                &r["action"],
                "requires the backoffLimitPerIndex to be set",
            )),
            _ => errs.push(FieldError::other(
                &format!("{rp}.action"),
                "FieldValueNotSupported",
                format!("Unsupported value: \"{action}\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\""),
            )),
        }
        let codes = r.get("onExitCodes").filter(|v| !v.is_null());
        let conds = r.get("onPodConditions").filter(|v| !v.is_null());
        match (codes, conds) {
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                &rp,
                &Value::String(String::new()),
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (None, None) => errs.push(FieldError::invalid(
                &rp,
                &Value::String(String::new()),
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            (Some(req), None) => errs.extend(validate_exit_codes(req, &rp, &containers)),
            (None, Some(pats)) => {
                let pats = pats.as_array().cloned().unwrap_or_default();
                if pats.len() > MAX_CONDITION_PATTERNS {
                    errs.push(FieldError::other(
                        &format!("{rp}.onPodConditions"),
                        "FieldValueTooMany",
                        format!(
                            "Too many: {}: must have at most {MAX_CONDITION_PATTERNS} items",
                            pats.len()
                        ),
                    ));
                }
                for (j, p) in pats.iter().enumerate() {
                    let pp = format!("{rp}.onPodConditions[{j}]");
                    if p["type"].as_str().unwrap_or("").is_empty() {
                        errs.push(FieldError::required(&format!("{pp}.type"), ""));
                    }
                    let st = p["status"].as_str().unwrap_or("");
                    if !matches!(st, "True" | "False" | "Unknown") {
                        errs.push(FieldError::other(
                            &format!("{pp}.status"),
                            "FieldValueNotSupported",
                            format!("Unsupported value: \"{st}\": supported values: \"False\", \"True\", \"Unknown\""),
                        ));
                    }
                }
            }
        }
    }
    errs
}

fn validate_exit_codes(req: &Value, rp: &str, containers: &[&str]) -> Vec<FieldError> {
    let mut errs = vec![];
    let p = format!("{rp}.onExitCodes");
    if let Some(n) = req["containerName"].as_str() {
        if !containers.contains(&n) {
            errs.push(FieldError::invalid(
                &format!("{p}.containerName"),
                &req["containerName"],
                "must be one of the container or initContainer names in the pod template",
            ));
        }
    }
    let op = req["operator"].as_str().unwrap_or("");
    if !matches!(op, "In" | "NotIn") {
        errs.push(FieldError::other(
            &format!("{p}.operator"),
            "FieldValueNotSupported",
            format!("Unsupported value: \"{op}\": supported values: \"In\", \"NotIn\""),
        ));
    }
    let values: Vec<&Value> = req["values"].as_array().into_iter().flatten().collect();
    if values.is_empty() {
        errs.push(FieldError::required(
            &format!("{p}.values"),
            "at least one value is required",
        ));
    }
    if values.len() > MAX_EXIT_CODE_VALUES {
        errs.push(FieldError::other(
            &format!("{p}.values"),
            "FieldValueTooMany",
            format!(
                "Too many: {}: must have at most {MAX_EXIT_CODE_VALUES} items",
                values.len()
            ),
        ));
    }
    let mut prev: Option<i64> = None;
    for (k, v) in values.iter().enumerate() {
        let vp = format!("{p}.values[{k}]");
        let Some(n) = v.as_i64() else {
            errs.push(FieldError::invalid(&vp, v, "must be an integer"));
            continue;
        };
        if op == "In" && n == 0 {
            errs.push(FieldError::invalid(
                &vp,
                v,
                "must not be 0 for the In operator",
            ));
        }
        if prev == Some(n) {
            errs.push(FieldError::other(
                &vp,
                "FieldValueDuplicate",
                format!("Duplicate value: {n}"),
            ));
        } else if prev.is_some_and(|q| q > n) {
            errs.push(FieldError::invalid(&vp, v, "must be ordered"));
        }
        prev = Some(n);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed(code: i64, conds: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Failed", "conditions": conds,
            "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": code}}}]}})
    }

    #[test]
    fn rules_in_order() {
        let policy = json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]});
        let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(evaluate(&policy, &failed(42, disrupted)), Verdict::Ignore);
        assert_eq!(
            evaluate(&policy, &failed(42, json!([]))),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        assert_eq!(evaluate(&policy, &failed(1, json!([]))), Verdict::Count);
    }

    #[test]
    fn validation() {
        let spec = json!({"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main"}]}},
        "podFailurePolicy": {"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [0, 2, 2]}},
            {"action": "Ignore"},
        ]}});
        let errs: Vec<String> = validate(&spec).iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(errs.len(), 5, "{errs:?}");
    }
}
