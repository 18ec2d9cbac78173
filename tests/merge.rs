//! `multiarch-operator merge` against real registries, checked with a real
//! client (skopeo). Images are built once per test binary; each test uses
//! its own repositories, so tests run in parallel.

mod common;

use std::process::Command;

use common::registry::{write_docker_config, AUTH_PASSWORD};
use common::{
    closed_port, fixture_images, inspect_for_platform, inspect_raw, manifest_layers,
    push_index_with_attestation, sha256_digest, shared_auth_registry, shared_plain_registry,
    ManifestFormat, PushedImage, Registry, FIXTURE_PLATFORMS,
};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

struct MergeRun {
    code: i32,
    stdout: String,
    stderr: String,
}

impl MergeRun {
    /// The digest printed as the last line of stdout.
    fn digest(&self) -> &str {
        assert_eq!(self.code, 0, "merge failed:\n{}", self.stderr);
        let last = self.stdout.lines().last().expect("merge printed nothing");
        assert!(
            last.starts_with("sha256:") && last.len() == 71,
            "last line {last:?}"
        );
        last
    }

    fn failed_with(&self, needles: &[&str]) {
        assert_eq!(
            self.code, 1,
            "expected a check failure; stdout {}\nstderr {}",
            self.stdout, self.stderr
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "{needle:?} not in:\n{}",
                self.stderr
            );
        }
        assert!(
            !self.stdout.contains("sha256:"),
            "printed a digest on failure: {}",
            self.stdout
        );
    }
}

fn merge(args: &[String]) -> MergeRun {
    let output = Command::new(env!("CARGO_BIN_EXE_multiarch-operator"))
        .arg("merge")
        .args(args)
        .output()
        .expect("run multiarch-operator merge");
    MergeRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `--platform-image` for each source, `--target` for each target, and
/// `--insecure-registry` for every registry involved.
fn args(sources: &[PushedImage], targets: &[String], registries: &[&Registry]) -> Vec<String> {
    let mut args = Vec::new();
    for source in sources {
        args.extend(["--platform-image".to_string(), source.platform_image_arg()]);
    }
    for target in targets {
        args.extend(["--target".to_string(), target.clone()]);
    }
    for registry in registries {
        args.extend([
            "--insecure-registry".to_string(),
            registry.host().to_string(),
        ]);
    }
    args
}

fn raw_index(image: &str, creds: Option<&str>) -> (Vec<u8>, serde_json::Value) {
    let bytes = inspect_raw(image, creds).unwrap_or_else(|e| panic!("{image}: {e}"));
    let json = serde_json::from_slice(&bytes).expect("an index is JSON");
    (bytes, json)
}

fn entry_platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect()
}

fn assert_tag_absent(image: &str, creds: Option<&str>) {
    let result = inspect_raw(image, creds);
    assert!(
        result.is_err(),
        "{image} was created: {:?}",
        result.map(String::from_utf8)
    );
}

/// A client on each platform resolves `image` to that platform's source
/// (the fixture images differ by their one layer).
fn assert_clients_resolve(image: &str, sources: &[PushedImage], creds: Option<&str>) {
    for source in sources {
        let resolved = inspect_for_platform(image, &source.platform, creds);
        let want_layers = manifest_layers(&source.reference, creds);
        assert_eq!(
            resolved.layers, want_layers,
            "{} resolved to {resolved:?}",
            source.platform
        );
        let want_arch = source.platform.split('/').nth(1).unwrap();
        assert_eq!(resolved.architecture, want_arch, "{resolved:?}");
        assert_eq!(resolved.os, "linux");
    }
}

#[test]
fn merges_oci_images_into_an_index_every_client_platform_resolves() {
    let registry = shared_plain_registry();
    let sources = fixture_images().push_all(registry, "sources/oci-basic", ManifestFormat::Oci);
    let targets = [
        format!("{}:latest", registry.repo("apps/basic")),
        format!("{}:v1.2.3", registry.repo("apps/basic")),
        format!("{}:release", registry.repo("mirror/basic")),
    ];
    let digest_file = tempfile::NamedTempFile::new().unwrap();
    let mut merge_args = args(&sources, &targets, &[registry]);
    merge_args.extend([
        "--digest-file".into(),
        digest_file.path().display().to_string(),
    ]);

    let run = merge(&merge_args);
    let digest = run.digest().to_string();
    assert_eq!(std::fs::read_to_string(digest_file.path()).unwrap(), digest);

    for target in &targets {
        let (bytes, index) = raw_index(target, None);
        assert_eq!(sha256_digest(&bytes), digest, "{target} serves other bytes");
        assert_eq!(index["mediaType"], OCI_INDEX);
        assert_eq!(entry_platforms(&index), FIXTURE_PLATFORMS);
        for (entry, source) in index["manifests"].as_array().unwrap().iter().zip(&sources) {
            assert_eq!(entry["digest"], source.digest.as_str());
            assert_eq!(entry["mediaType"], ManifestFormat::Oci.media_type());
        }
        assert_clients_resolve(target, &sources, None);
    }
    let arm = inspect_for_platform(&targets[0], "linux/arm/v7", None);
    assert_eq!(arm.variant, "v7");

    // Same inputs, same bytes: re-running changes nothing.
    let again = merge(&merge_args);
    assert_eq!(again.digest(), digest);
    assert!(!run.stderr.is_empty(), "progress belongs on stderr");
    assert_eq!(run.stdout.trim(), digest, "stdout holds only the digest");
}

