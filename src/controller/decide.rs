//! Decide: from the plan and the observed facts, what to create and delete
//! and where each platform and the whole build stand. Pure, and free of
//! words: `report` turns the outcome into status messages and Events.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::observe::{
    JobFacts, JobFailure, JobOutcome, Observation, PodFacts, PodFailure, PodPhase, Waiting,
};
use crate::api::{MultiArchImageStatus, PlatformPhase, PlatformStatus, SourceStatus};
use crate::platform::Platform;
use crate::render::Plan;
use crate::termination::CacheOutcome;
use crate::validate::ValidationErrors;

#[path = "refusal.rs"]
mod refusal;
pub use refusal::{is_refusal, refusal_errors, refused, spec_field};

/// How long after the operator saw a Job complete its succeeded pod may
/// still be unseen (the Job's and the pod's changes arrive separately)
/// before it counts as gone. Measured on the operator's own clock.
const RESULT_GRACE_SECONDS: u64 = 30;

/// How long a pod the operator has seen scheduled may wait for its first
/// container before the platform's message says so.
const NOT_STARTED_AFTER_SECONDS: u64 = 60;

/// What reconcile must do, and the facts `report` describes.
#[derive(Clone, Debug)]
pub struct Decision {
    pub build_id: String,
    pub create: Vec<Job>,
    /// Jobs of superseded builds.
    pub delete: Vec<String>,
    /// Jobs of no more use, deleted without a word (resolve Jobs whose
    /// commit is recorded, or that run again).
    pub cleanup: Vec<String>,
    /// One per planned platform, in plan order.
    pub platforms: Vec<PlatformView>,
    pub progress: Progress,
    /// The merge Job, once every platform is built.
    pub merge_job: Option<String>,
    /// The `multiarch.dev/retry` value acted on, for the status.
    pub attempt: Option<String>,
    /// The git source's resolved commit this build builds.
    pub source: Option<SourceStatus>,
}

/// Where one platform stands.
#[derive(Clone, Debug, PartialEq)]
pub struct PlatformView {
    pub platform: Platform,
    pub job: String,
    pub phase: PlatformPhase,
    pub node: Option<String>,
    pub digest: Option<String>,
    /// How the build cache served it, once built with one.
    pub cache: Option<CacheOutcome>,
    pub start_time: Option<Time>,
    pub completion_time: Option<Time>,
    /// Why it waits or failed, if there is something to say.
    pub note: Option<Note>,
}

/// Why a platform (or the merge) waits or failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    /// The scheduler's reason.
    Unschedulable(String),
    /// A container stuck before it can start.
    Waiting(Waiting),
    /// A scheduled pod that has started no container for a while.
    NotStarted {
        pod: String,
        node: Option<String>,
        waited: i64,
        namespace: String,
    },
    /// Finished, but no digest in the termination message.
    NoDigest,
    /// The Job completed, but its pod (and so its digest) is gone before
    /// the digest was seen: the platform builds again.
    Rerun,
    /// The Job controller cannot create the pod (Pod Security, a missing
    /// ServiceAccount, quota, a webhook): its `FailedCreate` message. It
    /// keeps trying; nothing changes until the cluster or the spec does.
    FailedCreate(String),
    /// No node fits yet, and the cluster autoscaler is adding one: waited
    /// for, until the Job's deadline.
    AwaitingNode { why: String, scale_up: String },
    /// The Job's deadline passed before its pod ever got a node (or was
    /// ever created); `last` is what the platform last reported.
    NeverScheduled { deadline: i64, last: String },
    /// The Job failed.
    Failed {
        job: Box<JobFacts>,
        reason: JobFailure,
        detail: Option<PodFailure>,
    },
}

