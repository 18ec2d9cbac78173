//! Rendering: the Jobs a MultiArchImage asks for, as a pure function of the
//! resource and the operator's configuration (no client). `render` prints
//! them and the controller applies the very same objects.

mod build;
mod build_id;
pub mod cache;
mod git;
mod merge;
pub mod mirrors;
mod resolve;
pub mod storage;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::{MultiArchImage, MultiArchImageSpec};
use crate::platform::Platform;
#[cfg(test)]
use crate::validate;
use crate::validate::Validated;

pub use build::{build_job, node_platform, operator_image_runs_on, BUILDKIT_CONNECT_RETRIES};
pub use build_id::{build_id, short as short_id, BuildInputs, BUILD_ID_LENGTH};
pub use git::GIT_UID;
pub use merge::{
    MergeTemplate, MERGE_CONTAINER, MERGE_IMAGE_ARCHITECTURES, MERGE_MEMORY_LIMIT,
    REVISION_ANNOTATION, SOURCE_ANNOTATION,
};
pub use resolve::{
    parse_resolved_commit, poll_tick, resolve_job, resolve_job_name, source_run, until_next_tick,
    RESOLVE_BACKOFF_LIMIT, RESOLVE_DEADLINE_SECONDS, SOURCE_RUN_LABEL,
};

/// Label every object of the operator carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "multiarch-operator";
/// The MultiArchImage a Job belongs to.
pub const NAME_LABEL: &str = "multiarch.dev/name";
pub const BUILD_ID_LABEL: &str = "multiarch.dev/build-id";
pub const PLATFORM_LABEL: &str = "multiarch.dev/platform";
/// `build` or `merge`.
pub const COMPONENT_LABEL: &str = "multiarch.dev/component";
/// The exact platform (`linux/arm/v7`), which a label value cannot spell.
pub const PLATFORM_ANNOTATION: &str = "multiarch.dev/platform";

/// On pod templates: the MultiArchImage a pod works for (label values cannot
/// hold every name), so pod events reach the right resource.
pub const RESOURCE_ANNOTATION: &str = "multiarch.dev/resource";

/// Where the steps that push mount the push secret's `config.json`.
pub const DOCKER_CONFIG_DIR: &str = "/var/run/multiarch/docker";
/// Where the build step mounts the pull secret's `config.json`.
pub const PULL_CONFIG_DIR: &str = "/var/run/multiarch/pull";

// Names of the volumes that carry a user's objects into the pods.
pub const PUSH_SECRET_VOLUME: &str = "push-secret";
pub const PULL_SECRET_VOLUME: &str = "pull-secret";
pub const GIT_CREDENTIALS_VOLUME: &str = "git-credentials";
pub const SOURCE_VOLUME: &str = "source";
/// The scratch volume every build pod has.
pub const WORKSPACE_VOLUME: &str = "workspace";
/// The build context inside build pods.
pub const SOURCE_DIR: &str = "/workspace/source";

/// Images the rendered Jobs run; the controller's flags set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderImages {
    pub buildkit: String,
    pub buildah: String,
    pub git: String,
    pub merge: String,
    /// ServiceAccount of the merge pods (for pull secrets attached to it);
    /// the namespace's default when None.
    pub merge_service_account: Option<String>,
    /// `imagePullSecrets` of the merge pods, for a private operator image.
    pub merge_image_pull_secrets: Vec<String>,
    /// The admin's registry mirrors for base-image pulls, in order.
    pub mirrors: Vec<mirrors::RegistryMirror>,
    /// Build pods' local storage: requests, limits, emptyDir sizeLimits.
    pub storage: storage::BuildStorage,
    /// Node architectures the operator's image (`merge`) runs on: merge
    /// pods go there, and build pods there push with it.
    pub operator_architectures: Vec<String>,
}

pub const DEFAULT_BUILDKIT_IMAGE: &str = "docker.io/moby/buildkit:v0.18.2-rootless";
pub const DEFAULT_BUILDAH_IMAGE: &str = "quay.io/buildah/stable:v1.38.1";
pub const DEFAULT_GIT_IMAGE: &str = "docker.io/alpine/git:v2.47.2";
pub const DEFAULT_MERGE_IMAGE: &str = concat!(
    "ghcr.io/multiarch-operator/multiarch-operator:v",
    env!("CARGO_PKG_VERSION")
);

