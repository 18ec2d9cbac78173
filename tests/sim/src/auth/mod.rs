//! Authentication: static bearer tokens for named users, tokens minted for
//! ServiceAccounts (TokenRequest), anonymous access to the health and
//! version endpoints only, and impersonation. Every request is then
//! authorized by `crate::rbac`.

pub mod endpoints;
pub mod impersonate;
pub mod requestinfo;

use crate::error::ApiError;
use crate::util::{name_of, uid_of};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// The admin identity of the default kubeconfig (kubeadm's name for it).
pub const ADMIN_USER: &str = "kubernetes-admin";
/// Follows staging/src/k8s.io/apiserver/pkg/authentication/user/user.go.
pub const SYSTEM_MASTERS: &str = "system:masters";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";
pub const SA_PREFIX: &str = "system:serviceaccount:";
pub const SA_GROUP: &str = "system:serviceaccounts";
/// Default TokenRequest lifetime (pkg/registry/core/serviceaccount/storage/token.go: 1h).
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;
/// The shortest lifetime a TokenRequest may ask for (10 minutes, as upstream's validation).
pub const MIN_TOKEN_SECONDS: i64 = 600;

/// Who is making a request (staging/src/k8s.io/apiserver/pkg/authentication/user.Info).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }
    /// The identity of a ServiceAccount's tokens
    /// (staging/src/k8s.io/apiserver/pkg/authentication/serviceaccount/util.go).
    pub fn service_account(ns: &str, name: &str, uid: &str) -> Self {
        UserInfo {
            username: format!("{SA_PREFIX}{ns}:{name}"),
            uid: uid.into(),
            groups: vec![
                SA_GROUP.into(),
                format!("{SA_GROUP}:{ns}"),
                AUTHENTICATED.into(),
            ],
            extra: BTreeMap::new(),
        }
    }
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == SYSTEM_MASTERS)
    }
    /// `system:serviceaccount:NS:NAME` → (NS, NAME).
    pub fn as_service_account(&self) -> Option<(&str, &str)> {
        split_sa_username(&self.username)
    }
    /// The `userInfo` of an admission request or a SubjectAccessReview.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }
}