/// Where the whole build stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// No Job of this build exists yet.
    Pending,
    Building,
    /// Every platform is built; the merge Job is created now.
    MergeStarting,
    Merging(MergeStep),
    Succeeded {
        digest: String,
    },
    PlatformsFailed,
    MergeFailed(MergeFailure),
    Invalid(ValidationErrors),
    /// The git revision is being resolved to a commit; nothing is built
    /// before it is.
    Resolving(Option<Note>),
    /// The revision could not be resolved (no such branch, refused
    /// credentials, host unreachable past the resolve Job's retries).
    SourceFailed {
        reason: JobFailure,
        detail: Option<PodFailure>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum MergeStep {
    Pushing,
    /// The Job completed; its pod's result is not seen yet.
    ReadingResult,
    /// The Job completed, and its pod is gone before its digest was seen.
    Rerun,
    Waiting(Note),
}

#[derive(Clone, Debug, PartialEq)]
pub enum MergeFailure {
    NoDigest,
    Failed(Option<PodFailure>),
}

impl Progress {
    pub fn is_done(&self) -> bool {
        matches!(
            self,
            Progress::Succeeded { .. }
                | Progress::PlatformsFailed
                | Progress::MergeFailed(_)
                | Progress::Invalid(_)
                | Progress::SourceFailed { .. }
        )
    }
}

/// Decides the next step of a valid resource. `previous` is the status the
/// resource carries, if it describes this same build: a digest seen once
/// lives there, and is used from there (a finished pod may be collected,
/// its node scaled away).
///
/// `retry` is the `multiarch.dev/retry` value the resource carries: a new
/// one, on a failed build, runs the failed platforms and the merge again.
/// Jobs are made under the attempt they belong to; a failed Job of an
/// earlier attempt is deleted and made again, everything else is kept.
pub fn decide(
    plan: &Plan,
    observed: &Observation,
    previous: Option<&MultiArchImageStatus>,
    retry: Option<&str>,
) -> Decision {
    let attempt = attempt_of(retry, previous.and_then(|p| p.last_handled_retry.clone()));
    // A failed Job of an earlier attempt counts as gone.
    let stale = |job: &&JobFacts| {
        matches!(job.outcome, JobOutcome::Failed { .. }) && job.attempt != attempt
    };
    let mut create = Vec::new();
    let mut rerun: Vec<String> = observed
        .jobs
        .iter()
        .filter(|j| j.build_id.as_deref() == Some(plan.build_id.as_str()) && !j.deleting)
        .filter(stale)
        .map(|j| j.name.clone())
        .collect();
    let current = |name: &str| observed.job(name).filter(|j| !stale(j));
    let made = |job: &Job| with_attempt(job.clone(), attempt.as_deref());
    let mut platforms = Vec::new();
    for (platform, desired) in plan.platforms.iter().zip(&plan.build_jobs) {
        let name = kube::ResourceExt::name_any(desired);
        let before = previous.and_then(|p| p.platforms.iter().find(|s| s.job == name));
        if let Some(built) =
            before.filter(|b| b.phase == PlatformPhase::Succeeded && b.digest.is_some())
        {
            platforms.push(kept(platform, built));
            continue;
        }
        let live = observed.job(&name);
        if live.is_none() {
            create.push(made(desired));
        }
        // A Job being deleted (one that runs again) is replaced once gone.
        let job = current(&name).filter(|j| !j.deleting);
        let view = platform_view(
            platform,
            &name,
            job,
            &observed.pods_of(&name),
            before.and_then(|b| b.start_time.clone()),
        );
        if view.note == Some(Note::Rerun) {
            rerun.push(name.clone());
        }
        platforms.push(never_scheduled(view, before));
    }

    let ready = platforms
        .iter()
        .filter(|p| p.phase == PlatformPhase::Succeeded)
        .count();
    let mut merge_job = None;
    let pushed = previous.and_then(|p| p.digest.clone());
    let progress = if platforms.iter().any(|p| p.phase == PlatformPhase::Failed) {
        Progress::PlatformsFailed
    } else if ready == platforms.len() {
        let name = plan.merge.name();
        merge_job = Some(name.clone());
        match current(&name).filter(|j| !j.deleting) {
            // The index was pushed and its digest kept: done, whatever
            // became of the merge Job's pod.
            _ if pushed.is_some() => Progress::Succeeded {
                digest: pushed.unwrap_or_default(),
            },
            None if observed.job(&name).is_some() => Progress::Merging(MergeStep::Pushing),
            None => {
                let digests: Vec<String> = platforms
                    .iter()
                    .map(|p| p.digest.clone().unwrap_or_default())
                    .collect();
                create.push(made(&plan.merge.job(&digests)));
                Progress::MergeStarting
            }
            Some(job) => {
                let progress = merge_progress(job, &observed.pods_of(&name));
                if progress == Progress::Merging(MergeStep::Rerun) {
                    // Pushing is idempotent: the merge runs again.
                    rerun.push(name.clone());
                }
                progress
            }
        }
    } else if observed
        .jobs
        .iter()
        .any(|j| j.build_id.as_deref() == Some(plan.build_id.as_str()))
    {
        Progress::Building
    } else {
        Progress::Pending
    };
    let mut delete = superseded(observed, &plan.build_id);
    delete.extend(rerun);
    Decision {
        build_id: plan.build_id.clone(),
        create,
        delete,
        cleanup: Vec::new(),
        platforms,
        progress,
        merge_job,
        attempt,
        source: None,
    }
}

/// The attempt Jobs are made under: a `multiarch.dev/retry` value not yet
/// handled starts a new one.
pub fn attempt_of(retry: Option<&str>, handled: Option<String>) -> Option<String> {
    match retry {
        Some(value) if handled.as_deref() != Some(value) => Some(value.to_string()),
        _ => handled,
    }
}

/// A Job made under `attempt`.
pub fn with_attempt(mut job: Job, attempt: Option<&str>) -> Job {
    if let Some(attempt) = attempt {
        job.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                crate::api::RETRY_ANNOTATION.to_string(),
                attempt.to_string(),
            );
    }
    job
}

