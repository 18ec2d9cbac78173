//! The Job controller (batch/v1, NonIndexed), following
//! pkg/controller/job/job_controller.go: creates pods from the template with
//! the `batch.kubernetes.io/job-tracking` finalizer, counts successes and
//! failures and then removes the finalizer (trackJobStatusAndRemoveFinalizers),
//! evaluates `podFailurePolicy` on failed pods (Ignore, Count, FailJob),
//! retries within backoffLimit with exponential delay, enforces
//! activeDeadlineSeconds, and sets the 1.31+ conditions
//! (SuccessCriteriaMet/FailureTarget, then Complete/Failed).

use super::pod_failure_policy::{evaluate, Verdict};
use crate::api::{DeleteOpts, WriteOpts};
use crate::util::{name_of, now_rfc3339, ns_of, parse_time, set_condition, uid_of};
use crate::Shared;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The finalizer that keeps a Job's pods until they are counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

#[derive(Default)]
struct Tracking {
    /// Pods seen alive, by uid.
    seen: HashSet<String>,
    /// Pods already counted (succeeded or failed), by uid.
    counted: HashSet<String>,
    succeeded: i64,
    failed: i64,
    last_failure: Option<Instant>,
    /// Set by a FailJob rule: the Job's failure message.
    fail_job: Option<String>,
    /// The Job's and its pods' resourceVersions at the last sync.
    synced: Option<Vec<String>>,
}

#[derive(Default)]
pub struct JobController {
    jobs: Mutex<HashMap<String, Tracking>>,
}

