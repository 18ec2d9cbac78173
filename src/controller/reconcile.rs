//! One reconciliation, as a pipeline of steps that hand each other types:
//!
//! `validate -> source -> plan -> observe -> decide -> report -> apply`
//!
//! `validate` (a `Validated` resource, or its `ValidationErrors`), `source`
//! (a git source's revision resolved to one commit: `Source`), `plan`
//! (the `Plan`: build id, every Job), `observe` (the `Observation`: Jobs and
//! Pods as facts), `decide` (a pure `Decision`), `report` (the `Report`:
//! status, transitions, Events) and `apply` (`Applied`). No step reaches
//! back into an earlier one.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::ResourceExt;

use super::apply::apply;
use super::context::Context;
use super::decide::{decide, invalid, waiting as invalid_or_waiting, Decision};
use super::observe::{JobFacts, Observation};
use super::report::report;
use super::source::{self, ResolvePod, SourceObservation};
use crate::api::{
    MultiArchImage, Phase, PlatformPhase, SourceStatus, REBUILD_ANNOTATION, RETRY_ANNOTATION,
};
use crate::error::{Error, Result};
use crate::render::{self, BuildInputs, Mounted, BUILD_ID_LABEL, NAME_LABEL, SOURCE_RUN_LABEL};
use crate::validate::{validate_with, Validated};

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
    let valid = validate_with(&resource, &ctx.allowlists);
    let poll = valid.as_ref().ok().and_then(|v| v.poll_interval);
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let run = resource
        .spec
        .source
        .git
        .as_ref()
        .map(|git| render::source_run(git, render::poll_tick(poll, since_epoch)));
    let rebuild = resource
        .annotations()
        .get(REBUILD_ANNOTATION)
        .map(String::as_str);
    let status = resource.status.as_ref();
    let known = status.and_then(|s| s.source.as_ref());
    fn inputs<'a>(source: Option<&'a SourceStatus>, rebuild: Option<&'a str>) -> BuildInputs<'a> {
        BuildInputs {
            commit: source.map(|s| s.commit.as_str()),
            rebuild,
        }
    }
    let retry = resource
        .annotations()
        .get(RETRY_ANNOTATION)
        .map(String::as_str);
    // The current run's commit is recorded (always so without a git source).
    let resolved = run.as_ref().is_none_or(|run| {
        let job = render::resolve_job_name(&resource.name_any(), run);
        known.is_some_and(|k| k.resolve_job == job)
    });
    let settled_id = render::build_id(&resource.spec, &inputs(known.filter(|_| resolved), rebuild));
    let wait = |done: bool| requeue_after(done, poll, since_epoch);
    if resolved && is_settled(&resource, &settled_id, retry) {
        return Ok(wait(true));
    }
    ctx.caches
        .ready
        .clone()
        .wait_for(|ready| *ready)
        .await
        .map_err(|_| Error::CacheClosed)?;
    let now = Time(Timestamp::now());
    let handled = status.and_then(|s| s.last_handled_retry.clone());
    let (decision, mounts) = match valid {
        Err(errors) => {
            let id = render::build_id(&resource.spec, &inputs(None, rebuild));
            let observed = observe(&ctx, &resource, &namespace, None, now.clone());
            (invalid(&id, errors, &observed, handled), Vec::new())
        }
        Ok(valid) => {
            let step = run.as_ref().and_then(|run| {
                let git = resource.spec.source.git.as_ref()?;
                let desired = render::resolve_job(&resource, run, &ctx.images)?;
                let observed = observe_source(&ctx, &resource, &namespace, run, now.clone());
                Some(source::resolve(
                    git,
                    &desired,
                    known,
                    &observed,
                    retry,
                    handled.clone(),
                ))
            });
            match step {
                None => {
                    let id = render::build_id(&resource.spec, &inputs(None, rebuild));
                    build(
                        &ctx,
                        &resource,
                        &valid,
                        &namespace,
                        id,
                        None,
                        retry,
                        now.clone(),
                    )
                }
                Some(step) => match step.source.into_known() {
                    Ok(source) => {
                        let id = render::build_id(&resource.spec, &inputs(Some(&source), rebuild));
                        let (mut decision, mounts) = build(
                            &ctx,
                            &resource,
                            &valid,
                            &namespace,
                            id,
                            Some(&source),
                            retry,
                            now.clone(),
                        );
                        decision.create.extend(step.create);
                        decision.cleanup.extend(step.delete);
                        decision.source = Some(source);
                        (decision, mounts)
                    }
                    // Nothing is built before the commit is known; the Jobs
                    // of an earlier source's build stop.
                    Err(progress) => {
                        let id = render::build_id(&resource.spec, &inputs(None, rebuild));
                        let observed = observe(&ctx, &resource, &namespace, None, now.clone());
                        let mut decision =
                            invalid_or_waiting(&id, progress, &observed, step.attempt);
                        decision.create.extend(step.create);
                        decision.cleanup.extend(step.delete);
                        (decision, Vec::new())
                    }
                },
            }
        }
    };
    let report = report(&resource, &decision, &mounts, &now);
    let applied = apply(&resource, &decision, &report, &ctx).await?;
    ctx.backoff.succeeded(&key(&resource));
    Ok(wait(applied.done))
}

