//! The default ClusterRoles and ClusterRoleBindings a real cluster starts
//! with, limited to the kinds the simulator serves. Follows
//! plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go and
//! controller_policy.go (names, labels, aggregation and bindings).

use serde_json::{json, Value};

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(paths: &[&str]) -> Value {
    json!({"nonResourceURLs": paths, "verbs": ["get"]})
}

fn meta(name: &str, aggregate_to: &[&str]) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for a in aggregate_to {
        labels[format!("rbac.authorization.k8s.io/aggregate-to-{a}")] = json!("true");
    }
    json!({"name": name, "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
}

fn role(name: &str, aggregate_to: &[&str], rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": meta(name, aggregate_to), "rules": rules})
}

fn aggregated(name: &str, aggregate_to: &[&str]) -> Value {
    let mut r = role(name, aggregate_to, vec![]);
    r["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}]});
    r
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": meta(name, &[]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

fn cat(a: &[&'static str], b: &[&'static str]) -> Vec<&'static str> {
    a.iter().chain(b).copied().collect()
}

pub fn cluster_roles() -> Vec<Value> {
    let rw = cat(&READ, &WRITE);
    vec![
        role(
            "cluster-admin",
            &[],
            vec![
                rule(&["*"], &["*"], &["*"]),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        role(
            "system:discovery",
            &[],
            vec![urls(&[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        role(
            "system:public-info-viewer",
            &[],
            vec![urls(&[
                "/healthz",
                "/livez",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        aggregated("admin", &[]),
        aggregated("edit", &["admin"]),
        aggregated("view", &["admin", "edit"]),
        role(
            "system:aggregate-to-admin",
            &["admin"],
            vec![
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["roles", "rolebindings"],
                    &rw,
                ),
                rule(
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                    &["create"],
                ),
            ],
        ),
        role(
            "system:aggregate-to-edit",
            &["admin", "edit"],
            vec![
                rule(
                    &[""],
                    &[
                        "pods",
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                    ],
                    &rw,
                ),
                rule(
                    &[""],
                    &["configmaps", "events", "secrets", "serviceaccounts"],
                    &rw,
                ),
                rule(&[""], &["serviceaccounts"], &["impersonate"]),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(&["batch"], &["jobs", "cronjobs"], &rw),
                rule(
                    &["apps"],
                    &[
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                    ],
                    &rw,
                ),
                rule(&["coordination.k8s.io"], &["leases"], &rw),
            ],
        ),
        role(
            "system:aggregate-to-view",
            &["admin", "edit", "view"],
            vec![
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "pods",
                        "pods/log",
                        "pods/status",
                        "serviceaccounts",
                    ],
                    &READ,
                ),
                rule(&[""], &["namespaces", "namespaces/status"], &READ),
                rule(
                    &["batch"],
                    &["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
                    &READ,
                ),
                rule(
                    &["apps"],
                    &[
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                    ],
                    &READ,
                ),
                rule(&["events.k8s.io"], &["events"], &READ),
            ],
        ),
    ]
}

pub fn cluster_role_bindings() -> Vec<Value> {
    use crate::auth::{AUTHENTICATED, SYSTEM_MASTERS, UNAUTHENTICATED};
    vec![
        binding("cluster-admin", "cluster-admin", &[SYSTEM_MASTERS]),
        binding("system:discovery", "system:discovery", &[AUTHENTICATED]),
        binding("system:basic-user", "system:basic-user", &[AUTHENTICATED]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[AUTHENTICATED, UNAUTHENTICATED],
        ),
    ]
}

/// Stores the defaults (at start, before any client can connect).
pub fn install(c: &crate::api::Cluster) {
    let opts = crate::api::WriteOpts::internal("kube-apiserver");
    let roles = c.def(super::GROUP, "clusterroles");
    for r in cluster_roles() {
        let _ = c.create(&roles, "", r, &opts);
    }
    let bindings = c.def(super::GROUP, "clusterrolebindings");
    for b in cluster_role_bindings() {
        let _ = c.create(&bindings, "", b, &opts);
    }
}