impl Default for BuilderImages {
    fn default() -> Self {
        BuilderImages {
            buildkit: DEFAULT_BUILDKIT_IMAGE.into(),
            buildah: DEFAULT_BUILDAH_IMAGE.into(),
            git: DEFAULT_GIT_IMAGE.into(),
            merge: DEFAULT_MERGE_IMAGE.into(),
            merge_service_account: None,
            merge_image_pull_secrets: Vec::new(),
            mirrors: Vec::new(),
            storage: storage::BuildStorage::default(),
            operator_architectures: MERGE_IMAGE_ARCHITECTURES
                .iter()
                .map(|a| a.to_string())
                .collect(),
        }
    }
}

/// Command-line flags choosing the images (shared by `render` and `controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Default BuildKit (rootless) image for `strategy: buildkit`.
    #[arg(long, env = "MULTIARCH_BUILDKIT_IMAGE", default_value = DEFAULT_BUILDKIT_IMAGE)]
    pub buildkit_image: String,
    /// Default buildah image for `strategy: buildah`.
    #[arg(long, env = "MULTIARCH_BUILDAH_IMAGE", default_value = DEFAULT_BUILDAH_IMAGE)]
    pub buildah_image: String,
    /// Image with `git`, used to fetch git sources.
    #[arg(long, env = "MULTIARCH_GIT_IMAGE", default_value = DEFAULT_GIT_IMAGE)]
    pub git_image: String,
    /// Image running `multiarch-operator merge` (this operator's own image).
    #[arg(long, env = "MULTIARCH_MERGE_IMAGE", default_value = DEFAULT_MERGE_IMAGE)]
    pub merge_image: String,
    /// A node architecture (`kubernetes.io/arch`) the merge image is
    /// published for; repeatable. Merge pods run there, and build pods
    /// there push the image with it, the build holding no push secret.
    #[arg(
        long = "operator-image-architecture",
        env = "MULTIARCH_OPERATOR_IMAGE_ARCHITECTURES",
        value_delimiter = ',',
        default_values = MERGE_IMAGE_ARCHITECTURES.iter().copied(),
        value_parser = parse_architecture
    )]
    pub operator_image_architectures: Vec<String>,
    /// ServiceAccount the merge pods run as, in the resource's namespace
    /// (its imagePullSecrets apply); the namespace's default when unset.
    #[arg(long, env = "MULTIARCH_MERGE_SERVICE_ACCOUNT")]
    pub merge_service_account: Option<String>,
    /// A Secret (kubernetes.io/dockerconfigjson) in the resource's namespace
    /// to pull the merge image with; repeatable.
    #[arg(
        long = "merge-image-pull-secret",
        env = "MULTIARCH_MERGE_IMAGE_PULL_SECRETS",
        value_delimiter = ','
    )]
    pub merge_image_pull_secrets: Vec<String>,
    /// A mirror for base-image pulls from a registry, `REGISTRY=URL`
    /// (`docker.io=https://mirror.internal`, `http://` for plain HTTP);
    /// repeatable, tried in order before the registry itself. Applied to
    /// Jobs made from then on (a running build keeps its pod's).
    #[arg(
        long = "registry-mirror",
        env = "MULTIARCH_REGISTRY_MIRRORS",
        value_delimiter = ','
    )]
    pub registry_mirrors: Vec<mirrors::RegistryMirror>,
    /// The ephemeral-storage request of a build container whose
    /// spec.resources sets none.
    #[arg(
        long,
        env = "MULTIARCH_BUILD_EPHEMERAL_STORAGE_REQUEST",
        default_value = storage::DEFAULT_EPHEMERAL_REQUEST,
        value_parser = storage::parse_flag
    )]
    pub build_ephemeral_storage_request: String,
    /// The ephemeral-storage limit of a build container whose
    /// spec.resources sets none, and the sizeLimit of the emptyDirs that
    /// hold a build; a pod past it is evicted by its kubelet.
    #[arg(
        long,
        env = "MULTIARCH_BUILD_EPHEMERAL_STORAGE_LIMIT",
        default_value = storage::DEFAULT_EPHEMERAL_LIMIT,
        value_parser = storage::parse_flag
    )]
    pub build_ephemeral_storage_limit: String,
}

/// A `kubernetes.io/arch` value: lowercase letters and digits.
fn parse_architecture(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 16
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{value:?} is not a node architecture (amd64, arm64, s390x, ...)"
        ))
    }
}

