//! Image references (`[HOST[:PORT]/]REPO[:TAG][@DIGEST]`): the one grammar
//! of the operator. `validate` checks `spec.image` and `spec.builder.image`
//! with it, `render` takes the registry host from it, and `merge` parses its
//! sources and targets with it.
//!
//! Parsed by hand: oci-client's `Reference::from_str` compiles
//! distribution's reference regex on first use, which costs ~40 ms of CPU,
//! half of a whole merge of two platforms on a local registry. This parser
//! follows the same grammar (distribution/reference) and builds the same
//! `Reference`.

use oci_client::Reference;

/// The registry of names without a host.
pub const DOCKER_HUB: &str = "docker.io";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Parses a reference the way docker does: a first component with a `.` or
/// `:`, or `localhost`, is the registry; otherwise Docker Hub (and a
/// one-component name is under `library/`). No tag and no digest means
/// `latest`.
pub fn parse(written: &str) -> Result<Reference, String> {
    if written.is_empty() {
        return Err("empty reference".to_string());
    }
    if written.contains("://") {
        return Err("a reference has no scheme (write HOST[:PORT]/REPO, not a URL)".to_string());
    }
    let (rest, digest) = match written.split_once('@') {
        Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
        None => (written, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let (name, tag) = (&rest[..last_slash + i], &rest[last_slash + i + 1..]);
            check_tag(tag)?;
            (name, Some(tag.to_string()))
        }
        None => (rest, None),
    };
    let (registry, repository) = split_registry(name)?;
    if repository.len() > NAME_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_MAX} characters"
        ));
    }
    for component in repository.split('/') {
        check_path_component(component)?;
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (Some(tag), None) => Reference::with_tag(registry, repository, tag),
        (None, None) => Reference::with_tag(registry, repository, "latest".to_string()),
    })
}

/// A repository as `spec.image` names it: a registry and a path, with no
/// tag and no digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// The registry host as docker resolves it (`docker.io` when none is written).
    pub registry: String,
    /// The path inside the registry, as written.
    pub path: String,
}

/// Why a repository was refused. Messages quote the input: a repository
/// name carries no secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    #[error("must be set, e.g. registry.example.com/team/app")]
    Empty,
    #[error("is {0} characters long; at most {NAME_MAX}")]
    TooLong(usize),
    #[error("{0:?} contains a digest; give the repository only")]
    HasDigest(String),
    #[error("{0:?} contains a tag; give the repository only and put tags in spec.tags")]
    HasTag(String),
    #[error("{written:?} is not a valid repository (lower-case path components, optional registry host[:port]): {reason}")]
    Invalid { written: String, reason: String },
}

/// Parses a repository: the grammar of [`parse`] without a tag or digest.
pub fn parse_repository(written: &str) -> Result<Repository, RepositoryError> {
    if written.is_empty() {
        return Err(RepositoryError::Empty);
    }
    if written.len() > NAME_MAX {
        return Err(RepositoryError::TooLong(written.len()));
    }
    if written.contains('@') {
        return Err(RepositoryError::HasDigest(written.to_string()));
    }
    // A tag sits after a ':' in the last path component ("host:5000/app"
    // has a port, not a tag).
    if written.rsplit('/').next().unwrap_or(written).contains(':') {
        return Err(RepositoryError::HasTag(written.to_string()));
    }
    let invalid = |reason: String| RepositoryError::Invalid {
        written: written.to_string(),
        reason,
    };
    if written.contains("://") {
        return Err(invalid("a repository has no scheme".to_string()));
    }
    let (registry, _) = split_registry(written).map_err(invalid)?;
    let path = match written.split_once('/') {
        Some((first, rest)) if is_host(first) => rest,
        _ => written,
    };
    if path.is_empty() {
        return Err(invalid("no path after the registry host".to_string()));
    }
    for component in path.split('/') {
        check_path_component(component).map_err(invalid)?;
    }
    Ok(Repository {
        registry,
        path: path.to_string(),
    })
}