#[test]
fn docker_schema2_images_make_a_docker_manifest_list() {
    let registry = shared_plain_registry();
    let sources = fixture_images().push_all(registry, "sources/docker", ManifestFormat::Docker);
    let target = format!("{}:latest", registry.repo("apps/docker-list"));
    let run = merge(&args(&sources, std::slice::from_ref(&target), &[registry]));
    let digest = run.digest();
    let (bytes, index) = raw_index(&target, None);
    assert_eq!(sha256_digest(&bytes), digest);
    assert_eq!(index["mediaType"], DOCKER_LIST);
    assert_eq!(entry_platforms(&index), FIXTURE_PLATFORMS);
    assert_eq!(
        index["manifests"][0]["mediaType"],
        ManifestFormat::Docker.media_type()
    );
    assert_clients_resolve(&target, &sources, None);
}

#[test]
fn sources_already_in_the_target_repository_are_used_in_place() {
    let registry = shared_plain_registry();
    let sources = fixture_images().push_all(registry, "apps/in-place", ManifestFormat::Oci);
    let target = format!("{}:latest", registry.repo("apps/in-place"));
    let run = merge(&args(
        &sources[..2],
        std::slice::from_ref(&target),
        &[registry],
    ));
    run.digest();
    assert_clients_resolve(&target, &sources[..2], None);
}

#[test]
fn a_mix_of_oci_and_docker_images_is_refused_naming_both_sides() {
    let registry = shared_plain_registry();
    let images = fixture_images();
    let sources = [
        images.push(
            registry,
            "sources/mixed",
            "linux/amd64",
            ManifestFormat::Oci,
        ),
        images.push(
            registry,
            "sources/mixed",
            "linux/arm64",
            ManifestFormat::Docker,
        ),
    ];
    let target = format!("{}:latest", registry.repo("apps/mixed"));
    let run = merge(&args(&sources, std::slice::from_ref(&target), &[registry]));
    run.failed_with(&["OCI (linux/amd64)", "Docker schema 2 (linux/arm64)"]);
    assert_tag_absent(&target, None);
}

#[test]
fn htpasswd_registry_with_config_json_and_never_prints_the_password() {
    let registry = shared_auth_registry();
    let creds = registry.creds_arg();
    let sources = fixture_images().push_all(registry, "sources/auth", ManifestFormat::Oci);
    let target = format!("{}:latest", registry.repo("apps/auth"));
    let config_dir = tempfile::tempdir().unwrap();
    let config = registry.write_docker_config(config_dir.path());

    let mut merge_args = args(&sources, std::slice::from_ref(&target), &[registry]);
    merge_args.extend(["--registry-config".into(), config.display().to_string()]);
    let run = merge(&merge_args);
    let digest = run.digest();
    let (bytes, _) = raw_index(&target, creds.as_deref());
    assert_eq!(sha256_digest(&bytes), digest);
    assert_clients_resolve(&target, &sources, creds.as_deref());
    assert!(!run.stdout.contains(AUTH_PASSWORD) && !run.stderr.contains(AUTH_PASSWORD));

    // Without credentials: unauthorized, naming each platform, nothing pushed.
    let other_target = format!("{}:latest", registry.repo("apps/auth-anonymous"));
    let run = merge(&args(
        &sources,
        std::slice::from_ref(&other_target),
        &[registry],
    ));
    run.failed_with(&[
        &format!("linux/amd64 ({})", sources[0].reference),
        &format!("linux/arm/v7 ({})", sources[2].reference),
        "unauthorized",
        &format!("target {other_target}: unauthorized"),
    ]);
    assert_tag_absent(&other_target, creds.as_deref());

    // Wrong password: unauthorized, and the wrong password is not echoed either.
    let wrong = "Wr0ng-pa55word-do-not-echo";
    let (user, _) = registry.credentials().unwrap();
    let wrong_config = write_docker_config(config_dir.path(), &[(registry.host(), user, wrong)]);
    let mut merge_args = args(&sources, std::slice::from_ref(&other_target), &[registry]);
    merge_args.extend([
        "--registry-config".into(),
        wrong_config.display().to_string(),
    ]);
    let run = merge(&merge_args);
    run.failed_with(&["unauthorized", "refused the credentials"]);
    assert!(
        !run.stderr.contains(wrong) && !run.stdout.contains(wrong),
        "{}",
        run.stderr
    );
    assert_tag_absent(&other_target, creds.as_deref());
}

