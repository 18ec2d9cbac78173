//! Local storage of build pods. Every emptyDir has a `sizeLimit`, and the
//! build container an ephemeral-storage request and limit unless
//! `spec.resources` sets its own, so that a build cannot fill its node's
//! disk: the kubelet evicts a pod whose emptyDir outgrows its sizeLimit or
//! whose containers outgrow their limits (pkg/kubelet/eviction/
//! eviction_manager.go `localStorageEviction`), and the scheduler places a
//! pod only where its requests fit (plugins/noderesources/fit.go).

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{json, Value};

use crate::validate::quantity;

/// The build container's ephemeral-storage request, by default.
pub const DEFAULT_EPHEMERAL_REQUEST: &str = "2Gi";
/// The build container's ephemeral-storage limit, by default, and the
/// sizeLimit of the emptyDirs that hold the build (buildah's vfs storage
/// copies every layer in full).
pub const DEFAULT_EPHEMERAL_LIMIT: &str = "32Gi";
/// The sizeLimit of volumes holding a few generated files (the builder's
/// configuration, git's home).
pub const SMALL_VOLUME_LIMIT: &str = "16Mi";
const EPHEMERAL: &str = "ephemeral-storage";

/// The operator's flags for build pods' local storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStorage {
    pub request: String,
    pub limit: String,
}

impl Default for BuildStorage {
    fn default() -> Self {
        BuildStorage {
            request: DEFAULT_EPHEMERAL_REQUEST.into(),
            limit: DEFAULT_EPHEMERAL_LIMIT.into(),
        }
    }
}

/// A flag's quantity, as the API server would read it.
pub fn parse_flag(text: &str) -> Result<String, String> {
    match quantity::parse(text) {
        Ok(q) if !q.is_negative() => Ok(text.to_string()),
        Ok(_) => Err(format!("{text:?} is negative")),
        Err(reason) => Err(format!("{text:?}: {reason}")),
    }
}

impl BuildStorage {
    /// An emptyDir holding the build (source, builder storage, output), as
    /// large as the build container's limit.
    pub fn volume(&self, name: &str, user: Option<&ResourceRequirements>) -> Value {
        json!({"name": name, "emptyDir": {"sizeLimit": self.limit_for(user)}})
    }

    /// The build container's ephemeral-storage limit: the user's, or the
    /// default, raised to the user's request.
    fn limit_for(&self, user: Option<&ResourceRequirements>) -> String {
        let of = |list: Option<&std::collections::BTreeMap<String, Quantity>>| {
            list.and_then(|l| l.get(EPHEMERAL)).map(|q| q.0.clone())
        };
        of(user.and_then(|u| u.limits.as_ref())).unwrap_or_else(|| {
            larger(
                &self.limit,
                of(user.and_then(|u| u.requests.as_ref())).as_deref(),
            )
        })
    }

    /// An emptyDir holding a few generated files.
    pub fn small_volume(name: &str) -> Value {
        json!({"name": name, "emptyDir": {"sizeLimit": SMALL_VOLUME_LIMIT}})
    }

    /// The build container's resources: `spec.resources`, with the
    /// ephemeral-storage it leaves unset. A default never contradicts the
    /// user's own value (the API server refuses a request above its limit):
    /// a default limit is at least the user's request, a default request at
    /// most the user's limit.
    pub fn resources(&self, user: Option<&ResourceRequirements>) -> Value {
        let limit = self.limit_for(user);
        let mut resources = user.cloned().unwrap_or_default();
        let limits = resources.limits.get_or_insert_with(Default::default);
        limits
            .entry(EPHEMERAL.into())
            .or_insert_with(|| Quantity(limit.clone()));
        let requests = resources.requests.get_or_insert_with(Default::default);
        requests
            .entry(EPHEMERAL.into())
            .or_insert_with(|| Quantity(smaller(&self.request, &limit)));
        serde_json::to_value(resources).expect("resources serialise")
    }
}

/// `default`, or `other` where it is larger.
fn larger(default: &str, other: Option<&str>) -> String {
    match other {
        Some(other) if compare(other, default) == Some(Ordering::Greater) => other.to_string(),
        _ => default.to_string(),
    }
}

/// `default`, or `bound` where that is smaller.
fn smaller(default: &str, bound: &str) -> String {
    if compare(default, bound) == Some(Ordering::Greater) {
        bound.to_string()
    } else {
        default.to_string()
    }
}

fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(quantity::parse(a).ok()?.compare(&quantity::parse(b).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(user: Value) -> Value {
        let user: ResourceRequirements = serde_json::from_value(user).unwrap();
        BuildStorage::default().resources(Some(&user))
    }

    #[test]
    fn the_defaults_fill_what_spec_resources_leaves_unset() {
        assert_eq!(
            BuildStorage::default().resources(None),
            json!({"limits": {EPHEMERAL: "32Gi"}, "requests": {EPHEMERAL: "2Gi"}})
        );
        assert_eq!(
            resources(json!({"limits": {"memory": "4Gi"}, "requests": {"cpu": "2"}})),
            json!({"limits": {"memory": "4Gi", EPHEMERAL: "32Gi"}, "requests": {"cpu": "2", EPHEMERAL: "2Gi"}})
        );
    }

    #[test]
    fn the_users_own_values_win_and_a_default_request_stays_within_their_limit() {
        assert_eq!(
            resources(json!({"limits": {EPHEMERAL: "1Gi"}})),
            json!({"limits": {EPHEMERAL: "1Gi"}, "requests": {EPHEMERAL: "1Gi"}})
        );
        assert_eq!(
            resources(json!({"requests": {EPHEMERAL: "100Gi"}})),
            json!({"limits": {EPHEMERAL: "100Gi"}, "requests": {EPHEMERAL: "100Gi"}})
        );
        assert_eq!(
            resources(json!({"requests": {EPHEMERAL: "1Gi"}, "limits": {EPHEMERAL: "200Gi"}})),
            json!({"limits": {EPHEMERAL: "200Gi"}, "requests": {EPHEMERAL: "1Gi"}})
        );
    }

    #[test]
    fn the_builds_volumes_are_as_large_as_its_limit() {
        let storage = BuildStorage::default();
        let user: ResourceRequirements =
            serde_json::from_value(json!({"limits": {EPHEMERAL: "100Gi"}})).unwrap();
        assert_eq!(
            storage.volume("w", Some(&user))["emptyDir"]["sizeLimit"],
            "100Gi"
        );
        assert_eq!(storage.volume("w", None)["emptyDir"]["sizeLimit"], "32Gi");
    }

    #[test]
    fn flags_are_quantities() {
        assert_eq!(parse_flag("10Gi"), Ok("10Gi".into()));
        assert!(parse_flag("ten").unwrap_err().contains("\"ten\""));
        assert!(parse_flag("-1Gi").unwrap_err().contains("negative"));
    }
}
