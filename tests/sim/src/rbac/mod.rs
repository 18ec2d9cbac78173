//! RBAC authorization over the stored Roles, ClusterRoles and bindings.
//! Follows plugin/pkg/auth/authorizer/rbac/rbac.go (RuleAllows),
//! pkg/apis/rbac/v1/evaluation_helpers.go (VerbMatches, ResourceMatches...)
//! and pkg/registry/rbac/validation/rule.go (VisitRulesFor, appliesTo).

pub mod bootstrap;

use crate::api::Cluster;
use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Where the RBAC objects are read from: the store (under its lock), or a
/// snapshot of it that outlives the lock (for CEL's `authorizer`).
pub trait Objects {
    fn list_of(&self, gr: &str, ns: &str) -> Vec<Arc<Value>>;
    fn get_of(&self, gr: &str, ns: &str, name: &str) -> Option<Arc<Value>>;
}

impl Objects for Store {
    fn list_of(&self, gr: &str, ns: &str) -> Vec<Arc<Value>> {
        self.list(gr, ns)
    }
    fn get_of(&self, gr: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.get(gr, ns, name)
    }
}

/// The four RBAC kinds, copied (by reference) out of the store.
#[derive(Default)]
pub struct Snapshot(std::collections::HashMap<String, Vec<Arc<Value>>>);

impl Snapshot {
    pub fn take(s: &Store) -> Self {
        let mut m = std::collections::HashMap::new();
        for p in [
            "roles",
            "rolebindings",
            "clusterroles",
            "clusterrolebindings",
        ] {
            m.insert(gr(p), s.list(&gr(p), ""));
        }
        Snapshot(m)
    }
}

impl Objects for Snapshot {
    fn list_of(&self, gr: &str, ns: &str) -> Vec<Arc<Value>> {
        self.0
            .get(gr)
            .into_iter()
            .flatten()
            .filter(|o| ns.is_empty() || crate::util::ns_of(o) == ns)
            .cloned()
            .collect()
    }
    fn get_of(&self, gr: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.0
            .get(gr)?
            .iter()
            .find(|o| crate::util::ns_of(o) == ns && crate::util::name_of(o) == name)
            .cloned()
    }
}

/// authorizer.Attributes.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub user: Arc<UserInfo>,
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

