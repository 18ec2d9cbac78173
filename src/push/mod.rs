//! `multiarch-operator push`: the last step of a build pod. The build
//! step, which runs the Dockerfile's steps, has no push credentials: it
//! writes the image (and BuildKit's cache) as OCI layouts on the pod's own
//! storage. This step mounts the push secret (as only buildah's cache
//! export, which runs no step, also does); it runs nothing of the build,
//! reads the layouts and logs as untrusted input ([`layout`]), pushes the
//! image by digest and BuildKit's cache under its tag, and writes the
//! build report (`crate::termination`).
//!
//! The image must be pushed, or the step fails. The cache is best effort,
//! as BuildKit's `ignore-error=true` export is: its failure is reported,
//! never fatal.

pub mod layout;
pub mod progress;

use std::path::PathBuf;

use oci_client::Reference;
use sha2::{Digest, Sha256};

use crate::merge::credentials::DockerConfig;
use crate::merge::registry::{Problem, Registries};
use crate::termination;
use layout::{Layout, LayoutError, Manifest};

/// Command line of `multiarch-operator push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The OCI layout holding the built image (one image manifest).
    #[arg(long)]
    pub layout: PathBuf,
    /// The repository the image is pushed to, by digest.
    #[arg(long)]
    pub repository: String,
    /// The OCI layout of BuildKit's cache export (`type=local`).
    #[arg(long, requires = "cache_to")]
    pub cache_layout: Option<PathBuf>,
    /// REPO:TAG the cache is pushed to.
    #[arg(long, requires = "cache_layout")]
    pub cache_to: Option<String>,
    /// The builder's output, for the cache report: BuildKit's plain
    /// progress, or buildah's with `--buildah-cache`.
    #[arg(long)]
    pub build_log: Option<PathBuf>,
    /// The cache repository buildah read and its export step wrote: the
    /// report reads the build log as buildah's.
    #[arg(long, requires = "cache_export_log", conflicts_with = "cache_to")]
    pub buildah_cache: Option<String>,
    /// The output of buildah's cache export step, ending `exit=<code>`.
    #[arg(long, requires = "buildah_cache")]
    pub cache_export_log: Option<PathBuf>,
    /// A docker config.json with the push credentials.
    #[arg(long)]
    pub registry_config: Option<PathBuf>,
    /// HOST:PORT of a registry reached as `merge --insecure-registry` does;
    /// repeatable.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Where the report goes (the Job passes /dev/termination-log).
    #[arg(long)]
    pub report: PathBuf,
}

