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

pub mod credentials;
pub mod index;
pub mod limits;
pub mod registry;
mod request;
pub mod source;

use std::collections::HashSet;
use std::io::Write as _;

use crate::merge::credentials::DockerConfig;
use crate::reference::repository_key;
use registry::{Problem, Registries};
use request::{parse_request, Request, Target};
pub use request::{MergeArgs, MergeError, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use source::{CheckedSource, SourceSpec};

/// Runs the merge; returns the process exit code.
pub async fn run(args: MergeArgs) -> i32 {
    let request = match parse_request(&args) {
        Ok(request) => request,
        Err(errors) => {
            // No credential was loaded: nothing to redact.
            report(&errors, &DockerConfig::default());
            return if errors.iter().all(MergeError::is_usage) {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
        }
    };
    match merge(&request).await {
        Ok(digest) => {
            println!("{digest}");
            EXIT_OK
        }
        Err(errors) => {
            report(&errors, &request.config);
            EXIT_FAILED
        }
    }
}

/// Prints the errors; belt and braces, no message may carry a secret of
/// the config.
fn report(errors: &[MergeError], config: &DockerConfig) {
    for error in errors {
        eprintln!("error: {}", config.redact(&error.to_string()));
    }
}

async fn merge(request: &Request) -> Result<String, Vec<MergeError>> {
    let targets = &request.targets;
    let registries = Registries::new(request.config.clone(), request.insecure_registries.clone());

    // Opened now, so that an unwritable path stops us before any push.
    let mut digest_out = match &request.digest_file {
        Some(path) => Some(std::fs::File::create(path).map_err(|source| {
            vec![MergeError::DigestFile {
                path: path.clone(),
                source,
            }]
        })?),
        None => None,
    };

    let checked = check_everything(&registries, &request.sources, targets).await?;
    let entries: Vec<_> = checked.iter().map(|c| c.entry.clone()).collect();
    let assembled = index::assemble(&entries, &request.annotations).map_err(|e| vec![e.into()])?;
    if !request.annotations.is_empty() && assembled.media_type != index::OCI_INDEX {
        eprintln!("merge: a Docker manifest list has no annotations; --annotation is left out");
    }
    eprintln!(
        "merge: index {} ({}, {} entries)",
        assembled.digest,
        assembled.media_type,
        entries.len() + entries.iter().map(|e| e.attestations.len()).sum::<usize>()
    );

    // Children first, once per target repository, so no registry ever holds
    // an index whose manifests it lacks.
    let mut repositories_done: HashSet<(&str, &str)> = HashSet::new();
    for target in targets {
        if !repositories_done.insert(repository_key(&target.reference)) {
            continue;
        }
        let copies = checked.iter().map(|source| async {
            source::copy_into(&registries, source, &target.reference)
                .await
                .map_err(|problem| MergeError::Copy {
                    target: target.written.clone(),
                    platform: source.spec.platform.clone(),
                    source_reference: source.spec.written.clone(),
                    problem,
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

    for target in targets {
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

    if let (Some(file), Some(path)) = (digest_out.as_mut(), &request.digest_file) {
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
    sources: &[SourceSpec],
    targets: &[Target],
) -> Result<Vec<CheckedSource>, Vec<MergeError>> {
    let mut errors = Vec::new();
    let source_checks = sources.iter().cloned().map(|spec| async move {
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
