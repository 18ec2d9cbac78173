//! The `MultiArchImage` resource (`multiarch.dev/v1alpha1`).
//!
//! Doc comments on fields become `kubectl explain` text. Schema patterns are
//! the same constants `validate` uses, so admission and the operator agree.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `os/arch[/variant]`, lower case; aliases are normalised by the operator.
pub const PLATFORM_PATTERN: &str = r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9.]+)?$";
/// A tag as the OCI distribution spec defines it.
pub const TAG_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$";
/// A repository: optional `host[:port]/`, then lower-case path components;
/// no tag and no digest.
pub const REPOSITORY_PATTERN: &str = r"^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$";
/// `[scheme://]user:password@` before the first `/` of an image reference
/// (a digest, `name@sha256:...`, has no `:` before its `@`). Checked before
/// anything quotes the reference.
pub const REFERENCE_CREDENTIALS_PATTERN: &str = r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/@]*:[^/@]*@";
pub const REFERENCE_CREDENTIALS_MESSAGE: &str =
    "must not carry credentials (user:password@); registry credentials go in Secrets, spec.pushSecret for the push";
pub const REPOSITORY_MESSAGE: &str =
    "must be a repository, [host[:port]/]path in lower case, without tag or digest";
/// A Kubernetes object name (DNS-1123 subdomain).
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A build argument name, as a shell variable would be spelled.
pub const BUILD_ARG_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// A multi-stage target (a stage name).
pub const TARGET_PATTERN: &str = r"^([A-Za-z0-9][A-Za-z0-9_.-]*)?$";

/// CEL: a path relative to the source that stays inside it (no leading
/// `/`, no `..` segment). A CEL refusal names the field, not the value.
pub const RELATIVE_PATH_RULE: &str = "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')";
pub const RELATIVE_PATH_MESSAGE: &str =
    "must be a relative path inside the source: no leading '/' and no '..' segment";
/// CEL: a path naming a file, not a directory: its last segment is neither
/// empty (a trailing `/`) nor `.` (`..` is refused by RELATIVE_PATH_RULE).
pub const FILE_PATH_RULE: &str = "self != '.' && !self.endsWith('/') && !self.endsWith('/.')";
pub const FILE_PATH_MESSAGE: &str = "must name a file: its last segment may not be empty or '.'";
/// CEL: no password (any scheme) and no user (http/https) in a git URL. A CEL
/// refusal echoes the type (`"string"`), never the value, so the secret in a
/// refused URL is not repeated back.
pub const GIT_URL_WITHOUT_CREDENTIALS_RULE: &str =
    "!self.matches('^https?://[^/]*@') && !self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@')";
/// A git clone URL: a scheme the fetch step supports, no white space (a
/// POSIX class: the same text is RE2 in the CRD's CEL and Rust's regex).
/// A CEL rule rather than a schema `pattern`: the API server quotes the
/// value of a failed pattern, and a refused URL may carry a password.
pub const GIT_URL_PATTERN: &str = r"^(https?://|ssh://|git@)[^[:space:]]+$";
/// CEL: no query and no fragment, where tokens hide (`?private_token=`);
/// the URL is stored in Job arguments that whoever reads Jobs can see.
pub const GIT_URL_WITHOUT_QUERY_RULE: &str = "!self.contains('?') && !self.contains('#')";
pub const GIT_URL_WITHOUT_QUERY_MESSAGE: &str = "must not carry a query or fragment (tokens there would be stored in the Jobs); put credentials in a Secret named by spec.source.git.secretRef";
pub const GIT_URL_FORM_MESSAGE: &str =
    "must be an https://, http://, ssh:// or git@host:path URL without white space";
/// A branch, tag or commit: no leading `-` (it would be an option to git).
pub const GIT_REVISION_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$";

