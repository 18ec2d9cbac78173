//! What the merge accepts from a registry it does not trust: bodies read
//! with a cap while they stream (a hostile registry cannot make the merge
//! hold more than the cap), and credentials sent only where TLS protects
//! them.

use futures::{Stream, StreamExt};

use super::registry::Problem;

/// The largest manifest or index read, as containers/image caps it
/// (`internal/iolimits/iolimits.go` MaxManifestBodySize) and distribution
/// refuses to store larger ones.
pub const MAX_MANIFEST_BYTES: u64 = 4 * MIB;
/// The largest image config read: a config is read at the size its
/// descriptor declares, and no descriptor may declare more than this.
pub const MAX_CONFIG_BYTES: u64 = 8 * MIB;

const MIB: u64 = 1024 * 1024;

/// Reads a body of at most `cap` bytes: refused as soon as the declared
/// length or the bytes received pass the cap, so no more than `cap` (plus
/// one chunk) is ever held.
pub async fn read_at_most<S, B, E>(
    mut body: S,
    declared: Option<u64>,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>, Problem>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let too_large = || {
        Problem::Unsupported(format!(
            "{what} is larger than {} (the merge reads no more)",
            size_words(cap)
        ))
    };
    if declared.is_some_and(|length| length > cap) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Problem::Other(format!("reading {what}: {e}")))?;
        if out.len() as u64 + chunk.as_ref().len() as u64 > cap {
            return Err(too_large());
        }
        out.extend_from_slice(chunk.as_ref());
    }
    Ok(out)
}

/// `4 MiB`, `512 bytes`.
pub fn size_words(bytes: u64) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Whether credentials may go to the token service a registry names in its
/// `WWW-Authenticate: Bearer realm="..."` challenge: only over HTTPS, unless
/// the registry is marked insecure (a dev registry on plain HTTP). A
/// registry served over HTTPS that names a plain-HTTP realm would have the
/// password cross the network in the clear. Returns the refusal, naming the
/// registry and the realm's scheme and host only (a realm URL may carry
/// anything in its query).
pub fn realm_refusal(registry: &str, challenge: &str, insecure: bool) -> Option<Problem> {
    if insecure {
        return None;
    }
    let realm = bearer_realm(challenge)?;
    let (scheme, rest) = realm.split_once("://").unwrap_or(("", realm.as_str()));
    if scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let scheme = if scheme.is_empty() {
        "no scheme"
    } else {
        scheme
    };
    Some(Problem::Credentials(format!(
        "registry {registry} sends clients to a token service that is not HTTPS ({scheme}, host {host}); \
         its credentials are not sent there (mark the registry insecure only if it is a dev registry)"
    )))
}

/// The `realm` of a Bearer challenge (RFC 6750 section 3), if any.
fn bearer_realm(challenge: &str) -> Option<String> {
    let (scheme, params) = challenge.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut rest = params;
    while let Some(at) = rest.find('=') {
        let key = rest[..at].trim().trim_start_matches(',').trim();
        let after = rest[at + 1..].trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], &quoted[(end + 1).min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        if key.eq_ignore_ascii_case("realm") {
            return Some(value.to_string());
        }
        rest = tail;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<&'static [u8], String>> + Unpin {
        futures::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn bodies_within_the_cap_are_read_whole() {
        let body = read_at_most(chunks(&[b"ab", b"cd"]), Some(4), 4, "the manifest")
            .await
            .unwrap();
        assert_eq!(body, b"abcd");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        let err = read_at_most(chunks(&[b"x"]), Some(5 * MIB), 4 * MIB, "the manifest")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported manifest: the manifest is larger than 4 MiB (the merge reads no more)"
        );
    }

    #[tokio::test]
    async fn an_undeclared_body_is_cut_at_the_cap() {
        let err = read_at_most(chunks(&[b"abc", b"def"]), None, 5, "the config")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("larger than 5 bytes"), "{err}");
    }

    #[test]
    fn credentials_go_only_to_https_realms() {
        let https = r#"Bearer realm="https://auth.example.com/token",service="registry""#;
        assert_eq!(realm_refusal("r.example.com", https, false), None);
        let http =
            r#"Bearer service="registry", realm="http://auth.example.com:8080/token?secret=1""#;
        let refusal = realm_refusal("r.example.com", http, false)
            .unwrap()
            .to_string();
        assert!(refusal.contains("registry r.example.com"), "{refusal}");
        assert!(
            refusal.contains("(http, host auth.example.com:8080)"),
            "{refusal}"
        );
        assert!(!refusal.contains("secret"), "{refusal}");
        // A dev registry marked insecure may use one.
        assert_eq!(realm_refusal("r.example.com", http, true), None);
        // Basic challenges and unquoted realms.
        assert_eq!(realm_refusal("r", r#"Basic realm="http://x""#, false), None);
        assert!(realm_refusal("r", "bearer realm=http://x/t", false).is_some());
        assert!(realm_refusal("r", r#"Bearer realm="//x/t""#, false).is_some());
    }
}
