//! What every reconcile shares: the client, the event recorder, the
//! metrics, the images to run, and the watch caches of Jobs and Pods.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::Client;
use tokio::sync::watch;

use crate::render::BuilderImages;
use crate::telemetry::Metrics;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub images: BuilderImages,
    /// The operator's Jobs and their Pods, as last watched.
    pub caches: Caches,
}

/// Watch caches of the operator's Jobs and Pods, so a reconcile reads them
/// from memory instead of listing them from the API server.
pub struct Caches {
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    /// True once both caches hold their first full list.
    pub ready: watch::Receiver<bool>,
}
