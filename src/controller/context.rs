//! What every reconcile shares: the client, the event recorder, the
//! metrics, the images to run, and the watch caches of Jobs and Pods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::Client;
use tokio::sync::watch;

pub use super::sightings::Sightings;
use crate::render::BuilderImages;
use crate::telemetry::Metrics;
use crate::validate::Allowlists;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub images: BuilderImages,
    /// What any MultiArchImage may use: builder images, toleration and
    /// node label keys, control-plane placement.
    pub allowlists: Allowlists,
    /// The operator's Jobs and their Pods, as last watched.
    pub caches: Caches,
    /// Failed reconciles in a row, per resource.
    pub backoff: Backoff,
    /// When this process first saw timed facts (Jobs complete, pods not
    /// started), on its monotonic clock.
    pub sightings: Sightings,
}

/// Per-resource back-off of failed reconciles: 5 s, doubling to 5 min, so
/// one resource the API server keeps refusing neither spins nor slows the
/// others; reset by a reconcile that succeeds.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<(String, String), u32>>,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(5);
    pub const MAX: Duration = Duration::from_secs(300);

    /// Counts a failure of `key` (namespace, name); the delay before the next try.
    pub fn failed(&self, key: (String, String)) -> Duration {
        let mut failures = self.failures.lock().expect("the back-off lock");
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        let factor = 2u32.saturating_pow(count.saturating_sub(1).min(16));
        Self::FIRST.saturating_mul(factor).min(Self::MAX)
    }

    pub fn succeeded(&self, key: &(String, String)) {
        self.failures.lock().expect("the back-off lock").remove(key);
    }
}

/// Watch caches of the operator's Jobs and Pods, so a reconcile reads them
/// from memory instead of listing them from the API server.
pub struct Caches {
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    /// True once both caches hold their first full list.
    pub ready: watch::Receiver<bool>,
    /// Events the operator acts on: `FailedCreate` of Jobs and
    /// `TriggeredScaleUp` of pods (advisory: a reconcile never waits for them).
    pub events: Vec<Store<Event>>,
}

impl Caches {
    /// The cached Events about objects in `namespace`.
    pub fn events_in(&self, namespace: &str) -> Vec<Event> {
        self.events
            .iter()
            .flat_map(|store| {
                store.state_filter(|e| e.involved_object.namespace.as_deref() == Some(namespace))
            })
            .map(|e| Event::clone(&e))
            .collect()
    }
}
