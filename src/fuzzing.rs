//! The properties the fuzz targets of `fuzz/` check, one function per target.
//!
//! Each takes the raw bytes libFuzzer hands over and panics when a property
//! is broken. They live in the crate so that `fuzz/fuzz_targets/*.rs` (on
//! nightly, or stable with `RUSTC_BOOTSTRAP=1`) and `tests/fuzz_corpus.rs`
//! (on stable, in CI, replaying the committed corpora) check exactly the same
//! things. Not an API: hidden from the docs, and free to change.

use std::str::FromStr;

use base64::Engine;
use oci_client::Reference;

use crate::merge::credentials::{ConfigError, Credential, DockerConfig};
use crate::merge::index::{
    self, Descriptor, IndexPlatform, PlatformEntry, SourceIndex, ACCEPTED_MANIFEST_TYPES,
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX,
};
use crate::merge::registry::{declared_media_type, RawManifest};
use crate::merge::source;
use crate::platform::{Platform, KNOWN_ARCH, KNOWN_OS};
use crate::reference;

/// A property: panics when `data` breaks it.
pub type Property = fn(&[u8]);

/// The names of the targets, which are also the corpus folders.
pub const TARGETS: &[(&str, Property)] = &[
    ("image_reference", image_reference),
    ("platform", platform),
    ("docker_config", docker_config),
    ("manifest", manifest),
    ("termination_message", termination_message),
    ("multiarchimage_yaml", multiarchimage_yaml),
];

/// `reference::parse` against oci-client's (distribution's regex):
/// both accept or both refuse, and accepted references have the same parts,
/// except for the deliberate differences of [`deliberate_difference`].
pub fn image_reference(data: &[u8]) {
    let Ok(written) = std::str::from_utf8(data) else {
        return;
    };
    let ours = reference::parse(written);
    let theirs = Reference::from_str(written);
    match (&ours, &theirs) {
        (Ok(ours), Ok(theirs)) => {
            assert_eq!(ours, theirs, "{written:?}");
            assert_eq!(ours.resolve_registry(), theirs.resolve_registry());
            // What we print parses back to the same reference.
            let whole = ours.whole();
            assert_eq!(
                reference::parse(&whole).as_ref(),
                Ok(ours),
                "{written:?} printed as {whole:?}"
            );
        }
        (Err(reason), Err(_)) => assert!(!reason.is_empty()),
        (Ok(ours), Err(error)) => {
            panic!("{written:?}: we accept {ours:?}, oci-client refuses it ({error})")
        }
        (Err(reason), Ok(theirs)) => assert!(
            deliberate_difference(theirs).is_some(),
            "{written:?}: oci-client accepts {theirs:?}, we refuse it ({reason})"
        ),
    }
}

/// Why a reference oci-client accepts is refused on purpose, if it is.
pub fn deliberate_difference(theirs: &Reference) -> Option<&'static str> {
    let digest = theirs.digest().unwrap_or_default();
    if digest.starts_with("sha384:") {
        return Some("sha384 digests: the OCI image spec registers sha256 and sha512 only");
    }
    if digest.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("upper-case hex in a digest: the OCI image spec requires lower case");
    }
    if theirs.tag().is_some_and(|t| !t.is_ascii()) {
        return Some("non-ASCII tags: oci-spec's regex has a Unicode \\w, distribution's is ASCII");
    }
    if theirs.repository().bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("upper case in a Docker Hub path: oci-spec's regex takes `Ab-c/d` as a host then puts it in the repository unchecked; docker refuses it");
    }
    if reference::check_host(theirs.registry()).is_err() {
        return Some("a first component that names a host (has '.' or ':', or is localhost) must be a valid host[:port]; oci-client then takes it as a path component");
    }
    None
}

