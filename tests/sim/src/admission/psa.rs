//! Pod Security admission, enforce mode, from the namespace's
//! `pod-security.kubernetes.io/enforce` label (privileged, baseline,
//! restricted). Follows staging/src/k8s.io/pod-security-admission:
//! admission/admission.go (which requests are checked, the refusal text),
//! policy/registry.go (baseline checks, then restricted ones, each in file
//! order; hostPathVolumes and seccompProfile_baseline only at baseline) and
//! the policy/check_*.go files named at each check.

use super::{Operation, Request};
use crate::error::ApiResult;
use crate::store::Store;
use serde_json::Value;

pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

/// A failed check: ForbiddenReason and ForbiddenDetail.
type Violation = (String, String);

fn pluralize(one: &str, many: &str, n: usize) -> String {
    if n == 1 { one } else { many }.to_string()
}

fn join_quote(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

fn cname(c: &Value) -> String {
    c["name"].as_str().unwrap_or("").to_string()
}

fn bad_containers(spec: &Value, bad: impl Fn(&Value) -> bool) -> Vec<String> {
    containers(spec)
        .into_iter()
        .filter(|c| bad(c))
        .map(cname)
        .collect()
}

fn named(word: &str, names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize(word, &format!("{word}s"), names.len()),
        join_quote(names)
    )
}

/// check_privileged.go
fn privileged(spec: &Value) -> Option<Violation> {
    let bad = bad_containers(spec, |c| {
        c["securityContext"]["privileged"] == Value::Bool(true)
    });
    (!bad.is_empty()).then(|| {
        (
            "privileged".into(),
            format!(
                "{} must not set securityContext.privileged=true",
                named("container", &bad)
            ),
        )
    })
}

/// check_hostNamespaces.go
fn host_namespaces(spec: &Value) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| spec[**k] == Value::Bool(true))
        .map(|k| format!("{k}=true"))
        .collect();
    (!set.is_empty()).then(|| ("host namespaces".into(), set.join(", ")))
}

fn host_path_volumes_names(spec: &Value) -> Vec<String> {
    spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["hostPath"].is_object())
        .map(cname)
        .collect()
}

/// check_hostPathVolumes.go
fn host_path_volumes(spec: &Value) -> Option<Violation> {
    let bad = host_path_volumes_names(spec);
    (!bad.is_empty()).then(|| ("hostPath volumes".into(), named("volume", &bad)))
}

/// check_restrictedVolumes.go (of the volume types we serve, only hostPath is restricted).
fn restricted_volumes(spec: &Value) -> Option<Violation> {
    let bad = host_path_volumes_names(spec);
    (!bad.is_empty()).then(|| {
        let verb = if bad.len() == 1 {
            "uses restricted volume type"
        } else {
            "use restricted volume types"
        };
        (
            "restricted volume types".into(),
            format!("{} {verb} \"hostPath\"", named("volume", &bad)),
        )
    })
}

/// check_hostPorts.go
fn host_ports(spec: &Value) -> Option<Violation> {
    let mut bad = vec![];
    let mut ports = vec![];
    for c in containers(spec) {
        let mut found = false;
        for p in c["ports"].as_array().into_iter().flatten() {
            if let Some(h) = p["hostPort"].as_i64().filter(|h| *h != 0) {
                found = true;
                ports.push(h.to_string());
            }
        }
        if found {
            bad.push(cname(c));
        }
    }
    (!bad.is_empty()).then(|| {
        (
            "hostPort".into(),
            format!(
                "{} {} {}",
                named("container", &bad),
                pluralize("uses hostPort", "use hostPorts", ports.len()),
                ports.join(", ")
            ),
        )
    })
}