// Limits. Each is used both by the CRD schema (admission) and by
// `validate()` (the operator and `render`), so the two cannot drift.
/// The longest repository name, as distribution's reference grammar allows.
pub const MAX_IMAGE_LENGTH: usize = 255;
pub const MAX_TAGS: usize = 32;
pub const MAX_PLATFORMS: usize = 16;
pub const MAX_PLATFORM_LENGTH: usize = 64;
/// `contextDir` and `dockerfile`.
pub const MAX_PATH_LENGTH: usize = 1024;
pub const MAX_TARGET_LENGTH: usize = 128;
pub const MAX_BUILD_ARGS: usize = 64;
/// The longest build argument value, in bytes.
pub const MAX_BUILD_ARG_VALUE: usize = 4096;
/// The longest build argument name, in bytes.
pub const MAX_BUILD_ARG_NAME: usize = 128;
/// All build argument names and values together, in bytes: every build Job
/// carries them, and the operator's caches hold every Job.
pub const MAX_BUILD_ARGS_TOTAL: usize = 32 * 1024;
/// `spec.tolerations` entries.
pub const MAX_TOLERATIONS: usize = 32;
/// `spec.nodeSelector` entries.
pub const MAX_NODE_SELECTOR: usize = 32;
/// Entries of each of `spec.resources.limits` and `.requests`.
pub const MAX_RESOURCES_ENTRIES: usize = 16;
/// A duration in whole hours, minutes and seconds, as Go and kubectl spell
/// it: `30s`, `5m`, `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,7}[hms]){1,3}$";
/// The shortest `spec.source.git.pollInterval`: polling faster would load
/// the git host for little gain.
pub const MIN_POLL_INTERVAL_SECONDS: u64 = 10;
/// The longest one (a week): beyond that, trigger builds by hand.
pub const MAX_POLL_INTERVAL_SECONDS: u64 = 7 * 24 * 3600;
pub const MAX_GIT_URL_LENGTH: usize = 2048;
pub const MAX_REVISION_LENGTH: usize = 255;
/// A DNS-1123 subdomain, as Kubernetes object names are.
pub const MAX_OBJECT_NAME_LENGTH: usize = 253;
pub const MAX_BUILDER_IMAGE_LENGTH: usize = 512;
pub const MIN_ACTIVE_DEADLINE_SECONDS: i64 = 1;
pub const MAX_ACTIVE_DEADLINE_SECONDS: i64 = 86400;
pub const MAX_BACKOFF_LIMIT: i32 = 10;
/// `spec.buildOn` has at most one entry per platform.
pub const MAX_BUILD_ON: usize = MAX_PLATFORMS;
/// `spec.cache.repository`: a repository, as `image`.
pub const MAX_CACHE_REPOSITORY_LENGTH: usize = MAX_IMAGE_LENGTH;

/// `kubectl annotate mai NAME multiarch.dev/retry=<any new value>`: rerun
/// the failed platforms and the merge of the current build; platforms that
/// succeeded keep their digests.
pub const RETRY_ANNOTATION: &str = "multiarch.dev/retry";
/// `kubectl annotate mai NAME multiarch.dev/rebuild=<any new value>`: build
/// every platform again; the value is part of the build id.
pub const REBUILD_ANNOTATION: &str = "multiarch.dev/rebuild";

