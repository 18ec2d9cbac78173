//! Real single-platform images built with `buildah` (FROM scratch plus one
//! small file: no RUN step, so no emulation is needed for foreign
//! platforms), in a private vfs storage, pushed by digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::registry::Registry;
use super::tools::{permissive_policy, require_tool, run_checked, sha256_digest};

/// The platforms [`fixture_images`] builds.
pub const FIXTURE_PLATFORMS: [&str; 3] = ["linux/amd64", "linux/arm64", "linux/arm/v7"];

/// The manifest format of a pushed image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// `application/vnd.oci.image.manifest.v1+json`
    Oci,
    /// Docker schema 2, `application/vnd.docker.distribution.manifest.v2+json`
    Docker,
}

impl ManifestFormat {
    /// The value of `buildah push --format`.
    pub fn push_flag(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "oci",
            ManifestFormat::Docker => "v2s2",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "application/vnd.oci.image.manifest.v1+json",
            ManifestFormat::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }
}

/// buildah with its own storage (`--root`/`--runroot` in a temp dir, vfs).
pub struct Buildah {
    binary: PathBuf,
    storage: tempfile::TempDir,
}

impl Buildah {
    pub fn new() -> Buildah {
        Buildah {
            binary: require_tool("buildah", "buildah"),
            storage: tempfile::tempdir().expect("temp dir for buildah storage"),
        }
    }

    /// `buildah --root … --runroot … --storage-driver vfs`, ready for a subcommand.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--root")
            .arg(self.storage.path().join("root"))
            .arg("--runroot")
            .arg(self.storage.path().join("runroot"))
            .args(["--storage-driver", "vfs"]);
        command
    }

    /// Builds `FROM scratch` + `/platform.txt` (holding `content`) for
    /// `platform`; returns the local image name.
    pub fn build_scratch_image(&self, platform: &str, content: &str) -> String {
        let context = tempfile::tempdir().expect("temp dir for a build context");
        std::fs::write(context.path().join("platform.txt"), content).expect("write context file");
        std::fs::write(
            context.path().join("Containerfile"),
            "FROM scratch\nCOPY platform.txt /platform.txt\n",
        )
        .expect("write Containerfile");
        let name = format!("localhost/fixture-{}:latest", platform.replace('/', "-"));
        self.build(
            platform,
            &context.path().join("Containerfile"),
            context.path(),
            &name,
        );
        name
    }

    /// `buildah bud` of `containerfile` in `context` for `platform`, as an
    /// OCI image tagged `name` in this buildah's private storage.
    pub fn build(&self, platform: &str, containerfile: &Path, context: &Path, name: &str) {
        run_checked(
            self.command()
                .args([
                    "bud",
                    "--quiet",
                    "--platform",
                    platform,
                    "--format",
                    "oci",
                    "-t",
                    name,
                    "-f",
                ])
                .arg(containerfile)
                .arg("--signature-policy")
                .arg(permissive_policy())
                .arg(context),
        );
    }

    /// Pushes a local image to `destination` (`HOST:PORT/REPO:TAG`, plain
    /// HTTP) in `format`; returns the manifest digest.
    pub fn push(
        &self,
        image: &str,
        destination: &str,
        format: ManifestFormat,
        creds: Option<&str>,
    ) -> String {
        let digest_file = tempfile::NamedTempFile::new().expect("temp digest file");
        let mut command = self.command();
        command
            .args([
                "push",
                "--quiet",
                "--tls-verify=false",
                "--format",
                format.push_flag(),
            ])
            .arg("--signature-policy")
            .arg(permissive_policy())
            .arg("--digestfile")
            .arg(digest_file.path());
        match creds {
            Some(creds) => command.args(["--creds", creds]),
            None => command.args(["--authfile", &empty_authfile().display().to_string()]),
        };
        run_checked(command.arg(image).arg(format!("docker://{destination}")));
        let digest = std::fs::read_to_string(digest_file.path()).expect("read digest file");
        digest.trim().to_string()
    }

    /// Pushes a local image into an OCI layout directory (`oci:DIR:TAG`).
    pub fn push_to_oci_layout(&self, image: &str, layout: &Path, tag: &str) {
        run_checked(
            self.command()
                .args(["push", "--quiet", "--format", "oci"])
                .arg("--signature-policy")
                .arg(permissive_policy())
                .arg(image)
                .arg(format!("oci:{}:{tag}", layout.display())),
        );
    }
}

impl Default for Buildah {
    fn default() -> Self {
        Self::new()
    }
}

/// An auth file with no credentials, so the host's never leak into a test.
fn empty_authfile() -> &'static Path {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("auth.json");
        std::fs::write(&path, r#"{"auths":{}}"#).expect("write auth.json");
        (dir, path)
    });
    path
}

/// One image per [`FIXTURE_PLATFORMS`] entry, built once per test binary.
pub struct FixtureImages {
    pub buildah: Buildah,
    /// (platform, local image name), in [`FIXTURE_PLATFORMS`] order.
    pub images: Vec<(String, String)>,
}

impl FixtureImages {
    /// The local image name for `platform`.
    pub fn image(&self, platform: &str) -> &str {
        self.images
            .iter()
            .find(|(p, _)| p == platform)
            .map(|(_, name)| name.as_str())
            .unwrap_or_else(|| panic!("no fixture image for {platform}"))
    }

