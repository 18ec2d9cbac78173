//! Pure assembly of the image index: no I/O, so every rule is unit-tested.
//!
//! Layout, as BuildKit lays out a multi-platform push: the platform images
//! first, in the order given, then the attestation manifests kept from
//! per-platform indexes, in the same order. A client that picks the first
//! entry for its platform never sees an attestation (they are
//! `unknown/unknown`).
//!
//! Media types: all-Docker sources make a Docker manifest list, all-OCI
//! sources an OCI index. A mix is refused: an OCI index holding Docker
//! manifests is valid per the OCI spec (and buildx `imagetools create` falls
//! back to it), but registries disagree (GCR refuses mixed indexes, Quay
//! failed on them until 2026), so one image built by one builder should never
//! need it, and a mix points at a mistake worth stopping for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::platform::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The manifest media types `merge` reads.
pub const ACCEPTED_MANIFEST_TYPES: &[&str] =
    &[OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];

/// BuildKit's annotations on an attestation entry of an index.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// A descriptor as it appears in an index's `manifests`. Field order is the
/// serialisation order, which keeps the bytes (and digest) deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<IndexPlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The `platform` of an index entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl IndexPlatform {
    pub fn from_platform(platform: &Platform, os_version: Option<String>) -> Self {
        IndexPlatform {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            os_version,
            variant: platform.variant.clone(),
        }
    }

    /// `os/arch[/variant]` as written, without normalising.
    pub fn spelled(&self) -> String {
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    pub fn matches(&self, platform: &Platform) -> bool {
        platform.matches_config(&self.os, &self.architecture, self.variant.as_deref())
    }
}

impl Descriptor {
    /// True for BuildKit's attestation entries (provenance, SBOM).
    pub fn is_attestation(&self) -> bool {
        self.annotation(REFERENCE_TYPE) == Some(ATTESTATION_MANIFEST)
    }

    /// The image digest an attestation entry is about.
    pub fn attests(&self) -> Option<&str> {
        self.is_attestation()
            .then(|| self.annotation(REFERENCE_DIGEST))
            .flatten()
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An index or manifest list as read from a registry (only what `merge` uses).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceIndex {
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The index to push.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageIndex<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<&'a Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a BTreeMap<String, String>>,
}

/// One platform's contribution: its image, and the attestations about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformEntry {
    pub platform: Platform,
    /// Carries `platform`; its media type says whether it is OCI or Docker.
    pub image: Descriptor,
    pub attestations: Vec<Descriptor>,
}

/// The serialised index: push exactly these bytes, under this digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledIndex {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub digest: String,
}

/// The sources mix OCI and Docker manifests; the message names both sides.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the platform images mix OCI ({}) and Docker schema 2 ({}) manifests; build them all with one format (buildah --format oci|docker; BuildKit oci-mediatypes=true|false). Attestations are OCI manifests and need OCI images",
    oci.join(", "),
    docker.join(", ")
)]
pub struct MixedMediaTypes {
    pub oci: Vec<String>,
    pub docker: Vec<String>,
}

