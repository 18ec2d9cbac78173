//! Validation of a MultiArchImage, used by the controller and `render`:
//! every rule of the CRD schema again, from the same constants (so `render`
//! refuses offline what admission would), and what a schema cannot say. It
//! reports every problem at once, each naming its field path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::api::{self, MultiArchImage, MultiArchImageSpec};
use crate::platform::Platform;
use crate::reference::{self, Repository};

mod allowlist;
mod build_on;
mod cache;
mod git;
mod manifests;
mod pod;
pub mod quantity;
pub use allowlist::{image_allowed, Allowlists, CONTROL_PLANE_KEYS};
pub use git::{parse_poll_interval, BUILDAH_IMAGE_ARCHITECTURES};
pub use manifests::{parse_manifests, MAX_MANIFEST_BYTES, MAX_MANIFEST_DEPTH};

/// One problem, at one field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one resource.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl ValidationErrors {
    /// Whether any problem is reported at `field` or below it.
    pub fn names(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field.starts_with(field))
    }
}

static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::TAG_PATTERN).unwrap());
static OBJECT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(api::OBJECT_NAME_PATTERN).unwrap());
static BUILD_ARG: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::BUILD_ARG_PATTERN).unwrap());
static PLATFORM: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::PLATFORM_PATTERN).unwrap());
static TARGET: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::TARGET_PATTERN).unwrap());
static GIT_URL: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::GIT_URL_PATTERN).unwrap());
static GIT_REVISION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(api::GIT_REVISION_PATTERN).unwrap());
/// The longest label value, and name part of a qualified name.
const MAX_LABEL_NAME_LENGTH: usize = 63;
static LABEL_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$").unwrap());

/// What validation learnt of a valid resource, as types: the platforms,
/// normalised and in the order given, and the repository parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub platforms: Vec<Platform>,
    pub image: Repository,
    /// `spec.source.git.pollInterval`, when the revision is polled.
    pub poll_interval: Option<std::time::Duration>,
    /// `spec.buildOn`, normalised: the platform of the nodes each listed
    /// platform is built on.
    pub build_on: BTreeMap<Platform, Platform>,
}

/// Checks a resource under the default allowlists (any builder image,
/// toleration and node label; no control-plane placement).
pub fn validate(resource: &MultiArchImage) -> Result<Validated, ValidationErrors> {
    validate_with(resource, &Allowlists::default())
}

/// `validate`, where the admin lets BuildKit push from the build step on
/// nodes the operator image does not run on (for tests of that path).
#[cfg(test)]
pub fn validate_allowing_build_step_push(
    resource: &MultiArchImage,
) -> Result<Validated, ValidationErrors> {
    let lists = Allowlists {
        allow_build_step_push: true,
        ..Allowlists::default()
    };
    validate_with(resource, &lists)
}

/// Checks a resource, and that it stays within the cluster's allowlists;
/// every problem is returned, each naming its field.
pub fn validate_with(
    resource: &MultiArchImage,
    allowlists: &Allowlists,
) -> Result<Validated, ValidationErrors> {
    let mut errors = Vec::new();
    let mut report = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_string(),
            message,
        })
    };
    match resource.metadata.name.as_deref() {
        None | Some("") => report("metadata.name", "must be set".into()),
        Some(name) if !OBJECT_NAME.is_match(name) || name.len() > api::MAX_OBJECT_NAME_LENGTH => {
            report(
                "metadata.name",
                format!("{name:?} is not a valid object name"),
            )
        }
        Some(_) => {}
    }
    let spec = &resource.spec;
    let image = check_image(spec, &mut report);
    check_tags(spec, &mut report);
    let platforms = check_platforms(spec, &mut report);
    check_source(spec, &mut report);
    check_paths(spec, &mut report);
    check_builder(spec, &mut report);
    let poll_interval = git::check_poll_interval(spec, &mut report);
    let build_on = build_on::check_build_on(spec, &platforms, &mut report);
    git::check_builder_platforms(spec, &platforms, &build_on, &mut report);
    allowlist::check_push_steps(spec, &platforms, &build_on, allowlists, &mut report);
    check_scheduling(spec, &mut report);
    cache::check_cache(spec, &platforms, &mut report);
    allowlist::check(spec, allowlists, &mut report);
    match image {
        Some(image) if errors.is_empty() => Ok(Validated {
            platforms,
            image,
            poll_interval,
            build_on,
        }),
        _ => Err(ValidationErrors(errors)),
    }
}