/// A request to build one image for several platforms natively and publish
/// them under one multi-architecture image index.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "multiarch.dev",
    version = "v1alpha1",
    kind = "MultiArchImage",
    plural = "multiarchimages",
    shortname = "mai",
    category = "all",
    namespaced,
    status = "MultiArchImageStatus",
    derive = "PartialEq",
    doc = "MultiArchImage builds an image natively on a node of each requested platform, then pushes one multi-architecture image index under the requested tags.",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Platforms", "type": "string", "description": "platforms built / requested", "jsonPath": ".status.platformsReady"}"#,
    printcolumn = r#"{"name": "Digest", "type": "string", "description": "the image index digest, shortened", "jsonPath": ".status.shortDigest"}"#,
    printcolumn = r#"{"name": "Image", "type": "string", "priority": 1, "jsonPath": ".status.image"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": BUILD_ON_KEYS_RULE,
    "message": BUILD_ON_KEYS_MESSAGE,
}]))]
pub struct MultiArchImageSpec {
    /// Repository to publish to, without tag or digest, e.g.
    /// `registry.example.com/tools/cowsay`.
    #[schemars(
        length(min = 1, max = MAX_IMAGE_LENGTH),
        extend("x-kubernetes-validations" = [
            {"rule": reference_without_credentials_rule(), "message": REFERENCE_CREDENTIALS_MESSAGE},
            {"rule": repository_rule(), "message": REPOSITORY_MESSAGE},
        ])
    )]
    pub image: String,

    /// Tags the image index is pushed under.
    #[serde(default = "default_tags")]
    #[schemars(
        length(min = 1, max = MAX_TAGS),
        inner(pattern(TAG_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub tags: Vec<String>,

    /// Platforms to build, `os/arch[/variant]`, each natively on a node of
    /// that architecture.
    #[serde(default = "default_platforms")]
    #[schemars(
        length(min = 1, max = MAX_PLATFORMS),
        inner(pattern(PLATFORM_PATTERN), length(max = MAX_PLATFORM_LENGTH)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub platforms: Vec<String>,

    /// Where the build context comes from: exactly one of `git` or `configMap`.
    pub source: Source,

    /// Sub-folder of the source used as the build context.
    #[serde(default = "default_context_dir")]
    #[schemars(
        length(min = 1, max = MAX_PATH_LENGTH),
        extend("x-kubernetes-validations" = [{
            "rule": RELATIVE_PATH_RULE,
            "message": RELATIVE_PATH_MESSAGE,
        }])
    )]
    pub context_dir: String,

    /// Path of the Dockerfile inside `contextDir`.
    #[serde(default = "default_dockerfile")]
    #[schemars(
        length(min = 1, max = MAX_PATH_LENGTH),
        extend("x-kubernetes-validations" = [
            {"rule": RELATIVE_PATH_RULE, "message": RELATIVE_PATH_MESSAGE},
            {"rule": FILE_PATH_RULE, "message": FILE_PATH_MESSAGE},
        ])
    )]
    pub dockerfile: String,

    /// Stage of a multi-stage Dockerfile to build; the last stage when empty.
    #[serde(default)]
    #[schemars(pattern(TARGET_PATTERN), length(max = MAX_TARGET_LENGTH))]
    pub target: String,

    /// Build arguments (`ARG` values), passed to the builder as arguments.
    #[serde(default)]
    #[schemars(extend(
        "maxProperties" = MAX_BUILD_ARGS,
        "additionalProperties" = {"type": "string", "maxLength": MAX_BUILD_ARG_VALUE},
        "x-kubernetes-validations" = [
            {"rule": build_arg_names_rule(), "message": build_arg_names_message()},
            {"rule": build_args_total_rule(), "message": build_args_total_message()},
        ],
    ))]
    pub build_args: BTreeMap<String, String>,

    /// Which builder runs in the build Jobs.
    #[serde(default)]
    pub builder: Builder,

    /// Platforms built on the nodes of another platform, e.g.
    /// `{linux/arm64: linux/amd64}` where the cluster has no arm64 node. The
    /// build pod is pinned to the other platform's nodes and the builder is
    /// still asked for the key's platform: `FROM --platform=$BUILDPLATFORM`
    /// stages run natively (cross-compiling), other steps run the target's
    /// code, which needs QEMU registered through `binfmt_misc` on those
    /// nodes. Keys are spelled as in `spec.platforms`; a platform without an
    /// entry is built on its own nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = MAX_BUILD_ON,
        "additionalProperties" = {"type": "string", "pattern": PLATFORM_PATTERN, "maxLength": MAX_PLATFORM_LENGTH},
    ))]
    pub build_on: BTreeMap<String, String>,
    /// The per-platform registry cache of the build steps.
    #[serde(default)]
    pub cache: CacheSpec,

    /// A `kubernetes.io/dockerconfigjson` Secret in the same namespace with
    /// credentials to push to `image` (and to write the cache); mounted
    /// only into the steps that push, never where the Dockerfile's steps
    /// run. The operator itself never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret: Option<LocalObjectRef>,

    /// A `kubernetes.io/dockerconfigjson` Secret in the same namespace with
    /// credentials to pull private base images and to read the cache: the
    /// only registry credential of the build step, so the only one the
    /// Dockerfile's steps can reach. Give it read access only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<LocalObjectRef>,

    /// The registry of `image` may be plain HTTP or HTTPS with an unverified
    /// certificate, for pushes and for base images pulled from it
    /// (development registries only). Other registries are always verified.
    #[serde(default)]
    pub insecure_registry: bool,

    /// Extra node labels the build pods require, merged with the per-platform
    /// `kubernetes.io/os` and `kubernetes.io/arch` pin.
    #[serde(default)]
    #[schemars(extend("maxProperties" = MAX_NODE_SELECTOR))]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations added to the automatic `kubernetes.io/arch` one.
    #[serde(default)]
    #[schemars(length(max = MAX_TOLERATIONS))]
    pub tolerations: Vec<Toleration>,

    /// Compute resources of the build container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cap_resources)]
    pub resources: Option<ResourceRequirements>,

    /// Service account of the build pods; the namespace's default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(max = MAX_OBJECT_NAME_LENGTH))]
    pub service_account_name: Option<String>,

    /// Time limit of each build Job, in seconds.
    #[serde(default = "default_active_deadline_seconds")]
    #[schemars(range(min = MIN_ACTIVE_DEADLINE_SECONDS, max = MAX_ACTIVE_DEADLINE_SECONDS))]
    pub active_deadline_seconds: i64,

    /// Retries of each build Job before its platform is marked failed.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = MAX_BACKOFF_LIMIT))]
    pub backoff_limit: i32,
}

