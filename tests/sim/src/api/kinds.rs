//! Per-kind rules of the API server: defaulting and validation by kind
//! (`admit`), and the side effects stored objects have on the API surface
//! (CRDs registering resources, namespaces getting a default ServiceAccount
//! and deleting their contents).

use super::{Cluster, WriteOpts};
use crate::builtin;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::resources::ResDef;
use crate::util::{self, name_of, ns_of};
use serde_json::{json, Value};

fn dns_subdomain_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Kinds whose create resets status (their status is owned by controllers).
pub(super) fn status_reset_on_create(def: &ResDef) -> bool {
    def.is_crd
        || matches!(
            def.plural.as_str(),
            "pods" | "jobs" | "customresourcedefinitions"
        )
}

impl Cluster {
    /// Defaulting and validation shared by create and update.
    pub(super) fn admit(
        &self,
        def: &ResDef,
        obj: &mut Value,
        old: Option<&Value>,
        strict: bool,
    ) -> ApiResult<()> {
        let name = name_of(obj).to_string();
        let mut errs: Vec<FieldError> = vec![];
        // RBAC object names are path segments (`system:discovery`):
        // pkg/apis/rbac/validation/validation.go ValidateRBACName.
        let path_segment_name = def.group == "rbac.authorization.k8s.io";
        if !dns_subdomain_ok(&name) && def.plural != "events" && !path_segment_name {
            errs.push(FieldError::invalid("metadata.name", &json!(name),
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"));
        }
        match (def.group.as_str(), def.plural.as_str()) {
            ("", "pods") => {
                builtin::default_pod(obj);
                errs.extend(builtin::validate_pod_spec(&obj["spec"], "spec"));
            }
            ("batch", "jobs") => {
                builtin::default_job(obj);
                errs.extend(builtin::validate_job(obj));
                if let Some(o) = old {
                    errs.extend(builtin::job_immutable(o, obj));
                }
            }
            ("apiextensions.k8s.io", _) => {
                builtin::default_crd(obj);
                errs.extend(builtin::validate_crd(obj));
                errs.extend(crate::cel_cost::validate_crd(obj));
            }
            ("", "namespaces") => {
                let st = util::ensure_obj(obj, &["status"]);
                st.entry("phase").or_insert(json!("Active"));
                let sp = util::ensure_obj(obj, &["spec"]);
                sp.entry("finalizers").or_insert(json!(["kubernetes"]));
            }
            ("", "secrets") => {
                if obj.get("type").is_none() {
                    obj["type"] = json!("Opaque");
                }
                // stringData is write-only: folded into data, base64-encoded.
                if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                    let data = util::ensure_obj(obj, &["data"]);
                    for (k, v) in sd.as_object().into_iter().flatten() {
                        data.insert(
                            k.clone(),
                            json!(super::b64(v.as_str().unwrap_or("").as_bytes())),
                        );
                    }
                }
            }
            _ => {}
        }
        if let Some(schema) = def.schema.as_ref() {
            let pruned = crate::schema::default_and_prune(obj, schema);
            if strict && !pruned.is_empty() {
                let list: Vec<String> = pruned
                    .iter()
                    .map(|p| format!("unknown field \"{p}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    def.kind,
                    def.version,
                    def.kind,
                    list.join(", ")
                )));
            }
            errs.extend(crate::schema::validate(obj, schema));
            errs.extend(crate::cel::validate(obj, old, schema));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&def.kind, &def.group, &name, errs));
        }
        Ok(())
    }

    /// Side effects of stored objects on the API surface itself.
    pub(super) fn after_write(&self, def: &ResDef, obj: &Value) {
        if def.plural == "customresourcedefinitions" && def.group == "apiextensions.k8s.io" {
            let defs = crate::resources::from_crd(obj);
            let g = obj["spec"]["group"].as_str().unwrap_or("").to_string();
            let p = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.registry
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set_crd(&g, &p, defs);
        }
        if def.plural == "namespaces" && def.group.is_empty() {
            let ns = name_of(obj).to_string();
            let sa = self.def("", "serviceaccounts");
            let exists = self
                .lock()
                .get("/serviceaccounts", &ns, "default")
                .is_some();
            if !exists && obj["metadata"]["deletionTimestamp"].is_null() {
                let _ = self.create(
                    &sa,
                    &ns,
                    json!({"metadata": {"name": "default"}}),
                    &WriteOpts::internal("kube-controller-manager"),
                );
            }
        }
    }

    pub(super) fn after_remove(&self, def: &ResDef, obj: &Value) {
        if def.plural == "customresourcedefinitions" && def.group == "apiextensions.k8s.io" {
            let g = obj["spec"]["group"].as_str().unwrap_or("").to_string();
            let p = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.registry
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set_crd(&g, &p, vec![]);
            let gr = format!("{g}/{p}");
            let mut s = self.lock();
            for o in s.list(&gr, "") {
                s.remove(&gr, ns_of(&o), name_of(&o));
            }
            self.notify(s.rv);
        }
        if def.plural == "namespaces" && def.group.is_empty() {
            let ns = name_of(obj).to_string();
            let grs: Vec<String> = self
                .registry()
                .defs
                .iter()
                .filter(|d| d.namespaced && d.group == d.storage_group)
                .map(|d| d.gr())
                .collect();
            let mut s = self.lock();
            for gr in grs {
                for o in s.list(&gr, &ns) {
                    s.remove(&gr, &ns, name_of(&o));
                }
            }
            self.notify(s.rv);
        }
    }
}