type Report<'a> = dyn FnMut(&str, String) + 'a;

pub(super) static REFERENCE_CREDENTIALS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(api::REFERENCE_CREDENTIALS_PATTERN).unwrap());

fn check_image(spec: &MultiArchImageSpec, report: &mut Report) -> Option<Repository> {
    if REFERENCE_CREDENTIALS.is_match(&spec.image) {
        report("spec.image", api::REFERENCE_CREDENTIALS_MESSAGE.into());
        return None;
    }
    reference::parse_repository(&spec.image)
        .map_err(|e| report("spec.image", e.to_string()))
        .ok()
}

fn check_tags(spec: &MultiArchImageSpec, report: &mut Report) {
    if spec.tags.is_empty() {
        report("spec.tags", "must list at least one tag".into());
    }
    if spec.tags.len() > api::MAX_TAGS {
        report(
            "spec.tags",
            format!("lists {} tags; at most {}", spec.tags.len(), api::MAX_TAGS),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, tag) in spec.tags.iter().enumerate() {
        let field = format!("spec.tags[{i}]");
        if !TAG.is_match(tag) {
            report(
                &field,
                format!("{tag:?} is not a valid tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"),
            );
        } else if !seen.insert(tag) {
            report(&field, format!("{tag:?} is listed twice"));
        }
    }
}

fn check_platforms(spec: &MultiArchImageSpec, report: &mut Report) -> Vec<Platform> {
    if spec.platforms.is_empty() {
        report("spec.platforms", "must list at least one platform".into());
    }
    if spec.platforms.len() > api::MAX_PLATFORMS {
        report(
            "spec.platforms",
            format!(
                "lists {} platforms; at most {}",
                spec.platforms.len(),
                api::MAX_PLATFORMS
            ),
        );
    }
    let mut platforms: Vec<Platform> = Vec::new();
    for (i, text) in spec.platforms.iter().enumerate() {
        let field = format!("spec.platforms[{i}]");
        if text.len() > api::MAX_PLATFORM_LENGTH {
            report(
                &field,
                format!(
                    "is {} characters long; at most {}",
                    text.len(),
                    api::MAX_PLATFORM_LENGTH
                ),
            );
            continue;
        }
        if !PLATFORM.is_match(text) {
            // Aliases are normalised, but written in lower case as the CRD
            // schema requires.
            report(
                &field,
                format!("{text:?} is not of the form os/arch[/variant] in lower case (for example linux/arm64)"),
            );
            continue;
        }
        match Platform::parse(text) {
            Err(e) => report(&field, e.to_string()),
            Ok(p) => {
                if let Some(j) = platforms.iter().position(|q| q == &p) {
                    report(
                        &field,
                        format!("{text:?} is the same platform as spec.platforms[{j}] ({p})"),
                    );
                }
                platforms.push(p);
            }
        }
    }
    platforms
}

fn check_source(spec: &MultiArchImageSpec, report: &mut Report) {
    match (&spec.source.git, &spec.source.config_map) {
        (Some(_), Some(_)) | (None, None) => report(
            "spec.source",
            "exactly one of spec.source.git and spec.source.configMap must be set".into(),
        ),
        (Some(git), None) => {
            // The URL is never quoted back: a refused one may carry a
            // secret in a form not foreseen here. Credentials are looked
            // for first, in any scheme, since the URL would end up in the
            // Job spec and in logs.
            let url = &git.url;
            if url.len() > api::MAX_GIT_URL_LENGTH {
                report(
                    "spec.source.git.url",
                    format!(
                        "is {} characters long; at most {}",
                        url.len(),
                        api::MAX_GIT_URL_LENGTH
                    ),
                );
            } else if embeds_credentials(url) {
                report(
                    "spec.source.git.url",
                    "embeds credentials; put them in a Secret named by spec.source.git.secretRef"
                        .into(),
                );
            } else if url.contains(['?', '#']) {
                report(
                    "spec.source.git.url",
                    api::GIT_URL_WITHOUT_QUERY_MESSAGE.into(),
                );
            } else if !GIT_URL.is_match(url) {
                report("spec.source.git.url", api::GIT_URL_FORM_MESSAGE.into());
            }
            if let Some(rev) = &git.revision {
                if !GIT_REVISION.is_match(rev)
                    || rev.contains("..")
                    || rev.len() > api::MAX_REVISION_LENGTH
                {
                    report(
                        "spec.source.git.revision",
                        format!("{rev:?} is not a valid branch, tag or commit name"),
                    );
                }
            }
            if let Some(secret) = &git.secret_ref {
                check_object_name("spec.source.git.secretRef.name", &secret.name, report);
            }
        }
        (None, Some(config_map)) => {
            check_object_name("spec.source.configMap.name", &config_map.name, report)
        }
    }
}

/// A password in any scheme (`ftp://user:pw@host`), or a user in http(s)
/// (`https://TOKEN@host`: tokens go there); `ssh://git@host` names a user,
/// not a secret. The same as GIT_URL_WITHOUT_CREDENTIALS_RULE.
fn embeds_credentials(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.contains(':') || url.starts_with("http"),
        None => false,
    }
}