#[test]
fn sources_on_another_registry_are_copied_to_the_target_registry() {
    let plain = shared_plain_registry();
    let auth = shared_auth_registry();
    let sources = fixture_images().push_all(plain, "sources/cross-registry", ManifestFormat::Oci);
    let target = format!("{}:latest", auth.repo("apps/cross-registry"));
    let config_dir = tempfile::tempdir().unwrap();
    let config = auth.write_docker_config(config_dir.path());
    let mut merge_args = args(&sources, std::slice::from_ref(&target), &[plain, auth]);
    merge_args.extend(["--registry-config".into(), config.display().to_string()]);
    let run = merge(&merge_args);
    run.digest();
    assert_clients_resolve(&target, &sources, auth.creds_arg().as_deref());
}

#[test]
fn an_insecure_registry_may_serve_tls_with_a_certificate_nobody_trusts() {
    let registry = Registry::start_self_signed();
    let sources = fixture_images().push_all(&registry, "sources/tls", ManifestFormat::Oci);
    let target = format!("{}:latest", registry.repo("apps/tls"));
    // Without --insecure-registry the certificate is checked, and refused.
    let refused = merge(&args(&sources, std::slice::from_ref(&target), &[]));
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains(registry.host()) && refused.stderr.contains("unreachable"),
        "{}",
        refused.stderr
    );
    assert_tag_absent(&target, None);
    // With it, the same registry is spoken to over unverified TLS: the
    // same meaning the builders give spec.insecureRegistry.
    let run = merge(&args(&sources, std::slice::from_ref(&target), &[&registry]));
    run.digest();
    assert_clients_resolve(&target, &sources, None);
}

#[test]
fn a_missing_source_is_reported_and_nothing_is_pushed() {
    let registry = shared_plain_registry();
    let mut sources = fixture_images().push_all(registry, "sources/missing", ManifestFormat::Oci);
    let absent = format!("sha256:{}", "0".repeat(64));
    sources[1].reference = format!("{}@{absent}", registry.repo("sources/missing"));
    let target = format!("{}:latest", registry.repo("apps/missing"));
    let run = merge(&args(&sources, std::slice::from_ref(&target), &[registry]));
    run.failed_with(&[&format!(
        "linux/arm64 ({}): not found",
        sources[1].reference
    )]);
    assert!(
        !run.stderr.contains("error: linux/amd64"),
        "only the missing one is a problem:\n{}",
        run.stderr
    );
    assert_tag_absent(&target, None);
}

#[test]
fn a_wrong_platform_is_reported_and_an_existing_tag_is_left_unchanged() {
    let registry = shared_plain_registry();
    let images = fixture_images();
    let sources = images.push_all(registry, "sources/wrong", ManifestFormat::Oci);
    // The target tag exists already, holding the amd64 image.
    let target = format!("{}:latest", registry.repo("apps/wrong"));
    let before = images.buildah.push(
        images.image("linux/amd64"),
        &target,
        ManifestFormat::Oci,
        None,
    );

    let mut swapped = sources.clone();
    swapped[1].platform = "linux/arm64".into();
    swapped[1].reference = sources[0].reference.clone();
    let run = merge(&args(
        &swapped[..2],
        std::slice::from_ref(&target),
        &[registry],
    ));
    run.failed_with(&[&format!(
        "linux/arm64 ({}): wrong platform: the image is linux/amd64",
        sources[0].reference
    )]);
    let (bytes, _) = raw_index(&target, None);
    assert_eq!(sha256_digest(&bytes), before, "the existing tag changed");
}

#[test]
fn an_unreachable_registry_is_reported() {
    let registry = shared_plain_registry();
    let sources = fixture_images().push_all(registry, "sources/unreachable", ManifestFormat::Oci);
    let dead = format!("127.0.0.1:{}", closed_port());
    let mut with_dead = sources.clone();
    with_dead[0].reference = format!("{dead}/app@{}", sources[0].digest);
    let target = format!("{}:latest", registry.repo("apps/unreachable"));
    let mut merge_args = args(&with_dead, std::slice::from_ref(&target), &[registry]);
    merge_args.extend(["--insecure-registry".into(), dead.clone()]);
    let run = merge(&merge_args);
    run.failed_with(&[&format!(
        "linux/amd64 ({}): registry {dead} unreachable",
        with_dead[0].reference
    )]);
    assert_tag_absent(&target, None);
}

