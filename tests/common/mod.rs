//! Shared test support: real registries (Debian's `docker-registry`), real
//! images (`buildah`), a real client (`skopeo`). Include it with `mod common;`
//! (or `#[path = "../tests/common/mod.rs"] mod common;` from a bench).
//!
//! A missing tool fails the test with the Debian package to install; nothing
//! is ever skipped. Every helper keeps its state in private temp dirs, so
//! tests can run in parallel and never touch the host's image storage.

// Each test binary uses a different part of this module.
#![allow(dead_code, unused_imports)]

pub mod debian;
pub mod gate;
pub mod git;
pub mod images;
pub mod probe;
pub mod registry;
pub mod skopeo;
pub mod tools;

pub use images::{
    fixture_images, push_index_with_attestation, AttestedIndex, Buildah, FixtureImages,
    ManifestFormat, PushedImage, FIXTURE_PLATFORMS,
};
pub use registry::{closed_port, shared_auth_registry, shared_plain_registry, Registry};
pub use skopeo::{inspect_for_platform, inspect_raw, manifest_layers, ResolvedImage};
pub use tools::{require_tool, run_checked, sha256_digest};