/// `Platform::parse`: normalised output that parses back to itself, a
/// DNS-label-safe slug, and errors that quote the input.
pub fn platform(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match Platform::parse(input) {
        Ok(p) => {
            let printed = p.to_string();
            assert_eq!(Platform::parse(&printed).as_ref(), Ok(&p), "{input:?}");
            assert!(KNOWN_OS.contains(&p.os.as_str()), "{input:?}: {p:?}");
            assert!(KNOWN_ARCH.contains(&p.architecture.as_str()), "{p:?}");
            assert!(p.variant.as_deref().is_none_or(|v| !v.is_empty()), "{p:?}");
            let slug = p.slug();
            assert!(is_dns_label(&slug), "{input:?}: slug {slug:?}");
            assert!(
                p.matches_config(&p.os, &p.architecture, p.variant.as_deref()),
                "{p:?}"
            );
            let entry = IndexPlatform::from_platform(&p, None);
            assert!(entry.matches(&p) && entry.spelled() == printed, "{p:?}");
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains(&format!("{input:?}")),
                "{input:?}: {message}"
            );
        }
    }
}

/// RFC 1123 label: what Job names and label values need.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `DockerConfig::parse`: never panics; what it prints (Debug of the
/// config and of its credentials, error messages) does not depend on the
/// secrets of the input (replacing every password, token and `auth` by
/// other values prints the same), and `secrets()` holds every secret.
pub fn docker_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = DockerConfig::parse(text);
    if let Err(error) = &parsed {
        // The JSON error has positions only; the others name a key.
        let message = error.to_string();
        assert!(!message.is_empty());
    }
    // Noninterference, on the canonical form of the same JSON (duplicate
    // keys resolved) so that the two texts differ in the secrets only.
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let canonical = serde_json::to_string(&value).expect("a Value serialises");
    let mut other = value.clone();
    let mut raw_secrets = Vec::new();
    replace_secrets(&mut other, &mut raw_secrets);
    let other = serde_json::to_string(&other).expect("a Value serialises");
    let (a, b) = (DockerConfig::parse(&canonical), DockerConfig::parse(&other));
    assert_eq!(printed(&a, &value), printed(&b, &value), "{canonical}");
    if let Ok(config) = &a {
        let secrets = config.secrets();
        for secret in raw_secrets.iter().filter(|s| !s.is_empty()) {
            assert!(secrets.contains(secret), "{secret:?} not in secrets()");
        }
        for key in auth_keys(&value) {
            match config.credential_for(&key) {
                Some(Credential::Basic { password, .. }) if !password.is_empty() => {
                    assert!(secrets.contains(password), "{key:?}")
                }
                Some(Credential::IdentityToken { token }) => {
                    assert!(secrets.contains(token), "{key:?}")
                }
                _ => {}
            }
            // Host matching ignores the host's ASCII case (the scheme of a
            // URL key is matched as docker writes it, lower case) and a URL
            // around the host.
            if !key.contains("://") {
                assert_eq!(
                    config.credential_for(&key),
                    config.credential_for(&key.to_ascii_uppercase()),
                    "{key:?}"
                );
            }
            if key == key.trim() && !key.contains('/') {
                assert_eq!(
                    config.credential_for(&key),
                    config.credential_for(&format!("https://{key}/v2/")),
                    "{key:?}"
                );
            }
        }
    }
}

fn auth_keys(value: &serde_json::Value) -> Vec<String> {
    value
        .get("auths")
        .and_then(|a| a.as_object())
        .map(|auths| auths.keys().cloned().collect())
        .unwrap_or_default()
}

/// Everything the parse lets a caller print: errors, and the Debug of the
/// config and of the credential of every key of the input.
fn printed(parsed: &Result<DockerConfig, ConfigError>, value: &serde_json::Value) -> String {
    match parsed {
        // Positions move when a secret changes length; the kind of error is what counts.
        Err(ConfigError::Json { .. }) => "malformed JSON".to_string(),
        Err(error) => error.to_string(),
        Ok(config) => {
            let mut out = format!("{config:?}");
            for key in auth_keys(value) {
                out.push_str(&format!("\n{key:?}: {:?}", config.credential_for(&key)));
                let auth = config.registry_auth_for(&key);
                out.push_str(&format!(" {auth:?}"));
                if let Err(error) = auth {
                    out.push_str(&format!(" {error}"));
                }
            }
            out
        }
    }
}

