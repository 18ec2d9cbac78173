//! The per-platform registry cache, and the fixed scripts that keep the
//! builder's output on the pod's storage and turn it into the build report
//! (`crate::termination`). No script is ever built from user input: every
//! user value reaches them as a positional argument.
//!
//! Each platform has a cache of its own. BuildKit's registry cache keeps
//! one platform per ref (docker/buildx#1044), and buildah's cache keys
//! hash the base image's layers and the step, not the platform
//! (imagebuildah/stage_executor.go `generateCacheKey`): two platforms
//! sharing a repository would overwrite, or worse reuse, each other's
//! layers.

use crate::api::MultiArchImageSpec;
use crate::platform::Platform;
use crate::termination::{
    CACHE_EXPORT_ERROR_KEY, CACHE_HITS_KEY, CACHE_IMPORT_ERROR_KEY, DIGEST_KEY, MAX_CACHE_ERROR,
};

/// What every per-platform cache name starts with.
pub const CACHE_PREFIX: &str = "buildcache-";
/// The builder's output, kept for the report step.
pub const BUILD_LOG: &str = "/workspace/build.log";
/// The builder's exit code, as the logging script saw it.
const BUILD_EXIT_CODE: &str = "/workspace/build.exit-code";
/// buildah's cache export, kept apart from the build's output; its last
/// line is `exit=<code>` (`buildah_export`).
pub const CACHE_EXPORT_LOG: &str = "/workspace/cache-export.log";
/// The export `bud`'s flags: every step from local storage, none run
/// (`--isolation=oci` makes buildah run `RUN` through `--runtime`, even
/// where `BUILDAH_ISOLATION` says chroot).
pub const EXPORT_ONLY: &str = "--layers --pull=never --isolation=oci --runtime=/bin/false";
/// Where buildah's push leaves the image digest.
const DIGEST_FILE: &str = "/workspace/image.digest";

/// The repository the cache lives under, when the cache is on.
pub fn cache_root(spec: &MultiArchImageSpec) -> Option<&str> {
    spec.cache
        .enabled
        .then(|| spec.cache.repository.as_deref().unwrap_or(&spec.image))
}

/// BuildKit's cache ref of one platform: `<root>:buildcache-<slug>`.
pub fn buildkit_cache_ref(spec: &MultiArchImageSpec, platform: &Platform) -> Option<String> {
    cache_root(spec).map(|root| format!("{root}:{CACHE_PREFIX}{}", platform.slug()))
}

/// buildah's cache repository of one platform, `<root>-buildcache-<slug>`:
/// buildah tags cache images by content, so each platform needs a
/// repository (a flat name, as Docker Hub and Quay allow no deeper paths).
pub fn buildah_cache_repository(spec: &MultiArchImageSpec, platform: &Platform) -> Option<String> {
    cache_root(spec).map(|root| format!("{root}-{CACHE_PREFIX}{}", platform.slug()))
}

/// The registry host of the cache, when it differs from the image's.
pub fn cache_registry_host(spec: &MultiArchImageSpec) -> Option<String> {
    let root = cache_root(spec)?;
    let host = crate::reference::parse_repository(root).ok()?.registry;
    let image = crate::reference::parse_repository(&spec.image)
        .ok()?
        .registry;
    (host != image).then_some(host)
}

/// Where BuildKit's cache export leaves the cache, an OCI layout, for the
/// push step (`multiarch-operator push`) to push.
pub const BUILDKIT_CACHE_LAYOUT: &str = "/workspace/cache";

