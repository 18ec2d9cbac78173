//! Image pulls. Follows pkg/kubelet/images/image_manager.go
//! (EnsureImageExists): the reference must parse (else `InvalidImageName`),
//! `imagePullPolicy` decides whether to pull (`Never` and absent:
//! `ErrImageNeverPull`), a failed pull shows `ErrImagePull` and starts the
//! per pod+image back-off, during which the container waits in
//! `ImagePullBackOff`; the kubelet retries after the back-off until the pull
//! succeeds. The back-off is the kubelet's image back-off
//! (pkg/kubelet/kubelet.go: `flowcontrol.NewBackOff(backOffPeriod = 10s,
//! MaxContainerBackOff = 300s)`), doubling per failure.
//!
//! Images "exist" when `SimConfig::images` maps their repository; a node
//! holds an image once it pulled it. Faults can fail the first N pulls.

use super::host::Host;
use super::{lock, sleep_or_stop, waiting, KubeletConfig, PodCtx};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The longest back-off, as a multiple of the first (300 s / 10 s).
pub const MAX_BACKOFF_FACTOR: u32 = 30;
/// How long a failed pull shows `ErrImagePull` before the next pod sync
/// reports `ImagePullBackOff` (at most; half the back-off when shorter).
pub const ERR_IMAGE_PULL_HOLD: Duration = Duration::from_secs(2);

/// Image repository without tag or digest.
pub fn image_repo(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

pub(crate) fn normalize_repo(r: &str) -> String {
    let r = r
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/");
    r.to_string()
}

/// Some(host bin dir or None) when the image is mapped; None when unknown.
pub(crate) fn image_mapping(config: &KubeletConfig, image: &str) -> Option<Option<PathBuf>> {
    let repo = normalize_repo(image_repo(image));
    config
        .images
        .iter()
        .find(|(r, _)| normalize_repo(image_repo(r)) == repo)
        .map(|(_, d)| d.clone())
}

/// The image's ENTRYPOINT, when configured.
pub(crate) fn image_entrypoint(config: &KubeletConfig, image: &str) -> Option<Vec<String>> {
    let repo = normalize_repo(image_repo(image));
    config
        .image_entrypoints
        .iter()
        .find(|(r, _)| normalize_repo(image_repo(r)) == repo)
        .map(|(_, e)| e.clone())
}

/// Whether `image` parses as a reference, following the grammar of
/// github.com/distribution/reference (regexp.go): optional domain
/// (`host[:port]`), lowercase path components joined by `.`, `_`, `__` or
/// dashes, optional `:tag` and `@algorithm:hex` digest.
pub fn reference_error(image: &str) -> Option<&'static str> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        let path = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let dcomp = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!(r"(?:{dcomp}(?:\.{dcomp})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?");
        let tag = r"[\w][\w.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        regex::Regex::new(&format!(
            r"^(?:{domain}/)?{path}(?:/{path})*(?::{tag})?(?:@{digest})?$"
        ))
        .expect("reference grammar")
    });
    const NAME_TOTAL_LENGTH_MAX: usize = 255;
    if image.is_empty() || !re.is_match(image) {
        if !image.is_empty() && re.is_match(&image.to_lowercase()) {
            return Some("invalid reference format: repository name must be lowercase");
        }
        return Some("invalid reference format");
    }
    if image_repo(image).len() > NAME_TOTAL_LENGTH_MAX {
        return Some("repository name must not be more than 255 characters");
    }
    None
}

/// A pull's failure: (waiting reason, error text).
type PullError = (String, String);

/// One pull attempt: injected failures first, then "not found" for
/// unmapped images.
fn attempt(host: &dyn Host, image: &str) -> Result<(), PullError> {
    let faults = host.pull_faults();
    let repo = normalize_repo(image_repo(image));
    for (i, f) in faults.iter().enumerate() {
        if normalize_repo(image_repo(&f.image)) != repo {
            continue;
        }
        let mut counts = lock(&host.state().pull_failures);
        let n = counts.entry(i).or_default();
        if *n < f.count {
            *n += 1;
            let reason = if f.reason.is_empty() {
                "ErrImagePull".to_string()
            } else {
                f.reason.clone()
            };
            return Err((reason, f.message.clone()));
        }
    }
    if image_mapping(host.config(), image).is_none() {
        let repo = image_repo(image);
        return Err(("ErrImagePull".into(), format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": pull access denied, repository does not exist or may require authorization: {repo}: not found (kube-sim: image not mapped to a host program)")));
    }
    Ok(())
}

