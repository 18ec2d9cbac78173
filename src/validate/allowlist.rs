//! Cluster-wide allowlists the operator applies to every MultiArchImage,
//! whoever wrote it: which builder images, toleration keys and node label
//! keys a spec may use, and whether builds may land on control-plane nodes.
//! The admission policy asks whether the requester may choose these at all;
//! the allowlists bound what anyone may choose. Each refusal names the
//! field and the value.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

use super::Report;
use crate::api::{BuilderStrategy, MultiArchImageSpec};
use crate::platform::Platform;

/// The labels and taints that mark control-plane nodes
/// (kubeadm: `node-role.kubernetes.io/control-plane`; before 1.24 `master`).
pub const CONTROL_PLANE_KEYS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// Flags of `controller` and `render`; empty lists allow any value.
#[derive(Debug, Clone, clap::Args)]
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
    /// Let BuildKit push from the step that runs the Dockerfile, the push
    /// secret mounted there, for platforms built on nodes the operator
    /// image does not run on (`--operator-image-architecture`). Refused
    /// when false.
    #[arg(
        long,
        env = "MULTIARCH_ALLOW_BUILD_STEP_PUSH",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub allow_build_step_push: bool,
    /// The node architectures the operator image runs on: the images'
    /// `--operator-image-architecture`, given by `with_operator_image`.
    #[arg(skip = default_operator_architectures())]
    pub operator_architectures: Vec<String>,
}

fn default_operator_architectures() -> Vec<String> {
    crate::render::BuilderImages::default().operator_architectures
}

/// The flags' defaults.
impl Default for Allowlists {
    fn default() -> Self {
        Allowlists {
            builder_images: Vec::new(),
            toleration_keys: Vec::new(),
            node_selector_keys: Vec::new(),
            allow_control_plane: false,
            allow_build_step_push: false,
            operator_architectures: default_operator_architectures(),
        }
    }
}

impl Allowlists {
    /// These allowlists, for an operator whose images are `images`.
    pub fn with_operator_image(mut self, images: &crate::render::BuilderImages) -> Self {
        self.operator_architectures = images.operator_architectures.clone();
        self
    }
}

/// BuildKit on nodes the operator's image does not run on pushes from the
/// build step, which runs the Dockerfile's steps with the push secret
/// mounted: refused unless the admin allows it.
pub(super) fn check_push_steps(
    spec: &MultiArchImageSpec,
    platforms: &[Platform],
    build_on: &BTreeMap<Platform, Platform>,
    lists: &Allowlists,
    report: &mut Report,
) {
    if spec.builder.strategy != BuilderStrategy::Buildkit || lists.allow_build_step_push {
        return;
    }
    for (i, platform) in platforms.iter().enumerate() {
        let node = build_on.get(platform).unwrap_or(platform);
        if !crate::render::operator_image_runs_on(node, &lists.operator_architectures) {
            report(
                &format!("spec.platforms[{i}]"),
                format!(
                    "{platform}: builds on {}/{} nodes, which the operator image (published for linux/{}) does not run on, so BuildKit would push from the step that runs the Dockerfile, with the push secret; use strategy buildah, whose push step runs none of the Dockerfile's steps, build it on other nodes with spec.buildOn, or ask the admin to publish the operator image for {} (--operator-image-architecture) or to allow it (--allow-build-step-push)",
                    node.node_os(),
                    node.node_arch(),
                    lists.operator_architectures.join(", linux/"),
                    node.node_arch(),
                ),
            );
        }
    }
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
