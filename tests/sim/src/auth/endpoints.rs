//! Create-only endpoints of authentication and authorization: the access
//! reviews (pkg/registry/authorization/*) and TokenRequest
//! (pkg/registry/core/serviceaccount/storage/token.go).

use super::UserInfo;
use crate::error::{ApiError, FieldError};
use crate::rbac::Attributes;
use crate::resources::ResDef;
use serde_json::{json, Value};
use std::sync::Arc;

/// The review kinds served under authorization.k8s.io/v1.
pub const REVIEWS: [&str; 3] = [
    "selfsubjectaccessreviews",
    "subjectaccessreviews",
    "localsubjectaccessreviews",
];

fn review_attributes(spec: &Value, user: Arc<UserInfo>, ns_override: Option<&str>) -> Attributes {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let ra = &spec["resourceAttributes"];
    if ra.is_object() {
        Attributes {
            user,
            verb: s(&ra["verb"]),
            resource_request: true,
            api_group: s(&ra["group"]),
            api_version: s(&ra["version"]),
            resource: s(&ra["resource"]),
            subresource: s(&ra["subresource"]),
            namespace: ns_override
                .map(String::from)
                .unwrap_or_else(|| s(&ra["namespace"])),
            name: s(&ra["name"]),
            path: String::new(),
        }
    } else {
        let na = &spec["nonResourceAttributes"];
        Attributes {
            user,
            verb: s(&na["verb"]),
            path: s(&na["path"]),
            ..Default::default()
        }
    }
}

fn review(
    shared: &crate::Shared,
    def: &ResDef,
    ns: &str,
    mut obj: Value,
    user: &Arc<UserInfo>,
) -> Result<Value, ApiError> {
    let spec = obj["spec"].clone();
    let has_ra = spec["resourceAttributes"].is_object();
    let has_na = spec["nonResourceAttributes"].is_object();
    if has_ra == has_na {
        return Err(ApiError::invalid(
            &def.kind,
            &def.group,
            "",
            vec![FieldError::invalid(
                "spec.resourceAttributes",
                &Value::Null,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        ));
    }
    let subject = if def.plural == "selfsubjectaccessreviews" {
        user.clone()
    } else {
        let strs = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        };
        let mut extra = std::collections::BTreeMap::new();
        for (k, v) in spec["extra"].as_object().into_iter().flatten() {
            extra.insert(k.clone(), strs(v));
        }
        Arc::new(UserInfo {
            username: spec["user"].as_str().unwrap_or("").into(),
            uid: spec["uid"].as_str().unwrap_or("").into(),
            groups: strs(&spec["groups"]),
            extra,
        })
    };
    // A LocalSubjectAccessReview is about its own namespace
    // (pkg/registry/authorization/localsubjectaccessreview/rest.go).
    let local = def.plural == "localsubjectaccessreviews";
    if local
        && spec["resourceAttributes"]["namespace"]
            .as_str()
            .is_some_and(|n| n != ns)
    {
        return Err(ApiError::bad_request(format!(
            "spec.resourceAttributes.namespace must match namespace: {ns}"
        )));
    }
    let attrs = review_attributes(&spec, subject.clone(), local.then_some(ns));
    let (allowed, reason) = crate::rbac::authorize(&shared.cluster, &attrs);
    obj["apiVersion"] = json!(def.api_version());
    obj["kind"] = json!(def.kind);
    let md = crate::util::ensure_obj(&mut obj, &["metadata"]);
    md.insert("creationTimestamp".into(), Value::Null);
    if local {
        md.insert("namespace".into(), json!(ns));
    }
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    obj["status"] = status;
    Ok(obj)
}

fn token_request(
    shared: &crate::Shared,
    ns: &str,
    name: &str,
    mut obj: Value,
) -> Result<Value, ApiError> {
    let c = &shared.cluster;
    let sa = c.get(&c.def("", "serviceaccounts"), ns, name)?;
    let secs = obj["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(super::DEFAULT_TOKEN_SECONDS);
    // pkg/apis/authentication/validation/validation.go ValidateTokenRequest.
    if secs < super::MIN_TOKEN_SECONDS {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            vec![FieldError::invalid(
                "spec.expirationSeconds",
                &json!(secs),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let token = shared
        .tokens
        .add_service_account(&sa, Some(std::time::Duration::from_secs(secs as u64)));
    let expires = chrono::Utc::now() + chrono::Duration::seconds(secs);
    obj["apiVersion"] = json!("authentication.k8s.io/v1");
    obj["kind"] = json!("TokenRequest");
    obj["metadata"] =
        json!({"name": name, "namespace": ns, "creationTimestamp": crate::util::now_rfc3339()});
    if obj["spec"]["audiences"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        obj["spec"]["audiences"] = json!([AUDIENCE]);
    }
    obj["spec"]["expirationSeconds"] = json!(secs);
    obj["status"] = json!({"token": token,
        "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
    Ok(obj)
}

/// The API audience of the tokens (the default service-account issuer).
pub const AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Serves the request when it is one of these endpoints; the body is only
/// decoded then.
#[allow(clippy::too_many_arguments)]
pub fn serve(
    shared: &crate::Shared,
    def: &ResDef,
    ns: &str,
    name: &str,
    sub: &str,
    verb: &str,
    body: impl FnOnce() -> Result<Value, ApiError>,
    user: &Arc<UserInfo>,
) -> Result<Option<Value>, ApiError> {
    let is_review = def.group == "authorization.k8s.io" && REVIEWS.contains(&def.plural.as_str());
    let is_token = def.group.is_empty() && def.plural == "serviceaccounts" && sub == "token";
    if !is_review && !is_token {
        return Ok(None);
    }
    if verb != "create" {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let obj = body()?;
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    if is_token {
        return token_request(shared, ns, name, obj).map(Some);
    }
    review(shared, def, ns, obj, user).map(Some)
}
