//! One reconciliation, as a pipeline of steps that hand each other types:
//!
//! `validate -> plan -> observe -> decide -> report -> apply`
//!
//! `validate` (a `Validated` resource, or its `ValidationErrors`), `plan`
//! (the `Plan`: build id, every Job), `observe` (the `Observation`: Jobs and
//! Pods as facts), `decide` (a pure `Decision`), `report` (the `Report`:
//! status, transitions, Events) and `apply` (`Applied`). No step reaches
//! back into an earlier one.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::ResourceExt;

use super::apply::apply;
use super::context::Context;
use super::decide::{decide, invalid};
use super::observe::Observation;
use super::report::report;
use crate::api::{MultiArchImage, Phase};
use crate::error::{Error, Result};
use crate::render::{self, BUILD_ID_LABEL, NAME_LABEL};
use crate::validate::validate;

/// While a build runs, look again at least this often, even without events.
const BUILDING_RESYNC: Duration = Duration::from_secs(60);

pub async fn reconcile(resource: Arc<MultiArchImage>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let namespace = resource
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(resource.name_any()))?;
    if resource.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the Jobs.
        return Ok(Action::await_change());
    }
    let build_id = render::build_id(&resource.spec);
    if is_settled(&resource, &build_id) {
        return Ok(Action::await_change());
    }
    ctx.caches
        .ready
        .clone()
        .wait_for(|ready| *ready)
        .await
        .map_err(|_| Error::CacheClosed)?;
    let now = Time(Timestamp::now());
    let (decision, mounts) = match validate(&resource) {
        Err(errors) => {
            let observed = observe(&ctx, &resource, &namespace, None, now.clone());
            (invalid(&build_id, errors, &observed), Vec::new())
        }
        Ok(valid) => {
            // The git source's resolved commit is not wired in yet: build
            // Jobs of a git source carry the placeholder until it is.
            let plan = render::plan(&resource, &valid, build_id, &ctx.images, None);
            let observed = observe(
                &ctx,
                &resource,
                &namespace,
                Some(&plan.build_id),
                now.clone(),
            );
            let previous = resource
                .status
                .as_ref()
                .filter(|s| s.build_id.as_deref() == Some(plan.build_id.as_str()))
                .map(|s| s.platforms.as_slice());
            (decide(&plan, &observed, previous), plan.mounts)
        }
    };
    let report = report(&resource, &decision, &mounts, &now);
    let applied = apply(&resource, &decision, &report, &ctx).await?;
    Ok(if applied.done {
        Action::await_change()
    } else {
        Action::requeue(BUILDING_RESYNC)
    })
}

/// The resource's Jobs (of any build) and the pods of `build_id`'s Jobs,
/// from the watch caches.
fn observe(
    ctx: &Context,
    resource: &MultiArchImage,
    namespace: &str,
    build_id: Option<&str>,
    now: Time,
) -> Observation {
    let name_label = render::name_label_value(&resource.name_any());
    let ours = |labels: &std::collections::BTreeMap<String, String>, ns: Option<String>| {
        ns.as_deref() == Some(namespace) && labels.get(NAME_LABEL) == Some(&name_label)
    };
    let jobs: Vec<Job> = ctx
        .caches
        .jobs
        .state_filter(|j| ours(j.labels(), j.namespace()))
        .iter()
        .map(|j| Job::clone(j))
        .collect();
    let pods: Vec<Pod> = match build_id {
        None => Vec::new(),
        Some(id) => ctx
            .caches
            .pods
            .state_filter(|p| {
                ours(p.labels(), p.namespace())
                    && p.labels().get(BUILD_ID_LABEL).map(String::as_str) == Some(id)
            })
            .iter()
            .map(|p| Pod::clone(p))
            .collect(),
    };
    Observation::of(&jobs, &pods, now)
}

/// A finished build of the current spec needs nothing more.
fn is_settled(resource: &MultiArchImage, build_id: &str) -> bool {
    resource.status.as_ref().is_some_and(|s| {
        s.build_id.as_deref() == Some(build_id)
            && s.observed_generation == resource.metadata.generation
            && matches!(s.phase, Some(Phase::Succeeded | Phase::Failed))
    })
}

/// Failed reconciles are retried soon; the error is counted by kind.
pub fn error_policy(resource: Arc<MultiArchImage>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %resource.name_any(), namespace = ?resource.namespace(), error = %error, "reconcile failed");
    ctx.metrics
        .errors
        .get_or_create(&crate::telemetry::ErrorLabels {
            kind: error.kind().to_string(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}