/// The build of `build_id`: its plan, what the caches show of it, and the
/// decision.
#[allow(clippy::too_many_arguments)]
fn build(
    ctx: &Context,
    resource: &MultiArchImage,
    valid: &Validated,
    namespace: &str,
    build_id: String,
    source: Option<&SourceStatus>,
    retry: Option<&str>,
    now: Time,
) -> (Decision, Vec<Mounted>) {
    let commit = source.map(|s| s.commit.as_str());
    let plan = render::plan(resource, valid, build_id, &ctx.images, commit);
    let observed = observe(ctx, resource, namespace, Some(&plan.build_id), now);
    let previous = resource
        .status
        .as_ref()
        .filter(|s| s.build_id.as_deref() == Some(plan.build_id.as_str()));
    (decide(&plan, &observed, previous, retry), plan.mounts)
}

/// When to look again: a build under way at least every minute; a polled
/// source when its next interval begins.
fn requeue_after(done: bool, poll: Option<Duration>, since_epoch: Duration) -> Action {
    let next_poll = poll.map(|interval| render::until_next_tick(interval, since_epoch));
    match (done, next_poll) {
        (true, None) => Action::await_change(),
        (true, Some(next)) => Action::requeue(next),
        (false, next) => Action::requeue(next.map_or(BUILDING_RESYNC, |n| n.min(BUILDING_RESYNC))),
    }
}

/// Whether a cached Job is the resource's: in its namespace, labelled with
/// its name and controlled by its uid (labels alone would also match a
/// deleted and recreated resource of the same name, or another whose long
/// name shortens alike).
fn owned_by<'a>(resource: &'a MultiArchImage, namespace: &'a str) -> impl Fn(&Job) -> bool + 'a {
    let name_label = render::name_label_value(&resource.name_any());
    let uid = resource.uid();
    move |job| {
        job.namespace().as_deref() == Some(namespace)
            && job.labels().get(NAME_LABEL) == Some(&name_label)
            && job
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
    }
}

/// The uids of Jobs, to pick their pods by their controller reference.
fn uids(jobs: &[std::sync::Arc<Job>]) -> std::collections::HashSet<String> {
    jobs.iter().filter_map(|j| j.uid()).collect()
}

fn controlled_by(pod: &Pod, jobs: &std::collections::HashSet<String>) -> bool {
    pod.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && jobs.contains(&o.uid))
}

/// The resolve Jobs of the resource (of any run) and the pods of `run`'s.
fn observe_source(
    ctx: &Context,
    resource: &MultiArchImage,
    namespace: &str,
    run: &str,
    now: Time,
) -> SourceObservation {
    let ours = owned_by(resource, namespace);
    let cached = ctx
        .caches
        .jobs
        .state_filter(|j| ours(j) && j.labels().contains_key(SOURCE_RUN_LABEL));
    let job_uids = uids(&cached);
    let jobs = cached
        .iter()
        .map(|j| JobFacts::of(j).timed(&ctx.sightings))
        .collect();
    let mut pods: Vec<ResolvePod> = ctx
        .caches
        .pods
        .state_filter(|p| {
            controlled_by(p, &job_uids)
                && p.labels().get(SOURCE_RUN_LABEL).map(String::as_str) == Some(run)
        })
        .iter()
        .map(|p| ResolvePod::of(p))
        .collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.facts.created.clone()));
    SourceObservation { jobs, pods, now }
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
    let ours = owned_by(resource, namespace);
    let cached = ctx.caches.jobs.state_filter(ours);
    let job_uids = uids(&cached);
    let jobs: Vec<Job> = cached.iter().map(|j| Job::clone(j)).collect();
    let pods: Vec<Pod> = match build_id {
        None => Vec::new(),
        Some(id) => ctx
            .caches
            .pods
            .state_filter(|p| {
                controlled_by(p, &job_uids)
                    && p.labels().get(BUILD_ID_LABEL).map(String::as_str) == Some(id)
            })
            .iter()
            .map(|p| Pod::clone(p))
            .collect(),
    };
    Observation::of(&jobs, &pods, now)
        .timed(&ctx.sightings)
        .with_events(&ctx.caches.events_in(namespace))
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
