//! The build id: a hash of what shapes the image, stable across operator
//! versions. It hashes a canonical form written out here field by field
//! and versioned (`v`), never the Rust serialisation of the spec: a release
//! that adds a spec field with a default must not change the id of every
//! existing resource (that would rebuild every image in the cluster). Fields
//! that shape how a build runs but not what it makes (push and pull
//! secrets, scheduling, resources, deadlines, retries, cache settings) are
//! left out. A golden test pins the ids of the fixtures.
//!
//! `spec.buildOn` is in: it does not change what is asked for (the same
//! target platform), but the image can differ. The Dockerfile sees
//! `$BUILDPLATFORM` (and may bake it in), a cross-compiler's output need not
//! equal a native compiler's, and an emulated build may take other paths
//! than a native one. So moving a platform onto other nodes (or back,
//! once a native node exists) builds it again rather than keeping an image
//! made another way. Only entries that change the nodes count, and none
//! is written when there are none, so existing ids stay as they were.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{BuilderStrategy, MultiArchImageSpec};
use crate::platform::Platform;

/// Hex digits of the id in status and labels (64 bits).
pub const BUILD_ID_LENGTH: usize = 16;
/// Hex digits of the id in Job names, which must stay short.
pub const SHORT_BUILD_ID_LENGTH: usize = 8;

/// What shapes a build besides its spec, known only at run time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildInputs<'a> {
    /// The commit a git source was resolved to.
    pub commit: Option<&'a str>,
    /// The value of the `multiarch.dev/rebuild` annotation.
    pub rebuild: Option<&'a str>,
}

/// Version 1 of the canonical form. Change it only by adding a new version;
/// resources built under v1 keep their ids as long as they do not change.
#[derive(Serialize)]
struct CanonicalV1<'a> {
    v: u32,
    image: &'a str,
    /// Sorted: the index is pushed under each, in any order.
    tags: Vec<&'a str>,
    /// Normalised (`linux/aarch64` is `linux/arm64`), in index order.
    platforms: Vec<String>,
    git_url: Option<&'a str>,
    git_revision: Option<&'a str>,
    commit: Option<&'a str>,
    config_map: Option<&'a str>,
    context_dir: &'a str,
    dockerfile: &'a str,
    target: &'a str,
    build_args: &'a BTreeMap<String, String>,
    builder: &'static str,
    builder_image: Option<&'a str>,
    rebuild: Option<&'a str>,
    /// Normalised `target -> node platform`, for platforms built on other
    /// platforms' nodes; absent when there are none (ids from before
    /// `spec.buildOn` existed stay the same).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    build_on: BTreeMap<String, String>,
}

/// The id of the build of `spec` with `inputs`: the same inputs give the
/// same id, so nothing is rebuilt.
pub fn build_id(spec: &MultiArchImageSpec, inputs: &BuildInputs) -> String {
    let mut tags: Vec<&str> = spec.tags.iter().map(String::as_str).collect();
    tags.sort_unstable();
    let git = spec.source.git.as_ref();
    let canonical = CanonicalV1 {
        v: 1,
        image: &spec.image,
        tags,
        platforms: spec
            .platforms
            .iter()
            .map(|p| Platform::parse(p).map_or_else(|_| p.clone(), |p| p.to_string()))
            .collect(),
        git_url: git.map(|g| g.url.as_str()),
        // Once resolved, the commit alone says what is built.
        git_revision: git
            .and_then(|g| g.revision.as_deref())
            .filter(|_| inputs.commit.is_none()),
        commit: inputs.commit,
        config_map: spec.source.config_map.as_ref().map(|c| c.name.as_str()),
        context_dir: &spec.context_dir,
        dockerfile: &spec.dockerfile,
        target: &spec.target,
        build_args: &spec.build_args,
        builder: match spec.builder.strategy {
            BuilderStrategy::Buildkit => "buildkit",
            BuilderStrategy::Buildah => "buildah",
        },
        builder_image: spec.builder.image.as_deref(),
        rebuild: inputs.rebuild,
        build_on: spec
            .platforms
            .iter()
            .filter_map(|p| Platform::parse(p).ok())
            .map(|p| (super::node_platform(spec, &p), p))
            .filter(|(node, p)| node != p)
            .map(|(node, p)| (p.to_string(), node.to_string()))
            .collect(),
    };
    let bytes = serde_json::to_vec(&canonical).expect("the canonical form serialises");
    hex::encode(&Sha256::digest(&bytes)[..BUILD_ID_LENGTH / 2])
}

/// The part of a build id that Job names carry.
pub fn short(build_id: &str) -> &str {
    &build_id[..build_id.len().min(SHORT_BUILD_ID_LENGTH)]
}