/// A Job past its deadline whose pod never got a node (as far as the
/// status ever showed) says so, with what the platform last reported.
fn never_scheduled(mut view: PlatformView, before: Option<&PlatformStatus>) -> PlatformView {
    let Some(Note::Failed {
        job,
        reason: JobFailure::DeadlineExceeded,
        ..
    }) = &view.note
    else {
        return view;
    };
    let waited = before.filter(|b| b.node.is_none() && b.phase == PlatformPhase::Pending);
    if view.node.is_none() {
        if let Some(before) = waited {
            view.note = Some(Note::NeverScheduled {
                deadline: job.active_deadline_seconds,
                last: before.message.clone(),
            });
        }
    }
    view
}

/// A platform whose digest the status holds already.
fn kept(platform: &Platform, built: &PlatformStatus) -> PlatformView {
    PlatformView {
        platform: platform.clone(),
        job: built.job.clone(),
        phase: PlatformPhase::Succeeded,
        node: built.node.clone(),
        digest: built.digest.clone(),
        // A succeeded platform's message is its cache's.
        cache: built.cache.map(|state| CacheOutcome {
            state,
            detail: Some(built.message.clone()).filter(|m| !m.is_empty()),
        }),
        start_time: built.start_time.clone(),
        completion_time: built.completion_time.clone(),
        note: None,
    }
}

/// The decision for a resource whose spec is invalid: nothing runs, and
/// the Jobs of an earlier build stop.
pub fn invalid(
    build_id: &str,
    errors: ValidationErrors,
    observed: &Observation,
    attempt: Option<String>,
) -> Decision {
    waiting(build_id, Progress::Invalid(errors), observed, attempt)
}

/// The decision for a resource that builds nothing yet (`progress`: its
/// source is being resolved, or cannot be) or at all (an invalid spec):
/// the Jobs of an earlier build stop.
pub fn waiting(
    build_id: &str,
    progress: Progress,
    observed: &Observation,
    attempt: Option<String>,
) -> Decision {
    Decision {
        build_id: build_id.to_string(),
        create: Vec::new(),
        delete: superseded(observed, build_id),
        cleanup: Vec::new(),
        platforms: Vec::new(),
        progress,
        merge_job: None,
        attempt,
        source: None,
    }
}

pub fn superseded(observed: &Observation, build_id: &str) -> Vec<String> {
    observed
        .jobs
        .iter()
        .filter(|j| !j.deleting)
        .filter(|j| j.build_id.as_deref().is_some_and(|id| id != build_id))
        .map(|j| j.name.clone())
        .collect()
}