/// `--import-cache` and `--export-cache` of `buildctl build`. The export
/// ignores errors (control/control.go `ignore-error`): the image is pushed
/// whatever becomes of the cache. A failed import is never fatal either
/// (solver/llbsolver/bridge.go: a lazy cache manager that failed answers
/// no records).
///
/// With `local_export`, the build has no push credentials: the cache goes
/// to `BUILDKIT_CACHE_LAYOUT` as an image manifest (`image-manifest=true`,
/// not the default of v0.18's local exporter), the form the registry
/// importer reads (cache/remotecache/import.go) once the push step has
/// pushed it under the same ref.
pub fn buildkit_cache_args(
    spec: &MultiArchImageSpec,
    platform: &Platform,
    local_export: bool,
) -> Vec<String> {
    let Some(reference) = buildkit_cache_ref(spec, platform) else {
        return Vec::new();
    };
    let insecure = if spec.insecure_registry {
        ",registry.insecure=true"
    } else {
        ""
    };
    vec![
        "--import-cache".into(),
        format!("type=registry,ref={reference}{insecure}"),
        "--export-cache".into(),
        if local_export {
            format!("type=local,dest={BUILDKIT_CACHE_LAYOUT},mode=max,oci-mediatypes=true,image-manifest=true,ignore-error=true")
        } else {
            format!("type=registry,ref={reference},mode=max,ignore-error=true{insecure}")
        },
    ]
}

/// A command running `command` with its output both in the container's
/// log and in `BUILD_LOG`, exiting with its exit code.
pub fn logged(command: Vec<String>) -> Vec<String> {
    logged_then(command, None)
}

/// `logged`, running the fixed command `then` (never user input) once
/// `command` has succeeded.
pub fn logged_then(command: Vec<String>, then: Option<&str>) -> Vec<String> {
    let then = then
        .map(|then| format!(" && {then} 2>&1"))
        .unwrap_or_default();
    let script = format!(
        "{{ \"$@\" 2>&1{then}; echo $? > {BUILD_EXIT_CODE}; }} | tee {BUILD_LOG}; exit \"$(cat {BUILD_EXIT_CODE})\""
    );
    let mut all = vec!["sh".into(), "-c".into(), script, "build".into()];
    all.extend(command);
    all
}

/// The awk program reading BuildKit's plain progress: steps `CACHED`, and
/// the `ERROR` of the cache import and export vertices
/// (util/progress/progressui/printer.go prints `#N CACHED`, `#N ERROR: ...`).
pub(super) fn buildkit_awk() -> String {
    format!(
        r#"/^#[0-9]+ CACHED/ {{ hits++ }}
/^#[0-9]+ importing cache manifest from / {{ imported[$1] = 1 }}
/^#[0-9]+ exporting cache to / {{ exported[$1] = 1 }}
$2 == "ERROR:" {{
  text = substr($0, length($1) + 9, {MAX_CACHE_ERROR})
  if (($1 in imported) && ie == "") ie = text
  else if (($1 in exported) && ee == "") ee = text
}}
END {{
  print "{CACHE_HITS_KEY}=" hits + 0
  if (ie != "") print "{CACHE_IMPORT_ERROR_KEY}=" ie
  if (ee != "") print "{CACHE_EXPORT_ERROR_KEY}=" ee
}}"#
    )
}

/// BuildKit's report step: the pushed digest from its metadata file and,
/// with a cache, what its output says of it, as the termination message.
/// `$1` the metadata file, `$2` `cache` or `no-cache`.
pub fn buildkit_report(metadata: &str, cache: bool) -> Vec<String> {
    let script = format!(
        "digest=$(sed -n 's/.*\"containerimage.digest\": *\"\\(sha256:[0-9a-f]\\{{64\\}}\\)\".*/\\1/p' \"$1\" | head -n 1)\n\
         test -n \"$digest\" || exit 1\n\
         {{\n  echo \"{DIGEST_KEY}=$digest\"\n  if [ \"$2\" = cache ]; then awk '{awk}' {BUILD_LOG}; fi\n}} > /dev/termination-log\n",
        awk = buildkit_awk(),
    );
    vec![
        "sh".into(),
        "-c".into(),
        script,
        "report".into(),
        metadata.into(),
        if cache { "cache" } else { "no-cache" }.into(),
    ]
}