impl From<ImageArgs> for BuilderImages {
    fn from(args: ImageArgs) -> Self {
        BuilderImages {
            buildkit: args.buildkit_image,
            buildah: args.buildah_image,
            git: args.git_image,
            merge: args.merge_image,
            merge_service_account: args.merge_service_account,
            merge_image_pull_secrets: args.merge_image_pull_secrets,
            mirrors: args.registry_mirrors,
            storage: storage::BuildStorage {
                request: args.build_ephemeral_storage_request,
                limit: args.build_ephemeral_storage_limit,
            },
            operator_architectures: args.operator_image_architectures,
        }
    }
}

/// Bytes of SHA-256 that tell shortened resource names apart (48 bits): two
/// resources of one namespace whose long names share a prefix must not
/// share Jobs, and 24 bits collide after a few thousand names.
pub const NAME_HASH_BYTES: usize = 6;

fn name_hash(resource_name: &str) -> String {
    hex::encode(&Sha256::digest(resource_name.as_bytes())[..NAME_HASH_BYTES])
}

/// A Kubernetes name of at most 63 characters: `<name>-<suffix>`, the name
/// shortened (and made unique by a hash of it) when needed.
pub fn object_name(resource_name: &str, suffix: &str) -> String {
    let budget = 63usize.saturating_sub(suffix.len() + 1);
    if resource_name.len() <= budget {
        return format!("{resource_name}-{suffix}");
    }
    let hash = name_hash(resource_name);
    let keep = budget.saturating_sub(hash.len() + 1);
    let prefix = resource_name[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}-{suffix}")
}

/// A label value (at most 63 characters) naming the resource.
pub fn name_label_value(resource_name: &str) -> String {
    if resource_name.len() <= 63 {
        return resource_name.to_string();
    }
    let hash = name_hash(resource_name);
    let prefix = resource_name[..63 - hash.len() - 1].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

pub fn build_job_name(resource_name: &str, build_id: &str, platform: &Platform) -> String {
    let id = build_id::short(build_id);
    object_name(resource_name, &format!("{id}-{}", platform.slug()))
}

pub fn merge_job_name(resource_name: &str, build_id: &str) -> String {
    object_name(
        resource_name,
        &format!("{}-merge", build_id::short(build_id)),
    )
}

/// The staging tag a platform's image is pushed under before the merge, for
/// builders that cannot push by digest alone.
pub fn staging_tag(build_id: &str, platform: &Platform) -> String {
    format!("mai-{}-{}", build_id::short(build_id), platform.slug())
}

fn labels(resource: &MultiArchImage, build_id: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (
            NAME_LABEL.to_string(),
            name_label_value(&resource.name_any()),
        ),
        (BUILD_ID_LABEL.to_string(), build_id.to_string()),
        (COMPONENT_LABEL.to_string(), component.to_string()),
    ])
}

/// The controller ownerReference, so deleting the resource deletes its Jobs.
fn owner_reference(resource: &MultiArchImage) -> Value {
    json!({
        "apiVersion": "multiarch.dev/v1alpha1",
        "kind": "MultiArchImage",
        "name": resource.name_any(),
        // `render` runs without a cluster: the uid is only known there.
        "uid": resource.metadata.uid.clone().unwrap_or_else(|| "<uid of the MultiArchImage>".into()),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// `spec.tolerations`, added after the automatic ones of each Job.
fn user_tolerations(spec: &MultiArchImageSpec) -> impl Iterator<Item = Value> + '_ {
    spec.tolerations
        .iter()
        .map(|t| serde_json::to_value(t).expect("a toleration serialises"))
}

/// The push secret's volume and mount.
fn push_secret_volume(spec: &MultiArchImageSpec) -> Option<(Value, Value)> {
    let secret = spec.push_secret.as_ref()?;
    Some(registry_secret(
        &secret.name,
        PUSH_SECRET_VOLUME,
        DOCKER_CONFIG_DIR,
    ))
}

/// The pull secret's volume and mount.
fn pull_secret_volume(spec: &MultiArchImageSpec) -> Option<(Value, Value)> {
    let secret = spec.pull_secret.as_ref()?;
    Some(registry_secret(
        &secret.name,
        PULL_SECRET_VOLUME,
        PULL_CONFIG_DIR,
    ))
}

/// A dockerconfigjson Secret's volume, `.dockerconfigjson` as `config.json`
/// in `dir`, and its read-only mount.
fn registry_secret(name: &str, volume: &str, dir: &str) -> (Value, Value) {
    (
        json!({"name": volume, "secret": {
            "secretName": name,
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
        }}),
        json!({"name": volume, "mountPath": dir, "readOnly": true}),
    )
}

/// A user's object that build pods mount: a pod does not start while it is
/// missing, so messages name it with the spec field that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    /// `Secret` or `ConfigMap`.
    pub kind: &'static str,
    pub name: String,
    /// The spec field naming it, and what it must hold.
    pub field: &'static str,
    /// The volume that mounts it.
    pub volume: &'static str,
}

impl std::fmt::Display for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} ({})", self.kind, self.name, self.field)
    }
}