fn check_paths(spec: &MultiArchImageSpec, report: &mut Report) {
    for (field, path) in [
        ("spec.contextDir", &spec.context_dir),
        ("spec.dockerfile", &spec.dockerfile),
    ] {
        if path.is_empty() {
            report(field, "must not be empty".into());
        } else if path.starts_with('/') {
            report(field, format!("{path:?} must be relative to the source"));
        } else if path.split('/').any(|segment| segment == "..") {
            report(
                field,
                format!("{path:?} must stay inside the source (no '..')"),
            );
        } else if path.chars().any(|c| c.is_control()) || path.len() > api::MAX_PATH_LENGTH {
            report(field, format!("{path:?} is not a valid path"));
        } else if field == "spec.dockerfile" && names_a_directory(path) {
            report(field, format!("{path:?} {}", api::FILE_PATH_MESSAGE));
        }
    }
    if !TARGET.is_match(&spec.target) || spec.target.len() > api::MAX_TARGET_LENGTH {
        report(
            "spec.target",
            format!("{:?} is not a valid stage name", spec.target),
        );
    }
    check_build_args(spec, report);
}

/// The last segment is empty or `.` (FILE_PATH_RULE).
fn names_a_directory(path: &str) -> bool {
    path == "." || path.ends_with('/') || path.ends_with("/.")
}

fn check_build_args(spec: &MultiArchImageSpec, report: &mut Report) {
    let total: usize = spec.build_args.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > api::MAX_BUILD_ARGS_TOTAL {
        report(
            "spec.buildArgs",
            format!(
                "names and values take {total} bytes together; at most {}",
                api::MAX_BUILD_ARGS_TOTAL
            ),
        );
    }
    if spec.build_args.len() > api::MAX_BUILD_ARGS {
        report(
            "spec.buildArgs",
            format!(
                "has {} entries; at most {}",
                spec.build_args.len(),
                api::MAX_BUILD_ARGS
            ),
        );
    }
    for (name, value) in &spec.build_args {
        if name.len() > api::MAX_BUILD_ARG_NAME {
            // Not quoted whole: it is long.
            report(
                "spec.buildArgs",
                format!(
                    "a name of {} bytes ({:?}...); at most {}",
                    name.len(),
                    name.chars().take(32).collect::<String>(),
                    api::MAX_BUILD_ARG_NAME
                ),
            );
            continue;
        }
        let field = format!("spec.buildArgs.{name}");
        if !BUILD_ARG.is_match(name) {
            report(
                &field,
                format!("{name:?} is not a valid build argument name"),
            );
        }
        if value.len() > api::MAX_BUILD_ARG_VALUE {
            report(
                &field,
                format!(
                    "value is {} bytes long; at most {}",
                    value.len(),
                    api::MAX_BUILD_ARG_VALUE
                ),
            );
        }
    }
}

