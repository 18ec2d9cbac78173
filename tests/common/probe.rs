//! A `RUN` step of a hostile Dockerfile, for a base image with a static
//! busybox (`e2e/cache_images.rs`): it looks for credentials wherever its
//! container could hold them (its own files, every process it can see,
//! their root directories and environments) and prints what it finds as
//! `probe: ...` lines in the build log, never the content.

/// The probe script. With `needle` (a credential the test knows), it also
/// names every file and environment holding it; the script holds the
/// needle in two halves, so that it never finds itself.
pub fn script(needle: Option<&str>) -> String {
    let (first, second) = needle.map_or(("", ""), |n| n.split_at(n.len() / 2));
    format!(
        r#"
bb=/bin/busybox
needle="{first}""{second}"
echo "probe: processes" /proc/[0-9]*
for root in /proc/[0-9]*/root; do
  [ -d "$root/workspace" ] && echo "probe: reached $root/workspace"
done
# /var/run is a link to /run: through /proc/N/root it would resolve in
# this step's own root, so both spellings are looked at.
for dir in /var/run/multiarch /run/multiarch /root/.docker /proc/[0-9]*/root/var/run/multiarch /proc/[0-9]*/root/run/multiarch /proc/[0-9]*/root/root/.docker; do
  [ -d "$dir" ] && $bb find "$dir" -type f 2>/dev/null | $bb sed 's/^/probe: /'
done
for environ in /proc/self/environ /proc/[0-9]*/environ; do
  $bb tr '\0' '\n' < "$environ" 2>/dev/null
done | $bb grep -E '^(REGISTRY_AUTH_FILE|DOCKER_CONFIG|GIT_[A-Z_]*|SSH_[A-Z_]*)=' | $bb sort -u | $bb sed 's/^/probe: /'
if [ -n "$needle" ]; then
  for dir in /workspace /run /root /proc/[0-9]*/root/workspace /proc/[0-9]*/root/run /proc/[0-9]*/root/root /proc/[0-9]*/root/home; do
    [ -d "$dir" ] && $bb grep -r -l -F "$needle" "$dir" 2>/dev/null | $bb sed 's/^/probe: holds the needle: /'
  done
  for environ in /proc/self/environ /proc/[0-9]*/environ; do
    $bb grep -q -F "$needle" "$environ" 2>/dev/null && echo "probe: holds the needle: $environ"
  done
fi
exit 0
"#
    )
}

/// The `probe: ` lines of a log, without the prefix.
pub fn findings(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|l| l.split_once("probe: ").map(|(_, found)| found))
        .collect()
}
