//! Delete: preconditions, propagation policy finalizers, graceful pod
//! termination.

use super::{present, Cluster, DeleteOpts};
use crate::error::{ApiError, ApiResult};
use crate::resources::ResDef;
use crate::util;
use serde_json::{json, Value};

impl Cluster {
    pub fn delete(
        &self,
        def: &ResDef,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Value> {
        let (out, removed) = {
            let mut s = self.lock();
            let Some(old) = s.get(&def.gr(), ns, name) else {
                return Err(ApiError::not_found(&def.group, &def.plural, name));
            };
            if opts
                .precondition_uid
                .as_deref()
                .is_some_and(|u| u != util::uid_of(&old))
            {
                return Err(ApiError::new(409, "Conflict", format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    def.plural, opts.precondition_uid.as_deref().unwrap_or(""), util::uid_of(&old))));
            }
            if opts
                .precondition_rv
                .as_deref()
                .is_some_and(|r| r != util::rv_of(&old))
            {
                return Err(ApiError::conflict(&def.group, &def.plural, name));
            }
            let uid = util::uid_of(&old).to_string();
            let has_dependents = || {
                s.objects.values().flat_map(|m| m.values()).any(|o| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["uid"] == uid.as_str()))
                })
            };
            let default_policy = if def.group == "batch" && def.plural == "jobs" {
                "Orphan"
            } else {
                "Background"
            };
            let policy = opts
                .propagation
                .clone()
                .unwrap_or_else(|| default_policy.into());
            let mut new = (*old).clone();
            let mut fins: Vec<Value> = new["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let extra = match policy.as_str() {
                "Foreground" if has_dependents() => Some("foregroundDeletion"),
                "Orphan" if has_dependents() => Some("orphan"),
                _ => None,
            };
            if let Some(f) = extra {
                if !fins.contains(&json!(f)) {
                    fins.push(json!(f));
                }
            }
            // Pods on a node terminate gracefully; the kubelet removes them.
            let graceful_pod = def.plural == "pods"
                && def.group.is_empty()
                && !old["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
                && !matches!(
                    old["status"]["phase"].as_str(),
                    Some("Succeeded") | Some("Failed")
                )
                && opts.grace_seconds != Some(0);
            if opts.dry_run {
                return Ok(present(def, &old));
            }
            if fins.is_empty() && !graceful_pod {
                let gone = s.remove(&def.gr(), ns, name).unwrap();
                self.notify(s.rv);
                (gone, true)
            } else if !old["metadata"]["deletionTimestamp"].is_null() {
                if opts.grace_seconds == Some(0) && graceful_pod && fins.is_empty() {
                    let gone = s.remove(&def.gr(), ns, name).unwrap();
                    self.notify(s.rv);
                    (gone, true)
                } else {
                    (old.clone(), false)
                }
            } else {
                let grace = if graceful_pod {
                    opts.grace_seconds
                        .or(old["spec"]["terminationGracePeriodSeconds"].as_i64())
                        .unwrap_or(30)
                } else {
                    0
                };
                let ts = util::now() + chrono::Duration::seconds(grace);
                new["metadata"]["deletionTimestamp"] =
                    json!(ts.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                new["metadata"]["finalizers"] = json!(fins);
                if fins.is_empty() {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove("finalizers");
                    }
                }
                let st = s.put(&def.gr(), new);
                self.notify(s.rv);
                (st, false)
            }
        };
        if removed {
            self.after_remove(def, &out);
        }
        Ok(present(def, &out))
    }
}
