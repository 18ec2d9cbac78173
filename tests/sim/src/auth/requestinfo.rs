//! The authorization attributes of a request, from its path, method and
//! query alone (before routing), as the real server computes them.
//! Follows staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go.

use super::UserInfo;
use crate::rbac::Attributes;
use std::collections::HashMap;
use std::sync::Arc;

/// Namespace subresources that keep `namespaces` as the resource
/// (requestinfo.go namespaceSubresources).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

pub fn attributes(
    method: &http::Method,
    path: &str,
    query: &HashMap<String, String>,
    user: &Arc<UserInfo>,
) -> Attributes {
    let mut a = Attributes {
        user: user.clone(),
        path: path.to_string(),
        verb: method.as_str().to_lowercase(),
        ..Default::default()
    };
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut rest: &[&str] = match parts.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => {
            a.api_version = v.to_string();
            rest
        }
        ["apis", g, v, rest @ ..] if !rest.is_empty() => {
            a.api_group = g.to_string();
            a.api_version = v.to_string();
            rest
        }
        // Discovery and everything else: a non-resource request.
        _ => return a,
    };
    a.resource_request = true;
    a.verb = match *method {
        http::Method::POST => "create",
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    }
    .to_string();
    if rest.first() == Some(&"watch") {
        a.verb = "watch".into();
        rest = &rest[1..];
    }
    if rest.first() == Some(&"namespaces") {
        if let Some(ns) = rest.get(1) {
            a.namespace = ns.to_string();
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest = &rest[2..];
            }
        }
    }
    if let Some(r) = rest.first() {
        a.resource = r.to_string();
    }
    if let Some(n) = rest.get(1) {
        a.name = n.to_string();
    }
    if rest.len() >= 3 && a.verb != "watch" {
        a.subresource = rest[2].to_string();
    }
    let watch = matches!(
        query.get("watch").map(String::as_str),
        Some("1") | Some("true")
    );
    if a.name.is_empty() && a.verb == "get" {
        a.verb = if watch { "watch" } else { "list" }.into();
    }
    if a.verb == "delete" && a.name.is_empty() {
        a.verb = "deletecollection".into();
    }
    // A list or watch of one object by field selector names it.
    if matches!(a.verb.as_str(), "list" | "watch") && a.name.is_empty() {
        if let Some(fs) = query.get("fieldSelector") {
            for term in fs.split(',') {
                if let Some(n) = term
                    .strip_prefix("metadata.name==")
                    .or_else(|| term.strip_prefix("metadata.name="))
                {
                    a.name = n.to_string();
                }
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(m: http::Method, p: &str, q: &[(&str, &str)]) -> Attributes {
        let q = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        attributes(&m, p, &q, &Arc::new(UserInfo::default()))
    }

    #[test]
    fn verbs_and_resources() {
        let a = attrs(http::Method::GET, "/apis/batch/v1/namespaces/ci/jobs", &[]);
        assert_eq!(
            (
                a.verb.as_str(),
                a.api_group.as_str(),
                a.resource.as_str(),
                a.namespace.as_str()
            ),
            ("list", "batch", "jobs", "ci")
        );
        let a = attrs(
            http::Method::GET,
            "/api/v1/namespaces/ci/pods",
            &[("watch", "1")],
        );
        assert_eq!(a.verb, "watch");
        let a = attrs(http::Method::GET, "/api/v1/watch/namespaces/ci/pods/p", &[]);
        assert_eq!(
            (a.verb.as_str(), a.name.as_str(), a.subresource.as_str()),
            ("watch", "p", "")
        );
        let a = attrs(http::Method::GET, "/api/v1/namespaces/ci/pods/p/log", &[]);
        assert_eq!(
            (a.resource.as_str(), a.subresource.as_str()),
            ("pods", "log")
        );
        let a = attrs(http::Method::DELETE, "/api/v1/namespaces/ci/pods", &[]);
        assert_eq!(a.verb, "deletecollection");
        let a = attrs(http::Method::GET, "/api/v1/namespaces/ci", &[]);
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "ci", "ci")
        );
        let a = attrs(http::Method::GET, "/apis/batch/v1", &[]);
        assert!(!a.resource_request);
        assert_eq!(a.verb, "get");
        let a = attrs(
            http::Method::GET,
            "/api/v1/namespaces/d/leases",
            &[("fieldSelector", "metadata.name=l")],
        );
        assert_eq!(a.name, "l");
    }
}
