//! Events recorded by the sim's own controllers.

use super::{Cluster, WriteOpts};
use crate::util::{self, name_of, ns_of};
use serde_json::{json, Value};

impl Cluster {
    /// Record an Event (core/v1 shape), as controllers do through the API.
    pub fn record_event(
        &self,
        involved: &Value,
        etype: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let ns = match ns_of(involved) {
            "" => "default",
            n => n,
        }
        .to_string();
        let now = util::now_rfc3339();
        let api_version = involved["apiVersion"].as_str().unwrap_or("v1");
        let ev_def = self.def("", "events");
        // Repeats of the same event bump count like the client-go correlator.
        let existing = self.lock().list("/events", &ns).into_iter().find(|e| {
            e["involvedObject"]["uid"] == involved["metadata"]["uid"]
                && e["reason"] == reason
                && e["message"] == message
        });
        if let Some(e) = existing {
            let _ = self.mutate(&ev_def, &ns, name_of(&e), "", component, |e| {
                e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
                e["lastTimestamp"] = json!(now);
            });
            return;
        }
        // client-go names events <object>.<unix nanos in hex>, so names sort by time.
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let name = format!("{}.{:x}", name_of(involved), nanos);
        let ev = json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": api_version, "kind": involved["kind"], "name": name_of(involved),
                "namespace": involved["metadata"]["namespace"], "uid": involved["metadata"]["uid"],
                "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason, "message": message, "type": etype,
            "source": {"component": component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "eventTime": null, "reportingComponent": component, "reportingInstance": component,
        });
        let _ = self.create(&ev_def, &ns, ev, &WriteOpts::internal(component));
    }
}
