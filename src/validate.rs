//! Validation of a MultiArchImage beyond what the CRD schema can say, used by
//! every subcommand and the controller. It reports every problem at once, each
//! naming its field path.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use crate::api::{self, MultiArchImage, MultiArchImageSpec};
use crate::platform::Platform;

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

/// Parses the MultiArchImage documents of a YAML (or JSON) stream; other
/// kinds in the stream (a ConfigMap beside it, say) are passed over.
pub fn parse_manifests(text: &str) -> Result<Vec<MultiArchImage>, String> {
    let mut found = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(document)
            .map_err(|e| format!("document {}: not valid YAML: {e}", index + 1))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|v| v.as_str());
        if kind != Some("MultiArchImage") {
            continue;
        }
        let api_version = value.get("apiVersion").and_then(|v| v.as_str());
        if api_version != Some("multiarch.dev/v1alpha1") {
            return Err(format!(
                "document {}: apiVersion: expected multiarch.dev/v1alpha1, found {}",
                index + 1,
                api_version.unwrap_or("<none>")
            ));
        }
        let resource =
            serde_json::from_value(value).map_err(|e| format!("document {}: {e}", index + 1))?;
        found.push(resource);
    }
    if found.is_empty() {
        return Err("no MultiArchImage (apiVersion multiarch.dev/v1alpha1) found".into());
    }
    Ok(found)
}

static REPOSITORY: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::REPOSITORY_PATTERN).unwrap());
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::TAG_PATTERN).unwrap());
static OBJECT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(api::OBJECT_NAME_PATTERN).unwrap());
static BUILD_ARG: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::BUILD_ARG_PATTERN).unwrap());
static TARGET: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::TARGET_PATTERN).unwrap());
static GIT_REVISION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(api::GIT_REVISION_PATTERN).unwrap());
static DURATION: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::DURATION_PATTERN).unwrap());
static LABEL_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$").unwrap());
static IMAGE_REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$").unwrap());

/// The platforms of a valid resource, normalised and in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub platforms: Vec<Platform>,
}

/// Checks a resource; every problem is returned, each naming its field.
pub fn validate(resource: &MultiArchImage) -> Result<Validated, ValidationErrors> {
    let mut errors = Vec::new();
    let mut report = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_string(),
            message,
        })
    };
    match resource.metadata.name.as_deref() {
        None | Some("") => report("metadata.name", "must be set".into()),
        Some(name) if !OBJECT_NAME.is_match(name) || name.len() > 253 => report(
            "metadata.name",
            format!("{name:?} is not a valid object name"),
        ),
        Some(_) => {}
    }
    let spec = &resource.spec;
    check_image(spec, &mut report);
    check_tags(spec, &mut report);
    let platforms = check_platforms(spec, &mut report);
    check_source(spec, &mut report);
    check_paths(spec, &mut report);
    check_builder(spec, &mut report);
    check_builder_platforms(spec, &platforms, &mut report);
    check_scheduling(spec, &mut report);
    if errors.is_empty() {
        Ok(Validated { platforms })
    } else {
        Err(ValidationErrors(errors))
    }
}

type Report<'a> = dyn FnMut(&str, String) + 'a;