pub fn split_sa_username(u: &str) -> Option<(&str, &str)> {
    let rest = u.strip_prefix(SA_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

#[derive(Debug, Clone)]
enum Credential {
    User(Arc<UserInfo>),
    /// A token bound to a ServiceAccount object: valid while that object
    /// (same uid) exists and the token has not expired.
    ServiceAccount {
        ns: String,
        name: String,
        uid: String,
        expires: Option<SystemTime>,
    },
}

/// The token table.
pub struct Tokens {
    map: RwLock<HashMap<String, Credential>>,
    rng: crate::util::Rng,
    admin: String,
}

impl Tokens {
    pub fn new(seed: u64) -> Self {
        let rng = crate::util::Rng::new(seed ^ 0x5eed_70c3);
        let t = Tokens {
            map: RwLock::new(HashMap::new()),
            admin: String::new(),
            rng,
        };
        let admin = t.add_user(UserInfo::new(ADMIN_USER, &[SYSTEM_MASTERS]));
        Tokens { admin, ..t }
    }

    fn fresh(&self) -> String {
        format!(
            "{}{}",
            self.rng.uuid().replace('-', ""),
            self.rng.uuid().replace('-', "")
        )
    }

    /// The `system:masters` token of the default kubeconfig.
    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    /// A static token for a user; `system:authenticated` is added as the
    /// real authenticator's group adder does.
    pub fn add_user(&self, mut user: UserInfo) -> String {
        if !user.groups.iter().any(|g| g == AUTHENTICATED) {
            user.groups.push(AUTHENTICATED.into());
        }
        let token = self.fresh();
        self.write()
            .insert(token.clone(), Credential::User(Arc::new(user)));
        token
    }

    /// A token for a ServiceAccount object (its uid binds the token).
    pub fn add_service_account(&self, sa: &Value, ttl: Option<Duration>) -> String {
        let token = self.fresh();
        self.write().insert(
            token.clone(),
            Credential::ServiceAccount {
                ns: crate::util::ns_of(sa).into(),
                name: name_of(sa).into(),
                uid: uid_of(sa).into(),
                expires: ttl.map(|t| SystemTime::now() + t),
            },
        );
        token
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Credential>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lookup(&self, token: &str) -> Option<Credential> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }
}

/// The 401 the real server answers for missing or invalid credentials
/// (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go).
pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// Paths anonymous requests may reach: the structured authentication
/// configuration's `anonymous.conditions` as kubeadm documents it
/// (staging/src/k8s.io/apiserver/pkg/apis/apiserver/types.go, AnonymousAuthConfig);
/// anything else without a valid token is 401.
const ANONYMOUS_PATHS: [&str; 4] = ["/healthz", "/livez", "/readyz", "/version"];

/// Follows staging/src/k8s.io/apiserver/pkg/authentication/request/bearertoken/bearertoken.go
/// and pkg/serviceaccount/jwt.go (the ServiceAccount must still exist with the token's uid).
pub fn authenticate(
    shared: &crate::Shared,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<Arc<UserInfo>, ApiError> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(auth) = auth else {
        let p = path.trim_end_matches('/');
        if ANONYMOUS_PATHS
            .iter()
            .any(|a| p == *a || p.starts_with(&format!("{a}/")))
        {
            return Ok(Arc::new(UserInfo::new(ANONYMOUS, &[UNAUTHENTICATED])));
        }
        return Err(unauthorized());
    };
    let token = auth
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)?;
    match shared.tokens.lookup(token).ok_or_else(unauthorized)? {
        Credential::User(u) => Ok(u),
        Credential::ServiceAccount {
            ns,
            name,
            uid,
            expires,
        } => {
            if expires.is_some_and(|e| e < SystemTime::now()) {
                return Err(unauthorized());
            }
            let c = &shared.cluster;
            let sa = c
                .get(&c.def("", "serviceaccounts"), &ns, &name)
                .map_err(|_| unauthorized())?;
            if uid_of(&sa) != uid {
                return Err(unauthorized());
            }
            Ok(Arc::new(UserInfo::service_account(&ns, &name, &uid)))
        }
    }
}

/// Authentication, impersonation and authorization of one request: the
/// filter chain of staging/src/k8s.io/apiserver/pkg/server/config.go
/// (DefaultBuildHandlerChain: WithAuthentication, WithImpersonation, WithAuthorization).
pub fn gate(
    shared: &crate::Shared,
    method: &http::Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &http::HeaderMap,
) -> Result<Arc<UserInfo>, ApiError> {
    let user = authenticate(shared, path, headers)?;
    let user = impersonate::apply(shared, user, headers)?;
    let attrs = requestinfo::attributes(method, path, query, &user);
    crate::rbac::authorize_or_forbid(&shared.cluster, &attrs)?;
    Ok(user)
}

/// A kubeconfig with one context per (name, token); the first is current.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    users: &[(String, String)],
) -> std::io::Result<()> {
    let ca = crate::api::b64(ca_pem.as_bytes());
    let mut contexts = String::new();
    let mut auths = String::new();
    for (name, token) in users {
        contexts.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: kube-sim\n    user: {name}\n    namespace: default\n"
        ));
        auths.push_str(&format!("- name: {name}\n  user:\n    token: {token}\n"));
    }
    let current = users.first().map(|u| u.0.as_str()).unwrap_or("kube-sim");
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n{contexts}current-context: {current}\nusers:\n{auths}"
    );
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    // Write then rename so a watcher never reads a half-written file; the
    // file holds credentials, so only its owner may read it.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, kc)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}

/// A patch (server-side apply) that creates its object is authorized as
/// `create` too: staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go
/// wraps createValidation in withAuthorization(..., "create").
#[allow(clippy::too_many_arguments)]
pub fn authorize_create_on_patch(
    shared: &crate::Shared,
    def: &crate::resources::ResDef,
    ns: &str,
    name: &str,
    sub: &str,
    verb: &str,
    user: &Arc<UserInfo>,
) -> Result<(), ApiError> {
    if verb != "patch" || name.is_empty() || user.is_master() {
        return Ok(());
    }
    if shared.cluster.get(def, ns, name).is_ok() {
        return Ok(());
    }
    let a = crate::rbac::Attributes {
        user: user.clone(),
        verb: "create".into(),
        resource_request: true,
        api_group: def.group.clone(),
        api_version: def.version.clone(),
        resource: def.plural.clone(),
        subresource: sub.into(),
        namespace: ns.into(),
        name: name.into(),
        path: String::new(),
    };
    crate::rbac::authorize_or_forbid(&shared.cluster, &a)
}
