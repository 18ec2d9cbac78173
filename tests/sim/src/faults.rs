//! Fault injection: errors, throttling, latency, watch cuts and forced
//! conflicts, drawn from a seeded RNG so runs are reproducible.

use std::time::Duration;

/// What to inject; all off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share (0.0..=1.0) of resource requests answered with an error.
    pub error_rate: f64,
    /// 500 (InternalError), 429 (TooManyRequests, with Retry-After) or 0 for a mix.
    pub error_code: u16,
    /// Retry-After seconds on 429 answers.
    pub retry_after_seconds: u64,
    /// Latency added before every resource request is served.
    pub latency: Duration,
    /// Watch streams end (cleanly) after this long.
    pub watch_cut_after: Option<Duration>,
    /// Share of writes (PUT/PATCH) answered 409 Conflict.
    pub conflict_rate: f64,
    /// Only force conflicts on `status` subresource writes.
    pub conflicts_status_only: bool,
    /// RNG seed used from the moment these faults are set.
    pub seed: u64,
    /// Only requests whose User-Agent starts with this prefix are faulted
    /// (None: every request). Lets a test fault the client under test while
    /// its own set-up and assertions go through untouched.
    pub user_agent_prefix: Option<String>,
    /// Image pulls that fail before they succeed (a registry blip, a rate
    /// limit). Applies to every pulling kubelet, whatever the User-Agent.
    pub image_pull_failures: Vec<PullFailure>,
}

/// "The first `count` pulls of `image` fail with (`reason`, `message`), then
/// pulls succeed" (a mapped image) or keep failing as not found (unmapped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullFailure {
    /// Image repository; tag and digest are ignored, as in `SimConfig::images`.
    pub image: String,
    pub count: u32,
    /// The container's `waiting.reason` (empty: `ErrImagePull`; the kubelet
    /// also reports e.g. `RegistryUnavailable`).
    pub reason: String,
    /// The pull error, e.g. "toomanyrequests: You have reached your pull rate limit".
    pub message: String,
}

impl PullFailure {
    pub fn new(image: &str, count: u32, message: &str) -> Self {
        PullFailure {
            image: image.into(),
            count,
            reason: String::new(),
            message: message.into(),
        }
    }
}

impl Faults {
    pub fn is_off(&self) -> bool {
        self.error_rate <= 0.0
            && self.latency.is_zero()
            && self.watch_cut_after.is_none()
            && self.conflict_rate <= 0.0
    }

    /// Whether a request from this User-Agent is subject to these faults.
    pub fn applies_to(&self, user_agent: &str) -> bool {
        self.user_agent_prefix
            .as_deref()
            .is_none_or(|prefix| user_agent.starts_with(prefix))
    }
}

/// One served API request, for tests to assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// get, list, watch, create, update, patch, delete, deletecollection, or
    /// the HTTP method for non-resource paths.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub user_agent: String,
    pub code: u16,
    pub path: String,
    /// Content type of a PATCH (merge, json, strategic, apply), else empty.
    pub patch_type: String,
    /// Who made the request (after impersonation); None when unauthenticated.
    pub user: Option<std::sync::Arc<crate::auth::UserInfo>>,
}