#[test]
fn malformed_arguments_are_usage_errors_and_nothing_is_pushed() {
    let registry = shared_plain_registry();
    let target = format!("{}:latest", registry.repo("apps/malformed"));
    let digest = format!("sha256:{}", "a".repeat(64));
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![format!("linux/arm64={}/app@sha256:short", registry.host())],
            "linux/arm64 (",
        ),
        (
            vec![format!("linux/amd65={}/app@{digest}", registry.host())],
            "malformed platform",
        ),
        (
            vec![
                format!("linux/amd64={}/app@{digest}", registry.host()),
                format!("linux/x86_64={}/other@{digest}", registry.host()),
            ],
            "linux/amd64: duplicate platform",
        ),
        (
            vec![format!("linux/amd64{}/app@{digest}", registry.host())],
            "PLATFORM=REFERENCE",
        ),
    ];
    for (platform_images, needle) in cases {
        let mut merge_args: Vec<String> = platform_images
            .into_iter()
            .flat_map(|p| ["--platform-image".to_string(), p])
            .collect();
        merge_args.extend([
            "--target".into(),
            target.clone(),
            "--insecure-registry".into(),
            registry.host().into(),
        ]);
        let run = merge(&merge_args);
        assert_eq!(run.code, 2, "{needle}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{needle:?} not in {}",
            run.stderr
        );
        if needle == "linux/arm64 (" {
            assert!(run.stderr.contains("malformed reference"), "{}", run.stderr);
        }
    }
    assert_tag_absent(&target, None);
}

#[test]
fn a_per_platform_index_with_an_attestation_is_merged_keeping_the_attestation() {
    let registry = shared_plain_registry();
    let images = fixture_images();
    let attested = push_index_with_attestation(images, registry, "sources/attested", "linux/amd64");
    let arm64 = images.push(
        registry,
        "sources/attested",
        "linux/arm64",
        ManifestFormat::Oci,
    );
    let target = format!("{}:latest", registry.repo("apps/attested"));
    let merge_args = vec![
        "--platform-image".to_string(),
        format!("linux/amd64={}", attested.reference),
        "--platform-image".to_string(),
        arm64.platform_image_arg(),
        "--target".to_string(),
        target.clone(),
        "--insecure-registry".to_string(),
        registry.host().to_string(),
    ];
    let run = merge(&merge_args);
    let digest = run.digest();
    let (bytes, index) = raw_index(&target, None);
    assert_eq!(sha256_digest(&bytes), digest);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    let digests: Vec<&str> = manifests
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        digests,
        [
            attested.image_digest.as_str(),
            arm64.digest.as_str(),
            attested.attestation_digest.as_str()
        ]
    );
    assert_eq!(
        manifests[2]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        manifests[2]["annotations"]["vnd.docker.reference.digest"],
        attested.image_digest.as_str()
    );
    assert_eq!(manifests[2]["platform"]["os"], "unknown");
    // The attestation is in the target repository too, and clients still
    // pick the image.
    inspect_raw(
        &format!(
            "{}@{}",
            registry.repo("apps/attested"),
            attested.attestation_digest
        ),
        None,
    )
    .expect("the attestation manifest was copied into the target repository");
    let amd64 = inspect_for_platform(&target, "linux/amd64", None);
    let image_layers = manifest_layers(
        &format!(
            "{}@{}",
            registry.repo("apps/attested"),
            attested.image_digest
        ),
        None,
    );
    assert_eq!(amd64.layers, image_layers);
    assert_eq!(amd64.architecture, "amd64");
}

#[test]
fn an_index_without_the_platform_is_reported_with_what_it_has() {
    let registry = shared_plain_registry();
    let images = fixture_images();
    let attested =
        push_index_with_attestation(images, registry, "sources/not-in-index", "linux/amd64");
    let target = format!("{}:latest", registry.repo("apps/not-in-index"));
    let run = merge(&[
        "--platform-image".to_string(),
        format!("linux/arm64={}", attested.reference),
        "--target".to_string(),
        target.clone(),
        "--insecure-registry".to_string(),
        registry.host().to_string(),
    ]);
    run.failed_with(&[&format!(
        "linux/arm64 ({}): the index has no entry for this platform; it has: linux/amd64",
        attested.reference
    )]);
    assert_tag_absent(&target, None);
}
