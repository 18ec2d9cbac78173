//! The termination message a build pod's last container writes: what the
//! operator learns of a finished build. Its keys are written by the fixed
//! report scripts of `render::cache` and by `render` here (for
//! `multiarch-operator push`), and read in one place (`parse`).
//!
//! Format, one `key=value` a line:
//! ```text
//! digest=sha256:<64 hex>
//! cache-hits=<steps the builder took from the cache>   (only when a cache was used)
//! cache-import-error=<the builder's words>             (optional)
//! cache-export-error=<the builder's words>             (optional)
//! ```
//! Older operators wrote the digest alone on the last line (and the merge
//! still does, through `--digest-file`): that form stays readable.

use crate::api::CacheState;

pub const DIGEST_KEY: &str = "digest";
pub const CACHE_HITS_KEY: &str = "cache-hits";
pub const CACHE_IMPORT_ERROR_KEY: &str = "cache-import-error";
pub const CACHE_EXPORT_ERROR_KEY: &str = "cache-export-error";
/// The longest builder error a report script copies into the message
/// (the kubelet keeps at most 4096 bytes of it).
pub const MAX_CACHE_ERROR: usize = 300;

/// What a build pod reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// The pushed manifest's digest.
    pub digest: Option<String>,
    /// How the cache served the build; None when it used none.
    pub cache: Option<CacheOutcome>,
}

/// The cache's part in one build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheOutcome {
    pub state: CacheState,
    /// Why it was unavailable: the platform's message, quoting the builder.
    pub detail: Option<String>,
}

/// What a builder's output told of the cache, as a report writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheWords {
    pub hits: u64,
    pub import_error: Option<String>,
    pub export_error: Option<String>,
}

/// Writes a report (`multiarch-operator push`'s; the report scripts of
/// `render::cache` write the same lines): what `parse` reads.
pub fn render(digest: &str, cache: Option<&CacheWords>) -> String {
    let mut out = format!("{DIGEST_KEY}={digest}\n");
    if let Some(cache) = cache {
        out.push_str(&format!("{CACHE_HITS_KEY}={}\n", cache.hits));
        for (key, words) in [
            (CACHE_IMPORT_ERROR_KEY, &cache.import_error),
            (CACHE_EXPORT_ERROR_KEY, &cache.export_error),
        ] {
            if let Some(words) = words {
                out.push_str(&format!("{key}={}\n", words.replace('\n', " ")));
            }
        }
    }
    out
}

/// Reads a termination message (either form).
pub fn parse(message: &str) -> BuildReport {
    let mut report = BuildReport::default();
    let mut hits: Option<u64> = None;
    let (mut import_error, mut export_error) = (None, None);
    let mut keyed = false;
    for line in message.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            DIGEST_KEY => {
                keyed = true;
                report.digest = digest(value);
            }
            CACHE_HITS_KEY => hits = Some(value.parse().unwrap_or(0)),
            CACHE_IMPORT_ERROR_KEY if !value.is_empty() => import_error = Some(value.to_string()),
            CACHE_EXPORT_ERROR_KEY if !value.is_empty() => export_error = Some(value.to_string()),
            _ => {}
        }
    }
    if !keyed {
        report.digest = message.trim().lines().last().and_then(digest);
        return report;
    }
    report.cache = hits.map(|hits| classify(hits, import_error, export_error));
    report
}

/// Hit, Miss or Unavailable, from what the builder said. A cache that does
/// not exist yet (BuildKit's import answers "not found" on a first build)
/// is a miss, not a failure.
fn classify(hits: u64, import_error: Option<String>, export_error: Option<String>) -> CacheOutcome {
    let import_error = import_error.filter(|e| !is_not_found(e));
    let unavailable = match (import_error, export_error) {
        (Some(read), Some(write)) => Some(format!(
            "built without its cache, which could be neither read ({read}) nor written ({write})"
        )),
        (Some(read), None) => Some(format!(
            "built without its cache, which could not be read: {read}"
        )),
        (None, Some(write)) => Some(format!(
            "built without its cache, which could not be written: {write}"
        )),
        (None, None) => None,
    };
    match unavailable {
        Some(detail) => CacheOutcome {
            state: CacheState::Unavailable,
            detail: Some(detail),
        },
        None => CacheOutcome {
            state: if hits > 0 {
                CacheState::Hit
            } else {
                CacheState::Miss
            },
            detail: None,
        },
    }
}

fn is_not_found(error: &str) -> bool {
    let lower = error.to_ascii_lowercase();
    lower.contains("not found") || lower.contains("manifest unknown")
}

/// A `sha256:<64 hex>` digest, alone.
fn digest(text: &str) -> Option<String> {
    let text = text.trim();
    let hex = text.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_digest_alone_is_read_as_before() {
        assert_eq!(parse(&format!("{D}\n")).digest.as_deref(), Some(D));
        assert_eq!(
            parse(&format!("pushing\n{D}")).digest.as_deref(),
            Some(D),
            "the last line"
        );
        assert_eq!(parse(&format!("{D}\ntrailing")).digest, None);
        assert_eq!(parse("sha256:abc").digest, None);
        assert_eq!(parse(D).cache, None);
    }

    #[test]
    fn keyed_reports_carry_the_cache() {
        let hit = parse(&format!("digest={D}\ncache-hits=3\n"));
        assert_eq!(hit.digest.as_deref(), Some(D));
        assert_eq!(
            hit.cache,
            Some(CacheOutcome {
                state: CacheState::Hit,
                detail: None
            })
        );
        let miss = parse(&format!("digest={D}\ncache-hits=0\n"));
        assert_eq!(miss.cache.unwrap().state, CacheState::Miss);
        let off = parse(&format!("digest={D}\n"));
        assert_eq!((off.digest.as_deref(), off.cache), (Some(D), None));
    }

    #[test]
    fn a_cache_not_there_yet_is_a_miss_and_an_unreachable_one_unavailable() {
        let first = parse(&format!(
            "digest={D}\ncache-hits=0\ncache-import-error=registry:5000/app:buildcache-linux-amd64: not found\n"
        ));
        assert_eq!(first.cache.unwrap().state, CacheState::Miss);
        let down = parse(&format!(
            "digest={D}\ncache-hits=0\ncache-export-error=failed pushing cache to \"x\": connection refused\n"
        ));
        let cache = down.cache.unwrap();
        assert_eq!(cache.state, CacheState::Unavailable);
        assert!(
            cache
                .detail
                .as_deref()
                .unwrap()
                .contains("could not be written: failed pushing cache"),
            "{cache:?}"
        );
        let both = parse(&format!(
            "digest={D}\ncache-hits=2\ncache-import-error=dial tcp: refused\ncache-export-error=refused\n"
        ));
        let cache = both.cache.unwrap();
        assert_eq!(cache.state, CacheState::Unavailable, "errors outweigh hits");
        assert!(cache.detail.unwrap().contains("read (dial tcp: refused)"));
    }

    #[test]
    fn a_keyed_report_without_a_valid_digest_has_none() {
        assert_eq!(parse("digest=sha256:xyz\ncache-hits=1").digest, None);
        assert_eq!(parse(&format!("digest= {D} ")).digest.as_deref(), Some(D));
        // Garbage counts are no hits.
        let odd = parse(&format!("digest={D}\ncache-hits=many"));
        assert_eq!(odd.cache.unwrap().state, CacheState::Miss);
    }
}
