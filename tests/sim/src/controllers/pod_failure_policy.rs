//! A Job's `podFailurePolicy`: matching a failed pod against its rules
//! (follows pkg/controller/job/pod_failure_policy.go, matchPodFailurePolicy).
//! The API validates the policy in `validation/job.rs`.

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
}