fn check_builder(spec: &MultiArchImageSpec, report: &mut Report) {
    if let Some(image) = &spec.builder.image {
        if REFERENCE_CREDENTIALS.is_match(image) {
            report(
                "spec.builder.image",
                api::REFERENCE_CREDENTIALS_MESSAGE.into(),
            );
        } else if image.len() > api::MAX_BUILDER_IMAGE_LENGTH {
            report(
                "spec.builder.image",
                format!(
                    "is {} characters long; at most {}",
                    image.len(),
                    api::MAX_BUILDER_IMAGE_LENGTH
                ),
            );
        } else if let Err(reason) = reference::parse(image) {
            report(
                "spec.builder.image",
                format!("{image:?} is not a valid image reference: {reason}"),
            );
        }
    }
    if let Some(secret) = &spec.push_secret {
        check_object_name("spec.pushSecret.name", &secret.name, report);
    }
    if let Some(secret) = &spec.pull_secret {
        check_object_name("spec.pullSecret.name", &secret.name, report);
    }
    if let Some(account) = &spec.service_account_name {
        check_object_name("spec.serviceAccountName", account, report);
    }
}

fn check_scheduling(spec: &MultiArchImageSpec, report: &mut Report) {
    // Over a cap, the entries are not checked one by one: the refusal of
    // 2,000 of them would be 2,000 lines.
    let selector = spec.node_selector.len();
    if selector > api::MAX_NODE_SELECTOR {
        report(
            "spec.nodeSelector",
            format!("has {selector} entries; at most {}", api::MAX_NODE_SELECTOR),
        );
    }
    let tolerations = spec.tolerations.len();
    if tolerations > api::MAX_TOLERATIONS {
        report(
            "spec.tolerations",
            format!(
                "lists {tolerations} tolerations; at most {}",
                api::MAX_TOLERATIONS
            ),
        );
    }
    for (key, value) in spec.node_selector.iter().take(api::MAX_NODE_SELECTOR) {
        let field = format!("spec.nodeSelector[{key}]");
        if matches!(key.as_str(), "kubernetes.io/os" | "kubernetes.io/arch") {
            report(
                &field,
                "is set per platform by the operator; remove it".into(),
            );
        } else if !valid_label_key(key) {
            report(&field, format!("{key:?} is not a valid label key"));
        } else if !valid_label_value(value) {
            report(&field, format!("{value:?} is not a valid label value"));
        }
    }
    pod::check_tolerations(
        &spec.tolerations[..tolerations.min(api::MAX_TOLERATIONS)],
        report,
    );
    if let Some(resources) = &spec.resources {
        pod::check_resources(resources, report);
    }
    let deadlines = api::MIN_ACTIVE_DEADLINE_SECONDS..=api::MAX_ACTIVE_DEADLINE_SECONDS;
    if !deadlines.contains(&spec.active_deadline_seconds) {
        report(
            "spec.activeDeadlineSeconds",
            format!(
                "{} must be between {} and {}",
                spec.active_deadline_seconds,
                deadlines.start(),
                deadlines.end()
            ),
        );
    }
    if !(0..=api::MAX_BACKOFF_LIMIT).contains(&spec.backoff_limit) {
        report(
            "spec.backoffLimit",
            format!(
                "{} must be between 0 and {}",
                spec.backoff_limit,
                api::MAX_BACKOFF_LIMIT
            ),
        );
    }
}

/// IsValidLabelValue: empty, or at most 63 name characters.
fn valid_label_value(value: &str) -> bool {
    value.len() <= MAX_LABEL_NAME_LENGTH && LABEL_NAME.is_match(value)
}

/// IsQualifiedName (a label key): an optional DNS subdomain prefix and '/',
/// then a name.
fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && OBJECT_NAME.is_match(p));
    prefix_ok
        && !name.is_empty()
        && name.len() <= MAX_LABEL_NAME_LENGTH
        && LABEL_NAME.is_match(name)
}

fn check_object_name(field: &str, name: &str, report: &mut Report) {
    if name.is_empty() || name.len() > api::MAX_OBJECT_NAME_LENGTH || !OBJECT_NAME.is_match(name) {
        report(field, format!("{name:?} is not a valid object name"));
    }
}

#[cfg(test)]
mod allowlist_tests;
#[cfg(test)]
mod tests;