/// One platform, from its Job and pods (newest first).
pub fn platform_view(
    platform: &Platform,
    job_name: &str,
    job: Option<&JobFacts>,
    pods: &[&PodFacts],
    start_time: Option<Time>,
) -> PlatformView {
    let mut view = PlatformView {
        platform: platform.clone(),
        job: job_name.to_string(),
        phase: PlatformPhase::Pending,
        node: None,
        digest: None,
        cache: None,
        start_time,
        completion_time: None,
        note: None,
    };
    let Some(job) = job else {
        return view;
    };
    let newest = pods.first().copied();
    if let Some(pod) = newest {
        view.node = pod.node.clone();
        if let Some(start) = pod.start_time.clone() {
            view.start_time.get_or_insert(start);
        }
    }
    if view.start_time.is_none() {
        view.start_time = job.start_time.clone();
    }
    match &job.outcome {
        JobOutcome::Complete { at } => {
            view.completion_time = at.clone();
            let succeeded = pods.iter().find(|p| p.phase == PodPhase::Succeeded);
            if let Some(pod) = succeeded {
                view.node = pod.node.clone();
                view.cache = pod.cache.clone();
            }
            match succeeded.map(|p| p.digest.clone()) {
                Some(Some(digest)) => {
                    view.phase = PlatformPhase::Succeeded;
                    view.digest = Some(digest);
                }
                Some(None) => {
                    view.phase = PlatformPhase::Failed;
                    view.note = Some(Note::NoDigest);
                }
                // The Job's news can come before its pod's: wait for the pod.
                None if !overdue(job) => view.phase = PlatformPhase::Building,
                // Gone before its digest was seen (collected, its node
                // removed): build it again rather than fail a good build.
                None => {
                    view.phase = PlatformPhase::Pending;
                    view.note = Some(Note::Rerun);
                }
            }
            return view;
        }
        JobOutcome::Failed { reason, at } => {
            view.phase = PlatformPhase::Failed;
            view.completion_time = at.clone();
            view.note = Some(Note::Failed {
                job: Box::new(job.clone()),
                reason: reason.clone(),
                detail: pods.iter().find_map(|p| p.failure.clone()),
            });
            return view;
        }
        JobOutcome::Running => {}
    }
    let Some(pod) = newest else {
        if let Some(message) = &job.failed_create {
            view.note = Some(Note::FailedCreate(message.clone()));
        }
        return view;
    };
    if let Some(why) = &pod.unschedulable {
        view.note = Some(match &pod.scale_up {
            Some(scale_up) => Note::AwaitingNode {
                why: why.clone(),
                scale_up: scale_up.clone(),
            },
            None => Note::Unschedulable(why.clone()),
        });
        return view;
    }
    if let Some(waiting) = &pod.waiting {
        if waiting.reason.is_fatal() {
            view.phase = PlatformPhase::Failed;
        }
        view.note = Some(Note::Waiting(waiting.clone()));
        return view;
    }
    if let Some(waited) = not_started_for(pod) {
        // A cluster reports a volume that cannot mount only in the pod's
        // events: say what to check rather than stay silent until the deadline.
        view.note = Some(Note::NotStarted {
            pod: pod.name.clone(),
            node: view.node.clone(),
            waited,
            namespace: job.namespace.clone(),
        });
        return view;
    }
    if view.node.is_some() {
        view.phase = PlatformPhase::Building;
    }
    view
}

fn merge_progress(job: &JobFacts, pods: &[&PodFacts]) -> Progress {
    match &job.outcome {
        JobOutcome::Complete { .. } => {
            let succeeded = pods.iter().find(|p| p.phase == PodPhase::Succeeded);
            match succeeded.map(|p| p.digest.clone()) {
                Some(Some(digest)) => Progress::Succeeded { digest },
                Some(None) => Progress::MergeFailed(MergeFailure::NoDigest),
                None if !overdue(job) => Progress::Merging(MergeStep::ReadingResult),
                None => Progress::Merging(MergeStep::Rerun),
            }
        }
        JobOutcome::Failed { .. } => Progress::MergeFailed(MergeFailure::Failed(
            pods.iter().find_map(|p| p.failure.clone()),
        )),
        JobOutcome::Running => {
            let stuck = pods.first().and_then(|p| {
                p.unschedulable
                    .clone()
                    .map(Note::Unschedulable)
                    .or_else(|| p.waiting.clone().map(Note::Waiting))
            });
            Progress::Merging(stuck.map_or(MergeStep::Pushing, MergeStep::Waiting))
        }
    }
}

/// A completed Job whose pod the operator has not seen for the grace period
/// since it saw the Job complete (never from the Job's server timestamp).
pub fn overdue(job: &JobFacts) -> bool {
    job.complete_for
        .is_some_and(|seen| seen.as_secs() > RESULT_GRACE_SECONDS)
}

/// Seconds the operator has seen a scheduled pod without any container
/// started, once that exceeds `NOT_STARTED_AFTER_SECONDS`.
fn not_started_for(pod: &PodFacts) -> Option<i64> {
    pod.node.as_ref()?;
    if pod.phase != PodPhase::Pending || pod.started {
        return None;
    }
    let waited = pod.not_started_for?.as_secs();
    (waited > NOT_STARTED_AFTER_SECONDS).then(|| i64::try_from(waited).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
