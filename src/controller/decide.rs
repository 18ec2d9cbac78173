//! Decide: from the plan and the observed facts, what to create and delete
//! and where each platform and the whole build stand. Pure, and free of
//! words: `report` turns the outcome into status messages and Events.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::observe::{
    JobFacts, JobFailure, JobOutcome, Observation, PodFacts, PodFailure, PodPhase, Waiting,
};
use crate::api::{PlatformPhase, PlatformStatus};
use crate::platform::Platform;
use crate::render::Plan;
use crate::validate::ValidationErrors;

/// How long after a Job completes its succeeded pod may still be unseen (the
/// Job's and the pod's changes arrive separately) before it counts as gone.
const RESULT_GRACE_SECONDS: i64 = 30;

/// How long a scheduled pod may wait for its first container before the
/// platform's message says so.
const NOT_STARTED_AFTER_SECONDS: i64 = 60;

/// What reconcile must do, and the facts `report` describes.
#[derive(Clone, Debug)]
pub struct Decision {
    pub build_id: String,
    pub create: Vec<Job>,
    /// Jobs of superseded builds.
    pub delete: Vec<String>,
    /// One per planned platform, in plan order.
    pub platforms: Vec<PlatformView>,
    pub progress: Progress,
    /// The merge Job, once every platform is built.
    pub merge_job: Option<String>,
}

/// Where one platform stands.
#[derive(Clone, Debug, PartialEq)]
pub struct PlatformView {
    pub platform: Platform,
    pub job: String,
    pub phase: PlatformPhase,
    pub node: Option<String>,
    pub digest: Option<String>,
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
    /// Completed long ago, and its succeeded pod is nowhere.
    ResultGone,
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
}

#[derive(Clone, Debug, PartialEq)]
pub enum MergeStep {
    Pushing,
    /// The Job completed; its pod's result is not seen yet.
    ReadingResult,
    Waiting(Note),
}

#[derive(Clone, Debug, PartialEq)]
pub enum MergeFailure {
    NoDigest,
    ResultGone,
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
        )
    }
}

/// Decides the next step of a valid resource. `previous` is the status the
/// resource carries, if it describes this same build.
pub fn decide(
    plan: &Plan,
    observed: &Observation,
    previous: Option<&[PlatformStatus]>,
) -> Decision {
    let mut create = Vec::new();
    let mut platforms = Vec::new();
    for (platform, desired) in plan.platforms.iter().zip(&plan.build_jobs) {
        let name = kube::ResourceExt::name_any(desired);
        let job = observed.job(&name);
        if job.is_none() {
            create.push(desired.clone());
        }
        let before = previous.and_then(|p| p.iter().find(|s| s.job == name));
        platforms.push(platform_view(
            platform,
            &name,
            job,
            &observed.pods_of(&name),
            before.and_then(|b| b.start_time.clone()),
            &observed.now,
        ));
    }

    let ready = platforms
        .iter()
        .filter(|p| p.phase == PlatformPhase::Succeeded)
        .count();
    let mut merge_job = None;
    let progress = if platforms.iter().any(|p| p.phase == PlatformPhase::Failed) {
        Progress::PlatformsFailed
    } else if ready == platforms.len() {
        let name = plan.merge.name();
        merge_job = Some(name.clone());
        match observed.job(&name) {
            None => {
                let digests: Vec<String> = platforms
                    .iter()
                    .map(|p| p.digest.clone().unwrap_or_default())
                    .collect();
                create.push(plan.merge.job(&digests));
                Progress::MergeStarting
            }
            Some(job) => merge_progress(job, &observed.pods_of(&name), &observed.now),
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
    Decision {
        build_id: plan.build_id.clone(),
        create,
        delete: superseded(observed, &plan.build_id),
        platforms,
        progress,
        merge_job,
    }
}

/// The decision for a resource whose spec is invalid: nothing runs, and
/// the Jobs of an earlier build stop.
pub fn invalid(build_id: &str, errors: ValidationErrors, observed: &Observation) -> Decision {
    Decision {
        build_id: build_id.to_string(),
        create: Vec::new(),
        delete: superseded(observed, build_id),
        platforms: Vec::new(),
        progress: Progress::Invalid(errors),
        merge_job: None,
    }
}

fn superseded(observed: &Observation, build_id: &str) -> Vec<String> {
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
    now: &Time,
) -> PlatformView {
    let mut view = PlatformView {
        platform: platform.clone(),
        job: job_name.to_string(),
        phase: PlatformPhase::Pending,
        node: None,
        digest: None,
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
                None if !overdue(at.as_ref(), now) => view.phase = PlatformPhase::Building,
                None => {
                    view.phase = PlatformPhase::Failed;
                    view.note = Some(Note::ResultGone);
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
        return view;
    };
    if let Some(why) = &pod.unschedulable {
        view.note = Some(Note::Unschedulable(why.clone()));
        return view;
    }
    if let Some(waiting) = &pod.waiting {
        if waiting.reason.is_fatal() {
            view.phase = PlatformPhase::Failed;
        }
        view.note = Some(Note::Waiting(waiting.clone()));
        return view;
    }
    if let Some(waited) = not_started_for(pod, now) {
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

fn merge_progress(job: &JobFacts, pods: &[&PodFacts], now: &Time) -> Progress {
    match &job.outcome {
        JobOutcome::Complete { at } => {
            let succeeded = pods.iter().find(|p| p.phase == PodPhase::Succeeded);
            match succeeded.map(|p| p.digest.clone()) {
                Some(Some(digest)) => Progress::Succeeded { digest },
                Some(None) => Progress::MergeFailed(MergeFailure::NoDigest),
                None if !overdue(at.as_ref(), now) => Progress::Merging(MergeStep::ReadingResult),
                None => Progress::MergeFailed(MergeFailure::ResultGone),
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

fn overdue(completed: Option<&Time>, now: &Time) -> bool {
    completed.is_some_and(|done| now.0.duration_since(done.0).as_secs() > RESULT_GRACE_SECONDS)
}

/// Seconds a scheduled pod has waited without starting any container, once
/// that exceeds `NOT_STARTED_AFTER_SECONDS`.
fn not_started_for(pod: &PodFacts, now: &Time) -> Option<i64> {
    pod.node.as_ref()?;
    if pod.phase != PodPhase::Pending || pod.started {
        return None;
    }
    let waited = now.0.duration_since(pod.created.as_ref()?.0).as_secs();
    (waited > NOT_STARTED_AFTER_SECONDS).then_some(waited)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
