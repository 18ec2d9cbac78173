//! Pod spec validation (pods and pod templates).
//!
//! Follows pkg/apis/core/validation/validation.go: ValidatePodSpec,
//! ValidateVolumes, validateContainers/validateInitContainers
//! (validateContainerCommon), ValidateEnv (the relaxed environment variable
//! names, GA in 1.34), ValidateVolumeMounts, validateLocalDescendingPath,
//! ValidateResourceRequirements, ValidateTolerations, validateTaintEffect,
//! ValidateSecurityContext and validatePodSpecSecurityContext.

use super::meta::{each, is_dns1123_label, is_dns1123_subdomain, is_valid_label_value};
use super::{duplicate, not_found, not_supported, quantity, str_of};
use crate::error::FieldError;
use serde_json::{json, Value};
use std::collections::HashSet;

/// The volume sources a Volume may name exactly one of.
const VOLUME_SOURCES: [&str; 30] = [
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];
const MAX_USER_ID: i64 = i32::MAX as i64;
const MAX_PORT: i64 = 65535;
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const STANDARD_CONTAINER_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
/// helper.IsOvercommitAllowed: native resources except hugepages; the
/// others' requests must equal their limits.
fn overcommit_allowed(name: &str) -> bool {
    (!name.contains('/') || name.contains("kubernetes.io/")) && !name.starts_with("hugepages-")
}

/// The first quantity in a pod spec that does not parse, as the decoder's
/// error text (the request then fails with 400 before validation).
pub fn quantity_decode_error(spec: &Value) -> Option<&'static str> {
    for key in ["containers", "initContainers"] {
        for c in spec[key].as_array().into_iter().flatten() {
            for part in ["limits", "requests"] {
                for q in c["resources"][part].as_object().into_iter().flatten() {
                    if let Err(e) = quantity::parse(q.1) {
                        return Some(e);
                    }
                }
            }
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let s = &v["emptyDir"]["sizeLimit"];
        if !s.is_null() {
            if let Err(e) = quantity::parse(s) {
                return Some(e);
            }
        }
    }
    None
}

pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    let volumes = validate_volumes(&spec["volumes"], &format!("{path}.volumes"), &mut errs);
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        errs.push(FieldError::required(&format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        errs.extend(validate_container(c, &volumes, &p));
        let n = str_of(&c["name"]);
        if !names.insert(n.to_string()) {
            errs.push(duplicate(&format!("{p}.name"), &json!(n)));
        }
    }
    for (i, c) in spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{path}.initContainers[{i}]");
        errs.extend(validate_container(c, &volumes, &p));
        let n = str_of(&c["name"]);
        if !names.insert(n.to_string()) {
            errs.push(duplicate(&format!("{p}.name"), &json!(n)));
        }
    }
    let rp = &spec["restartPolicy"];
    match str_of(rp) {
        "" => errs.push(FieldError::required(&format!("{path}.restartPolicy"), "")),
        "Always" | "OnFailure" | "Never" => {}
        _ => errs.push(not_supported(
            &format!("{path}.restartPolicy"),
            rp,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dp = &spec["dnsPolicy"];
    if !matches!(
        str_of(dp),
        "" | "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
    ) {
        errs.push(not_supported(
            &format!("{path}.dnsPolicy"),
            dp,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    errs.extend(super::meta::validate_labels(
        &spec["nodeSelector"],
        &format!("{path}.nodeSelector"),
    ));
    errs.extend(validate_pod_security_context(
        &spec["securityContext"],
        &format!("{path}.securityContext"),
    ));
    let sa = str_of(&spec["serviceAccountName"]);
    if !sa.is_empty() {
        errs.extend(each(
            &format!("{path}.serviceAccountName"),
            sa,
            is_dns1123_subdomain(sa),
        ));
    }
    let ads = &spec["activeDeadlineSeconds"];
    if let Some(n) = ads.as_i64() {
        if !(1..=MAX_USER_ID).contains(&n) {
            errs.push(FieldError::invalid(
                &format!("{path}.activeDeadlineSeconds"),
                ads,
                &format!("must be between 1 and {MAX_USER_ID}, inclusive"),
            ));
        }
    }
    errs.extend(validate_tolerations(
        &spec["tolerations"],
        &format!("{path}.tolerations"),
    ));
    errs
}

/// ValidateVolumes; returns the declared volume names.
fn validate_volumes(vols: &Value, path: &str, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in vols.as_array().into_iter().flatten().enumerate() {
        let p = format!("{path}[{i}]");
        let sources = VOLUME_SOURCES.iter().filter(|s| !v[**s].is_null()).count();
        if sources == 0 {
            errs.push(FieldError::required(&p, "must specify a volume type"));
        }
        let n = str_of(&v["name"]);
        if n.is_empty() {
            errs.push(FieldError::required(&format!("{p}.name"), ""));
        } else {
            errs.extend(each(&format!("{p}.name"), n, is_dns1123_label(n)));
        }
        if !names.insert(n.to_string()) {
            errs.push(duplicate(&format!("{p}.name"), &json!(n)));
        }
    }
    names
}

fn validate_container(c: &Value, volumes: &HashSet<String>, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    let name = str_of(&c["name"]);
    if name.is_empty() {
        errs.push(FieldError::required(&format!("{path}.name"), ""));
    } else {
        errs.extend(each(&format!("{path}.name"), name, is_dns1123_label(name)));
    }
    if str_of(&c["image"]).is_empty() {
        errs.push(FieldError::required(&format!("{path}.image"), ""));
    }
    for (i, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
        let cp = &port["containerPort"];
        if !cp.as_i64().is_some_and(|n| (1..=MAX_PORT).contains(&n)) {
            errs.push(FieldError::invalid(
                &format!("{path}.ports[{i}].containerPort"),
                cp,
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
    errs.extend(validate_env(&c["env"], &format!("{path}.env")));
    errs.extend(validate_volume_mounts(
        &c["volumeMounts"],
        volumes,
        &format!("{path}.volumeMounts"),
    ));
    let pp = &c["imagePullPolicy"];
    match str_of(pp) {
        "" => errs.push(FieldError::required(&format!("{path}.imagePullPolicy"), "")),
        "Always" | "IfNotPresent" | "Never" => {}
        _ => errs.push(not_supported(
            &format!("{path}.imagePullPolicy"),
            pp,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    errs.extend(validate_resources(
        &c["resources"],
        &format!("{path}.resources"),
    ));
    errs.extend(validate_security_context(
        &c["securityContext"],
        &format!("{path}.securityContext"),
    ));
    errs
}

/// ValidateEnv with IsRelaxedEnvVarName: printable ASCII other than '='.
fn validate_env(env: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    for (i, e) in env.as_array().into_iter().flatten().enumerate() {
        let p = format!("{path}[{i}].name");
        let n = str_of(&e["name"]);
        if n.is_empty() {
            errs.push(FieldError::required(&p, ""));
            errs.push(FieldError::invalid(
                &p,
                &json!(n),
                "environment variable name must be non-empty",
            ));
        } else if n
            .chars()
            .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '=')
        {
            errs.push(FieldError::invalid(
                &p,
                &json!(n),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
    errs
}

fn validate_volume_mounts(
    mounts: &Value,
    volumes: &HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = vec![];
    let mut points = HashSet::new();
    for (i, m) in mounts.as_array().into_iter().flatten().enumerate() {
        let p = format!("{path}[{i}]");
        let n = str_of(&m["name"]);
        if n.is_empty() {
            errs.push(FieldError::required(&format!("{p}.name"), ""));
        }
        if !volumes.contains(n) {
            errs.push(not_found(&format!("{p}.name"), &json!(n)));
        }
        let mp = str_of(&m["mountPath"]);
        if mp.is_empty() {
            errs.push(FieldError::required(&format!("{p}.mountPath"), ""));
        }
        if !points.insert(mp.to_string()) {
            errs.push(FieldError::invalid(
                &format!("{p}.mountPath"),
                &json!(mp),
                "must be unique",
            ));
        }
        let sp = str_of(&m["subPath"]);
        if !sp.is_empty() {
            // Upstream passes the list's path, not the item's, here.
            errs.extend(validate_local_descending_path(
                sp,
                &format!("{path}.subPath"),
            ));
        }
    }
    errs
}

fn validate_local_descending_path(p: &str, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    if p.starts_with('/') {
        errs.push(FieldError::invalid(
            path,
            &json!(p),
            "must be a relative path",
        ));
    }
    if p.split('/').any(|seg| seg == "..") {
        errs.push(FieldError::invalid(
            path,
            &json!(p),
            "must not contain '..'",
        ));
    }
    errs
}

/// ValidateResourceRequirements: names, non-negative values, requests at
/// most limits (equal for resources that cannot be overcommitted).
fn validate_resources(res: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    let limits = res["limits"].as_object().cloned().unwrap_or_default();
    let requests = res["requests"].as_object().cloned().unwrap_or_default();
    for (part, map) in [("limits", &limits), ("requests", &requests)] {
        for (name, q) in map {
            let p = format!("{path}.{part}[{name}]");
            errs.extend(validate_resource_name(name, &p));
            if quantity::parse(q).is_ok_and(|v| v < 0.0) {
                errs.push(FieldError::invalid(
                    &p,
                    &json!(quantity_text(q)),
                    super::IS_NEGATIVE,
                ));
            }
        }
    }
    for (name, q) in &requests {
        let Some(l) = limits.get(name) else { continue };
        let (Ok(rv), Ok(lv)) = (quantity::parse(q), quantity::parse(l)) else {
            continue;
        };
        let p = format!("{path}.requests");
        if !overcommit_allowed(name) && rv != lv {
            errs.push(FieldError::invalid(
                &p,
                &json!(quantity_text(q)),
                &format!("must be equal to {name} limit of {}", quantity_text(l)),
            ));
        } else if rv > lv {
            errs.push(FieldError::invalid(
                &p,
                &json!(quantity_text(q)),
                &format!(
                    "must be less than or equal to {name} limit of {}",
                    quantity_text(l)
                ),
            ));
        }
    }
    errs
}

fn quantity_text(q: &Value) -> String {
    match q {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// validateContainerResourceName.
fn validate_resource_name(name: &str, path: &str) -> Vec<FieldError> {
    let mut errs = each(path, name, super::meta::is_qualified_name(name));
    if !name.contains('/')
        && !STANDARD_CONTAINER_RESOURCES.contains(&name)
        && !name.starts_with("hugepages-")
    {
        errs.push(FieldError::invalid(
            path,
            &json!(name),
            "must be a standard resource for containers",
        ));
    }
    errs
}

/// ValidateTolerations and validateTaintEffect.
pub fn validate_tolerations(tols: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    for (i, t) in tols.as_array().into_iter().flatten().enumerate() {
        let p = format!("{path}[{i}]");
        let key = str_of(&t["key"]);
        let op = &t["operator"];
        if !key.is_empty() {
            errs.extend(each(
                &format!("{p}.key"),
                key,
                super::meta::is_qualified_name(key),
            ));
        }
        if key.is_empty() && str_of(op) != "Exists" {
            errs.push(FieldError::invalid(
                &format!("{p}.operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let effect = &t["effect"];
        if !t["tolerationSeconds"].is_null() && str_of(effect) != "NoExecute" {
            errs.push(FieldError::invalid(
                &format!("{p}.effect"),
                &json!(str_of(effect)),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = str_of(&t["value"]);
        match str_of(op) {
            "" | "Equal" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        &format!("{p}.operator"),
                        &json!(value),
                        &msgs.join(";"),
                    ));
                }
            }
            // The value printed is the operator, as upstream's main branch
            // prints it (1.34 printed the whole Toleration struct).
            "Exists" if !value.is_empty() => errs.push(FieldError::invalid(
                &format!("{p}.operator"),
                op,
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            _ => errs.push(not_supported(
                &format!("{p}.operator"),
                op,
                &["Equal", "Exists"],
            )),
        }
        if !str_of(effect).is_empty() && !TAINT_EFFECTS.contains(&str_of(effect)) {
            errs.push(not_supported(
                &format!("{p}.effect"),
                effect,
                &TAINT_EFFECTS,
            ));
        }
    }
    errs
}

fn id_range(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = v.as_i64() {
        if !(0..=MAX_USER_ID).contains(&n) {
            errs.push(FieldError::invalid(
                path,
                v,
                &format!("must be between 0 and {MAX_USER_ID}, inclusive"),
            ));
        }
    }
}

fn validate_seccomp(sp: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if sp.is_null() {
        return;
    }
    let t = &sp["type"];
    match str_of(t) {
        "RuntimeDefault" | "Unconfined" => {}
        "Localhost" if str_of(&sp["localhostProfile"]).is_empty() => {
            errs.push(FieldError::required(
                &format!("{path}.localhostProfile"),
                "must be set when seccomp type is Localhost",
            ))
        }
        "Localhost" => {}
        "" => errs.push(FieldError::required(&format!("{path}.type"), "")),
        _ => errs.push(not_supported(
            &format!("{path}.type"),
            t,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
}

/// ValidateSecurityContext (containers). Upstream prints the whole
/// SecurityContext as the value of the conflict errors; its Go dump has
/// pointer addresses, so it shows as "object" here.
fn validate_security_context(sc: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    if sc.is_null() {
        return errs;
    }
    id_range(&sc["runAsUser"], &format!("{path}.runAsUser"), &mut errs);
    id_range(&sc["runAsGroup"], &format!("{path}.runAsGroup"), &mut errs);
    let pm = &sc["procMount"];
    if !matches!(str_of(pm), "" | "Default" | "Unmasked") {
        errs.push(not_supported(
            &format!("{path}.procMount"),
            pm,
            &["Default", "Unmasked"],
        ));
    }
    validate_seccomp(
        &sc["seccompProfile"],
        &format!("{path}.seccompProfile"),
        &mut errs,
    );
    if sc["allowPrivilegeEscalation"] == json!(false) {
        if sc["privileged"] == json!(true) {
            errs.push(FieldError::invalid(
                path,
                &json!({}),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        let adds = sc["capabilities"]["add"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if adds.iter().any(|c| c == "CAP_SYS_ADMIN") {
            errs.push(FieldError::invalid(
                path,
                &json!({}),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
    errs
}

/// validatePodSpecSecurityContext.
fn validate_pod_security_context(sc: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = vec![];
    if sc.is_null() {
        return errs;
    }
    id_range(&sc["runAsUser"], &format!("{path}.runAsUser"), &mut errs);
    id_range(&sc["runAsGroup"], &format!("{path}.runAsGroup"), &mut errs);
    id_range(&sc["fsGroup"], &format!("{path}.fsGroup"), &mut errs);
    for (i, g) in sc["supplementalGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        id_range(g, &format!("{path}.supplementalGroups[{i}]"), &mut errs);
    }
    validate_seccomp(
        &sc["seccompProfile"],
        &format!("{path}.seccompProfile"),
        &mut errs,
    );
    errs
}