    /// Pushes the image of `platform` to `REGISTRY/repository:<platform slug>`
    /// in `format`.
    pub fn push(
        &self,
        registry: &Registry,
        repository: &str,
        platform: &str,
        format: ManifestFormat,
    ) -> PushedImage {
        let tag = format!("{}-{}", platform.replace('/', "-"), format.push_flag());
        let destination = format!("{}:{tag}", registry.repo(repository));
        let digest = self.buildah.push(
            self.image(platform),
            &destination,
            format,
            registry.creds_arg().as_deref(),
        );
        PushedImage {
            platform: platform.to_string(),
            reference: format!("{}@{digest}", registry.repo(repository)),
            digest,
        }
    }

    /// Pushes every fixture platform (see [`FixtureImages::push`]).
    pub fn push_all(
        &self,
        registry: &Registry,
        repository: &str,
        format: ManifestFormat,
    ) -> Vec<PushedImage> {
        FIXTURE_PLATFORMS
            .iter()
            .map(|p| self.push(registry, repository, p, format))
            .collect()
    }
}

/// The fixture images, built on first use.
pub fn fixture_images() -> &'static FixtureImages {
    static IMAGES: OnceLock<FixtureImages> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let buildah = Buildah::new();
        let images = FIXTURE_PLATFORMS
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    buildah.build_scratch_image(p, &format!("built for {p}\n")),
                )
            })
            .collect();
        FixtureImages { buildah, images }
    })
}

/// An image in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    pub platform: String,
    /// `HOST:PORT/REPO@sha256:…`
    pub reference: String,
    /// `sha256:…` of the image manifest.
    pub digest: String,
}

impl PushedImage {
    /// `PLATFORM=REFERENCE`, the form `merge --platform-image` takes.
    pub fn platform_image_arg(&self) -> String {
        format!("{}={}", self.platform, self.reference)
    }
}

/// A per-platform OCI index laid out the way BuildKit pushes one when
/// attestations are on: the image (with its platform) and an attestation
/// manifest (`unknown/unknown`, annotated with the image digest).
#[derive(Clone, Debug)]
pub struct AttestedIndex {
    /// `HOST:PORT/REPO@sha256:…` of the per-platform index.
    pub reference: String,
    pub index_digest: String,
    pub image_digest: String,
    pub attestation_digest: String,
}

/// Builds such an index around the fixture image of `platform` and pushes
/// it (with `skopeo copy --all --preserve-digests` from an OCI layout) to
/// `REGISTRY/repository`.
pub fn push_index_with_attestation(
    images: &FixtureImages,
    registry: &Registry,
    repository: &str,
    platform: &str,
) -> AttestedIndex {
    let layout = tempfile::tempdir().expect("temp dir for an OCI layout");
    images
        .buildah
        .push_to_oci_layout(images.image(platform), layout.path(), "image");
    let top: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.path().join("index.json")).expect("read index.json"),
    )
    .expect("index.json is JSON");
    let image = &top["manifests"][0];
    let image_digest = image["digest"].as_str().expect("image digest").to_string();
    let image_size = image["size"].as_u64().expect("image size");

    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "pkg:docker/fixture", "digest": {"sha256": image_digest.trim_start_matches("sha256:")}}],
        "predicate": {"builder": {"id": "multiarch-operator tests"}},
    })
    .to_string();
    let statement = write_blob(layout.path(), statement.as_bytes());
    let config = serde_json::json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [statement.0]},
    })
    .to_string();
    let config = write_blob(layout.path(), config.as_bytes());
    let attestation = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": [{
            "mediaType": "application/vnd.in-toto+json",
            "digest": statement.0,
            "size": statement.1,
            "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
        }],
    })
    .to_string();
    let attestation = write_blob(layout.path(), attestation.as_bytes());
    let (os, rest) = platform.split_once('/').expect("os/arch");
    let mut image_platform = serde_json::json!({"architecture": rest.split('/').next(), "os": os});
    if let Some(variant) = rest.split('/').nth(1) {
        image_platform["variant"] = variant.into();
    }
    let per_platform = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image_digest,
             "size": image_size, "platform": image_platform},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": attestation.0,
             "size": attestation.1, "platform": {"architecture": "unknown", "os": "unknown"},
             "annotations": BTreeMap::from([
                 ("vnd.docker.reference.digest", image_digest.as_str()),
                 ("vnd.docker.reference.type", "attestation-manifest"),
             ])},
        ],
    })
    .to_string();
    let index = write_blob(layout.path(), per_platform.as_bytes());
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index.0,
            "size": index.1,
            "annotations": {"org.opencontainers.image.ref.name": "attested"},
        }],
    });
    std::fs::write(layout.path().join("index.json"), top.to_string()).expect("write index.json");

    let destination = format!(
        "{}:{}-attested",
        registry.repo(repository),
        platform.replace('/', "-")
    );
    let mut copy = super::skopeo::command();
    copy.args([
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]);
    match registry.creds_arg() {
        Some(creds) => copy.args(["--dest-creds", &creds]),
        None => copy.arg("--dest-no-creds"),
    };
    run_checked(
        copy.arg(format!("oci:{}:attested", layout.path().display()))
            .arg(format!("docker://{destination}")),
    );
    AttestedIndex {
        reference: format!("{}@{}", registry.repo(repository), index.0),
        index_digest: index.0,
        image_digest,
        attestation_digest: attestation.0,
    }
}

/// Stores a blob in an OCI layout; returns (digest, size).
fn write_blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    let digest = sha256_digest(bytes);
    let dir = layout.join("blobs").join("sha256");
    std::fs::create_dir_all(&dir).expect("create blobs dir");
    std::fs::write(dir.join(digest.trim_start_matches("sha256:")), bytes).expect("write blob");
    (digest, bytes.len() as u64)
}
