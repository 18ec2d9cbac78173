//! Checks of the git source's polling and of builder images per platform.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use super::Report;
use crate::api::{self, BuilderStrategy, MultiArchImageSpec};
use crate::platform::Platform;

static DURATION: LazyLock<Regex> = LazyLock::new(|| Regex::new(api::DURATION_PATTERN).unwrap());

/// Architectures `quay.io/buildah/stable` (the default buildah image) is
/// published for; a node of another one could not run it.
pub const BUILDAH_IMAGE_ARCHITECTURES: &[&str] = &["amd64", "arm64", "ppc64le", "s390x"];

/// `spec.source.git.pollInterval` as a duration: whole `h`, `m` and `s`
/// units, between `MIN_POLL_INTERVAL_SECONDS` and `MAX_POLL_INTERVAL_SECONDS`
/// (the bounds the CRD's CEL rule applies too).
pub fn parse_poll_interval(text: &str) -> Result<Duration, String> {
    if !DURATION.is_match(text) {
        return Err(format!(
            "{text:?} is not a duration such as 30s, 5m or 1h30m"
        ));
    }
    let mut seconds: u64 = 0;
    let mut number: u64 = 0;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = number * 10 + u64::from(digit);
            continue;
        }
        let scale = match c {
            'h' => 3600,
            'm' => 60,
            _ => 1,
        };
        seconds = seconds.saturating_add(number.saturating_mul(scale));
        number = 0;
    }
    let (min, max) = (
        api::MIN_POLL_INTERVAL_SECONDS,
        api::MAX_POLL_INTERVAL_SECONDS,
    );
    if !(min..=max).contains(&seconds) {
        return Err(format!(
            "{text:?} must be between {min}s and {}h",
            max / 3600
        ));
    }
    Ok(Duration::from_secs(seconds))
}

pub(super) fn check_poll_interval(
    spec: &MultiArchImageSpec,
    report: &mut Report,
) -> Option<Duration> {
    let interval = spec
        .source
        .git
        .as_ref()
        .and_then(|g| g.poll_interval.as_ref())?;
    parse_poll_interval(interval)
        .map_err(|message| report("spec.source.git.pollInterval", message))
        .ok()
}

/// The default buildah image runs on its published architectures only:
/// those of the nodes a platform is built on (`spec.buildOn`).
pub(super) fn check_builder_platforms(
    spec: &MultiArchImageSpec,
    platforms: &[Platform],
    build_on: &BTreeMap<Platform, Platform>,
    report: &mut Report,
) {
    if spec.builder.strategy != BuilderStrategy::Buildah || spec.builder.image.is_some() {
        return;
    }
    for (i, platform) in platforms.iter().enumerate() {
        let node = build_on.get(platform).unwrap_or(platform);
        if node.os != "linux" || !BUILDAH_IMAGE_ARCHITECTURES.contains(&node.architecture.as_str())
        {
            report(
                &format!("spec.platforms[{i}]"),
                format!(
                    "{platform}: the default buildah image ({}) is published for linux/{} only; set spec.builder.image to a buildah image built for {node}, build it on other nodes with spec.buildOn, or use strategy buildkit",
                    crate::render::DEFAULT_BUILDAH_IMAGE,
                    BUILDAH_IMAGE_ARCHITECTURES.join(", linux/")
                ),
            );
        }
    }
}
