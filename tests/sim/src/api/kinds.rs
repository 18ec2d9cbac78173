//! Per-kind rules of the API server: defaulting and validation by kind
//! (`admit`), and the side effects stored objects have on the API surface
//! (CRDs registering resources, namespaces getting a default ServiceAccount
//! and deleting their contents).

use super::{Cluster, WriteOpts};
use crate::builtin;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::resources::ResDef;
use crate::util::{self, name_of, ns_of};
use crate::validation;
use serde_json::{json, Value};

/// The `kubernetes` Service's ClusterIP (the first of the default
/// service CIDR 10.96.0.0/12).
const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// The decoder's 400 for a body that does not convert to the kind's Go
/// type (e.g. a quantity that does not parse), before any validation.
fn cannot_handle(def: &ResDef, msg: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: {msg}",
        def.kind, def.version, def.kind
    ))
}

/// Kinds whose create resets status (their status is owned by controllers).
pub(super) fn status_reset_on_create(def: &ResDef) -> bool {
    def.is_crd
        || matches!(
            def.plural.as_str(),
            "pods" | "jobs" | "deployments" | "replicasets" | "customresourcedefinitions"
        )
}

impl Cluster {
    /// The `kubernetes` Service in `default` and its Endpoints and
    /// EndpointSlice, pointing at this API server, as kube-apiserver's
    /// controlplane reconciler keeps them (pkg/controlplane/reconcilers).
    pub fn publish_apiserver_endpoints(&self, port: u16) {
        let w = WriteOpts::internal("kube-apiserver");
        let labels = json!({"component": "apiserver", "provider": "kubernetes"});
        let _ = self.create(
            &self.def("", "services"),
            "default",
            json!({"metadata": {"name": "kubernetes", "labels": labels},
                "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP, "clusterIPs": [KUBERNETES_SERVICE_IP],
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}),
            &w,
        );
        let _ = self.create(
            &self.def("", "endpoints"),
            "default",
            json!({"metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
            &w,
        );
        let _ = self.create(
            &self.def("discovery.k8s.io", "endpointslices"),
            "default",
            json!({"metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
            &w,
        );
    }

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
        if def.is_crd {
            // Custom resources' names are DNS subdomains (apiextensions-apiserver).
            errs.extend(validation::meta::each(
                "metadata.name",
                &name,
                validation::meta::is_dns1123_subdomain(&name),
            ));
        }
        match (def.group.as_str(), def.plural.as_str()) {
            ("", "pods") => {
                if let Some(e) = validation::pod::quantity_decode_error(&obj["spec"]) {
                    return Err(cannot_handle(def, e));
                }
                builtin::default_pod(obj);
            }
            ("batch", "jobs") => {
                if let Some(e) =
                    validation::pod::quantity_decode_error(&obj["spec"]["template"]["spec"])
                {
                    return Err(cannot_handle(def, e));
                }
                builtin::default_job(obj);
                if let Some(o) = old {
                    errs.extend(builtin::job_immutable(o, obj));
                }
            }
            ("apps", "deployments" | "replicasets") => {
                if let Some(e) =
                    validation::pod::quantity_decode_error(&obj["spec"]["template"]["spec"])
                {
                    return Err(cannot_handle(def, e));
                }
                builtin::default_apps(obj, def.plural == "deployments");
                if let Some(o) = old {
                    errs.extend(validation::apps::selector_immutable(o, obj));
                }
            }
            ("apiextensions.k8s.io", _) => {
                builtin::default_crd(obj);
                errs.extend(builtin::validate_crd(obj));
                errs.extend(crate::cel_cost::validate_crd(obj));
            }
            ("", "namespaces") => {
                // Follows pkg/registry/core/namespace/strategy.go
                // (Canonicalize): every namespace is labelled with its name,
                // so selectors can pick namespaces by name.
                let name = name_of(obj).to_string();
                let labels = util::ensure_obj(obj, &["metadata", "labels"]);
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
                let st = util::ensure_obj(obj, &["status"]);
                st.entry("phase").or_insert(json!("Active"));
                let sp = util::ensure_obj(obj, &["spec"]);
                sp.entry("finalizers").or_insert(json!(["kubernetes"]));
            }
            ("", "services") => builtin::default_service(obj, &self.rng),
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
        errs.extend(validation::validate(def, obj, old));
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