/// The capabilities a container runtime grants by default (check_capabilities_baseline.go).
const DEFAULT_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added(c: &Value) -> Vec<String> {
    c["securityContext"]["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

/// check_capabilities_baseline.go
fn capabilities_baseline(spec: &Value) -> Option<Violation> {
    let mut bad = vec![];
    let mut caps = std::collections::BTreeSet::new();
    for c in containers(spec) {
        let extra: Vec<String> = added(c)
            .into_iter()
            .filter(|a| !DEFAULT_CAPABILITIES.contains(&a.as_str()))
            .collect();
        if !extra.is_empty() {
            bad.push(cname(c));
            caps.extend(extra);
        }
    }
    (!bad.is_empty()).then(|| {
        let caps: Vec<String> = caps.into_iter().collect();
        (
            "non-default capabilities".into(),
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                named("container", &bad),
                join_quote(&caps)
            ),
        )
    })
}

/// check_capabilities_restricted.go
fn capabilities_restricted(spec: &Value) -> Option<Violation> {
    let mut missing_drop = vec![];
    let mut adding = vec![];
    let mut caps = std::collections::BTreeSet::new();
    for c in containers(spec) {
        let drop_all = c["securityContext"]["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drop_all {
            missing_drop.push(cname(c));
        }
        let extra: Vec<String> = added(c)
            .into_iter()
            .filter(|a| a != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            adding.push(cname(c));
            caps.extend(extra);
        }
    }
    let mut details = vec![];
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            named("container", &missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            named("container", &adding),
            join_quote(&caps)
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities".into(), details.join("; ")))
}

/// check_allowPrivilegeEscalation.go
fn allow_privilege_escalation(spec: &Value) -> Option<Violation> {
    let bad = bad_containers(spec, |c| {
        c["securityContext"]["allowPrivilegeEscalation"] != Value::Bool(false)
    });
    (!bad.is_empty()).then(|| {
        (
            "allowPrivilegeEscalation != false".into(),
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                named("container", &bad)
            ),
        )
    })
}

/// A pod-level setting containers inherit unless they set their own:
/// (explicitly bad setters, containers left unset).
fn pod_or_container(
    spec: &Value,
    field: &str,
    ok: impl Fn(&Value) -> bool,
) -> (Vec<String>, Vec<String>, bool) {
    let mut setters = vec![];
    let mut pod_ok = false;
    let pod = &spec["securityContext"][field];
    if !pod.is_null() {
        if ok(pod) {
            pod_ok = true;
        } else {
            setters.push("pod".to_string());
        }
    }
    let mut explicit = vec![];
    let mut implicit = vec![];
    for c in containers(spec) {
        let v = &c["securityContext"][field];
        if !v.is_null() {
            if !ok(v) {
                explicit.push(cname(c));
            }
        } else if !pod_ok {
            implicit.push(cname(c));
        }
    }
    if !explicit.is_empty() {
        setters.push(named("container", &explicit));
    }
    (setters, implicit, pod_ok)
}

/// check_runAsNonRoot.go
fn run_as_non_root(spec: &Value) -> Option<Violation> {
    let (setters, implicit, _) =
        pod_or_container(spec, "runAsNonRoot", |v| v == &Value::Bool(true));
    let reason = "runAsNonRoot != true".to_string();
    if !setters.is_empty() {
        return Some((
            reason,
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        (
            reason,
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                named("container", &implicit)
            ),
        )
    })
}

/// check_runAsUser.go
fn run_as_user(spec: &Value) -> Option<Violation> {
    let mut setters = vec![];
    if spec["securityContext"]["runAsUser"] == 0 {
        setters.push("pod".to_string());
    }
    let bad = bad_containers(spec, |c| c["securityContext"]["runAsUser"] == 0);
    if !bad.is_empty() {
        setters.push(named("container", &bad));
    }
    (!setters.is_empty()).then(|| {
        (
            "runAsUser=0".into(),
            format!("{} must not set runAsUser=0", setters.join(" and ")),
        )
    })
}

fn profile_type(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

/// check_seccompProfile_baseline.go
fn seccomp_baseline(spec: &Value) -> Option<Violation> {
    let (setters, _, _) =
        pod_or_container(spec, "seccompProfile", |v| profile_type(v) != "Unconfined");
    (!setters.is_empty()).then(|| {
        (
            "seccompProfile".into(),
            format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                setters.join(" and ")
            ),
        )
    })
}

/// check_seccompProfile_restricted.go
fn seccomp_restricted(spec: &Value) -> Option<Violation> {
    let valid = |v: &Value| matches!(profile_type(v), "RuntimeDefault" | "Localhost");
    let mut bad_values = std::collections::BTreeSet::new();
    let pod = &spec["securityContext"]["seccompProfile"];
    if !pod.is_null() && !valid(pod) {
        bad_values.insert(profile_type(pod).to_string());
    }
    for c in containers(spec) {
        let v = &c["securityContext"]["seccompProfile"];
        if !v.is_null() && !valid(v) {
            bad_values.insert(profile_type(v).to_string());
        }
    }
    let (setters, implicit, _) = pod_or_container(spec, "seccompProfile", valid);
    if !setters.is_empty() {
        let vals: Vec<String> = bad_values.into_iter().collect();
        return Some((
            "seccompProfile".into(),
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&vals)
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        ("seccompProfile".into(), format!("pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"", named("container", &implicit)))
    })
}

/// check_appArmorProfile.go: the `appArmorProfile` fields and the beta
/// annotations may not ask for an unconfined profile.
fn app_armor(meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad: Vec<String> = meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or("");
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (!ok).then(|| format!("{k}={v:?}"))
        })
        .collect();
    let (setters, _, _) =
        pod_or_container(spec, "appArmorProfile", |v| profile_type(v) != "Unconfined");
    for s in setters {
        bad.push(format!(
            "{s} must not set securityContext.appArmorProfile.type to \"Unconfined\""
        ));
    }
    bad.sort();
    (!bad.is_empty()).then(|| {
        (
            pluralize(
                "forbidden AppArmor profile",
                "forbidden AppArmor profiles",
                bad.len(),
            ),
            bad.join(", "),
        )
    })
}

/// The failed checks of a pod at a level (registry.go EvaluatePod).
pub fn evaluate(level: Level, meta: &Value, spec: &Value) -> Vec<Violation> {
    if level == Level::Privileged {
        return vec![];
    }
    let mut results = vec![
        app_armor(meta, spec),
        capabilities_baseline(spec),
        host_namespaces(spec),
        host_ports(spec),
        privileged(spec),
    ];
    if level == Level::Baseline {
        results.extend([host_path_volumes(spec), seccomp_baseline(spec)]);
    } else {
        results.extend([
            allow_privilege_escalation(spec),
            capabilities_restricted(spec),
            restricted_volumes(spec),
            run_as_non_root(spec),
            run_as_user(spec),
            seccomp_restricted(spec),
        ]);
    }
    results.into_iter().flatten().collect()
}

fn level_of(ns: &Value) -> (Level, String) {
    let labels = &ns["metadata"]["labels"];
    // An unparsable level is enforced as restricted (api/helpers.go ParseLevel, fail closed).
    let level = match labels[ENFORCE_LABEL].as_str() {
        None | Some("privileged") => Level::Privileged,
        Some("baseline") => Level::Baseline,
        Some(_) => Level::Restricted,
    };
    let version = labels[ENFORCE_VERSION_LABEL]
        .as_str()
        .unwrap_or("latest")
        .to_string();
    let name = match level {
        Level::Privileged => "privileged",
        Level::Baseline => "baseline",
        Level::Restricted => "restricted",
    };
    (level, format!("{name}:{version}"))
}

pub fn validate(s: &Store, req: &Request) -> ApiResult<()> {
    // Pods only (controllers are only warned about, not refused); of the
    // subresources only ephemeralcontainers, which we do not serve.
    if !req.is("", "pods") || !req.sub.is_empty() {
        return Ok(());
    }
    // Updates are checked only when they change the pod spec
    // (admission.go isSignificantPodUpdate).
    if req.op == Operation::Update
        && req.old.is_some_and(|o| {
            o["spec"] == req.object["spec"]
                && o["metadata"]["annotations"] == req.object["metadata"]["annotations"]
        })
    {
        return Ok(());
    }
    let Some(ns) = s.get("/namespaces", "", req.namespace()) else {
        return Ok(());
    };
    let (level, policy) = level_of(&ns);
    let failed = evaluate(level, &req.object["metadata"], &req.object["spec"]);
    if failed.is_empty() {
        return Ok(());
    }
    let detail: Vec<String> = failed
        .iter()
        .map(|(reason, detail)| {
            if detail.is_empty() {
                reason.clone()
            } else {
                format!("{reason} ({detail})")
            }
        })
        .collect();
    Err(crate::rbac::forbidden_status(
        "",
        "pods",
        req.name(),
        &format!("violates PodSecurity {policy:?}: {}", detail.join(", ")),
    ))
}
