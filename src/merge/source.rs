//! Checking one `--platform-image` source, and copying what it references
//! into a target repository.

use oci_client::Reference;
use serde::Deserialize;

use super::index::{Descriptor, IndexPlatform, PlatformEntry, SourceIndex, DOCKER_LIST, OCI_INDEX};
use super::registry::{Problem, RawManifest, Registries};
use crate::platform::Platform;
use crate::reference::repository_key;

/// A parsed `--platform-image PLATFORM=REF`.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    pub platform: Platform,
    /// REF as the user wrote it, for messages.
    pub written: String,
    pub reference: Reference,
}

/// A checked source: its index entries, and every manifest they reference
/// (with their blobs), to copy into target repositories.
#[derive(Clone, Debug)]
pub struct CheckedSource {
    pub spec: SourceSpec,
    pub entry: PlatformEntry,
    pub manifests: Vec<ManifestWithBlobs>,
}

/// An image manifest, parsed once: its bytes, its config, and the blobs
/// to copy with it (the config first).
#[derive(Clone, Debug)]
pub struct ManifestWithBlobs {
    pub manifest: RawManifest,
    pub config: BlobRef,
    pub blobs: Vec<BlobRef>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    /// Foreign layers (Windows base layers) live elsewhere and are not copied.
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ImageManifest {
    config: BlobRef,
    #[serde(default)]
    layers: Vec<BlobRef>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(rename = "os.version", default)]
    os_version: Option<String>,
}

impl ImageConfig {
    fn spelled(&self) -> String {
        IndexPlatform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: None,
            variant: self.variant.clone(),
        }
        .spelled()
    }
}

/// Fetches the source, checks that it is the platform it is named for, and
/// gathers what the index will reference.
pub async fn check(registries: &Registries, spec: SourceSpec) -> Result<CheckedSource, Problem> {
    let top = registries.fetch_manifest(&spec.reference).await?;
    let is_index = top.media_type == OCI_INDEX || top.media_type == DOCKER_LIST;
    if !is_index {
        let (image, os_version) = check_image(registries, &spec, top).await?;
        return Ok(CheckedSource {
            entry: PlatformEntry {
                image: descriptor_of(&image.manifest, &spec.platform, os_version),
                platform: spec.platform.clone(),
                attestations: vec![],
            },
            manifests: vec![image],
            spec,
        });
    }

    // A per-platform index (BuildKit with attestations): take the entry for
    // the platform, and the attestation manifests about it.
    let IndexSelection {
        chosen,
        attestations: about_chosen,
    } = select_from_index(&top.bytes, &spec.platform)?;
    let child = registries
        .fetch_manifest(&spec.reference.clone_with_digest(chosen.digest.clone()))
        .await?;
    if child.media_type == OCI_INDEX || child.media_type == DOCKER_LIST {
        return Err(Problem::Unsupported(format!(
            "the entry {} for this platform is itself an index",
            chosen.digest
        )));
    }
    let (image, os_version) = check_image(registries, &spec, child).await?;
    let mut manifests = vec![image];
    let mut attestations = Vec::new();
    for attestation in about_chosen {
        let reference = spec.reference.clone_with_digest(attestation.digest.clone());
        let manifest = registries.fetch_manifest(&reference).await?;
        manifests.push(with_blobs(manifest)?);
        attestations.push(attestation);
    }
    Ok(CheckedSource {
        entry: PlatformEntry {
            image: descriptor_of(&manifests[0].manifest, &spec.platform, os_version),
            platform: spec.platform.clone(),
            attestations,
        },
        manifests,
        spec,
    })
}

/// Reads an image manifest's config and compares its platform.
async fn check_image(
    registries: &Registries,
    spec: &SourceSpec,
    manifest: RawManifest,
) -> Result<(ManifestWithBlobs, Option<String>), Problem> {
    let image = with_blobs(manifest)?;
    let config_bytes = registries
        .fetch_blob(&spec.reference, &image.config.digest, image.config.size)
        .await?;
    let os_version = check_config(&config_bytes, &spec.platform)?;
    Ok((image, os_version))
}