/// Replaces, in every entry of `auths`, each string `password`,
/// `identitytoken` and `auth` by another of the same emptiness (an `auth`
/// that decodes to `user:password` keeps its user), collecting the secrets
/// it replaced (raw and decoded).
fn replace_secrets(value: &mut serde_json::Value, secrets: &mut Vec<String>) {
    let Some(auths) = value.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return;
    };
    let b64 = &base64::engine::general_purpose::STANDARD;
    for entry in auths.values_mut() {
        let Some(entry) = entry.as_object_mut() else {
            continue;
        };
        for field in ["password", "identitytoken"] {
            if let Some(serde_json::Value::String(s)) = entry.get_mut(field) {
                secrets.push(s.clone());
                if !s.is_empty() {
                    *s = format!("other-{field}-{}", s.len());
                }
            }
        }
        if let Some(serde_json::Value::String(auth)) = entry.get_mut("auth") {
            secrets.push(auth.clone());
            if auth.is_empty() {
                continue;
            }
            let decoded = b64
                .decode(auth.trim())
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.trim()))
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            *auth = match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((user, password)) => {
                    secrets.push(password.to_string());
                    b64.encode(format!("{user}:other-password-{}", password.len()))
                }
                // Still not base64 of user:password, and not the same text.
                None => format!("%not-base64-{}", auth.len()),
            };
        }
    }
}

/// The merge's parsing of registry manifests, indexes and image configs:
/// any bytes give a value or a clean error, selections from an index are
/// consistent, and assembling an index from them is deterministic and
/// reads back as what was assembled.
pub fn manifest(data: &[u8]) {
    let platforms: Vec<Platform> = [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/amd64/v3",
        "windows/amd64",
        "linux/s390x",
    ]
    .iter()
    .map(|p| Platform::parse(p).expect("a known platform"))
    .collect();

    let declared = declared_media_type(data);
    if let Ok(media_type) = &declared {
        assert!(ACCEPTED_MANIFEST_TYPES.contains(&media_type.as_str()));
    }

    // As an image manifest, under every media type (and an unknown one).
    for media_type in ACCEPTED_MANIFEST_TYPES
        .iter()
        .copied()
        .chain(["text/plain"])
    {
        let raw = RawManifest {
            digest: index::sha256_digest(data),
            media_type: media_type.to_string(),
            bytes: data.to_vec(),
        };
        match source::with_blobs(raw) {
            Ok(parsed) => {
                assert!(parsed.manifest.bytes == data && parsed.manifest.media_type == media_type);
                for blob in &parsed.blobs {
                    assert!(blob.urls.as_ref().is_none_or(Vec::is_empty));
                }
            }
            Err(problem) => assert!(!problem.to_string().is_empty()),
        }
    }

    // As an index, for each platform; as an image config, for each platform.
    let mut entries = Vec::new();
    for platform in &platforms {
        match source::select_from_index(data, platform) {
            Ok(selection) => {
                let chosen = &selection.chosen;
                assert!(!chosen.is_attestation(), "{chosen:?}");
                assert!(
                    chosen
                        .platform
                        .as_ref()
                        .is_some_and(|p| p.matches(platform)),
                    "{platform}: {chosen:?}"
                );
                for attestation in &selection.attestations {
                    assert_eq!(attestation.attests(), Some(chosen.digest.as_str()));
                }
                entries.push(PlatformEntry {
                    platform: platform.clone(),
                    image: Descriptor {
                        platform: Some(IndexPlatform::from_platform(platform, None)),
                        ..chosen.clone()
                    },
                    attestations: selection.attestations,
                });
            }
            Err(problem) => assert!(!problem.to_string().is_empty()),
        }
        match source::check_config(data, platform) {
            Ok(os_version) => assert!(os_version.is_none_or(|v| !v.is_empty())),
            Err(problem) => assert!(!problem.to_string().is_empty()),
        }
    }
    if !entries.is_empty() {
        check_assembly(&entries);
    }
    // The descriptors as parsed, whatever their platform, assembled as given.
    if let Ok(parsed) = serde_json::from_slice::<SourceIndex>(data) {
        let entries: Vec<PlatformEntry> = parsed
            .manifests
            .iter()
            .zip(platforms.iter().cycle())
            .map(|(descriptor, platform)| PlatformEntry {
                platform: platform.clone(),
                image: descriptor.clone(),
                attestations: vec![],
            })
            .collect();
        check_assembly(&entries);
    }
}

