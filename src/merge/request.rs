//! The command line of `merge`, parsed and checked for form into one
//! `Request` that carries everything the merge needs, and the errors that
//! stop a merge.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_client::Reference;

use super::index;
use super::registry::Problem;
use super::source::SourceSpec;
use crate::merge::credentials::{ConfigError, DockerConfig};
use crate::platform::{Platform, PlatformError};

/// Command line of `multiarch-operator merge`, fixed by DESIGN.md.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// PLATFORM=REPO@sha256:DIGEST, once per platform, in index order.
    #[arg(long = "platform-image", required = true)]
    pub platform_images: Vec<String>,
    /// REPO:TAG to push the index to; repeatable.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    /// A docker config.json with registry credentials.
    #[arg(long)]
    pub registry_config: Option<std::path::PathBuf>,
    /// HOST:PORT of a registry reached over HTTPS without certificate
    /// checks, or plain HTTP when it does not answer HTTPS (as the builders
    /// treat spec.insecureRegistry); repeatable.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// KEY=VALUE annotation of the index (an OCI index; a Docker manifest
    /// list has none); repeatable.
    #[arg(long = "annotation")]
    pub annotations: Vec<String>,
    /// Also write the index digest to this file (the Job passes /dev/termination-log).
    #[arg(long)]
    pub digest_file: Option<std::path::PathBuf>,
}

/// Exit code when the index was pushed.
pub const EXIT_OK: i32 = 0;
/// Exit code when a check or a push failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code when the arguments (or the config.json) are malformed.
pub const EXIT_USAGE: i32 = 2;

/// One problem that stops the merge. Each names what it is about: the
/// platform and reference of a source, or the target.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("--platform-image {0:?}: expected PLATFORM=REFERENCE (for example linux/arm64=registry.example.com/app@sha256:…)")]
    NotPlatformEqualsReference(String),
    #[error("--platform-image {argument:?}: malformed platform: {source}")]
    MalformedPlatform {
        argument: String,
        source: PlatformError,
    },
    #[error("{platform} ({reference}): malformed reference: {reason}")]
    MalformedReference {
        platform: Platform,
        reference: String,
        reason: String,
    },
    #[error("{platform}: duplicate platform: given as {first} and as {second}")]
    DuplicatePlatform {
        platform: Platform,
        first: String,
        second: String,
    },
    #[error("target {target}: malformed reference: {reason}")]
    MalformedTarget { target: String, reason: String },
    #[error("--annotation {0:?}: expected KEY=VALUE with a non-empty KEY without white space")]
    MalformedAnnotation(String),
    #[error("--registry-config: {0}")]
    RegistryConfig(#[from] ConfigError),
    #[error("--digest-file {path}: {source}")]
    DigestFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{platform} ({reference}): {problem}")]
    Source {
        platform: Platform,
        reference: String,
        problem: Problem,
    },
    #[error("target {target}: {problem}")]
    Target { target: String, problem: Problem },
    #[error("target {target}: copying {platform} ({source_reference}) into it: {problem}")]
    Copy {
        target: String,
        platform: Platform,
        source_reference: String,
        problem: Problem,
    },
    #[error(transparent)]
    MixedMediaTypes(#[from] index::MixedMediaTypes),
}

impl MergeError {
    pub(super) fn is_usage(&self) -> bool {
        matches!(
            self,
            MergeError::NotPlatformEqualsReference(_)
                | MergeError::MalformedPlatform { .. }
                | MergeError::MalformedReference { .. }
                | MergeError::DuplicatePlatform { .. }
                | MergeError::MalformedTarget { .. }
                | MergeError::MalformedAnnotation(_)
                | MergeError::RegistryConfig(_)
        )
    }
}

/// A target tag, as written and parsed.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub written: String,
    pub reference: Reference,
}

/// Everything one merge needs, parsed and checked for form.
pub(super) struct Request {
    pub sources: Vec<SourceSpec>,
    pub targets: Vec<Target>,
    pub config: DockerConfig,
    pub insecure_registries: Vec<String>,
    pub annotations: BTreeMap<String, String>,
    pub digest_file: Option<PathBuf>,
}