/// The cache export step of a buildah build whose image
/// `multiarch-operator push` pushes: `bud` again with `EXPORT_ONLY`, every
/// step from local storage, writing the cache to `repository`. Its output
/// and exit code go to `CACHE_EXPORT_LOG` for the push step, which reports
/// a failure; the step itself never fails the build.
pub fn buildah_export(repository: &str, bud_args: &[String]) -> Vec<String> {
    let script = format!(
        "cache=$1; shift\n\
         rm -f {CACHE_EXPORT_LOG}\n\
         {{ buildah bud {EXPORT_ONLY} --cache-to \"$cache\" \"$@\" 2>&1; echo \"exit=$?\"; }} > {CACHE_EXPORT_LOG}\n\
         cat {CACHE_EXPORT_LOG}\n"
    );
    let mut command = vec![
        "sh".into(),
        "-c".into(),
        script,
        "export-cache".into(),
        repository.into(),
    ];
    command.extend(bud_args.iter().cloned());
    command
}

/// buildah's push step where the operator's image cannot run: pushes the
/// built image under a staging tag (failing the pod if that
/// fails), then, with a cache, exports it and writes the report. buildah
/// skips a cache image it cannot pull, warning only when the pull is
/// retried (a network error, not a missing key): that warning, which names
/// the cache repository, is the import error.
///
/// The export is a second `bud --layers --cache-to` over the same storage:
/// every step is a local cache hit, so no `RUN` step runs again, and
/// buildah pushes each layer it finds locally (stage_executor.go pushes
/// "if cache was present on local storage and not pulled"). Exporting
/// during the build instead would fail the build when the cache cannot be
/// written (`pushCache` returns "failed pushing cache to ...").
///
/// This container holds the push credentials, so its `bud` must run no
/// step of the Dockerfile: a step that misses the local cache here (an
/// `ADD <url>` whose content changed since the build, say) would run the
/// `RUN` steps after it again, credentials mounted. `EXPORT_ONLY` forbids
/// that: no pull, and the OCI runtime is `/bin/false`, so such a step fails
/// the export, never the build or the push.
///
/// `$1` destination, `$2` `--tls-verify` value, `$3` cache repository
/// (empty: none), then the `bud` arguments after `bud`.
pub fn buildah_push(
    local_image: &str,
    destination: &str,
    tls_verify: bool,
    cache_repository: Option<&str>,
    bud_args: &[String],
) -> Vec<String> {
    let script = format!(
        "dest=$1; tls=$2; cache=$3; shift 3\n\
         buildah push --digestfile {DIGEST_FILE} --tls-verify=\"$tls\" {local_image} \"docker://$dest\" || exit 1\n\
         digest=$(cat {DIGEST_FILE})\n\
         {{\n  echo \"{DIGEST_KEY}=$digest\"\n  if [ -n \"$cache\" ]; then\n    \
             echo \"{CACHE_HITS_KEY}=$(grep -c -F -e '--> Using cache' {BUILD_LOG})\"\n    \
             read_error=$(grep -m 1 -F -e \"docker://$cache:\" {BUILD_LOG} | sed 's/.*Error: //' | cut -c 1-{MAX_CACHE_ERROR})\n    \
             [ -z \"$read_error\" ] || echo \"{CACHE_IMPORT_ERROR_KEY}=$read_error\"\n    \
             if ! buildah bud {EXPORT_ONLY} --cache-to \"$cache\" \"$@\" > {CACHE_EXPORT_LOG} 2>&1; then\n      \
               why=$(grep -m 1 -F 'failed pushing cache' {CACHE_EXPORT_LOG} || tail -n 1 {CACHE_EXPORT_LOG})\n      \
               echo \"{CACHE_EXPORT_ERROR_KEY}=$(printf '%s' \"$why\" | cut -c 1-{MAX_CACHE_ERROR})\"\n      \
               echo \"the cache export failed: $why\" >&2\n    \
             fi\n  fi\n}} > /dev/termination-log\n"
    );
    let mut command = vec![
        "sh".into(),
        "-c".into(),
        script,
        "push".into(),
        destination.into(),
        tls_verify.to_string(),
        cache_repository.unwrap_or_default().into(),
    ];
    command.extend(bud_args.iter().cloned());
    command
}
