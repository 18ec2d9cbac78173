use std::path::Path;

use super::*;

/// Writes `content` as a blob of the layout; returns its descriptor.
fn blob(root: &Path, media_type: &str, content: &[u8]) -> serde_json::Value {
    let hex = hex::encode(Sha256::digest(content));
    std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    std::fs::write(root.join("blobs/sha256").join(&hex), content).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": content.len()})
}

/// A layout of one image (a config and a layer), its index entry named `tag`.
fn layout(root: &Path, tag: Option<&str>) -> serde_json::Value {
    let config = blob(
        root,
        "application/vnd.oci.image.config.v1+json",
        b"{\"architecture\":\"amd64\",\"os\":\"linux\"}",
    );
    let layer = blob(
        root,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        b"layer bytes",
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer],
    });
    let mut entry = blob(root, OCI_MANIFEST, manifest.to_string().as_bytes());
    if let Some(tag) = tag {
        entry["annotations"] = serde_json::json!({REF_NAME_ANNOTATION: tag});
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry.clone()]});
    std::fs::write(root.join("index.json"), index.to_string()).unwrap();
    entry
}

#[test]
fn the_one_image_of_a_layout_is_read_with_its_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let entry = layout(dir.path(), None);
    let manifest = Layout::new(dir.path()).manifest(None).unwrap();
    assert_eq!(manifest.digest, entry["digest"].as_str().unwrap());
    assert_eq!(manifest.media_type, OCI_MANIFEST);
    assert_eq!(manifest.blobs.len(), 2, "the config, then the layer");
    let mut layer = String::new();
    Layout::new(dir.path())
        .blob(&manifest.blobs[1])
        .unwrap()
        .read_to_string(&mut layer)
        .unwrap();
    assert_eq!(layer, "layer bytes", "the blob is rewound after its check");
}

#[test]
fn a_tagged_entry_is_found_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path(), Some("latest"));
    assert!(Layout::new(dir.path()).manifest(Some("latest")).is_ok());
    let err = Layout::new(dir.path()).manifest(Some("other")).unwrap_err();
    assert!(
        err.to_string().contains("no entry is named \"other\""),
        "{err}"
    );
}

#[test]
fn a_blob_linked_to_another_file_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("config.json");
    std::fs::write(&secret, "{\"auths\":{\"r\":{\"auth\":\"c2VjcmV0\"}}}").unwrap();
    let content = std::fs::read(&secret).unwrap();
    let descriptor = Descriptor {
        media_type: "application/octet-stream".into(),
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&content))),
        size: content.len() as u64,
        annotations: Default::default(),
    };
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::os::unix::fs::symlink(&secret, blobs.join(&descriptor.digest[7..])).unwrap();
    let err = Layout::new(dir.path()).blob(&descriptor).unwrap_err();
    assert!(
        matches!(err, LayoutError::Io { .. }),
        "a symlink is not opened: {err}"
    );
}

#[test]
fn a_blob_that_does_not_hash_to_its_digest_or_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path(), None);
    let manifest = Layout::new(dir.path()).manifest(None).unwrap();
    let layer = &manifest.blobs[1];
    let path = dir.path().join("blobs/sha256").join(&layer.digest[7..]);
    std::fs::write(&path, b"other bytes").unwrap();
    let err = Layout::new(dir.path()).blob(layer).unwrap_err().to_string();
    assert!(err.contains("does not hash to its digest"), "{err}");
    std::fs::write(&path, b"longer than declared").unwrap();
    let err = Layout::new(dir.path()).blob(layer).unwrap_err().to_string();
    assert!(err.contains("not a file of the 11 bytes"), "{err}");
}

#[test]
fn digests_that_are_not_sha256_never_become_paths() {
    let dir = tempfile::tempdir().unwrap();
    for digest in ["sha256:../../etc/passwd", "sha512:abc", "sha256:ABC", ""] {
        let descriptor = Descriptor {
            media_type: String::new(),
            digest: digest.into(),
            size: 1,
            annotations: Default::default(),
        };
        let err = Layout::new(dir.path())
            .blob(&descriptor)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a sha256 digest"), "{digest}: {err}");
    }
}

#[test]
fn an_index_of_several_images_or_of_an_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let entry = layout(dir.path(), None);
    let index = serde_json::json!({"manifests": [entry.clone(), entry]});
    std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
    let err = Layout::new(dir.path())
        .manifest(None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected one image, found 2 entries"), "{err}");

    let nested = serde_json::json!({"schemaVersion": 2, "mediaType": crate::merge::index::OCI_INDEX, "manifests": []});
    let entry = blob(
        dir.path(),
        crate::merge::index::OCI_INDEX,
        nested.to_string().as_bytes(),
    );
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::json!({"manifests": [entry]}).to_string(),
    )
    .unwrap();
    let err = Layout::new(dir.path())
        .manifest(None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an image manifest"), "{err}");
}
