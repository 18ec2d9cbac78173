//! What the builder's output says of the cache.
//!
//! BuildKit's plain progress output (`--progress=plain`): util/progress/progressui/printer.go prints `#N CACHED` for a step
//! taken from the cache and `#N ERROR: <words>` for a failed vertex; the
//! cache import and export are vertices of their own, named
//! `importing cache manifest from <ref>` and `exporting cache to <where>`.
//! A step taken from an imported registry cache is not printed `CACHED`
//! (BuildKit v0.18, tests/buildkit.rs): it shows the download of its layer,
//! `#N sha256:<hex> <size> / <size> done`, and no output of its own; a
//! `FROM` step shows downloads on a miss too, so those do not count.
//! The log was written where the Dockerfile's steps ran: it is read with a
//! cap, and only counts and bounded quotes come out of it.

use std::collections::HashSet;

use crate::termination::{CacheWords, MAX_CACHE_ERROR};

/// The most of the build log read.
pub const MAX_LOG_BYTES: usize = 64 * 1024 * 1024;

/// The cache's part in one BuildKit build, as its output tells it.
pub fn read(log: &str) -> CacheWords {
    let mut progress = CacheWords::default();
    let (mut imports, mut exports) = (HashSet::new(), HashSet::new());
    // Dockerfile steps other than FROM, and those already counted a hit.
    let (mut steps, mut hits) = (HashSet::new(), HashSet::new());
    for line in log.lines() {
        let Some((vertex, rest)) = line.split_once(' ') else {
            continue;
        };
        if !vertex
            .strip_prefix('#')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        if rest == "CACHED"
            || rest.starts_with("CACHED ")
            || rest.starts_with("sha256:") && steps.contains(vertex)
        {
            if hits.insert(vertex) {
                progress.hits += 1;
            }
        } else if let Some(name) = step_name(rest) {
            if !name.starts_with("FROM ") {
                steps.insert(vertex);
            }
        } else if rest.starts_with("importing cache manifest from ") {
            imports.insert(vertex);
        } else if rest.starts_with("exporting cache to ") {
            exports.insert(vertex);
        } else if let Some(words) = rest.strip_prefix("ERROR: ") {
            let slot = if imports.contains(vertex) {
                &mut progress.import_error
            } else if exports.contains(vertex) {
                &mut progress.export_error
            } else {
                continue;
            };
            slot.get_or_insert_with(|| bounded(words));
        }
    }
    progress
}

/// The instruction of a Dockerfile step's first line (`[2/3] RUN make`,
/// `[stage 1/2] COPY ...`); None for BuildKit's own vertices.
fn step_name(rest: &str) -> Option<&str> {
    let (bracket, name) = rest.strip_prefix('[')?.split_once("] ")?;
    let position = bracket.rsplit(' ').next()?;
    let (done, total) = position.split_once('/')?;
    (done.bytes().all(|b| b.is_ascii_digit()) && total.bytes().all(|b| b.is_ascii_digit()))
        .then_some(name)
}

/// The cache's part in one buildah build, as its output tells it
/// (imagebuildah/stage_executor.go): `--> Using cache <id>` for a step
/// taken from the cache; a cache image it could not pull is skipped, with
/// a warning naming `docker://<repository>:<key>`, the import error.
pub fn read_buildah(log: &str, repository: &str) -> CacheWords {
    let named = format!("docker://{repository}:");
    let import_error = log.lines().find(|line| line.contains(&named)).map(|line| {
        let words = line.rfind("Error: ").map_or(line, |at| &line[at + 7..]);
        bounded(words)
    });
    CacheWords {
        hits: log
            .lines()
            .filter(|l| l.contains("--> Using cache"))
            .count() as u64,
        import_error,
        export_error: None,
    }
}

/// Why buildah's cache export failed, from its log, whose last line the
/// export step writes (`exit=<code>`, render::cache::buildah_export); None
/// when it succeeded.
pub fn buildah_export_error(log: &str) -> Option<String> {
    let mut lines = log.lines().rev().skip_while(|l| l.trim().is_empty());
    match lines.next().and_then(|l| l.strip_prefix("exit=")) {
        Some("0") => None,
        Some(_) => {
            let why = log
                .lines()
                .find(|l| l.contains("failed pushing cache"))
                .or_else(|| lines.next())
                .unwrap_or("the export failed");
            Some(bounded(why))
        }
        None => Some("the cache export step left no result".into()),
    }
}

