//! `multiarch-operator push`, the push step of a BuildKit build pod,
//! against the real registry: OCI layouts written by a real builder
//! (buildah here, as BuildKit's `type=oci,tar=false` writes the same
//! layout), read as the untrusted input they are, and checked with skopeo.

mod common;

use std::path::Path;
use std::process::Command;

use common::registry::AUTH_PASSWORD;
use common::{closed_port, fixture_images, inspect_raw, sha256_digest, shared_auth_registry};
use multiarch_operator::api::CacheState;
use serde_json::json;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn push(args: &[String]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_multiarch-operator"))
        .arg("push")
        .args(args)
        .output()
        .expect("run multiarch-operator push");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.stdout.contains(AUTH_PASSWORD) && !run.stderr.contains(AUTH_PASSWORD),
        "a credential in the output"
    );
    run
}

/// The built image of linux/amd64 as an OCI layout in `dir`.
fn image_layout(dir: &Path) -> std::path::PathBuf {
    let layout = dir.join("image");
    let images = fixture_images();
    images
        .buildah
        .push_to_oci_layout(images.image("linux/amd64"), &layout, "latest");
    layout
}

/// The one manifest of a layout's index.json, as bytes.
fn layout_manifest(layout: &Path) -> Vec<u8> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap()
}

fn write_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let digest = sha256_digest(bytes);
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

/// A cache in the form of BuildKit's local export with `image-manifest=true`:
/// an image manifest whose config is the cache config, tagged `latest`.
fn cache_layout(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let layout = dir.join("cache");
    let layer = write_blob(
        &layout,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        b"cached layer",
    );
    let config = json!({"layers": [{"blob": layer["digest"], "parent": -1}], "records": []});
    let config = write_blob(
        &layout,
        "application/vnd.buildkit.cacheconfig.v0",
        config.to_string().as_bytes(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    })
    .to_string();
    let mut entry = write_blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    entry["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    (layout, manifest.into_bytes())
}

fn base_args(layout: &Path, repository: &str, report: &Path) -> Vec<String> {
    vec![
        "--layout".into(),
        layout.display().to_string(),
        "--repository".into(),
        repository.into(),
        "--report".into(),
        report.display().to_string(),
    ]
}

#[test]
fn the_image_goes_by_digest_and_the_cache_under_its_tag() {
    let registry = shared_auth_registry();
    let dir = tempfile::tempdir().unwrap();
    let layout = image_layout(dir.path());
    let (cache, cache_manifest) = cache_layout(dir.path());
    let log = dir.path().join("build.log");
    std::fs::write(&log, "#4 [2/3] RUN make\n#4 CACHED\n#5 [3/3] COPY a /a\n#6 exporting cache to client directory\n#6 DONE 0.1s\n").unwrap();
    let report = dir.path().join("termination-log");
    let repository = registry.repo("push/app");
    let cache_ref = format!("{repository}:buildcache-linux-amd64");
    let mut args = base_args(&layout, &repository, &report);
    args.extend([
        "--cache-layout".into(),
        cache.display().to_string(),
        "--cache-to".into(),
        cache_ref.clone(),
        "--build-log".into(),
        log.display().to_string(),
        "--registry-config".into(),
        registry
            .write_docker_config(dir.path())
            .display()
            .to_string(),
        "--insecure-registry".into(),
        registry.host().into(),
    ]);
    let run = push(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let digest = run.stdout.trim();
    assert_eq!(digest, sha256_digest(&layout_manifest(&layout)));
    let creds = registry.creds_arg();
    let pushed = inspect_raw(&format!("{repository}@{digest}"), creds.as_deref()).unwrap();
    assert_eq!(
        sha256_digest(&pushed),
        digest,
        "the bytes pushed are the bytes hashed"
    );
    let cached = inspect_raw(&cache_ref, creds.as_deref()).unwrap();
    assert_eq!(
        cached, cache_manifest,
        "the cache manifest, as BuildKit wrote it"
    );

    let parsed = multiarch_operator::termination::parse(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(parsed.digest.as_deref(), Some(digest));
    assert_eq!(parsed.cache.unwrap().state, CacheState::Hit);
}

#[test]
fn a_cache_that_cannot_be_pushed_is_reported_and_the_image_pushed_all_the_same() {
    let registry = shared_auth_registry();
    let dir = tempfile::tempdir().unwrap();
    let layout = image_layout(dir.path());
    let (cache, _) = cache_layout(dir.path());
    let report = dir.path().join("termination-log");
    let repository = registry.repo("push/cold");
    let unreachable = format!("127.0.0.1:{}", closed_port());
    let mut args = base_args(&layout, &repository, &report);
    args.extend([
        "--cache-layout".into(),
        cache.display().to_string(),
        "--cache-to".into(),
        format!("{unreachable}/cache/app:buildcache-linux-amd64"),
        "--registry-config".into(),
        registry
            .write_docker_config(dir.path())
            .display()
            .to_string(),
        "--insecure-registry".into(),
        registry.host().into(),
        "--insecure-registry".into(),
        unreachable.clone(),
    ]);
    let run = push(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let parsed = multiarch_operator::termination::parse(&std::fs::read_to_string(&report).unwrap());
    let cache = parsed.cache.unwrap();
    assert_eq!(cache.state, CacheState::Unavailable);
    assert!(cache.detail.unwrap().contains(&unreachable));
    let digest = run.stdout.trim();
    inspect_raw(
        &format!("{repository}@{digest}"),
        registry.creds_arg().as_deref(),
    )
    .expect("the image is pushed");
}

#[test]
fn a_layout_that_links_to_the_credentials_pushes_nothing() {
    let registry = shared_auth_registry();
    let dir = tempfile::tempdir().unwrap();
    let config = registry.write_docker_config(dir.path());
    let layout = image_layout(dir.path());
    // A hostile build replaces a layer with a link to the push step's
    // credentials, under the digest of their content.
    let secret = std::fs::read(&config).unwrap();
    let digest = sha256_digest(&secret);
    let manifest_bytes = layout_manifest(&layout);
    let mut manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    manifest["layers"][0]["digest"] = json!(digest);
    manifest["layers"][0]["size"] = json!(secret.len());
    std::os::unix::fs::symlink(&config, layout.join("blobs/sha256").join(&digest[7..])).unwrap();
    let entry = write_blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    std::fs::write(
        layout.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [entry]}).to_string(),
    )
    .unwrap();
    let report = dir.path().join("termination-log");
    let mut args = base_args(&layout, &registry.repo("push/evil"), &report);
    args.extend([
        "--registry-config".into(),
        config.display().to_string(),
        "--insecure-registry".into(),
        registry.host().into(),
    ]);
    let run = push(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(&digest), "{}", run.stderr);
    assert!(
        !registry.log().contains(&digest[7..]),
        "the registry never heard of the credentials' digest"
    );
    assert!(!report.exists(), "no report: the build failed");
}

#[test]
fn without_credentials_the_registry_refusal_is_named() {
    let registry = shared_auth_registry();
    let dir = tempfile::tempdir().unwrap();
    let layout = image_layout(dir.path());
    let report = dir.path().join("termination-log");
    let mut args = base_args(&layout, &registry.repo("push/anonymous"), &report);
    args.extend(["--insecure-registry".into(), registry.host().into()]);
    let run = push(&args);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("unauthorized") && run.stderr.contains("anonymous"),
        "{}",
        run.stderr
    );
}

#[test]
fn malformed_arguments_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r");
    let run = push(&base_args(dir.path(), "Not A Repository", &report));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--repository \"Not A Repository\""),
        "{}",
        run.stderr
    );
}