/// The Secrets and ConfigMap a build pod mounts, in the order of its volumes.
pub fn mounted_objects(spec: &MultiArchImageSpec) -> Vec<Mounted> {
    let mut mounts = Vec::new();
    if let Some(secret) = &spec.push_secret {
        mounts.push(Mounted {
            kind: "Secret",
            name: secret.name.clone(),
            field: "spec.pushSecret: type kubernetes.io/dockerconfigjson, key .dockerconfigjson",
            volume: PUSH_SECRET_VOLUME,
        });
    }
    if let Some(secret) = &spec.pull_secret {
        mounts.push(Mounted {
            kind: "Secret",
            name: secret.name.clone(),
            field: "spec.pullSecret: type kubernetes.io/dockerconfigjson, key .dockerconfigjson",
            volume: PULL_SECRET_VOLUME,
        });
    }
    if let Some(secret) = spec.source.git.as_ref().and_then(|g| g.secret_ref.as_ref()) {
        mounts.push(Mounted {
            kind: "Secret",
            name: secret.name.clone(),
            field: "spec.source.git.secretRef",
            volume: GIT_CREDENTIALS_VOLUME,
        });
    }
    if let Some(config_map) = &spec.source.config_map {
        mounts.push(Mounted {
            kind: "ConfigMap",
            name: config_map.name.clone(),
            field: "spec.source.configMap",
            volume: SOURCE_VOLUME,
        });
    }
    mounts
}

/// The typed Job of a rendered JSON document. k8s-openapi drops keys it
/// does not know, so under test every rendering is checked to survive the
/// round trip whole: a misspelled key fails a test instead of vanishing.
fn into_job(value: Value) -> Job {
    let job: Job =
        serde_json::from_value(value.clone()).expect("rendered Jobs match the Job schema");
    #[cfg(test)]
    tests::assert_round_trips(&value, &job);
    job
}

/// Everything one build applies, computed once: the build id, one build
/// Job per platform, the merge Job (waiting for the digests), and the
/// objects the pods mount.
#[derive(Clone, Debug)]
pub struct Plan {
    pub build_id: String,
    pub platforms: Vec<Platform>,
    /// In the order of `platforms`.
    pub build_jobs: Vec<Job>,
    pub merge: MergeTemplate,
    pub mounts: Vec<Mounted>,
}

/// Renders the Jobs of a validated resource.
///
/// `commit`: the commit a git source resolved to, which every build Job
/// fetches (None: each fetch step resolves the revision on its own).
pub fn plan(
    resource: &MultiArchImage,
    valid: &Validated,
    build_id: String,
    images: &BuilderImages,
    commit: Option<&str>,
) -> Plan {
    let build_jobs = valid
        .platforms
        .iter()
        .map(|p| build_job(resource, &build_id, p, images, commit))
        .collect();
    Plan {
        merge: MergeTemplate::new(resource, valid, &build_id, images, commit),
        mounts: mounted_objects(&resource.spec),
        build_id,
        platforms: valid.platforms.clone(),
        build_jobs,
    }
}

/// The YAML `render` prints for a validated resource: the source-resolve Job (git sources), every
/// build Job, then the merge Job with placeholders where the per-platform
/// digests (and the resolved commit) go.
pub fn render_yaml(resource: &MultiArchImage, valid: &Validated, images: &BuilderImages) -> String {
    let inputs = BuildInputs::default();
    let plan = plan(
        resource,
        valid,
        build_id(&resource.spec, &inputs),
        images,
        None,
    );
    let placeholders: Vec<String> = plan
        .platforms
        .iter()
        .map(|p| format!("sha256:<digest of {p}>"))
        .collect();
    let merge = plan.merge.job(&placeholders);
    let resolve = resource
        .spec
        .source
        .git
        .as_ref()
        .and_then(|git| resolve_job(resource, &source_run(git, 0), images));
    let mut out = String::new();
    for job in resolve
        .iter()
        .chain(plan.build_jobs.iter())
        .chain(std::iter::once(&merge))
    {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(job).expect("a Job serialises to YAML"));
    }
    out
}

#[cfg(test)]
mod build_on_tests;
#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod credentials_tests;
#[cfg(test)]
mod git_tests;
#[cfg(test)]
mod tests;