/// At most `MAX_CACHE_ERROR` bytes, cut on a character boundary, without
/// control characters.
pub fn bounded(words: &str) -> String {
    let clean: String = words.chars().filter(|c| !c.is_control()).collect();
    let mut end = clean.len().min(MAX_CACHE_ERROR);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_steps_and_the_cache_vertices_errors_are_read() {
        let log = "#1 [internal] load build definition\n#2 importing cache manifest from r/app:buildcache-linux-amd64\n\
            #2 ERROR: r/app:buildcache-linux-amd64: not found\n#5 [2/3] RUN make\n#5 CACHED\n#6 CACHED\n\
            #7 [3/3] RUN false\n#7 ERROR: process did not complete successfully\n\
            #9 exporting cache to client directory\n#9 ERROR: no space left on device\n#9 ERROR: again\n";
        assert_eq!(
            read(log),
            CacheWords {
                hits: 2,
                import_error: Some("r/app:buildcache-linux-amd64: not found".into()),
                export_error: Some("no space left on device".into()),
            }
        );
    }

    #[test]
    fn a_step_taken_from_the_registry_cache_counts_once_and_a_from_pull_does_not() {
        let log = "#3 importing cache manifest from r/app:buildcache-linux-amd64\n\
            #4 [1/3] FROM docker.io/library/alpine@sha256:ab\n\
            #4 sha256:1111111111111111111111111111111111111111111111111111111111111111 3.4MB / 3.4MB 0.2s done\n\
            #5 [2/3] COPY hello.txt /hello.txt\n\
            #5 sha256:ee2ae2f513e46eb31c1ff22e74cf06cfe30bb07baa5fb4806ff129a5afe93e70 124B / 124B 0.0s\n\
            #5 sha256:ee2ae2f513e46eb31c1ff22e74cf06cfe30bb07baa5fb4806ff129a5afe93e70 124B / 124B 0.0s done\n\
            #5 DONE 0.0s\n#6 [3/3] RUN make\n#6 0.2 sha256:forged by the step\n#6 DONE 1.0s\n\
            #7 exporting to oci image format\n#7 exporting manifest sha256:9e done\n";
        assert_eq!(read(log).hits, 1);
        assert_eq!(step_name("[stage-1 2/3] RUN make"), Some("RUN make"));
        assert_eq!(step_name("[internal] load build context"), None);
    }

    #[test]
    fn buildah_cache_hits_and_the_skipped_cache_image_are_read() {
        let log = "STEP 1/3: FROM alpine\nSTEP 2/3: RUN make\n--> Using cache 1f2e\n\
            WARN[0001] Failed to pull cache image: docker://r/app-buildcache-linux-amd64:abc12: Error: connection refused\n\
            STEP 3/3: RUN false\n--> Using cache 9a8b\nan unrelated Error: here\n";
        assert_eq!(
            read_buildah(log, "r/app-buildcache-linux-amd64"),
            CacheWords {
                hits: 2,
                import_error: Some("connection refused".into()),
                export_error: None,
            }
        );
        assert_eq!(read_buildah(log, "r/other").import_error, None);
    }

    #[test]
    fn the_export_log_says_whether_and_why_the_export_failed() {
        assert_eq!(buildah_export_error("STEP 1/2: FROM a\nexit=0\n"), None);
        assert_eq!(
            buildah_export_error(
                "a\nError: failed pushing cache to r:k: denied\nlast words\nexit=125\n"
            )
            .as_deref(),
            Some("Error: failed pushing cache to r:k: denied")
        );
        assert_eq!(
            buildah_export_error("Error: no space left\nexit=1\n\n").as_deref(),
            Some("Error: no space left")
        );
        // The build wrote the step's line into its own log, not the
        // export's: a log without the export's last line is a failure.
        assert_eq!(
            buildah_export_error("exit=0\nmore\n").as_deref(),
            Some("the cache export step left no result")
        );
        assert!(buildah_export_error("").is_some());
    }

    #[test]
    fn a_hostile_log_yields_counts_and_bounded_words_only() {
        let long = format!(
            "#3 exporting cache to x\n#3 ERROR: {}\u{1b}[2J\n",
            "é".repeat(400)
        );
        let progress = read(&long);
        let error = progress.export_error.unwrap();
        assert!(
            error.len() <= MAX_CACHE_ERROR && !error.contains('\u{1b}'),
            "{error}"
        );
        assert_eq!(read("CACHED\n# CACHED\n#x CACHED\n#1 CACHEDX\n").hits, 0);
    }
}
