//! `multiarch-operator merge`: assemble the per-platform images into one
//! image index and push it under every target tag.
//!
//! The steps, and what each guarantees:
//! 1. parse the arguments and `--registry-config` (usage errors: exit 2);
//! 2. check every source (exists, is the platform it is named for) and every
//!    target (reachable, credentials accepted), all at once, reporting every
//!    problem; nothing has been pushed yet when any check fails (exit 1);
//! 3. assemble the index (pure, deterministic: see [`index`]);
//! 4. make the sources' manifests and blobs present in each target
//!    repository: a cross-repository mount on the same registry, a streamed
//!    copy across registries (so a source on another registry works, at the
//!    cost of moving its layers once). This pushes blobs and untagged
//!    manifests only, never a tag;
//! 5. push the index bytes under every target tag, and print its digest as
//!    the last line of stdout (and to `--digest-file`). Progress goes to
//!    stderr.

pub mod index;
pub mod reference;
pub mod registry;
pub mod source;

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;

use oci_client::Reference;

use crate::platform::{Platform, PlatformError};
use crate::registry_auth::{ConfigError, DockerConfig};
use registry::{Problem, Registries};
use source::{CheckedSource, SourceSpec};

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
    /// HOST:PORT of a registry reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
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
    #[error(transparent)]
    MixedMediaTypes(#[from] index::MixedMediaTypes),
}

impl MergeError {
    fn is_usage(&self) -> bool {
        matches!(
            self,
            MergeError::NotPlatformEqualsReference(_)
                | MergeError::MalformedPlatform { .. }
                | MergeError::MalformedReference { .. }
                | MergeError::DuplicatePlatform { .. }
                | MergeError::MalformedTarget { .. }
                | MergeError::RegistryConfig(_)
        )
    }
}

/// A target tag, as written and parsed.
#[derive(Clone, Debug)]
struct Target {
    written: String,
    reference: Reference,
}

/// The arguments, parsed and checked for form.
struct Request {
    sources: Vec<SourceSpec>,
    targets: Vec<Target>,
    config: DockerConfig,
}

/// Runs the merge; returns the process exit code.
pub async fn run(args: MergeArgs) -> i32 {
    let config_for_redaction = std::cell::RefCell::new(DockerConfig::default());
    let report = |errors: &[MergeError]| {
        let config = config_for_redaction.borrow();
        for error in errors {
            // Belt and braces: no message may carry a secret of the config.
            eprintln!("error: {}", config.redact(&error.to_string()));
        }
    };
    let request = match parse_request(&args) {
        Ok(request) => request,
        Err(errors) => {
            report(&errors);
            return if errors.iter().all(MergeError::is_usage) {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
        }
    };
    *config_for_redaction.borrow_mut() = request.config.clone();
    match merge(request, args.insecure_registries, args.digest_file).await {
        Ok(digest) => {
            println!("{digest}");
            EXIT_OK
        }
        Err(errors) => {
            report(&errors);
            EXIT_FAILED
        }
    }
}

fn parse_request(args: &MergeArgs) -> Result<Request, Vec<MergeError>> {
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
        })
    } else {
        Err(errors)
    }
}

fn parse_reference(written: &str) -> Result<Reference, String> {
    reference::parse(written)
}