/// Builds the index for `entries`, in their order, with `annotations` on
/// an OCI index (a Docker manifest list has no place for them). Same
/// input, same bytes.
pub fn assemble(
    entries: &[PlatformEntry],
    annotations: &BTreeMap<String, String>,
) -> Result<AssembledIndex, MixedMediaTypes> {
    let mut oci = Vec::new();
    let mut docker = Vec::new();
    for entry in entries {
        let name = entry.platform.to_string();
        if entry.image.media_type == DOCKER_MANIFEST {
            if entry.attestations.is_empty() {
                docker.push(name);
            } else {
                docker.push(name.clone());
                oci.push(format!("{name} attestations"));
            }
        } else {
            oci.push(name);
        }
    }
    let media_type = match (oci.is_empty(), docker.is_empty()) {
        (false, false) => return Err(MixedMediaTypes { oci, docker }),
        (true, false) => DOCKER_LIST,
        _ => OCI_INDEX,
    };
    let manifests = entries
        .iter()
        .map(|e| &e.image)
        .chain(entries.iter().flat_map(|e| &e.attestations))
        .collect();
    let index = ImageIndex {
        schema_version: 2,
        media_type,
        manifests,
        annotations: (media_type == OCI_INDEX && !annotations.is_empty()).then_some(annotations),
    };
    let bytes = serde_json::to_vec(&index).expect("an index always serialises");
    Ok(AssembledIndex {
        media_type,
        digest: sha256_digest(&bytes),
        bytes,
    })
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(platform: &str, media_type: &str, fill: char) -> PlatformEntry {
        let platform = Platform::parse(platform).unwrap();
        PlatformEntry {
            image: Descriptor {
                media_type: media_type.to_string(),
                digest: format!("sha256:{}", fill.to_string().repeat(64)),
                size: 500,
                platform: Some(IndexPlatform::from_platform(&platform, None)),
                artifact_type: None,
                annotations: None,
            },
            platform,
            attestations: vec![],
        }
    }

    fn attestation_for(entry: &PlatformEntry, fill: char) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.to_string(),
            digest: format!("sha256:{}", fill.to_string().repeat(64)),
            size: 800,
            platform: Some(IndexPlatform {
                architecture: "unknown".into(),
                os: "unknown".into(),
                os_version: None,
                variant: None,
            }),
            artifact_type: None,
            annotations: Some(BTreeMap::from([
                (REFERENCE_DIGEST.to_string(), entry.image.digest.clone()),
                (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
            ])),
        }
    }

    fn parsed(index: &AssembledIndex) -> serde_json::Value {
        serde_json::from_slice(&index.bytes).unwrap()
    }

    #[test]
    fn keeps_the_given_order_with_platforms() {
        let entries = [
            image("linux/arm/v7", OCI_MANIFEST, 'c'),
            image("linux/amd64", OCI_MANIFEST, 'a'),
            image("linux/arm64", OCI_MANIFEST, 'b'),
        ];
        let index = assemble(&entries, &BTreeMap::new()).unwrap();
        let json = parsed(&index);
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["mediaType"], OCI_INDEX);
        let platforms: Vec<String> = json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let p = &m["platform"];
                let mut s = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                );
                if let Some(v) = p["variant"].as_str() {
                    s = format!("{s}/{v}");
                }
                s
            })
            .collect();
        assert_eq!(platforms, ["linux/arm/v7", "linux/amd64", "linux/arm64"]);
        let first = &json["manifests"][0];
        assert_eq!(first["mediaType"], OCI_MANIFEST);
        assert_eq!(first["digest"], format!("sha256:{}", "c".repeat(64)));
        assert_eq!(first["size"], 500);
        assert!(json["manifests"][1]["platform"].get("variant").is_none());
        assert!(json.get("annotations").is_none());
    }

    #[test]
    fn docker_sources_make_a_docker_manifest_list() {
        let entries = [
            image("linux/amd64", DOCKER_MANIFEST, 'a'),
            image("linux/arm64", DOCKER_MANIFEST, 'b'),
        ];
        let index = assemble(&entries, &BTreeMap::new()).unwrap();
        assert_eq!(index.media_type, DOCKER_LIST);
        assert_eq!(parsed(&index)["mediaType"], DOCKER_LIST);
    }

    #[test]
    fn a_mix_is_refused_naming_each_side() {
        let entries = [
            image("linux/amd64", OCI_MANIFEST, 'a'),
            image("linux/arm64", DOCKER_MANIFEST, 'b'),
            image("linux/arm/v7", OCI_MANIFEST, 'c'),
        ];
        let err = assemble(&entries, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.oci, ["linux/amd64", "linux/arm/v7"]);
        assert_eq!(err.docker, ["linux/arm64"]);
        let message = err.to_string();
        assert!(
            message.contains("OCI (linux/amd64, linux/arm/v7)"),
            "{message}"
        );
        assert!(
            message.contains("Docker schema 2 (linux/arm64)"),
            "{message}"
        );
    }

    #[test]
    fn docker_images_with_attestations_are_a_mix() {
        let mut amd64 = image("linux/amd64", DOCKER_MANIFEST, 'a');
        amd64.attestations.push(attestation_for(&amd64, 'e'));
        let err = assemble(&[amd64], &BTreeMap::new()).unwrap_err();
        assert_eq!(err.docker, ["linux/amd64"]);
        assert_eq!(err.oci, ["linux/amd64 attestations"]);
    }

    #[test]
    fn annotations_go_on_an_oci_index_only() {
        let annotations = BTreeMap::from([(
            "org.opencontainers.image.revision".to_string(),
            "0123abc".to_string(),
        )]);
        let oci = assemble(&[image("linux/amd64", OCI_MANIFEST, 'a')], &annotations).unwrap();
        assert_eq!(
            parsed(&oci)["annotations"]["org.opencontainers.image.revision"],
            "0123abc"
        );
        let plain = assemble(&[image("linux/amd64", OCI_MANIFEST, 'a')], &BTreeMap::new()).unwrap();
        assert_ne!(
            oci.digest, plain.digest,
            "annotations are part of the content"
        );
        assert!(parsed(&plain).get("annotations").is_none());
        let docker = assemble(&[image("linux/amd64", DOCKER_MANIFEST, 'a')], &annotations).unwrap();
        assert!(parsed(&docker).get("annotations").is_none());
    }

    #[test]
    fn same_entries_same_bytes_and_digest() {
        let entries = [
            image("linux/amd64", OCI_MANIFEST, 'a'),
            image("linux/arm64", OCI_MANIFEST, 'b'),
        ];
        let first = assemble(&entries, &BTreeMap::new()).unwrap();
        let second = assemble(&entries.clone(), &BTreeMap::new()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.digest, sha256_digest(&first.bytes));
        // The order is part of the content.
        let swapped =
            assemble(&[entries[1].clone(), entries[0].clone()], &BTreeMap::new()).unwrap();
        assert_ne!(first.digest, swapped.digest);
    }

    #[test]
    fn attestations_follow_all_images_and_keep_their_annotations() {
        let mut amd64 = image("linux/amd64", OCI_MANIFEST, 'a');
        let mut arm64 = image("linux/arm64", OCI_MANIFEST, 'b');
        amd64.attestations.push(attestation_for(&amd64, 'e'));
        arm64.attestations.push(attestation_for(&arm64, 'f'));
        let index = assemble(&[amd64.clone(), arm64.clone()], &BTreeMap::new()).unwrap();
        assert_eq!(index.media_type, OCI_INDEX);
        let json = parsed(&index);
        let digests: Vec<&str> = json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(
            digests,
            [
                amd64.image.digest.as_str(),
                arm64.image.digest.as_str(),
                amd64.attestations[0].digest.as_str(),
                arm64.attestations[0].digest.as_str()
            ]
        );
        let kept = &json["manifests"][2];
        assert_eq!(kept["annotations"][REFERENCE_TYPE], ATTESTATION_MANIFEST);
        assert_eq!(
            kept["annotations"][REFERENCE_DIGEST],
            amd64.image.digest.as_str()
        );
        assert_eq!(kept["platform"]["os"], "unknown");
        let roundtrip: SourceIndex = serde_json::from_slice(&index.bytes).unwrap();
        assert_eq!(roundtrip.manifests[2], amd64.attestations[0]);
        assert_eq!(
            roundtrip.manifests[2].attests(),
            Some(amd64.image.digest.as_str())
        );
        assert!(!roundtrip.manifests[0].is_attestation());
    }
}