/// What a per-platform index holds for one platform: the first image entry
/// for it, and the attestation entries about that image, in index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSelection {
    pub chosen: Descriptor,
    pub attestations: Vec<Descriptor>,
}

/// Parses an index (or manifest list) body and picks the entry for
/// `platform` and the attestations about it. Pure, so it is fuzzed.
pub fn select_from_index(bytes: &[u8], platform: &Platform) -> Result<IndexSelection, Problem> {
    let index: SourceIndex = serde_json::from_slice(bytes)
        .map_err(|e| Problem::Unsupported(format!("the index is not valid JSON ({e})")))?;
    let images: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !d.is_attestation())
        .collect();
    let Some(chosen) = images
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(platform)))
    else {
        let available: Vec<String> = images
            .iter()
            .map(|d| {
                d.platform
                    .as_ref()
                    .map_or_else(|| "(no platform)".to_string(), IndexPlatform::spelled)
            })
            .collect();
        return Err(Problem::NotInIndex {
            available: if available.is_empty() {
                "no images".to_string()
            } else {
                available.join(", ")
            },
        });
    };
    let attestations = index
        .manifests
        .iter()
        .filter(|d| d.attests() == Some(chosen.digest.as_str()))
        .cloned()
        .collect();
    Ok(IndexSelection {
        chosen: (*chosen).clone(),
        attestations,
    })
}

/// Parses an image config body and checks that it is `platform`; returns
/// its non-empty `os.version` (Windows images). Pure, so it is fuzzed.
pub fn check_config(bytes: &[u8], platform: &Platform) -> Result<Option<String>, Problem> {
    let config: ImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| Problem::Unsupported(format!("the image config is not valid JSON ({e})")))?;
    if !platform.matches_config(&config.os, &config.architecture, config.variant.as_deref()) {
        return Err(Problem::WrongPlatform {
            actual: config.spelled(),
        });
    }
    Ok(config.os_version.filter(|v| !v.is_empty()))
}

/// Parses an image manifest body: its config and the layers to copy
/// (foreign layers, which have `urls`, are left out). Pure, so it is fuzzed.
pub fn with_blobs(manifest: RawManifest) -> Result<ManifestWithBlobs, Problem> {
    let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes).map_err(|e| {
        Problem::Unsupported(format!(
            "the manifest {} is not valid ({e})",
            manifest.digest
        ))
    })?;
    let blobs = std::iter::once(parsed.config.clone())
        .chain(parsed.layers)
        .filter(|b| b.urls.as_ref().is_none_or(Vec::is_empty))
        .collect();
    Ok(ManifestWithBlobs {
        manifest,
        config: parsed.config,
        blobs,
    })
}

fn descriptor_of(
    image: &RawManifest,
    platform: &Platform,
    os_version: Option<String>,
) -> Descriptor {
    Descriptor {
        media_type: image.media_type.clone(),
        digest: image.digest.clone(),
        size: image.bytes.len() as u64,
        platform: Some(IndexPlatform::from_platform(platform, os_version)),
        artifact_type: None,
        annotations: None,
    }
}

/// Makes every manifest and blob of `source` present in the repository of
/// `target` (blobs first, then each manifest by digest), so that the index
/// pushed there references nothing the registry lacks.
pub async fn copy_into(
    registries: &Registries,
    source: &CheckedSource,
    target: &Reference,
) -> Result<(), Problem> {
    if repository_key(&source.spec.reference) == repository_key(target) {
        return Ok(());
    }
    for item in &source.manifests {
        let blobs = item.blobs.iter().map(|blob| {
            registries.ensure_blob(&source.spec.reference, target, &blob.digest, blob.size)
        });
        futures::future::try_join_all(blobs).await?;
        let by_digest = target.clone_with_digest(item.manifest.digest.clone());
        registries
            .push_manifest(&by_digest, &item.manifest.bytes, &item.manifest.media_type)
            .await?;
    }
    Ok(())
}