async fn merge(
    request: Request,
    insecure_registries: Vec<String>,
    digest_file: Option<PathBuf>,
) -> Result<String, Vec<MergeError>> {
    let Request {
        sources,
        targets,
        config,
    } = request;
    let registries = Registries::new(config, insecure_registries);

    // Opened now, so that an unwritable path stops us before any push.
    let mut digest_out = match &digest_file {
        Some(path) => Some(std::fs::File::create(path).map_err(|source| {
            vec![MergeError::DigestFile {
                path: path.clone(),
                source,
            }]
        })?),
        None => None,
    };

    let checked = check_everything(&registries, sources, &targets).await?;
    let entries: Vec<_> = checked.iter().map(|c| c.entry.clone()).collect();
    let assembled = index::assemble(&entries).map_err(|e| vec![e.into()])?;
    eprintln!(
        "merge: index {} ({}, {} entries)",
        assembled.digest,
        assembled.media_type,
        entries.len() + entries.iter().map(|e| e.attestations.len()).sum::<usize>()
    );

    // Children first, once per target repository, so no registry ever holds
    // an index whose manifests it lacks.
    let mut repositories_done: HashSet<(String, String)> = HashSet::new();
    for target in &targets {
        let key = (
            target.reference.resolve_registry().to_string(),
            target.reference.repository().to_string(),
        );
        if !repositories_done.insert(key) {
            continue;
        }
        let copies = checked.iter().map(|source| async {
            source::copy_into(&registries, source, &target.reference)
                .await
                .map_err(|problem| MergeError::Target {
                    target: target.written.clone(),
                    problem: Problem::Other(format!(
                        "copying {} ({}) into it: {problem}",
                        source.spec.platform, source.spec.written
                    )),
                })
        });
        let failures: Vec<MergeError> = futures::future::join_all(copies)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if !failures.is_empty() {
            return Err(failures);
        }
    }

    for target in &targets {
        registries
            .push_manifest(&target.reference, &assembled.bytes, assembled.media_type)
            .await
            .map_err(|problem| {
                vec![MergeError::Target {
                    target: target.written.clone(),
                    problem,
                }]
            })?;
        eprintln!("merge: pushed {} -> {}", target.written, assembled.digest);
    }

    if let (Some(file), Some(path)) = (digest_out.as_mut(), &digest_file) {
        file.write_all(assembled.digest.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|source| {
                vec![MergeError::DigestFile {
                    path: path.clone(),
                    source,
                }]
            })?;
    }
    Ok(assembled.digest)
}

/// Checks every source and target concurrently; all problems, or none.
async fn check_everything(
    registries: &Registries,
    sources: Vec<SourceSpec>,
    targets: &[Target],
) -> Result<Vec<CheckedSource>, Vec<MergeError>> {
    let mut errors = Vec::new();
    for spec in &sources {
        if let Err(problem) = registries.authenticate(&spec.reference).await {
            errors.push(source_error(spec, problem));
        }
    }
    for target in targets {
        if let Err(problem) = registries.authenticate(&target.reference).await {
            errors.push(MergeError::Target {
                target: target.written.clone(),
                problem,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let source_checks = sources.into_iter().map(|spec| async move {
        let result = source::check(registries, spec.clone()).await;
        if let Ok(checked) = &result {
            let attestations = match checked.entry.attestations.len() {
                0 => String::new(),
                n => format!(" + {n} attestation manifest(s)"),
            };
            eprintln!(
                "merge: {} ({}): {} {}{attestations}",
                spec.platform,
                spec.written,
                checked.entry.image.media_type,
                checked.entry.image.digest,
            );
        }
        result.map_err(|problem| source_error(&spec, problem))
    });
    let target_checks = targets.iter().map(|target| async move {
        registries
            .probe(&target.reference)
            .await
            .map_err(|problem| MergeError::Target {
                target: target.written.clone(),
                problem,
            })
    });
    let (source_results, target_results) = futures::future::join(
        futures::future::join_all(source_checks),
        futures::future::join_all(target_checks),
    )
    .await;

    let mut checked = Vec::new();
    for result in source_results {
        match result {
            Ok(source) => checked.push(source),
            Err(error) => errors.push(error),
        }
    }
    errors.extend(target_results.into_iter().filter_map(Result::err));
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(errors)
    }
}

fn source_error(spec: &SourceSpec, problem: Problem) -> MergeError {
    MergeError::Source {
        platform: spec.platform.clone(),
        reference: spec.written.clone(),
        problem,
    }
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
