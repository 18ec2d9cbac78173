//! A pod must name an existing ServiceAccount.
//! Follows plugin/pkg/admission/serviceaccount/admission.go (Admit: the
//! default name, then "error looking up service account").

use super::{Operation, Request};
use crate::error::ApiResult;
use crate::store::Store;

pub fn validate(s: &Store, req: &Request) -> ApiResult<()> {
    if req.op != Operation::Create || !req.is("", "pods") || !req.sub.is_empty() {
        return Ok(());
    }
    // Mirror pods (static pods of a kubelet) are exempt.
    if req.object["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Ok(());
    }
    let ns = req.namespace();
    let sa = req.object["spec"]["serviceAccountName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    if s.get("/serviceaccounts", ns, sa).is_none() {
        return Err(crate::rbac::forbidden_status(
            "",
            "pods",
            req.name(),
            &format!(
                "error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
            ),
        ));
    }
    Ok(())
}