fn check_assembly(entries: &[PlatformEntry]) {
    let first = index::assemble(entries, &Default::default());
    let second = index::assemble(entries, &Default::default());
    assert_eq!(first, second, "assembly is not deterministic");
    let Ok(assembled) = first else {
        return;
    };
    assert_eq!(assembled.digest, index::sha256_digest(&assembled.bytes));
    assert!([OCI_INDEX, DOCKER_LIST].contains(&assembled.media_type));
    let all_docker = entries
        .iter()
        .all(|e| e.image.media_type == DOCKER_MANIFEST && e.attestations.is_empty());
    assert_eq!(
        assembled.media_type == DOCKER_LIST,
        all_docker && !entries.is_empty()
    );
    assert_eq!(
        declared_media_type(&assembled.bytes).as_deref(),
        Ok(assembled.media_type)
    );
    let read: SourceIndex =
        serde_json::from_slice(&assembled.bytes).expect("an assembled index reads back");
    assert_eq!(read.media_type.as_deref(), Some(assembled.media_type));
    let expected: Vec<&Descriptor> = entries
        .iter()
        .map(|e| &e.image)
        .chain(entries.iter().flat_map(|e| &e.attestations))
        .collect();
    assert_eq!(read.manifests.iter().collect::<Vec<_>>(), expected);
}

/// `termination::parse` (through `controller::observe::parse_digest`):
/// when it finds a digest, it is `sha256:` and 64 lower-case hex digits
/// found in the message; a message with a `digest=` line gives that line's
/// value (the last such line), any other the last non-blank line, trimmed,
/// whenever that line is one. Never a panic.
pub fn termination_message(data: &[u8]) {
    let Ok(message) = std::str::from_utf8(data) else {
        return;
    };
    let found = crate::controller::observe::parse_digest(message);
    let report = crate::termination::parse(message);
    assert_eq!(report.digest, found);
    let is_digest = |s: &str| {
        s.len() == 71
            && s.starts_with("sha256:")
            && s[7..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if let Some(digest) = &found {
        assert!(is_digest(digest), "{message:?} gave {digest:?}");
        assert!(message.contains(digest.as_str()));
    }
    let keyed = message
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == crate::termination::DIGEST_KEY)
        .map(|(_, v)| v.trim())
        .next_back();
    let expected = match keyed {
        Some(value) => Some(value).filter(|v| is_digest(v)).map(str::to_string),
        None => {
            let last_line = message.trim().lines().last().map(str::trim);
            last_line.filter(|l| is_digest(l)).map(str::to_string)
        }
    };
    assert_eq!(found, expected, "{message:?}");
}

/// `validate::parse_manifests`, then `validate` and `render_yaml` of what
/// it finds: never a panic, whatever the YAML; render agrees with validate.
pub fn multiarchimage_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(resources) = crate::validate::parse_manifests(text) else {
        return;
    };
    assert!(!resources.is_empty());
    for resource in &resources {
        match crate::validate::validate(resource) {
            Ok(validated) => {
                assert!(!validated.platforms.is_empty());
                let images = crate::render::BuilderImages::default();
                let rendered = crate::render::render_yaml(resource, &validated, &images);
                assert!(rendered.starts_with("---\n"));
            }
            Err(errors) => assert!(!errors.0.is_empty()),
        }
    }
}