fn strs(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn has(v: &Value, s: &str) -> bool {
    strs(v).any(|x| x == s)
}

/// One PolicyRule against the request (rbac.go RuleAllows).
pub fn rule_allows(a: &Attributes, rule: &Value) -> bool {
    let verb_ok = has(&rule["verbs"], "*") || has(&rule["verbs"], &a.verb);
    if !verb_ok {
        return false;
    }
    if !a.resource_request {
        let path = &a.path;
        return strs(&rule["nonResourceURLs"]).any(|u| {
            u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
        });
    }
    let group_ok = has(&rule["apiGroups"], "*") || has(&rule["apiGroups"], &a.api_group);
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = strs(&rule["resources"]).any(|r| {
        r == "*"
            || r == combined
            || (!a.subresource.is_empty() && r == format!("*/{}", a.subresource))
    });
    let names = rule["resourceNames"].as_array().map_or(0, Vec::len);
    let name_ok = names == 0 || has(&rule["resourceNames"], &a.name);
    group_ok && resource_ok && name_ok
}

/// Whether a binding's subject is the user (rule.go appliesToUser).
fn subject_matches(s: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = s["name"].as_str().unwrap_or("");
    match s["kind"].as_str().unwrap_or("") {
        "User" => user.username == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = s["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty() && user.username == format!("{}{ns}:{name}", crate::auth::SA_PREFIX)
        }
        _ => false,
    }
}

fn gr(plural: &str) -> String {
    format!("{GROUP}/{plural}")
}

/// How a binding names its subject (rule.go describeSubject).
fn describe_subject(s: &Value, binding_ns: &str) -> String {
    let kind = s["kind"].as_str().unwrap_or("");
    let name = s["name"].as_str().unwrap_or("");
    if kind == "ServiceAccount" {
        let ns = s["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_ns);
        return format!("{kind} \"{name}/{ns}\"");
    }
    format!("{kind} {name:?}")
}

/// Whether a ClusterRole's rules, or those of the roles it aggregates,
/// allow the request.
fn cluster_role_allows<O: Objects + ?Sized>(s: &O, role: &Value, a: &Attributes) -> bool {
    let own = |r: &Value| {
        r["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| rule_allows(a, rule))
    };
    if own(role) {
        return true;
    }
    let selectors = role["aggregationRule"]["clusterRoleSelectors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(crate::selectors::LabelSelector::from_object)
        .collect::<Vec<_>>();
    if selectors.is_empty() {
        return false;
    }
    s.list_of(&gr("clusterroles"), "").iter().any(|other| {
        crate::util::name_of(other) != crate::util::name_of(role)
            && selectors
                .iter()
                .any(|sel| sel.matches_labels(&other["metadata"]["labels"]))
            && own(other)
    })
}

fn strs_subjects(b: &Value) -> impl Iterator<Item = &Value> {
    b["subjects"].as_array().into_iter().flatten()
}

/// The decision and its reason: `system:masters` first (the privileged-group
/// authorizer of pkg/kubeapiserver/authorizer/config.go), then RBAC.
pub fn authorize(c: &Cluster, a: &Attributes) -> (bool, String) {
    if a.user.is_master() {
        return (true, String::new());
    }
    authorize_in(&*c.lock(), a)
}

/// `authorize` with the store already locked (admission runs under the lock).
pub fn authorize_in<O: Objects + ?Sized>(s: &O, a: &Attributes) -> (bool, String) {
    if a.user.is_master() {
        return (true, String::new());
    }
    // rule.go VisitRulesFor: ClusterRoleBindings, then the namespace's
    // RoleBindings; the first rule that allows ends the walk (rbac.go
    // RBACAuthorizer.Authorize), so a request costs no more than it needs.
    let ns = a.namespace.as_str();
    let mut errors = vec![];
    let cluster = s.list_of(&gr("clusterrolebindings"), "");
    let local = if ns.is_empty() {
        vec![]
    } else {
        s.list_of(&gr("rolebindings"), ns)
    };
    let bindings = cluster
        .iter()
        .map(|b| (b, ""))
        .chain(local.iter().map(|b| (b, ns)));
    for (b, binding_ns) in bindings {
        let Some(sub) = strs_subjects(b).find(|sub| subject_matches(sub, &a.user, binding_ns))
        else {
            continue;
        };
        let kind = b["roleRef"]["kind"].as_str().unwrap_or("");
        let name = b["roleRef"]["name"].as_str().unwrap_or("");
        let allowed = match kind {
            "ClusterRole" => match s.get_of(&gr("clusterroles"), "", name) {
                Some(r) => cluster_role_allows(s, &r, a),
                None => {
                    errors.push(format!("clusterrole.{GROUP} \"{name}\" not found"));
                    false
                }
            },
            "Role" => match s.get_of(&gr("roles"), crate::util::ns_of(b), name) {
                Some(r) => r["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| rule_allows(a, rule)),
                None => {
                    errors.push(format!("role.{GROUP} \"{name}\" not found"));
                    false
                }
            },
            _ => false,
        };
        if allowed {
            let id = if binding_ns.is_empty() {
                format!("ClusterRoleBinding {:?}", crate::util::name_of(b))
            } else {
                format!("RoleBinding \"{}/{ns}\"", crate::util::name_of(b))
            };
            let subject = describe_subject(sub, binding_ns);
            return (
                true,
                format!("RBAC: allowed by {id} of {kind} {name:?} to {subject}"),
            );
        }
    }
    let reason = if errors.is_empty() {
        String::new()
    } else {
        format!("RBAC: [{}]", errors.join(", "))
    };
    (false, reason)
}

/// The 403 of staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go
/// (Forbidden, forbiddenMessage) wrapped as apierrors.NewForbidden does.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let user = &a.user.username;
    let mut msg = if !a.resource_request {
        format!("User {user:?} cannot {} path {:?}", a.verb, a.path)
    } else {
        let res = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        if a.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {res:?} in API group {:?} at the cluster scope",
                a.verb, a.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {res:?} in API group {:?} in the namespace {:?}",
                a.verb, a.api_group, a.namespace
            )
        }
    };
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    forbidden_status(&a.api_group, &a.resource, &a.name, &msg)
}

/// apierrors.NewForbidden.
pub fn forbidden_status(group: &str, resource: &str, name: &str, err: &str) -> ApiError {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = match (resource.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {err}"),
        (false, true) => format!("{qualified} is forbidden: {err}"),
        (false, false) => format!("{qualified} {name:?} is forbidden: {err}"),
    };
    let mut details = json!({"group": group, "kind": resource});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    ApiError::new(403, "Forbidden", message).with_details(details)
}

pub fn authorize_or_forbid(c: &Cluster, a: &Attributes) -> Result<(), ApiError> {
    match authorize(c, a) {
        (true, _) => Ok(()),
        (false, reason) => Err(forbidden(a, &reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, res: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: res.into(),
            subresource: sub.into(),
            name: name.into(),
            namespace: "ci".into(),
            user: Arc::new(UserInfo::new("x", &[])),
            ..Default::default()
        }
    }

    #[test]
    fn rule_matching() {
        let r = json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]});
        assert!(rule_allows(&attrs("create", "batch", "jobs", "", ""), &r));
        assert!(!rule_allows(
            &attrs("create", "batch", "jobs", "status", ""),
            &r
        ));
        assert!(!rule_allows(&attrs("delete", "batch", "jobs", "", ""), &r));
        let r = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
        assert!(rule_allows(
            &attrs("patch", "multiarch.dev", "multiarchimages", "status", ""),
            &r
        ));
        assert!(!rule_allows(
            &attrs("patch", "multiarch.dev", "multiarchimages", "", ""),
            &r
        ));
        let r = json!({"apiGroups": [""], "resources": ["leases"], "resourceNames": ["l"], "verbs": ["get"]});
        assert!(rule_allows(&attrs("get", "", "leases", "", "l"), &r));
        assert!(!rule_allows(&attrs("get", "", "leases", "", "m"), &r));
        assert!(!rule_allows(&attrs("list", "", "leases", "", ""), &r));
        let mut a = attrs("get", "", "", "", "");
        a.resource_request = false;
        a.path = "/apis/batch".into();
        assert!(rule_allows(
            &a,
            &json!({"nonResourceURLs": ["/apis/*"], "verbs": ["get"]})
        ));
        assert!(!rule_allows(
            &a,
            &json!({"nonResourceURLs": ["/api/*"], "verbs": ["get"]})
        ));
    }

    #[test]
    fn forbidden_text() {
        let e = forbidden(&attrs("create", "batch", "jobs", "", ""), "");
        assert_eq!(e.message, "jobs.batch is forbidden: User \"x\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"ci\"");
        let e = forbidden(&attrs("get", "", "pods", "log", "p"), "");
        assert_eq!(e.message, "pods \"p\" is forbidden: User \"x\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"ci\"");
    }
}
