//! Cluster-wide allowlists the operator applies to every MultiArchImage,
//! whoever wrote it: which builder images, toleration keys and node label
//! keys a spec may use, and whether builds may land on control-plane nodes.
//! The admission policy asks whether the requester may choose these at all;
//! the allowlists bound what anyone may choose. Each refusal names the
//! field and the value.

use k8s_openapi::api::core::v1::Toleration;

use super::Report;
use crate::api::MultiArchImageSpec;

/// The labels and taints that mark control-plane nodes
/// (kubeadm: `node-role.kubernetes.io/control-plane`; before 1.24 `master`).
pub const CONTROL_PLANE_KEYS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// Flags of `controller` and `render`; empty lists allow any value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Allowlists {
    /// Builder images `spec.builder.image` may name; repeatable. A prefix
    /// matches at a path, tag or digest boundary (`quay.io/buildah` allows
    /// `quay.io/buildah/stable:v1`, not `quay.io/buildah-x/y`); a digest
    /// (`sha256:...`) allows any image pinned to it. Any image when unset.
    #[arg(
        long = "allowed-builder-image",
        env = "MULTIARCH_ALLOWED_BUILDER_IMAGES",
        value_delimiter = ','
    )]
    pub builder_images: Vec<String>,
    /// Toleration keys `spec.tolerations` may name; repeatable. Any key
    /// when unset.
    #[arg(
        long = "allowed-toleration-key",
        env = "MULTIARCH_ALLOWED_TOLERATION_KEYS",
        value_delimiter = ','
    )]
    pub toleration_keys: Vec<String>,
    /// Node label keys `spec.nodeSelector` may name; repeatable. Any key
    /// when unset.
    #[arg(
        long = "allowed-node-selector-key",
        env = "MULTIARCH_ALLOWED_NODE_SELECTOR_KEYS",
        value_delimiter = ','
    )]
    pub node_selector_keys: Vec<String>,
    /// Let builds run on control-plane nodes (a toleration of, or a
    /// nodeSelector on, node-role.kubernetes.io/control-plane or master, or
    /// a toleration of every taint). Refused when false.
    #[arg(
        long,
        env = "MULTIARCH_ALLOW_CONTROL_PLANE",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub allow_control_plane: bool,
}

/// Whether `entry` allows `image`: a digest pins it, a prefix must end
/// where a reference component ends.
pub fn image_allowed(entry: &str, image: &str) -> bool {
    if entry.starts_with("sha256:") {
        return image.ends_with(&format!("@{entry}"));
    }
    match image.strip_prefix(entry) {
        Some("") => true,
        Some(rest) => entry.ends_with(['/', ':', '@']) || rest.starts_with(['/', ':', '@']),
        None => false,
    }
}

/// A toleration with an empty key and `Exists` tolerates every taint.
fn tolerates_everything(t: &Toleration) -> bool {
    t.key.as_deref().unwrap_or("").is_empty() && t.operator.as_deref() == Some("Exists")
}

pub(super) fn check(spec: &MultiArchImageSpec, lists: &Allowlists, report: &mut Report) {
    // A reference carrying credentials is refused, unquoted, by check_builder.
    let builder_image = spec
        .builder
        .image
        .as_ref()
        .filter(|image| !super::REFERENCE_CREDENTIALS.is_match(image));
    if let Some(image) = builder_image {
        if !lists.builder_images.is_empty()
            && !lists.builder_images.iter().any(|e| image_allowed(e, image))
        {
            report(
                "spec.builder.image",
                format!(
                    "{image:?} is not an allowed builder image (allowed: {})",
                    lists.builder_images.join(", ")
                ),
            );
        }
    }
    for (i, toleration) in spec.tolerations.iter().enumerate() {
        let key = toleration.key.as_deref().unwrap_or("");
        let field = format!("spec.tolerations[{i}]");
        if !lists.allow_control_plane && CONTROL_PLANE_KEYS.contains(&key) {
            report(
                &format!("{field}.key"),
                format!("{key:?} places builds on control-plane nodes, which the operator does not allow (--allow-control-plane)"),
            );
        } else if !lists.allow_control_plane && tolerates_everything(toleration) {
            report(
                &field,
                "an empty key with operator Exists tolerates every taint, control-plane nodes' too, which the operator does not allow (--allow-control-plane)".into(),
            );
        } else if !lists.toleration_keys.is_empty()
            && !lists.toleration_keys.iter().any(|k| k == key)
        {
            report(
                &format!("{field}.key"),
                format!(
                    "{key:?} is not an allowed toleration key (allowed: {})",
                    lists.toleration_keys.join(", ")
                ),
            );
        }
    }
    for key in spec.node_selector.keys() {
        let field = format!("spec.nodeSelector[{key}]");
        if !lists.allow_control_plane && CONTROL_PLANE_KEYS.contains(&key.as_str()) {
            report(
                &field,
                format!("{key:?} places builds on control-plane nodes, which the operator does not allow (--allow-control-plane)"),
            );
        } else if !lists.node_selector_keys.is_empty()
            && !lists.node_selector_keys.iter().any(|k| k == key)
        {
            report(
                &field,
                format!(
                    "{key:?} is not an allowed node label key (allowed: {})",
                    lists.node_selector_keys.join(", ")
                ),
            );
        }
    }
}