/// Exit codes, as `merge`'s.
pub use crate::merge::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("--registry-config: {0}")]
    RegistryConfig(#[from] crate::merge::credentials::ConfigError),
    #[error("--{flag} {value:?}: {reason}")]
    Malformed {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("the built image: {0}")]
    Layout(#[from] LayoutError),
    #[error("pushing the image to {repository}: {problem}")]
    Push {
        repository: String,
        problem: Problem,
    },
    #[error("--report {path}: {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the push; returns the process exit code.
pub async fn run(args: PushArgs) -> i32 {
    let config = match &args.registry_config {
        Some(path) => match DockerConfig::load(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {}", PushError::from(e));
                return EXIT_USAGE;
            }
        },
        None => DockerConfig::default(),
    };
    match push(&args, &config).await {
        Ok(digest) => {
            println!("{digest}");
            EXIT_OK
        }
        Err(error) => {
            eprintln!("error: {}", config.redact(&error.to_string()));
            if matches!(error, PushError::Malformed { .. }) {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            }
        }
    }
}

async fn push(args: &PushArgs, config: &DockerConfig) -> Result<String, PushError> {
    let malformed = |flag, value: &str, reason| PushError::Malformed {
        flag,
        value: value.to_string(),
        reason,
    };
    crate::reference::parse_repository(&args.repository)
        .map_err(|reason| malformed("repository", &args.repository, reason.to_string()))?;
    let cache_to = match &args.cache_to {
        Some(written) => {
            let reference = crate::reference::parse(written)
                .map_err(|reason| malformed("cache-to", written, reason))?;
            if reference.digest().is_some() {
                return Err(malformed("cache-to", written, "expected REPO:TAG".into()));
            }
            Some(reference)
        }
        None => None,
    };
    let registries = Registries::new(config.clone(), args.insecure_registries.clone());

    let image = Layout::new(&args.layout);
    let manifest = image.manifest(None)?;
    // The digest of the bytes pushed, whatever the layout's index says.
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest.bytes)));
    let target = crate::reference::parse(&format!("{}@{digest}", args.repository))
        .map_err(|reason| malformed("repository", &args.repository, reason))?;
    push_manifest(&registries, &image, &manifest, &target)
        .await
        .map_err(|problem| match problem {
            Pushing::Layout(e) => PushError::Layout(e),
            Pushing::Registry(problem) => PushError::Push {
                repository: args.repository.clone(),
                problem,
            },
        })?;
    eprintln!(
        "push: {} -> {}@{digest}",
        manifest.media_type, args.repository
    );

    let cache = match (&cache_to, &args.cache_layout, &args.buildah_cache) {
        (_, _, Some(repository)) => {
            let log = read_log(args.build_log.as_deref());
            let mut words = progress::read_buildah(&log, repository);
            let export = read_log(args.cache_export_log.as_deref());
            words.export_error = progress::buildah_export_error(&export)
                .map(|why| progress::bounded(&config.redact(&why)));
            if let Some(why) = &words.export_error {
                eprintln!("push: the cache was not pushed: {why}");
            }
            Some(words)
        }
        (Some(reference), Some(path), None) => {
            let mut words = progress::read(&read_log(args.build_log.as_deref()));
            if words.export_error.is_none() {
                if let Err(why) = push_cache(&registries, path, reference).await {
                    let why = progress::bounded(&config.redact(&why));
                    eprintln!("push: the cache was not pushed: {why}");
                    words.export_error = Some(why);
                } else {
                    eprintln!("push: cache -> {reference}");
                }
            }
            Some(words)
        }
        _ => None,
    };
    std::fs::write(&args.report, termination::render(&digest, cache.as_ref())).map_err(
        |source| PushError::Report {
            path: args.report.clone(),
            source,
        },
    )?;
    Ok(digest)
}

enum Pushing {
    Layout(LayoutError),
    Registry(Problem),
}

/// Blobs first, then the manifest, so the registry never holds a manifest
/// whose blobs it lacks.
async fn push_manifest(
    registries: &Registries,
    layout: &Layout,
    manifest: &Manifest,
    target: &Reference,
) -> Result<(), Pushing> {
    for blob in &manifest.blobs {
        let file = layout.blob(blob).map_err(Pushing::Layout)?;
        registries
            .push_file_blob(target, &blob.digest, blob.size, file)
            .await
            .map_err(Pushing::Registry)?;
    }
    registries
        .push_manifest(target, &manifest.bytes, &manifest.media_type)
        .await
        .map_err(Pushing::Registry)
}

/// BuildKit's local cache export: an image manifest (`image-manifest=true`)
/// whose config is the cache config, tagged `latest` in `index.json`
/// (client/solve.go); the registry cache importer reads that form.
async fn push_cache(
    registries: &Registries,
    path: &std::path::Path,
    reference: &Reference,
) -> Result<(), String> {
    let layout = Layout::new(path);
    let manifest = layout.manifest(Some("latest")).map_err(|e| e.to_string())?;
    push_manifest(registries, &layout, &manifest, reference)
        .await
        .map_err(|e| match e {
            Pushing::Layout(e) => e.to_string(),
            Pushing::Registry(problem) => problem.to_string(),
        })
}

/// A log the build wrote, at most `MAX_LOG_BYTES` of it; one that cannot
/// be read says nothing (the image was built all the same).
fn read_log(path: Option<&std::path::Path>) -> String {
    use std::io::Read as _;
    let Some(path) = path else {
        return String::new();
    };
    let mut text = Vec::new();
    let read = layout::open_regular(path).and_then(|f| {
        f.take(progress::MAX_LOG_BYTES as u64)
            .read_to_end(&mut text)
    });
    if let Err(e) = read {
        eprintln!("push: {} was not read: {e}", path.display());
    }
    String::from_utf8_lossy(&text).into_owned()
}
