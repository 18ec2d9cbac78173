//! Defaulting and validation the real API server applies to the built-in
//! kinds the operator uses (Pods, Jobs, Events shape conversion, CRDs).

use crate::error::FieldError;
use serde_json::{json, Map, Value};

fn set_default(m: &mut Map<String, Value>, k: &str, v: Value) {
    m.entry(k.to_string()).or_insert(v);
}

fn image_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else if !last.contains(':') || last.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    let img = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default(m, "imagePullPolicy", json!(image_pull_policy(&img)));
    set_default(m, "resources", json!({}));
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(pm) = p.as_object_mut() {
                set_default(pm, "protocol", json!("TCP"));
            }
        }
    }
}

/// PodSpec defaults (also applied to pod templates, as the real server does).
pub fn default_pod_spec(spec: &mut Value, in_template: bool) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    for key in ["containers", "initContainers"] {
        if let Some(cs) = m.get_mut(key).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    set_default(m, "restartPolicy", json!("Always"));
    set_default(m, "terminationGracePeriodSeconds", json!(30));
    set_default(m, "dnsPolicy", json!("ClusterFirst"));
    set_default(m, "securityContext", json!({}));
    set_default(m, "schedulerName", json!("default-scheduler"));
    if let Some(vols) = m.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            for src in ["secret", "configMap"] {
                if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
                    set_default(s, "defaultMode", json!(420));
                }
            }
        }
    }
    if !in_template {
        // The ServiceAccount admission plugin and DefaultTolerationSeconds.
        set_default(m, "serviceAccountName", json!("default"));
        let sa = m["serviceAccountName"].clone();
        set_default(m, "serviceAccount", sa);
        set_default(m, "enableServiceLinks", json!(true));
        set_default(m, "priority", json!(0));
        set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
        let tols = m.entry("tolerations").or_insert_with(|| json!([]));
        if let Some(t) = tols.as_array_mut() {
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ] {
                if !t.iter().any(|x| x["key"] == key) {
                    t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                }
            }
        }
    }
}

pub fn default_pod(pod: &mut Value) {
    default_pod_spec(&mut pod["spec"], false);
    let st = crate::util::ensure_obj(pod, &["status"]);
    set_default(st, "phase", json!("Pending"));
    set_default(st, "qosClass", json!("BestEffort"));
}

/// Job defaults, including the generated selector and template labels.
pub fn default_job(job: &mut Value) {
    let uid = crate::util::uid_of(job).to_string();
    let name = crate::util::name_of(job).to_string();
    let spec = crate::util::ensure_obj(job, &["spec"]);
    let (has_p, has_c) = (
        spec.contains_key("parallelism"),
        spec.contains_key("completions"),
    );
    if !has_p {
        spec.insert("parallelism".into(), json!(1));
    }
    if !has_c && !has_p {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    // SetDefaults_Job: Failed when a podFailurePolicy is set.
    let replacement = if spec.get("podFailurePolicy").is_some_and(|p| !p.is_null()) {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    let manual = spec.get("manualSelector") == Some(&json!(true));
    if !manual {
        if spec.get("selector").is_none() {
            spec.insert(
                "selector".into(),
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
            );
        }
        let labels = crate::util::ensure_obj(job, &["spec", "template", "metadata", "labels"]);
        set_default(labels, "batch.kubernetes.io/controller-uid", json!(uid));
        set_default(labels, "batch.kubernetes.io/job-name", json!(name));
        set_default(labels, "controller-uid", json!(uid));
        set_default(labels, "job-name", json!(name));
    }
    default_pod_spec(&mut job["spec"]["template"]["spec"], true);
    if job["status"].is_null() {
        job["status"] = json!({});
    }
}

/// Deployment and ReplicaSet defaults (pkg/apis/apps/v1/defaults.go):
/// one replica; for Deployments the RollingUpdate strategy at 25%/25%,
/// ten old ReplicaSets kept and a 600 s progress deadline.
pub fn default_apps(obj: &mut Value, deployment: bool) {
    let spec = crate::util::ensure_obj(obj, &["spec"]);
    set_default(spec, "replicas", json!(1));
    if deployment {
        let strategy = crate::util::ensure_obj(obj, &["spec", "strategy"]);
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type") == Some(&json!("RollingUpdate")) {
            let ru = crate::util::ensure_obj(obj, &["spec", "strategy", "rollingUpdate"]);
            set_default(ru, "maxUnavailable", json!("25%"));
            set_default(ru, "maxSurge", json!("25%"));
        }
        let spec = crate::util::ensure_obj(obj, &["spec"]);
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
    }
    default_pod_spec(&mut obj["spec"]["template"]["spec"], true);
    if obj["status"].is_null() {
        obj["status"] = json!({});
    }
}

/// The real Job update validation: template and selector are immutable
/// (the suspended-job scheduling-directive exception is not modelled).
pub fn job_immutable(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = vec![];
    for (f, p) in [
        ("template", "spec.template"),
        ("selector", "spec.selector"),
        ("completionMode", "spec.completionMode"),
    ] {
        if old["spec"][f] != new["spec"][f] {
            errs.push(FieldError::invalid(
                p,
                &new["spec"][f],
                "field is immutable",
            ));
        }
    }
    errs
}

/// events.k8s.io/v1 Event → the stored core/v1 shape.
pub fn event_from_events_api(mut e: Value) -> Value {
    let Some(m) = e.as_object_mut() else { return e };
    let mv = |m: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(v) = m.remove(from) {
            m.insert(to.into(), v);
        }
    };
    mv(m, "regarding", "involvedObject");
    mv(m, "note", "message");
    mv(m, "reportingController", "reportingComponent");
    mv(m, "deprecatedSource", "source");
    mv(m, "deprecatedFirstTimestamp", "firstTimestamp");
    mv(m, "deprecatedLastTimestamp", "lastTimestamp");
    mv(m, "deprecatedCount", "count");
    m.insert("apiVersion".into(), json!("v1"));
    e
}