pub(super) fn parse_request(args: &MergeArgs) -> Result<Request, Vec<MergeError>> {
    let mut errors = Vec::new();
    let mut sources: Vec<SourceSpec> = Vec::new();
    for argument in &args.platform_images {
        let Some((platform, written)) = argument.split_once('=') else {
            errors.push(MergeError::NotPlatformEqualsReference(argument.clone()));
            continue;
        };
        let platform = match Platform::parse(platform) {
            Ok(platform) => platform,
            Err(source) => {
                errors.push(MergeError::MalformedPlatform {
                    argument: argument.clone(),
                    source,
                });
                continue;
            }
        };
        let reference = match parse_reference(written) {
            Ok(reference) => reference,
            Err(reason) => {
                errors.push(MergeError::MalformedReference {
                    platform,
                    reference: written.to_string(),
                    reason,
                });
                continue;
            }
        };
        if let Some(first) = sources.iter().find(|s| s.platform == platform) {
            errors.push(MergeError::DuplicatePlatform {
                platform,
                first: first.written.clone(),
                second: written.to_string(),
            });
            continue;
        }
        sources.push(SourceSpec {
            platform,
            written: written.to_string(),
            reference,
        });
    }
    let mut targets = Vec::new();
    for written in &args.targets {
        match parse_reference(written) {
            Ok(reference) if reference.digest().is_some() => {
                errors.push(MergeError::MalformedTarget {
                    target: written.clone(),
                    reason: "a target is REPO:TAG, not a digest".to_string(),
                })
            }
            Ok(reference) => targets.push(Target {
                written: written.clone(),
                reference,
            }),
            Err(reason) => errors.push(MergeError::MalformedTarget {
                target: written.clone(),
                reason,
            }),
        }
    }
    let mut annotations = BTreeMap::new();
    for written in &args.annotations {
        match written.split_once('=') {
            Some((key, value)) if !key.is_empty() && !key.contains(char::is_whitespace) => {
                annotations.insert(key.to_string(), value.to_string());
            }
            _ => errors.push(MergeError::MalformedAnnotation(written.clone())),
        }
    }
    let config = match &args.registry_config {
        Some(path) => DockerConfig::load(path).unwrap_or_else(|e| {
            errors.push(e.into());
            DockerConfig::default()
        }),
        None => DockerConfig::default(),
    };
    if errors.is_empty() {
        Ok(Request {
            sources,
            targets,
            config,
            insecure_registries: args.insecure_registries.clone(),
            annotations,
            digest_file: args.digest_file.clone(),
        })
    } else {
        Err(errors)
    }
}

fn parse_reference(written: &str) -> Result<Reference, String> {
    crate::reference::parse(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(platform_images: &[&str], targets: &[&str]) -> MergeArgs {
        MergeArgs {
            platform_images: platform_images.iter().map(|s| s.to_string()).collect(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            registry_config: None,
            insecure_registries: vec![],
            annotations: vec![],
            digest_file: None,
        }
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn reports_every_malformed_argument_naming_it() {
        let errors = parse_request(&args(
            &[
                "linux/amd64",
                "linux/amd65=r.example/app:1",
                "linux/arm64=R.example/UPPER@@x",
                &format!("linux/arm/v7=r.example/app@{DIGEST}"),
                "linux/armhf=r.example/app:other",
            ],
            &[&format!("r.example/app@{DIGEST}"), "ftp://r.example/app:1"],
        ))
        .err()
        .unwrap();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert!(
            messages[0].contains("\"linux/amd64\"") && messages[0].contains("PLATFORM=REFERENCE")
        );
        assert!(messages[1].contains("malformed platform") && messages[1].contains("amd65"));
        assert!(messages[2].starts_with("linux/arm64 (R.example/UPPER@@x): malformed reference"));
        assert!(
            messages[3].starts_with("linux/arm/v7: duplicate platform"),
            "{}",
            messages[3]
        );
        assert!(messages[4].contains("not a digest"));
        assert!(messages[5].contains("no scheme"));
        assert!(errors.iter().all(MergeError::is_usage));
    }

    #[test]
    fn annotations_are_key_value_pairs() {
        let mut with = args(
            &[&format!("linux/amd64=127.0.0.1:5000/app@{DIGEST}")],
            &["127.0.0.1:5000/app:latest"],
        );
        with.annotations = vec![
            "org.opencontainers.image.source=https://example.com/app.git".into(),
            "org.opencontainers.image.revision=".into(),
        ];
        let request = parse_request(&with).ok().unwrap();
        assert_eq!(
            request.annotations["org.opencontainers.image.source"],
            "https://example.com/app.git"
        );
        assert_eq!(request.annotations["org.opencontainers.image.revision"], "");
        with.annotations = vec!["no-equals".into(), "=value".into(), "a key=v".into()];
        let errors = parse_request(&with).err().unwrap();
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(MergeError::is_usage));
        assert!(errors[0].to_string().contains("\"no-equals\""));
    }

    #[test]
    fn accepts_digests_and_tags() {
        let request = parse_request(&args(
            &[
                &format!("linux/amd64=127.0.0.1:5000/app@{DIGEST}"),
                "linux/aarch64=127.0.0.1:5000/app:arm64",
            ],
            &["127.0.0.1:5000/app:latest", "127.0.0.1:5000/app"],
        ))
        .ok()
        .unwrap();
        assert_eq!(request.sources[1].platform.to_string(), "linux/arm64");
        assert_eq!(request.sources[0].reference.digest(), Some(DIGEST));
        assert_eq!(request.targets[1].reference.tag(), Some("latest"));
    }
}