/// The build context's origin.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.git) != has(self.configMap)",
    "message": "exactly one of spec.source.git and spec.source.configMap must be set",
}]))]
pub struct Source {
    /// A git repository, cloned at `revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// A ConfigMap in the same namespace whose keys become the context's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<LocalObjectRef>,
}

/// A git repository holding the build context.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// Clone URL (`https://`, `http://`, `ssh://` or `git@host:path`), without
    /// credentials: put those in `secretRef`.
    #[schemars(
        length(min = 1, max = MAX_GIT_URL_LENGTH),
        extend("x-kubernetes-validations" = [
            {
                "rule": GIT_URL_WITHOUT_CREDENTIALS_RULE,
                "message": "must not embed credentials; put them in a Secret named by spec.source.git.secretRef",
            },
            {"rule": GIT_URL_WITHOUT_QUERY_RULE, "message": GIT_URL_WITHOUT_QUERY_MESSAGE},
            {"rule": format!("self.matches('{GIT_URL_PATTERN}')"), "message": GIT_URL_FORM_MESSAGE},
        ])
    )]
    pub url: String,
    /// Branch, tag (annotated tags are peeled), full or abbreviated commit to
    /// build; the remote's default branch when empty. It is resolved once
    /// per build to one commit (`status.source.commit`) that every platform
    /// builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(GIT_REVISION_PATTERN), length(max = MAX_REVISION_LENGTH))]
    pub revision: Option<String>,
    /// How often to look for a new commit on `revision` (`30s`, `5m`, `1h`;
    /// at least 10s): each new commit starts a new build, an unchanged one
    /// nothing. No polling when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        pattern(DURATION_PATTERN),
        length(max = 32),
        extend("x-kubernetes-validations" = [{
            "rule": poll_interval_rule(),
            "message": poll_interval_message(),
        }])
    )]
    pub poll_interval: Option<String>,
    /// A Secret in the same namespace with git credentials, mounted only
    /// into the steps that fetch: a `kubernetes.io/basic-auth` Secret
    /// (`username`, `password`) for https, a `kubernetes.io/ssh-auth` Secret
    /// (`ssh-privatekey`, and `known_hosts`, required) for ssh, or a key
    /// `.git-credentials` (git's credential store format) for https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectRef>,
}

/// A reference to an object in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the object.
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(min = 1, max = MAX_OBJECT_NAME_LENGTH))]
    pub name: String,
}