fn cond_status(j: &Value, ty: &str) -> bool {
    j["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

impl JobController {
    pub fn reconcile(&self, shared: &Arc<Shared>) {
        let c = &shared.cluster;
        let (jobs, pods) = {
            let s = c.lock();
            (s.list("batch/jobs", ""), s.list("/pods", ""))
        };
        let mut by_owner: HashMap<&str, Vec<&Arc<Value>>> = HashMap::new();
        for p in &pods {
            for r in p["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if r["controller"] == true && r["kind"] == "Job" {
                    by_owner
                        .entry(r["uid"].as_str().unwrap_or(""))
                        .or_default()
                        .push(p);
                }
            }
        }
        let mut track = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let live: HashSet<&str> = jobs.iter().map(|j| uid_of(j)).collect();
        // Pods whose Job is gone keep nothing to count: drop the finalizer.
        for p in &pods {
            let owner = p["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["controller"] == true && r["kind"] == "Job")
                .and_then(|r| r["uid"].as_str());
            if has_tracking(p) && owner.is_none_or(|u| !live.contains(u)) {
                remove_tracking(shared, p);
            }
        }
        track.retain(|uid, _| live.contains(uid.as_str()));
        for j in &jobs {
            let owned = by_owner.get(uid_of(j)).cloned().unwrap_or_default();
            let t = track.entry(uid_of(j).to_string()).or_default();
            // Upstream syncs a Job when it or one of its pods changes (its
            // work queue), or when a timer it set fires: an unchanged Job
            // without a pending back-off or deadline needs no pass.
            let rvs = || {
                std::iter::once(crate::util::rv_of(j))
                    .chain(owned.iter().map(|p| crate::util::rv_of(p)))
            };
            let timers = t.last_failure.is_some() || !j["spec"]["activeDeadlineSeconds"].is_null();
            let unchanged = t.synced.as_ref().is_some_and(|s| {
                s.len() == owned.len() + 1 && s.iter().map(String::as_str).eq(rvs())
            });
            if !timers && unchanged {
                continue;
            }
            self.sync_job(shared, j, &owned, t);
            t.synced = Some(rvs().map(String::from).collect());
        }
    }

    fn sync_job(&self, shared: &Arc<Shared>, j: &Value, pods: &[&Arc<Value>], t: &mut Tracking) {
        let c = &shared.cluster;
        let (ns, name) = (ns_of(j).to_string(), name_of(j).to_string());
        let jdef = c.def("batch", "jobs");
        let pdef = c.def("", "pods");
        if cond_status(j, "Complete")
            || cond_status(j, "Failed")
            || !j["metadata"]["deletionTimestamp"].is_null()
        {
            // A finished or deleted Job lets go of its pods.
            for p in pods {
                if has_tracking(p) {
                    remove_tracking(shared, p);
                }
            }
            return;
        }
        let policy = &j["spec"]["podFailurePolicy"];
        // Resume counts after a restart of this controller from the status.
        if t.seen.is_empty() && t.counted.is_empty() {
            t.succeeded = j["status"]["succeeded"].as_i64().unwrap_or(0);
            t.failed = j["status"]["failed"].as_i64().unwrap_or(0);
        }
        let present: HashSet<&str> = pods.iter().map(|p| uid_of(p)).collect();
        for p in pods {
            let uid = uid_of(p).to_string();
            if t.counted.contains(&uid) {
                if has_tracking(p) {
                    remove_tracking(shared, p);
                }
                continue;
            }
            match p["status"]["phase"].as_str() {
                Some("Succeeded") => {
                    t.succeeded += 1;
                    t.counted.insert(uid);
                    remove_tracking(shared, p);
                }
                _ if pod_failed(p, policy) => {
                    let verdict = if policy.is_null() {
                        Verdict::Count
                    } else {
                        evaluate(policy, p)
                    };
                    match verdict {
                        Verdict::Ignore => {}
                        Verdict::Count => {
                            t.failed += 1;
                            t.last_failure = Some(Instant::now());
                        }
                        Verdict::FailJob(msg) => {
                            t.failed += 1;
                            t.last_failure = Some(Instant::now());
                            t.fail_job.get_or_insert(msg);
                        }
                    }
                    t.counted.insert(uid);
                    remove_tracking(shared, p);
                }
                _ => {
                    t.seen.insert(uid);
                }
            }
        }
        // Vanished before finishing: counted as failed.
        let vanished: Vec<String> = t
            .seen
            .iter()
            .filter(|u| !present.contains(u.as_str()) && !t.counted.contains(*u))
            .cloned()
            .collect();
        for u in vanished {
            t.failed += 1;
            t.last_failure = Some(Instant::now());
            t.counted.insert(u.clone());
            t.seen.remove(&u);
        }
        let alive: Vec<&&Arc<Value>> = pods
            .iter()
            .filter(|p| {
                !matches!(
                    p["status"]["phase"].as_str(),
                    Some("Succeeded") | Some("Failed")
                )
            })
            .collect();
        let active: Vec<&&Arc<Value>> = alive
            .iter()
            .copied()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let terminating = alive.len() - active.len();
        let ready = active.iter().filter(|p| pod_ready(p)).count();
        let spec = &j["spec"];
        let suspended = spec["suspend"] == true;
        let completions = spec["completions"].as_i64().unwrap_or(1);
        let parallelism = spec["parallelism"].as_i64().unwrap_or(1);
        let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
        let start = j["status"]["startTime"].as_str().and_then(parse_time);
        let now = chrono::Utc::now();
        let deadline_hit = match (spec["activeDeadlineSeconds"].as_i64(), start) {
            (Some(ads), Some(st)) if !suspended => (now - st).num_seconds() >= ads,
            _ => false,
        };
        let mut failure: Option<(String, String)> = None;
        // Once a failure is targeted its reason sticks while pods terminate.
        let targeted = j["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "FailureTarget" && c["status"] == "True");
        let pair = |r: &str, m: &str| Some((r.to_string(), m.to_string()));
        if let Some(c) = targeted {
            failure = pair(
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or(""),
            );
        } else if let Some(msg) = &t.fail_job {
            failure = pair("PodFailurePolicy", msg);
        } else if t.failed > backoff_limit {
            failure = pair(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            );
        } else if deadline_hit {
            failure = pair(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            );
        }
        let success = failure.is_none() && t.succeeded >= completions;
        let mut events: Vec<(&str, String, String)> = vec![];
        if failure.is_some() || success || suspended {
            for p in &active {
                let _ = c.delete(&pdef, &ns, name_of(p), &DeleteOpts::default());
                if suspended {
                    events.push((
                        "Normal",
                        "SuccessfulDelete".into(),
                        format!("Deleted pod: {}", name_of(p)),
                    ));
                }
            }
        } else {
            let backoff_ok = match (t.failed, t.last_failure) {
                (0, _) | (_, None) => true,
                (n, Some(at)) => {
                    let base = shared.config.job_backoff;
                    let d = base * 2u32.saturating_pow((n - 1).clamp(0, 10) as u32);
                    at.elapsed() >= d.min(base * 10)
                }
            };
            let want = parallelism.min(completions - t.succeeded)
                - active.len() as i64
                - terminating as i64;
            if want > 0 && backoff_ok {
                for _ in 0..want {
                    match c.create(
                        &pdef,
                        &ns,
                        pod_from_template(j),
                        &WriteOpts::internal("job-controller"),
                    ) {
                        Ok(p) => {
                            t.seen.insert(uid_of(&p).to_string());
                            events.push((
                                "Normal",
                                "SuccessfulCreate".into(),
                                format!("Created pod: {}", name_of(&p)),
                            ));
                        }
                        Err(e) => events.push((
                            "Warning",
                            "FailedCreate".into(),
                            format!("Error creating: {}", e.message),
                        )),
                    }
                }
            }
        }
        let active_n = if failure.is_some() || success {
            0
        } else {
            active.len()
        };
        let (succeeded, failed) = (t.succeeded, t.failed);
        let finished_pods = alive.is_empty() || (active.is_empty() && terminating == 0);
        let mut finished_event: Option<(&str, String, String)> = None;
        let _ = c.mutate(&jdef, &ns, &name, "status", "job-controller", |o| {
            let st = crate::util::ensure_obj(o, &["status"]);
            if !suspended && st.get("startTime").is_none() {
                st.insert("startTime".into(), json!(now_rfc3339()));
            }
            st.insert("active".into(), json!(active_n));
            st.insert("ready".into(), json!(ready));
            st.insert("terminating".into(), json!(terminating));
            st.insert("uncountedTerminatedPods".into(), json!({}));
            if succeeded > 0 {
                st.insert("succeeded".into(), json!(succeeded));
            }
            if failed > 0 {
                st.insert("failed".into(), json!(failed));
            }
            let mut conds: Vec<Value> = st.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let cond = |ty: &str, reason: &str, msg: &str| json!({"type": ty, "status": "True", "reason": reason, "message": msg, "lastProbeTime": now_rfc3339()});
            if let Some((reason, msg)) = &failure {
                set_condition(&mut conds, cond("FailureTarget", reason, msg));
                if finished_pods {
                    set_condition(&mut conds, cond("Failed", reason, msg));
                    finished_event = Some(("Warning", reason.clone(), msg.clone()));
                }
            } else if success {
                set_condition(&mut conds, cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"));
                if finished_pods {
                    set_condition(&mut conds, cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods"));
                    st.insert("completionTime".into(), json!(now_rfc3339()));
                    finished_event = Some(("Normal", "Completed".into(), "Job completed".into()));
                }
            }
            if suspended {
                set_condition(&mut conds, cond("Suspended", "JobSuspended", "Job suspended"));
            } else if conds.iter().any(|c| c["type"] == "Suspended" && c["status"] == "True") {
                set_condition(&mut conds, json!({"type": "Suspended", "status": "False", "reason": "JobResumed", "message": "Job resumed", "lastProbeTime": now_rfc3339()}));
            }
            if !conds.is_empty() {
                st.insert("conditions".into(), json!(conds));
            }
        });
        for (ty, reason, msg) in events {
            c.record_event(j, ty, &reason, &msg, "job-controller");
        }
        if let Some((ty, reason, msg)) = finished_event {
            c.record_event(j, ty, &reason, &msg, "job-controller");
        }
    }
}

/// Whether a Job pod counts as failed (isPodFailed): with a
/// podFailurePolicy only phase Failed does (PodGC and the kubelet make
/// deleted pods terminal); otherwise a pod being deleted before it
/// succeeded counts too.
fn pod_failed(p: &Value, policy: &Value) -> bool {
    let phase = p["status"]["phase"].as_str().unwrap_or("");
    if phase == "Failed" {
        return true;
    }
    policy.is_null() && !p["metadata"]["deletionTimestamp"].is_null() && phase != "Succeeded"
}

fn has_tracking(p: &Value) -> bool {
    p["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn remove_tracking(shared: &Shared, p: &Value) {
    if !has_tracking(p) {
        return;
    }
    let c = &shared.cluster;
    let _ = c.mutate(
        &c.def("", "pods"),
        ns_of(p),
        name_of(p),
        "",
        "job-controller",
        |o| {
            if let Some(f) = o["metadata"]["finalizers"].as_array_mut() {
                f.retain(|x| x != TRACKING_FINALIZER);
            }
            if o["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.is_empty())
            {
                if let Some(m) = o["metadata"].as_object_mut() {
                    m.remove("finalizers");
                }
            }
        },
    );
}

fn pod_from_template(j: &Value) -> Value {
    let tpl = &j["spec"]["template"];
    let mut md = json!({
        "generateName": format!("{}-", name_of(j)),
        "namespace": ns_of(j),
        "finalizers": [TRACKING_FINALIZER],
        "labels": tpl["metadata"]["labels"],
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name_of(j), "uid": uid_of(j),
            "controller": true, "blockOwnerDeletion": true}],
    });
    if let Some(a) = tpl["metadata"].get("annotations") {
        md["annotations"] = a.clone();
    }
    if md["labels"].is_null() {
        md.as_object_mut().unwrap().remove("labels");
    }
    json!({"metadata": md, "spec": tpl["spec"]})
}
