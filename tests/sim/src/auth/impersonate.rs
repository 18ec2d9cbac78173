//! Impersonation headers, each authorized by the `impersonate` verb.
//! Follows staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go.

use super::{UserInfo, ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED};
use crate::error::ApiError;
use crate::rbac::Attributes;
use std::sync::Arc;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

fn check(
    shared: &crate::Shared,
    requestor: &Arc<UserInfo>,
    group: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let a = Attributes {
        user: requestor.clone(),
        verb: "impersonate".into(),
        resource_request: true,
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    };
    crate::rbac::authorize_or_forbid(&shared.cluster, &a)
}

/// The user a request acts as: the authenticated one, or the impersonated
/// one once every requested part is allowed.
pub fn apply(
    shared: &crate::Shared,
    requestor: Arc<UserInfo>,
    headers: &http::HeaderMap,
) -> Result<Arc<UserInfo>, ApiError> {
    let values = |h: &str| -> Vec<String> {
        headers
            .get_all(h)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect()
    };
    let user = values(USER).into_iter().next();
    let groups = values(GROUP);
    let uid = values(UID).into_iter().next();
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix(EXTRA_PREFIX)?;
            Some((key.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    let Some(username) = user else {
        if groups.is_empty() && uid.is_none() && extras.is_empty() {
            return Ok(requestor);
        }
        return Err(ApiError::bad_request(format!(
            "requested {:?} without impersonating a user",
            groups
        )));
    };
    let mut target = UserInfo {
        username: username.clone(),
        ..Default::default()
    };
    if let Some((ns, name)) = super::split_sa_username(&username) {
        check(shared, &requestor, "", "serviceaccounts", ns, name)?;
        if groups.is_empty() {
            // An impersonated ServiceAccount gets its usual groups.
            target.groups = UserInfo::service_account(ns, name, "").groups;
        }
    } else {
        check(shared, &requestor, "", "users", "", &username)?;
    }
    for g in &groups {
        check(shared, &requestor, "", "groups", "", g)?;
        target.groups.push(g.clone());
    }
    if let Some(u) = uid {
        check(shared, &requestor, "authentication.k8s.io", "uids", "", &u)?;
        target.uid = u;
    }
    for (k, v) in extras {
        check(
            shared,
            &requestor,
            "authentication.k8s.io",
            &format!("userextras/{k}"),
            "",
            &v,
        )?;
        target.extra.entry(k).or_default().push(v);
    }
    let implied = if username == ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    if !target.groups.iter().any(|g| g == implied) {
        target.groups.push(implied.into());
    }
    Ok(Arc::new(target))
}