/// Stored core/v1 Event → events.k8s.io/v1 shape.
pub fn event_to_events_api(mut e: Value) -> Value {
    let Some(m) = e.as_object_mut() else { return e };
    let mv = |m: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(v) = m.remove(from) {
            m.insert(to.into(), v);
        }
    };
    mv(m, "involvedObject", "regarding");
    mv(m, "message", "note");
    mv(m, "reportingComponent", "reportingController");
    mv(m, "source", "deprecatedSource");
    mv(m, "firstTimestamp", "deprecatedFirstTimestamp");
    mv(m, "lastTimestamp", "deprecatedLastTimestamp");
    mv(m, "count", "deprecatedCount");
    m.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    e
}

/// Fill the core fields `kubectl describe` shows from the newer ones (source,
/// count, timestamps), as the real conversion leaves them for old clients.
pub fn event_core_compat(e: &mut Value) {
    let Some(m) = e.as_object_mut() else { return };
    let rc = m
        .get("reportingComponent")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let src = m.entry("source").or_insert_with(|| json!({}));
    if src.get("component").is_none() && !rc.is_empty() {
        src["component"] = json!(rc);
    }
    if let Some(c) = m.get("series").and_then(|s| s.get("count")).cloned() {
        m.insert("count".into(), c);
    }
    let event_time = m
        .get("eventTime")
        .and_then(Value::as_str)
        .map(|t| t.chars().take(19).collect::<String>() + "Z");
    let last = m
        .get("series")
        .and_then(|s| s.get("lastObservedTime"))
        .and_then(Value::as_str)
        .map(|t| t.chars().take(19).collect::<String>() + "Z");
    if let Some(t) = &event_time {
        if m.get("firstTimestamp").is_none_or(Value::is_null) {
            m.insert("firstTimestamp".into(), json!(t));
        }
    }
    if let Some(t) = last.or(event_time) {
        let cur = m
            .get("lastTimestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if cur.is_empty() || t > cur {
            m.insert("lastTimestamp".into(), json!(t));
        }
    }
    if m.get("count").is_none_or(Value::is_null) {
        m.insert("count".into(), json!(1));
    }
}

/// Set the CRD's Established and NamesAccepted conditions, as the
/// apiextensions controllers do right after creation.
pub fn crd_status(crd: &mut Value) {
    let names = crd["spec"]["names"].clone();
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or("").to_lowercase());
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!("{}List", names["kind"].as_str().unwrap_or("")));
    }
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    let st = crate::util::ensure_obj(crd, &["status"]);
    st.insert("acceptedNames".into(), accepted);
    st.insert("storedVersions".into(), json!(stored));
    let mut conds: Vec<Value> = st
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    crate::util::set_condition(
        &mut conds,
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"}),
    );
    crate::util::set_condition(
        &mut conds,
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}),
    );
    st.insert("conditions".into(), json!(conds));
}

pub fn default_crd(crd: &mut Value) {
    let spec = crate::util::ensure_obj(crd, &["spec"]);
    set_default(spec, "conversion", json!({"strategy": "None"}));
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        set_default(names, "singular", json!(kind.to_lowercase()));
        set_default(names, "listKind", json!(format!("{kind}List")));
    }
}

pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = vec![];
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    }
    if spec["names"]["kind"].as_str().unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    let want = format!("{plural}.{group}");
    if crate::util::name_of(crd) != want {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(crate::util::name_of(crd)),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let vs = spec["versions"].as_array().cloned().unwrap_or_default();
    if vs.iter().filter(|v| v["storage"] == true).count() != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            &json!(vs.len()),
            "must have exactly one version marked as storage version",
        ));
    }
    errs
}

/// Service defaults (pkg/apis/core/v1/defaults.go SetDefaults_Service and
/// the ClusterIP allocator): type ClusterIP, sessionAffinity None, TCP
/// ports whose targetPort defaults to the port, a ClusterIP from
/// 10.96.0.0/12 unless `None` (headless) or given.
pub fn default_service(svc: &mut Value, rng: &crate::util::Rng) {
    let spec = crate::util::ensure_obj(svc, &["spec"]);
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    if spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let suffix = rng
            .name_suffix(2)
            .bytes()
            .fold(0u32, |a, b| a * 31 + b as u32);
        let ip = format!("10.96.{}.{}", 1 + suffix % 250, 2 + (suffix / 250) % 250);
        spec.insert("clusterIP".into(), json!(ip));
    }
    let ip = spec["clusterIP"].clone();
    set_default(spec, "clusterIPs", json!([ip]));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(m) = p.as_object_mut() {
                set_default(m, "protocol", json!("TCP"));
                let port = m.get("port").cloned().unwrap_or(Value::Null);
                set_default(m, "targetPort", port);
            }
        }
    }
}