/// Make sure the container's image is on the pod's node, pulling it with
/// back-off as the kubelet does. Returns false when the pod was stopped
/// first (permanent failures wait for that).
pub(super) async fn ensure_image(
    ctx: &PodCtx,
    c: &Value,
    init: bool,
    idx: usize,
    restarts: u32,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let image = c["image"].as_str().unwrap_or("").to_string();
    let cname = c["name"].as_str().unwrap_or("").to_string();
    let host = &*ctx.host;
    let show = |reason: &str, msg: &str| {
        ctx.set_status(
            init,
            idx,
            waiting(&cname, &image, reason, Some(msg), restarts),
        );
        ctx.publish();
    };
    let permanent = |reason: &str, event: &str, msg: String| {
        show(reason, &msg);
        ctx.event("Warning", event, &msg);
        ctx.event("Warning", "Failed", &format!("Error: {reason}"));
    };
    if let Some(err) = reference_error(&image) {
        permanent(
            "InvalidImageName",
            "InspectFailed",
            format!("Failed to apply default image tag \"{image}\": couldn't parse image reference \"{image}\": {err}"),
        );
        let _ = stop.wait_for(|s| *s).await;
        return false;
    }
    let node = ctx.pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let key = (node, image.clone());
    let present = lock(&host.state().present).contains(&key);
    let policy = c["imagePullPolicy"].as_str().unwrap_or("IfNotPresent");
    if policy == "Never" || (policy == "IfNotPresent" && present) {
        if present {
            ctx.event(
                "Normal",
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
            );
            return true;
        }
        permanent(
            "ErrImageNeverPull",
            "ErrImageNeverPull",
            format!("Container image \"{image}\" is not present with pull policy of Never"),
        );
        let _ = stop.wait_for(|s| *s).await;
        return false;
    }
    let base = host.config().image_pull_backoff;
    let mut failures = 0u32;
    loop {
        ctx.event("Normal", "Pulling", &format!("Pulling image \"{image}\""));
        let started = Instant::now();
        match attempt(host, &image) {
            Ok(()) => {
                lock(&host.state().present).insert(key);
                let took = started.elapsed();
                ctx.event(
                    "Normal",
                    "Pulled",
                    &format!(
                        "Successfully pulled image \"{image}\" in {took:?} ({took:?} including waiting)"
                    ),
                );
                return true;
            }
            Err((reason, msg)) => {
                failures += 1;
                ctx.event(
                    "Warning",
                    "Failed",
                    &format!("Failed to pull image \"{image}\": {msg}"),
                );
                show(&reason, &msg);
                ctx.event("Warning", "Failed", &format!("Error: {reason}"));
                let factor = 2u32.saturating_pow(failures - 1).min(MAX_BACKOFF_FACTOR);
                let backoff = base * factor;
                let hold = ERR_IMAGE_PULL_HOLD.min(backoff / 2);
                if sleep_or_stop(hold, stop).await {
                    return false;
                }
                let msg = format!("Back-off pulling image \"{image}\"");
                show("ImagePullBackOff", &msg);
                ctx.event("Normal", "BackOff", &msg);
                ctx.event("Warning", "Failed", "Error: ImagePullBackOff");
                if sleep_or_stop(backoff - hold, stop).await {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos() {
        assert_eq!(
            image_repo("quay.io/buildah/stable:v1.35"),
            "quay.io/buildah/stable"
        );
        assert_eq!(
            image_repo("localhost:5000/x/y@sha256:abc"),
            "localhost:5000/x/y"
        );
        assert_eq!(image_repo("localhost:5000/x"), "localhost:5000/x");
    }

    #[test]
    fn references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "quay.io/buildah/stable:v1.35",
            "localhost:5000/a/b-c__d.e:tag",
            "[::1]:5000/x",
            "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(reference_error(ok), None, "{ok}");
        }
        for bad in ["", "a/UPPER", "a//b", "x:", "-lead", "a:b:c", "x y"] {
            assert!(reference_error(bad).is_some(), "{bad}");
        }
        assert_eq!(
            reference_error("Busybox"),
            Some("invalid reference format: repository name must be lowercase")
        );
    }
}
