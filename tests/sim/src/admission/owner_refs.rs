//! OwnerReferencesPermissionEnforcement: changing ownerReferences needs
//! `delete` on the object, and setting `blockOwnerDeletion: true` needs
//! `update` on the owner's `finalizers` subresource.
//! Follows plugin/pkg/admission/gc/gc_admission.go.

use super::Request;
use crate::error::ApiResult;
use crate::rbac::Attributes;
use crate::store::Store;
use serde_json::Value;
use std::sync::Arc;

fn refs(v: Option<&Value>) -> Vec<Value> {
    v.and_then(|o| o["metadata"]["ownerReferences"].as_array().cloned())
        .unwrap_or_default()
}

fn blocking(r: &Value) -> bool {
    r["blockOwnerDeletion"].as_bool() == Some(true)
}

pub fn validate(s: &Store, req: &Request) -> ApiResult<()> {
    let Some(user) = req.user else {
        return Ok(());
    };
    if user.is_master() {
        return Ok(());
    }
    let new = refs(Some(req.object));
    let old = refs(req.old);
    if new == old {
        return Ok(());
    }
    let user = Arc::new(user.clone());
    let ns = req.namespace().to_string();
    // Setting ownerReferences (on create too) needs the right to delete the object.
    {
        let a = Attributes {
            user: user.clone(),
            verb: "delete".into(),
            resource_request: true,
            api_group: req.def.group.clone(),
            api_version: req.def.version.clone(),
            resource: req.def.plural.clone(),
            namespace: ns.clone(),
            name: req.name().into(),
            ..Default::default()
        };
        if !crate::rbac::authorize_in(s, &a).0 {
            return Err(crate::rbac::forbidden_status(
                &req.def.group,
                &req.def.plural,
                req.name(),
                &format!(
                    "cannot set an ownerRef on a resource you can't delete: {}, <nil>",
                    crate::rbac::authorize_in(s, &a).1
                ),
            ));
        }
    }
    // Only references that newly block their owner's deletion are checked.
    for r in new.iter().filter(|r| blocking(r)) {
        let before = old.iter().any(|o| o["uid"] == r["uid"] && blocking(o));
        if before {
            continue;
        }
        let api_version = r["apiVersion"].as_str().unwrap_or("");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let kind = r["kind"].as_str().unwrap_or("");
        let plural = req
            .registry
            .by_kind(api_version, kind)
            .map(|d| d.plural.clone())
            .unwrap_or_else(|| format!("{}s", kind.to_lowercase()));
        let a = Attributes {
            user: user.clone(),
            verb: "update".into(),
            resource_request: true,
            api_group: group.into(),
            api_version: version.into(),
            resource: plural.clone(),
            subresource: "finalizers".into(),
            namespace: ns.clone(),
            name: r["name"].as_str().unwrap_or("").into(),
            ..Default::default()
        };
        if !crate::rbac::authorize_in(s, &a).0 {
            return Err(crate::rbac::forbidden_status(
                &req.def.group,
                &req.def.plural,
                req.name(),
                &format!(
                    "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: {}, <nil>",
                    crate::rbac::authorize_in(s, &a).1
                ),
            ));
        }
    }
    Ok(())
}
