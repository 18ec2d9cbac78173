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
use crate::api::{MultiArchImage, Phase, PlatformPhase, REBUILD_ANNOTATION, RETRY_ANNOTATION};
use crate::error::{Error, Result};
use crate::render::{self, BuildInputs, BUILD_ID_LABEL, NAME_LABEL};
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
    let inputs = BuildInputs {
        commit: None,
        rebuild: resource
            .annotations()
            .get(REBUILD_ANNOTATION)
            .map(String::as_str),
    };
    let build_id = render::build_id(&resource.spec, &inputs);
    let retry = resource
        .annotations()
        .get(RETRY_ANNOTATION)
        .map(String::as_str);
    if is_settled(&resource, &build_id, retry) {
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
            let handled = resource
                .status
                .as_ref()
                .and_then(|s| s.last_handled_retry.clone());
            (invalid(&build_id, errors, &observed, handled), Vec::new())
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
                .filter(|s| s.build_id.as_deref() == Some(plan.build_id.as_str()));
            (decide(&plan, &observed, previous, retry), plan.mounts)
        }
    };
    let report = report(&resource, &decision, &mounts, &now);
    let applied = apply(&resource, &decision, &report, &ctx).await?;
    ctx.backoff.succeeded(&key(&resource));
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

/// A finished build of the current spec, with no new retry asked for,
/// needs nothing more. A failed build is finished once no platform is
/// still building: the others' digests are kept for a retry.
fn is_settled(resource: &MultiArchImage, build_id: &str, retry: Option<&str>) -> bool {
    resource.status.as_ref().is_some_and(|s| {
        let platforms_done = s
            .platforms
            .iter()
            .all(|p| matches!(p.phase, PlatformPhase::Succeeded | PlatformPhase::Failed));
        s.build_id.as_deref() == Some(build_id)
            && s.observed_generation == resource.metadata.generation
            && match s.phase {
                Some(Phase::Succeeded) => true,
                Some(Phase::Failed) => platforms_done,
                _ => false,
            }
            && (retry.is_none() || retry == s.last_handled_retry.as_deref())
    })
}

fn key(resource: &MultiArchImage) -> (String, String) {
    (
        resource.namespace().unwrap_or_default(),
        resource.name_any(),
    )
}

/// Failed reconciles are retried with a per-resource back-off; the error
/// is counted by kind.
pub fn error_policy(resource: Arc<MultiArchImage>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(key(&resource));
    tracing::warn!(name = %resource.name_any(), namespace = ?resource.namespace(), error = %error, retry_in = ?delay, "reconcile failed");
    ctx.metrics
        .errors
        .get_or_create(&crate::telemetry::ErrorLabels {
            kind: error.kind().to_string(),
        })
        .inc();
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::super::context::Backoff;
    use std::time::Duration;

    #[test]
    fn back_off_doubles_per_resource_up_to_five_minutes_and_resets() {
        let backoff = Backoff::default();
        let a = ("ci".to_string(), "a".to_string());
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.failed(a.clone()).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(
            backoff.failed(("ci".into(), "b".into())),
            Duration::from_secs(5)
        );
        backoff.succeeded(&a);
        assert_eq!(backoff.failed(a), Duration::from_secs(5));
    }
}
