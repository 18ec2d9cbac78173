//! An OCI image layout (image-spec `image-layout.md`) that a build step
//! wrote, read as untrusted input: the step ran a hostile Dockerfile, and
//! the push step that reads it holds the push credentials. A blob is found
//! by its digest alone (`blobs/sha256/<hex>`, no path of the layout's is
//! followed), opened without following a symlink, must be a regular file
//! of the size its descriptor declares, and must hash to its digest before
//! a byte of it is sent anywhere: a link to a credential file cannot be
//! passed off as a layer.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::merge::index::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::merge::limits::{size_words, MAX_MANIFEST_BYTES};

/// The annotation naming an entry of `index.json` (image-spec
/// `annotations.md`); BuildKit's local cache export tags its entry `latest`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A descriptor of `index.json` or of a manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

/// An image manifest of the layout, verified: its bytes hash to `digest`.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// The config, then the layers.
    pub blobs: Vec<Descriptor>,
}

pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    /// The image manifest `index.json` lists: its only entry, or the one
    /// named `tag`.
    pub fn manifest(&self, tag: Option<&str>) -> Result<Manifest, LayoutError> {
        let path = self.root.join("index.json");
        let index = read_capped(&path, MAX_MANIFEST_BYTES)?;
        let index: Index = serde_json::from_slice(&index)
            .map_err(|e| invalid(format!("{}: not an OCI index ({e})", path.display())))?;
        let entry = match tag {
            Some(tag) => index
                .manifests
                .iter()
                .find(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(tag))
                .ok_or_else(|| invalid(format!("{}: no entry is named {tag:?}", path.display())))?,
            None => match index.manifests.as_slice() {
                [one] => one,
                entries => {
                    return Err(invalid(format!(
                        "{}: expected one image, found {} entries",
                        path.display(),
                        entries.len()
                    )))
                }
            },
        };
        if entry.size > MAX_MANIFEST_BYTES {
            return Err(invalid(format!(
                "manifest {} is larger than {}",
                entry.digest,
                size_words(MAX_MANIFEST_BYTES)
            )));
        }
        let mut file = self.blob(entry)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| self.io(entry, e))?;
        let parsed: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
            invalid(format!(
                "manifest {} is not an image manifest ({e})",
                entry.digest
            ))
        })?;
        let media_type = parsed
            .media_type
            .clone()
            .unwrap_or_else(|| entry.media_type.clone());
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(invalid(format!(
                "manifest {} is a {media_type:?}; expected an image manifest",
                entry.digest
            )));
        }
        Ok(Manifest {
            digest: entry.digest.clone(),
            media_type,
            bytes,
            blobs: std::iter::once(parsed.config)
                .chain(parsed.layers)
                .collect(),
        })
    }

    /// Blob `descriptor`, verified and rewound, ready to be streamed.
    pub fn blob(&self, descriptor: &Descriptor) -> Result<std::fs::File, LayoutError> {
        let hex = sha256_hex(&descriptor.digest)
            .ok_or_else(|| invalid(format!("{:?} is not a sha256 digest", descriptor.digest)))?;
        let path = self.root.join("blobs/sha256").join(hex);
        let mut file = open_regular(&path).map_err(|e| self.io(descriptor, e))?;
        let metadata = file.metadata().map_err(|e| self.io(descriptor, e))?;
        if !metadata.is_file() || metadata.len() != descriptor.size {
            return Err(invalid(format!(
                "blob {} is not a file of the {} bytes its descriptor declares",
                descriptor.digest, descriptor.size
            )));
        }
        let mut hasher = Sha256::new();
        std::io::copy(&mut (&mut file).take(descriptor.size), &mut hasher)
            .map_err(|e| self.io(descriptor, e))?;
        if hex::encode(hasher.finalize()) != hex {
            return Err(invalid(format!(
                "blob {} does not hash to its digest",
                descriptor.digest
            )));
        }
        file.rewind().map_err(|e| self.io(descriptor, e))?;
        Ok(file)
    }

    fn io(&self, descriptor: &Descriptor, source: std::io::Error) -> LayoutError {
        LayoutError::Io {
            path: format!("{} blob {}", self.root.display(), descriptor.digest),
            source,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageManifest {
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

fn invalid(message: String) -> LayoutError {
    LayoutError::Invalid(message)
}

/// The 64 hex digits of a `sha256:` digest, as a path component.
fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// A file the build wrote, opened for reading: never through a symlink, and
/// only a regular file (a FIFO would hold the push until its deadline:
/// `O_NONBLOCK` keeps `open` from waiting for a writer).
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// A small file read whole, refused past `cap`, never through a symlink.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, LayoutError> {
    let io = |source| LayoutError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = open_regular(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(invalid(format!(
            "{} is larger than {}",
            path.display(),
            size_words(cap)
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