fn check_image(spec: &MultiArchImageSpec, report: &mut Report) {
    let image = &spec.image;
    if image.is_empty() {
        return report(
            "spec.image",
            "must be set, e.g. registry.example.com/team/app".into(),
        );
    }
    if image.len() > 255 {
        return report(
            "spec.image",
            format!("is {} characters long; at most 255", image.len()),
        );
    }
    // A tag sits after a ':' in the last path component ("host:5000/app"
    // has a port, not a tag).
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        report(
            "spec.image",
            format!("{image:?} contains a digest; give the repository only"),
        );
    } else if last.contains(':') {
        report(
            "spec.image",
            format!("{image:?} contains a tag; give the repository only and put tags in spec.tags"),
        );
    } else if !REPOSITORY.is_match(image) {
        report(
            "spec.image",
            format!("{image:?} is not a valid repository (lower-case path components, optional registry host[:port])"),
        );
    }
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
            let url = &git.url;
            let known_scheme = ["https://", "http://", "ssh://", "git@"]
                .iter()
                .any(|s| url.starts_with(s));
            if !known_scheme || url.chars().any(char::is_whitespace) {
                report(
                    "spec.source.git.url",
                    format!("{url:?} is not an https://, http://, ssh:// or git@host:path URL"),
                );
            } else if embeds_credentials(url) {
                // The URL would end up in the Job spec and in logs.
                report(
                    "spec.source.git.url",
                    "embeds credentials; put them in a Secret named by spec.source.git.secretRef"
                        .into(),
                );
            }
            if let Some(rev) = &git.revision {
                if !GIT_REVISION.is_match(rev) || rev.contains("..") || rev.len() > 255 {
                    report(
                        "spec.source.git.revision",
                        format!("{rev:?} is not a valid branch, tag or commit name"),
                    );
                }
            }
            if let Some(interval) = &git.poll_interval {
                if let Err(message) = parse_poll_interval(interval) {
                    report("spec.source.git.pollInterval", message);
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

/// `spec.source.git.pollInterval` as a duration: whole `h`, `m` and `s`
/// units, between `MIN_POLL_INTERVAL_SECONDS` and `MAX_POLL_INTERVAL_SECONDS`.
pub fn parse_poll_interval(text: &str) -> Result<std::time::Duration, String> {
    if !DURATION.is_match(text) {
        return Err(format!(
            "{text:?} is not a duration such as 30s, 5m or 1h30m"
        ));
    }
    let mut seconds: u64 = 0;
    let mut number: u64 = 0;
    for c in text.chars() {
        match c {
            '0'..='9' => number = number * 10 + u64::from(c as u8 - b'0'),
            unit => {
                let scale = match unit {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                seconds = seconds.saturating_add(number.saturating_mul(scale));
                number = 0;
            }
        }
    }
    let (min, max) = (
        api::MIN_POLL_INTERVAL_SECONDS,
        api::MAX_POLL_INTERVAL_SECONDS,
    );
    if !(min..=max).contains(&seconds) {
        return Err(format!(
            "{text:?} must be between {min}s and {}h",
            max / 3600
        ));
    }
    Ok(std::time::Duration::from_secs(seconds))
}

fn embeds_credentials(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    // `ssh://git@host` names a user, not a secret; a password is a secret.
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
        } else if path.chars().any(|c| c.is_control()) || path.len() > 1024 {
            report(field, format!("{path:?} is not a valid path"));
        }
    }
    if !TARGET.is_match(&spec.target) || spec.target.len() > 128 {
        report(
            "spec.target",
            format!("{:?} is not a valid stage name", spec.target),
        );
    }
    if spec.build_args.len() > 64 {
        report(
            "spec.buildArgs",
            format!("has {} entries; at most 64", spec.build_args.len()),
        );
    }
    for (name, value) in &spec.build_args {
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
        if !IMAGE_REFERENCE.is_match(image) || image.len() > 512 {
            report(
                "spec.builder.image",
                format!("{image:?} is not a valid image reference"),
            );
        }
    }
    if let Some(secret) = &spec.push_secret {
        check_object_name("spec.pushSecret.name", &secret.name, report);
    }
    if let Some(account) = &spec.service_account_name {
        check_object_name("spec.serviceAccountName", account, report);
    }
}

/// Architectures `quay.io/buildah/stable` (the default buildah image) is
/// published for; a node of another one could not run it.
pub const BUILDAH_IMAGE_ARCHITECTURES: &[&str] = &["amd64", "arm64", "ppc64le", "s390x"];

fn check_builder_platforms(spec: &MultiArchImageSpec, platforms: &[Platform], report: &mut Report) {
    if spec.builder.strategy != api::BuilderStrategy::Buildah || spec.builder.image.is_some() {
        return;
    }
    for (i, platform) in platforms.iter().enumerate() {
        if platform.os != "linux"
            || !BUILDAH_IMAGE_ARCHITECTURES.contains(&platform.architecture.as_str())
        {
            report(
                &format!("spec.platforms[{i}]"),
                format!(
                    "{platform}: the default buildah image ({}) is published for linux/{} only; set spec.builder.image to a buildah image built for {platform}, or use strategy buildkit",
                    crate::render::DEFAULT_BUILDAH_IMAGE,
                    BUILDAH_IMAGE_ARCHITECTURES.join(", linux/")
                ),
            );
        }
    }
}

fn check_scheduling(spec: &MultiArchImageSpec, report: &mut Report) {
    for (key, value) in &spec.node_selector {
        let field = format!("spec.nodeSelector[{key}]");
        if matches!(key.as_str(), "kubernetes.io/os" | "kubernetes.io/arch") {
            report(
                &field,
                "is set per platform by the operator; remove it".into(),
            );
        } else if !valid_label_key(key) {
            report(&field, format!("{key:?} is not a valid label key"));
        } else if value.len() > 63 || !LABEL_NAME.is_match(value) {
            report(&field, format!("{value:?} is not a valid label value"));
        }
    }
    for (i, toleration) in spec.tolerations.iter().enumerate() {
        let field = format!("spec.tolerations[{i}]");
        if let Some(op) = toleration.operator.as_deref() {
            if op != "Equal" && op != "Exists" {
                report(
                    &format!("{field}.operator"),
                    format!("{op:?} must be Equal or Exists"),
                );
            }
        }
        if let Some(effect) = toleration.effect.as_deref() {
            if !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                report(
                    &format!("{field}.effect"),
                    format!("{effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"),
                );
            }
        }
    }
    if !(1..=86400).contains(&spec.active_deadline_seconds) {
        report(
            "spec.activeDeadlineSeconds",
            format!(
                "{} must be between 1 and 86400",
                spec.active_deadline_seconds
            ),
        );
    }
    if !(0..=10).contains(&spec.backoff_limit) {
        report(
            "spec.backoffLimit",
            format!("{} must be between 0 and 10", spec.backoff_limit),
        );
    }
}

fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && OBJECT_NAME.is_match(p));
    prefix_ok && !name.is_empty() && name.len() <= 63 && LABEL_NAME.is_match(name)
}

fn check_object_name(field: &str, name: &str, report: &mut Report) {
    if name.is_empty() || name.len() > 253 || !OBJECT_NAME.is_match(name) {
        report(field, format!("{name:?} is not a valid object name"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: app, namespace: ci}
spec:
  image: registry.example.com/team/app
  source: {git: {url: "https://example.com/app.git"}}
"#;

    /// The base fixture with `spec` fields replaced by a YAML fragment.
    fn with(fragment: &str) -> MultiArchImage {
        let mut value: serde_json::Value = serde_yaml_ng::from_str(BASE).unwrap();
        let patch: serde_json::Value = serde_yaml_ng::from_str(fragment).unwrap();
        for (k, v) in patch.as_object().unwrap() {
            if k == "metadata" {
                value["metadata"] = v.clone();
            } else {
                value["spec"][k] = v.clone();
            }
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_base_fixture_is_valid() {
        let valid = validate(&with("{}")).unwrap();
        assert_eq!(valid.platforms.len(), 2);
    }

    #[test]
    fn every_invalid_spec_names_its_field() {
        let long = "x".repeat(300);
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "{platforms: [linux/amd64, linux/amd65]}".into(),
                "spec.platforms[1]",
                "not a known architecture \"amd65\"",
            ),
            (
                "{platforms: [darwin/arm64]}".into(),
                "spec.platforms[0]",
                "operating system",
            ),
            (
                "{platforms: [linux]}".into(),
                "spec.platforms[0]",
                "os/arch",
            ),
            (
                "{platforms: [linux/arm64, linux/aarch64]}".into(),
                "spec.platforms[1]",
                "same platform as spec.platforms[0]",
            ),
            ("{platforms: []}".into(), "spec.platforms", "at least one"),
            (
                format!("{{platforms: [{}]}}", vec!["linux/amd64"; 17].join(",")),
                "spec.platforms",
                "at most 16",
            ),
            (
                "{image: \"registry.example.com/team/app:v1\"}".into(),
                "spec.image",
                "contains a tag",
            ),
            (
                "{image: \"registry.example.com/team/app@sha256:abc\"}".into(),
                "spec.image",
                "contains a digest",
            ),
            (
                "{image: \"Registry/Team/App\"}".into(),
                "spec.image",
                "not a valid repository",
            ),
            ("{image: \"\"}".into(), "spec.image", "must be set"),
            (
                format!("{{image: \"r.io/{long}\"}}"),
                "spec.image",
                "at most 255",
            ),
            ("{tags: []}".into(), "spec.tags", "at least one"),
            (
                "{tags: [\"-bad\"]}".into(),
                "spec.tags[0]",
                "not a valid tag",
            ),
            (
                "{tags: [\"a b\"]}".into(),
                "spec.tags[0]",
                "not a valid tag",
            ),
            ("{tags: [v1, v1]}".into(), "spec.tags[1]", "listed twice"),
            ("{source: {}}".into(), "spec.source", "exactly one"),
            (
                "{source: {git: {url: \"https://e.com/a.git\"}, configMap: {name: ctx}}}".into(),
                "spec.source",
                "exactly one",
            ),
            (
                "{source: {git: {url: \"ftp://e.com/a.git\"}}}".into(),
                "spec.source.git.url",
                "not an https://",
            ),
            (
                "{source: {git: {url: \"https://user:hunter2@e.com/a.git\"}}}".into(),
                "spec.source.git.url",
                "embeds credentials",
            ),
            (
                "{source: {git: {url: \"https://e.com/a.git\", revision: \"--upload-pack=evil\"}}}"
                    .into(),
                "spec.source.git.revision",
                "not a valid",
            ),
            (
                "{source: {configMap: {name: \"Bad_Name\"}}}".into(),
                "spec.source.configMap.name",
                "not a valid object name",
            ),
            (
                "{contextDir: \"../outside\"}".into(),
                "spec.contextDir",
                "inside the source",
            ),
            (
                "{contextDir: \"/etc\"}".into(),
                "spec.contextDir",
                "relative",
            ),
            (
                "{dockerfile: \"a/../../Dockerfile\"}".into(),
                "spec.dockerfile",
                "inside the source",
            ),
            (
                "{dockerfile: \"\"}".into(),
                "spec.dockerfile",
                "must not be empty",
            ),
            ("{target: \"-x\"}".into(), "spec.target", "stage name"),
            (
                "{buildArgs: {\"1BAD\": x}}".into(),
                "spec.buildArgs.1BAD",
                "build argument name",
            ),
            (
                "{buildArgs: {\"A;B\": x}}".into(),
                "spec.buildArgs.A;B",
                "build argument name",
            ),
            (
                "{pushSecret: {name: \"UPPER\"}}".into(),
                "spec.pushSecret.name",
                "object name",
            ),
            (
                "{serviceAccountName: \"a b\"}".into(),
                "spec.serviceAccountName",
                "object name",
            ),
            (
                "{nodeSelector: {kubernetes.io/arch: arm64}}".into(),
                "spec.nodeSelector[kubernetes.io/arch]",
                "set per platform",
            ),
            (
                "{nodeSelector: {\"bad key!\": x}}".into(),
                "spec.nodeSelector[bad key!]",
                "label key",
            ),
            (
                "{nodeSelector: {pool: \"bad value!\"}}".into(),
                "spec.nodeSelector[pool]",
                "label value",
            ),
            (
                "{tolerations: [{key: a, operator: Maybe}]}".into(),
                "spec.tolerations[0].operator",
                "Equal or Exists",
            ),
            (
                "{tolerations: [{key: a, effect: Sometimes}]}".into(),
                "spec.tolerations[0].effect",
                "NoSchedule",
            ),
            (
                "{activeDeadlineSeconds: 0}".into(),
                "spec.activeDeadlineSeconds",
                "between 1 and 86400",
            ),
            (
                "{backoffLimit: 99}".into(),
                "spec.backoffLimit",
                "between 0 and 10",
            ),
            (
                "{builder: {strategy: buildah, image: \"bad image\"}}".into(),
                "spec.builder.image",
                "image reference",
            ),
            (
                "{source: {git: {url: \"https://e.com/a.git\", pollInterval: 5s}}}".into(),
                "spec.source.git.pollInterval",
                "between 10s and",
            ),
            (
                "{source: {git: {url: \"https://e.com/a.git\", pollInterval: 5 minutes}}}".into(),
                "spec.source.git.pollInterval",
                "not a duration",
            ),
            (
                "{builder: {strategy: buildah}, platforms: [linux/amd64, linux/arm/v7]}".into(),
                "spec.platforms[1]",
                "set spec.builder.image",
            ),
            (
                "{metadata: {name: \"Bad_Name\"}}".into(),
                "metadata.name",
                "object name",
            ),
        ];
        assert!(cases.len() >= 20);
        for (fragment, field, needle) in cases {
            let errors = validate(&with(&fragment)).expect_err(&fragment);
            let found = errors.0.iter().find(|e| e.field == field);
            let found =
                found.unwrap_or_else(|| panic!("{fragment}: expected {field}, got:\n{errors}"));
            assert!(found.message.contains(needle), "{fragment}: {found}");
        }
    }

    #[test]
    fn poll_intervals_parse_in_whole_units() {
        let seconds = |text: &str| parse_poll_interval(text).map(|d| d.as_secs());
        assert_eq!(seconds("10s"), Ok(10));
        assert_eq!(seconds("5m"), Ok(300));
        assert_eq!(seconds("1h30m"), Ok(5400));
        assert_eq!(seconds("168h"), Ok(api::MAX_POLL_INTERVAL_SECONDS));
        assert!(seconds("9s").is_err());
        assert!(seconds("169h").is_err());
        assert!(seconds("1.5h").is_err());
        assert!(seconds("").is_err());
    }

    #[test]
    fn a_buildah_image_of_ones_own_allows_any_platform() {
        let resource = with(
            "{builder: {strategy: buildah, image: registry.example.com/buildah:arm}, platforms: [linux/arm/v7]}",
        );
        assert!(validate(&resource).is_ok());
    }

    #[test]
    fn reports_every_problem_at_once() {
        let errors = validate(&with(
            "{platforms: [linux/amd65], tags: [\"-x\"], contextDir: /abs}",
        ))
        .unwrap_err();
        assert!(errors.names("spec.platforms[0]"));
        assert!(errors.names("spec.tags[0]"));
        assert!(errors.names("spec.contextDir"));
        assert_eq!(errors.to_string().lines().count(), 3);
    }

    #[test]
    fn credentials_in_urls_are_not_echoed() {
        let errors = validate(&with(
            "{source: {git: {url: \"https://u:s3cret@e.com/a.git\"}}}",
        ))
        .unwrap_err();
        assert!(!errors.to_string().contains("s3cret"));
    }

    #[test]
    fn manifests_skip_other_kinds_and_check_api_version() {
        let stream = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{BASE}");
        assert_eq!(parse_manifests(&stream).unwrap().len(), 1);
        let wrong = BASE.replace("v1alpha1", "v9");
        assert!(parse_manifests(&wrong).unwrap_err().contains("apiVersion"));
        assert!(parse_manifests("kind: Pod")
            .unwrap_err()
            .contains("no MultiArchImage"));
    }
}
