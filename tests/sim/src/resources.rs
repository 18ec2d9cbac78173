//! The registry of served resources: the built-in kinds plus one entry per
//! served version of every established CRD.

use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ResDef {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_sub: bool,
    pub log_sub: bool,
    /// Where objects live: events.k8s.io/v1 Events are stored as core v1 Events.
    pub storage_group: String,
    /// openAPIV3Schema for custom resources (structural schema rules apply).
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
    pub is_crd: bool,
    /// Whether this version is the preferred one of its group.
    pub preferred: bool,
}

impl ResDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// Storage key: one store for every version (and for both Event shapes).
    pub fn gr(&self) -> String {
        format!("{}/{}", self.storage_group, self.plural)
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    pub fn is_events_k8s_io(&self) -> bool {
        self.group == "events.k8s.io"
    }
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.group == "authorization.k8s.io" {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status_sub: bool,
) -> ResDef {
    ResDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status_sub,
        log_sub: false,
        storage_group: group.into(),
        schema: None,
        printer_columns: vec![],
        is_crd: false,
        preferred: true,
    }
}

pub fn builtins() -> Vec<Arc<ResDef>> {
    let mut v = vec![
        builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
        builtin("", "v1", "nodes", "Node", false, &["no"], true),
        builtin("", "v1", "pods", "Pod", true, &["po"], true),
        builtin("", "v1", "secrets", "Secret", true, &[], false),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        ),
        builtin("", "v1", "events", "Event", true, &["ev"], false),
        builtin("", "v1", "services", "Service", true, &["svc"], true),
        builtin("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
        builtin(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            &[],
            false,
        ),
        builtin("batch", "v1", "jobs", "Job", true, &[], true),
        // apps/v1 (pkg/registry/apps): the kinds a Deployment rolls out with.
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            true,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
        ),
    ];
    // rbac.authorization.k8s.io/v1 (pkg/registry/rbac), the access reviews
    // (create only, not stored) and admissionregistration.k8s.io/v1 policies.
    for (plural, kind, namespaced) in [
        ("roles", "Role", true),
        ("rolebindings", "RoleBinding", true),
        ("clusterroles", "ClusterRole", false),
        ("clusterrolebindings", "ClusterRoleBinding", false),
    ] {
        v.push(builtin(
            crate::rbac::GROUP,
            "v1",
            plural,
            kind,
            namespaced,
            &[],
            false,
        ));
    }
    for (plural, kind, namespaced) in [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
        ("subjectaccessreviews", "SubjectAccessReview", false),
        (
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            true,
        ),
    ] {
        v.push(builtin(
            "authorization.k8s.io",
            "v1",
            plural,
            kind,
            namespaced,
            &[],
            false,
        ));
    }
    v.push(builtin(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        false,
        &[],
        true,
    ));
    v.push(builtin(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        false,
        &[],
        false,
    ));
    let mut ev = builtin(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        false,
    );
    ev.storage_group = String::new();
    v.push(ev);
    for d in &mut v {
        if d.plural == "pods" {
            d.log_sub = true;
            d.categories = vec!["all".into()];
        }
        if matches!(
            d.plural.as_str(),
            "jobs" | "services" | "deployments" | "replicasets"
        ) {
            d.categories = vec!["all".into()];
        }
        if d.plural == "customresourcedefinitions" {
            d.categories = vec!["api-extensions".into()];
        }
    }
    v.into_iter().map(Arc::new).collect()
}

/// The resources a CRD serves, once it is stored. Every served version is
/// stored as-is (conversion strategy None: only apiVersion changes).
pub fn from_crd(crd: &Value) -> Vec<Arc<ResDef>> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("").to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or("").to_string();
    let kind = names["kind"].as_str().unwrap_or("").to_string();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return vec![];
    }
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    // The preferred version is the highest-priority served one; Kubernetes
    // orders by version priority (GA > beta > alpha), approximated by the
    // storage version here.
    let storage_ver = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .unwrap_or("")
        .to_string();
    versions
        .iter()
        .filter(|v| v["served"] != false)
        .map(|v| {
            let name = v["name"].as_str().unwrap_or("").to_string();
            Arc::new(ResDef {
                group: group.clone(),
                preferred: name == storage_ver,
                version: name,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced: spec["scope"] != "Cluster",
                short_names: strs(&names["shortNames"]),
                categories: strs(&names["categories"]),
                status_sub: v["subresources"].get("status").is_some(),
                log_sub: false,
                storage_group: group.clone(),
                schema: v["schema"].get("openAPIV3Schema").cloned(),
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                is_crd: true,
            })
        })
        .collect()
}

#[derive(Debug, Default)]
pub struct Registry {
    pub defs: Vec<Arc<ResDef>>,
}

impl Registry {
    pub fn new() -> Self {
        Registry { defs: builtins() }
    }
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResDef>> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .cloned()
    }
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResDef>> {
        self.defs
            .iter()
            .find(|d| d.api_version() == api_version && d.kind == kind)
            .cloned()
    }
    pub fn by_gr(&self, gr: &str) -> Option<Arc<ResDef>> {
        // Compared in parts: the controllers look up every stored object's
        // definition on each pass, and formatting `gr()` per definition
        // dominated them.
        let (group, plural) = gr.split_once('/')?;
        self.defs
            .iter()
            .find(|d| d.storage_group == group && d.plural == plural && d.group == d.storage_group)
            .cloned()
    }
    /// Replace the definitions a CRD contributes.
    pub fn set_crd(&mut self, group: &str, plural: &str, defs: Vec<Arc<ResDef>>) {
        self.defs
            .retain(|d| !(d.is_crd && d.group == group && d.plural == plural));
        self.defs.extend(defs);
    }
    pub fn groups(&self) -> Vec<(String, Vec<String>, String)> {
        let mut out: Vec<(String, Vec<String>, String)> = vec![];
        for d in &self.defs {
            if d.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|g| g.0 == d.group) {
                Some(g) => {
                    if !g.1.contains(&d.version) {
                        g.1.push(d.version.clone());
                    }
                    if d.preferred {
                        g.2 = d.version.clone();
                    }
                }
                None => out.push((d.group.clone(), vec![d.version.clone()], d.version.clone())),
            }
        }
        out
    }
}