/// The builder used by the build Jobs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Builder {
    /// `buildkit` (rootless BuildKit, the default) or `buildah`.
    #[serde(default)]
    pub strategy: BuilderStrategy,
    /// Builder image overriding the operator's default for this strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = MAX_BUILDER_IMAGE_LENGTH),
        extend("x-kubernetes-validations" = [{
            "rule": reference_without_credentials_rule(),
            "message": REFERENCE_CREDENTIALS_MESSAGE,
        }])
    )]
    pub image: Option<String>,
}

/// The build cache: each platform imports and exports its own registry
/// cache, so one platform's build never overwrites another's. It never
/// changes what is built (nor the build id), and a cache that cannot be read
/// or written never fails a build: the platform builds without it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Import and export the cache (the default); `false` builds every
    /// step from scratch and writes no cache.
    #[serde(default = "default_cache_enabled")]
    pub enabled: bool,
    /// Repository holding the cache, without tag or digest; `image` when
    /// unset. BuildKit writes `<repository>:buildcache-<os>-<arch>[-<variant>]`;
    /// buildah, whose cache images are tagged by content, writes to the
    /// repository `<repository>-buildcache-<os>-<arch>[-<variant>]`. Pushed
    /// with the push credentials, so it must be writable with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(REPOSITORY_PATTERN), length(min = 1, max = MAX_CACHE_REPOSITORY_LENGTH))]
    pub repository: Option<String>,
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            enabled: true,
            repository: None,
        }
    }
}

/// Whether a platform's build used its cache, as the builder's own output
/// tells.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CacheState {
    /// At least one step was taken from the cache.
    Hit,
    /// The cache was read and written, but held none of the steps.
    Miss,
    /// The cache could not be read or written: the platform built without
    /// it (its `message` says why).
    Unavailable,
}

impl CacheState {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Hit => "Hit",
            CacheState::Miss => "Miss",
            CacheState::Unavailable => "Unavailable",
        }
    }
}

/// Builder implementations.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuilderStrategy {
    /// Rootless BuildKit (`buildctl-daemonless.sh`), no privileged pod.
    #[default]
    Buildkit,
    /// Buildah (`bud` then `push --digestfile`).
    Buildah,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiArchImageStatus {
    /// Pending, Building, Merging, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hash (16 hex digits) of what shapes the image: the fields of the spec
    /// that decide the output, the resolved commit and the
    /// `multiarch.dev/rebuild` value. Same inputs, same id: nothing is
    /// rebuilt, and an operator upgrade never changes it. Job names carry its
    /// first 8 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// The git source of this build: the revision asked for and the one
    /// commit every platform built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStatus>,
    /// Platforms built / platforms requested, e.g. `2/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms_ready: Option<String>,
    /// One entry per requested platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformStatus>,
    /// Name of the merge Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_job: Option<String>,
    /// Digest of the pushed image index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The index digest shortened for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_digest: Option<String>,
    /// `image@digest`: pull this to get exactly what was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The `multiarch.dev/retry` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_retry: Option<String>,
    /// `Ready` (kstatus), `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The git source a build used.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `spec.source.git.url` (it never carries credentials).
    pub url: String,
    /// `spec.source.git.revision`; empty for the remote's default branch.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// The 40-hex commit the revision resolved to.
    pub commit: String,
    /// The source-resolve Job that found `commit`. With `pollInterval`,
    /// each interval has its own Job.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resolve_job: String,
    /// Why the last check of a polled revision failed; the build of
    /// `commit` stands meanwhile. Empty once a check succeeds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Phases of the whole resource.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Building,
    Merging,
    Succeeded,
    Failed,
}

/// Phases of one platform's build.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PlatformPhase {
    Pending,
    Building,
    Succeeded,
    Failed,
}