/// The registry and repository a reference names: two references with the
/// same key are in the same repository (whatever their tags or digests).
pub fn repository_key(reference: &Reference) -> (&str, &str) {
    (reference.resolve_registry(), reference.repository())
}

/// Whether the first component of a name is a registry host, as docker
/// decides it: it has a `.` or a `:`, or is `localhost`.
fn is_host(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

fn split_registry(name: &str) -> Result<(String, String), String> {
    if name.is_empty() {
        return Err("repository name must have at least one component".to_string());
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if is_host(first) => {
            check_host(first)?;
            // The legacy name of Docker Hub is Docker Hub.
            let registry = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            (registry.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    Ok((registry, repository))
}

pub(crate) fn check_host(host: &str) -> Result<(), String> {
    let bad = || format!("invalid registry host {host:?}");
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn check_path_component(component: &str) -> Result<(), String> {
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".to_string());
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let valid = !bytes.is_empty()
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && !component.contains("..")
        && !component.contains("___")
        && !component.as_bytes().windows(2).any(|w| {
            matches!(
                w,
                [b'.' | b'_', b'-'] | [b'-', b'.' | b'_'] | [b'.', b'_'] | [b'_', b'.']
            )
        });
    if valid {
        Ok(())
    } else {
        Err(format!("invalid repository name component {component:?}"))
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let valid = !bytes.is_empty()
        && bytes.len() <= TAG_MAX
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!("invalid tag {tag:?}"))
    }
}

fn parse_digest(digest: &str) -> Result<String, String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("invalid digest {digest:?} (expected sha256:<64 hex digits>)"))?;
    let length = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {algorithm:?}")),
    };
    if hex.len() != length
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "invalid digest {digest:?} ({algorithm} takes {length} lowercase hex digits)"
        ));
    }
    Ok(digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn agrees_with_oci_client_on_valid_references() {
        let cases = [
            "busybox".to_string(),
            "library/busybox:1.36".to_string(),
            "user/app".to_string(),
            "localhost/app:dev".to_string(),
            "localhost:5000/team/app:v1.2.3".to_string(),
            "127.0.0.1:5000/app".to_string(),
            format!("127.0.0.1:5000/a/b/c@sha256:{HEX}"),
            format!("registry.example.com/app:tag@sha256:{HEX}"),
            "ghcr.io/o-r_g/my__app.x:Tag_1.0-rc".to_string(),
            "docker.io/app".to_string(),
            "index.docker.io/library/app:1".to_string(),
        ];
        for written in &cases {
            let ours = parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            let theirs: Reference = written.parse().unwrap();
            assert_eq!(ours.registry(), theirs.registry(), "{written}");
            assert_eq!(
                ours.resolve_registry(),
                theirs.resolve_registry(),
                "{written}"
            );
            assert_eq!(ours.repository(), theirs.repository(), "{written}");
            assert_eq!(ours.tag(), theirs.tag(), "{written}");
            assert_eq!(ours.digest(), theirs.digest(), "{written}");
        }
    }

    #[test]
    fn refuses_malformed_references_saying_why() {
        let cases = [
            ("", "empty"),
            ("https://r.example/app", "no scheme"),
            ("r.example/App", "lowercase"),
            ("r.example/app@sha256:abc", "64 lowercase hex"),
            (
                &format!("r.example/app@md5:{HEX}"),
                "unsupported digest algorithm",
            ),
            ("r.example/app:", "invalid tag"),
            ("r.example/app:-x", "invalid tag"),
            ("r.example/-app", "invalid repository name component"),
            ("r.example//app", "invalid repository name component"),
            ("r.example:port/app", "invalid registry host"),
            ("r.example/a..b", "invalid repository name component"),
        ];
        for (written, needle) in cases {
            let err = parse(written).unwrap_err();
            assert!(err.contains(needle), "{written:?}: {err}");
            // oci-client refuses them too (its messages are less specific).
            if !written.is_empty() && !written.contains("://") {
                assert!(
                    written.parse::<Reference>().is_err(),
                    "{written:?} is valid for oci-client"
                );
            }
        }
    }
}