/// The build of one platform.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// The platform, normalised (`linux/arm64`).
    pub platform: String,
    /// Pending, Building, Succeeded or Failed.
    pub phase: PlatformPhase,
    /// Name of the build Job.
    pub job: String,
    /// Node the build pod ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The platform of the nodes the build runs on: `platform` itself, or
    /// its `spec.buildOn` entry (cross-compiled or emulated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_on: Option<String>,
    /// Whether the build used its cache: `Hit`, `Miss` or `Unavailable`;
    /// unset when `spec.cache.enabled` is false or before the build ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheState>,
    /// Digest of the single-platform image the builder pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the build pod started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the build finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Why the build waits or failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A regular expression as a CEL string literal (backslashes escaped).
fn cel_string(pattern: &str) -> String {
    format!("'{}'", pattern.replace('\\', "\\\\"))
}

/// CEL rather than schema patterns: the API server quotes the value of a
/// failed pattern, a CEL refusal only its type.
fn reference_without_credentials_rule() -> String {
    format!(
        "!self.matches({})",
        cel_string(REFERENCE_CREDENTIALS_PATTERN)
    )
}

fn repository_rule() -> String {
    format!("self.matches({})", cel_string(REPOSITORY_PATTERN))
}

/// CEL: build argument names of at most MAX_BUILD_ARG_NAME bytes (a CRD
/// schema cannot bound map keys otherwise).
fn build_arg_names_rule() -> String {
    format!("self.all(k, size(k) <= {MAX_BUILD_ARG_NAME})")
}

fn build_arg_names_message() -> String {
    format!("build argument names are at most {MAX_BUILD_ARG_NAME} bytes long")
}

/// CEL (Kubernetes' lists library has `sum()`): names and values together.
fn build_args_total_rule() -> String {
    format!("self.map(k, size(k) + size(self[k])).sum() <= {MAX_BUILD_ARGS_TOTAL}")
}

fn build_args_total_message() -> String {
    format!("build argument names and values together are at most {MAX_BUILD_ARGS_TOTAL} bytes")
}

/// At most MAX_RESOURCES_ENTRIES limits and requests.
fn cap_resources(schema: &mut schemars::Schema) {
    if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for list in ["limits", "requests"] {
            if let Some(entry) = properties.get_mut(list).and_then(|e| e.as_object_mut()) {
                entry.insert("maxProperties".into(), MAX_RESOURCES_ENTRIES.into());
            }
        }
    }
}

/// CEL: every `spec.buildOn` key is one of `spec.platforms`, spelled the
/// same (`validate` applies the same rule).
pub const BUILD_ON_KEYS_RULE: &str =
    "!has(self.buildOn) || self.buildOn.all(k, k in self.platforms)";
pub const BUILD_ON_KEYS_MESSAGE: &str =
    "every key of spec.buildOn must be a platform listed in spec.platforms, spelled the same";

/// CEL (Kubernetes has `duration()`): the same bounds `validate` applies.
fn poll_interval_rule() -> String {
    format!(
        "duration(self) >= duration('{MIN_POLL_INTERVAL_SECONDS}s') && duration(self) <= duration('{MAX_POLL_INTERVAL_SECONDS}s')"
    )
}

fn poll_interval_message() -> String {
    format!(
        "must be between {MIN_POLL_INTERVAL_SECONDS}s and {}h",
        MAX_POLL_INTERVAL_SECONDS / 3600
    )
}

fn default_tags() -> Vec<String> {
    vec!["latest".to_string()]
}

fn default_platforms() -> Vec<String> {
    vec!["linux/amd64".to_string(), "linux/arm64".to_string()]
}

fn default_context_dir() -> String {
    ".".to_string()
}

fn default_dockerfile() -> String {
    "Dockerfile".to_string()
}

fn default_cache_enabled() -> bool {
    true
}

fn default_active_deadline_seconds() -> i64 {
    3600
}

fn default_backoff_limit() -> i32 {
    1
}

/// The CRD as YAML, exactly as committed in `crds/`.
pub fn crd_yaml() -> String {
    let crd = MultiArchImage::crd();
    let body = serde_yaml_ng::to_string(&crd).expect("the CRD serialises to YAML");
    format!("# Generated by `multiarch-operator crds`; do not edit.\n---\n{body}")
}
