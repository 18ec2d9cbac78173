//! The source step of a git source: the revision is resolved to one commit
//! by a resolve Job before anything is built, so every platform builds
//! that commit and the build id names it. The operator reads no Secret:
//! the Job mounts the git Secret, and its pod's termination message is the
//! commit.
//!
//! A run is one resolution: the same URL and revision in the same poll
//! interval (or for good, without `pollInterval`) are the same run, so an
//! unchanged source is never resolved again. A poll never holds up the
//! build of the commit already known: it runs beside it, and only a new
//! commit starts a new build. A changed URL or revision waits for its
//! commit.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::decide::{attempt_of, overdue, with_attempt, Note, Progress};
use super::observe::{JobFacts, JobFailure, JobOutcome, PodFacts, PodPhase};
use crate::api::{GitSource, SourceStatus};
use crate::render::parse_resolved_commit;

/// A resolve pod, with the commit it reported once it succeeded.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvePod {
    pub facts: PodFacts,
    pub commit: Option<String>,
}

impl ResolvePod {
    pub fn of(pod: &Pod) -> Self {
        let commit = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .filter(|t| t.exit_code == 0)
            .find_map(|t| parse_resolved_commit(t.message.as_deref()?));
        ResolvePod {
            facts: PodFacts::of(pod),
            commit,
        }
    }
}

/// What the resolve Jobs of one resource showed.
#[derive(Clone, Debug)]
pub struct SourceObservation {
    /// Every resolve Job of the resource, of any run.
    pub jobs: Vec<JobFacts>,
    /// The pods of the current run's Job, newest first.
    pub pods: Vec<ResolvePod>,
    pub now: Time,
}

/// Where the source stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The commit to build.
    Known(SourceStatus),
    /// No commit of this URL and revision is known yet.
    Resolving(Option<Note>),
    /// The revision could not be resolved, and no commit of it is known.
    Failed {
        reason: JobFailure,
        detail: Option<super::observe::PodFailure>,
    },
}

impl Source {
    /// The commit to build, or the progress of a build that waits for it.
    pub fn into_known(self) -> Result<SourceStatus, Progress> {
        match self {
            Source::Known(source) => Ok(source),
            Source::Resolving(note) => Err(Progress::Resolving(note)),
            Source::Failed { reason, detail } => Err(Progress::SourceFailed { reason, detail }),
        }
    }
}

/// The source step's outcome: where the source stands, and the resolve
/// Jobs to create and delete.
#[derive(Clone, Debug)]
pub struct SourceStep {
    pub source: Source,
    pub create: Vec<Job>,
    pub delete: Vec<String>,
    /// The attempt the step acted under (a new `multiarch.dev/retry` value
    /// reruns a failed resolution).
    pub attempt: Option<String>,
}

/// Decides the source step. `desired` is the current run's resolve Job;
/// `known` the source the status records; `retry` and `handled` the
/// `multiarch.dev/retry` value asked for and the last one acted on.
pub fn resolve(
    git: &GitSource,
    desired: &Job,
    known: Option<&SourceStatus>,
    observed: &SourceObservation,
    retry: Option<&str>,
    handled: Option<String>,
) -> SourceStep {
    let name = desired.name_any();
    let revision = git.revision.clone().unwrap_or_default();
    // A commit of another URL or revision says nothing about this one.
    let known = known.filter(|k| k.url == git.url && k.revision == revision);
    let attempt = attempt_of(retry, handled);
    let mut step = SourceStep {
        source: Source::Resolving(None),
        create: Vec::new(),
        delete: Vec::new(),
        attempt: attempt.clone(),
    };
    // Older runs' Jobs are of no more use once their commit is recorded.
    let keep = |job: &str| job == name || known.is_some_and(|k| k.resolve_job == job);
    step.delete = observed
        .jobs
        .iter()
        .filter(|j| !j.deleting && !keep(&j.name))
        .map(|j| j.name.clone())
        .collect();
    if let Some(done) = known.filter(|k| k.resolve_job == name) {
        step.source = Source::Known(done.clone());
        return step;
    }
    let job = observed.jobs.iter().find(|j| j.name == name);
    let stale =
        job.is_some_and(|j| matches!(j.outcome, JobOutcome::Failed { .. }) && j.attempt != attempt);
    let outcome = match job {
        None => {
            step.create
                .push(with_attempt(desired.clone(), attempt.as_deref()));
            Source::Resolving(None)
        }
        // Deleted to run again: made again once gone.
        Some(j) if j.deleting => Source::Resolving(None),
        Some(_) if stale => {
            step.delete.push(name.clone());
            Source::Resolving(None)
        }
        Some(j) => run_outcome(git, &revision, &name, j, &observed.pods),
    };
    if outcome == Source::Resolving(Some(Note::Rerun)) {
        step.delete.push(name.clone());
    }
    step.source = match (outcome, known) {
        (Source::Known(found), _) => Source::Known(found),
        // A poll that fails or waits leaves the known commit standing; a
        // failed poll is said in the source's message.
        (Source::Failed { reason, detail }, Some(known)) => Source::Known(SourceStatus {
            message: super::report::poll_failure(&reason, detail.as_ref()),
            ..known.clone()
        }),
        (Source::Resolving(_), Some(known)) => Source::Known(known.clone()),
        (outcome, None) => outcome,
    };
    step
}

/// Where one resolve Job stands.
fn run_outcome(
    git: &GitSource,
    revision: &str,
    name: &str,
    job: &JobFacts,
    pods: &[ResolvePod],
) -> Source {
    match &job.outcome {
        JobOutcome::Complete { .. } => {
            let succeeded = pods.iter().find(|p| p.facts.phase == PodPhase::Succeeded);
            match succeeded.map(|p| p.commit.clone()) {
                Some(Some(commit)) => Source::Known(SourceStatus {
                    url: git.url.clone(),
                    revision: revision.to_string(),
                    commit,
                    resolve_job: name.to_string(),
                    message: String::new(),
                }),
                Some(None) => Source::Failed {
                    reason: JobFailure::Other("NoCommit".into()),
                    detail: None,
                },
                // Its pod's news may come later; gone for good, it runs again.
                None if !overdue(job) => Source::Resolving(None),
                None => Source::Resolving(Some(Note::Rerun)),
            }
        }
        JobOutcome::Failed { reason, .. } => Source::Failed {
            reason: reason.clone(),
            detail: pods.iter().find_map(|p| p.facts.failure.clone()),
        },
        JobOutcome::Running => {
            let waiting = pods.first().and_then(|p| {
                p.facts
                    .unschedulable
                    .clone()
                    .map(Note::Unschedulable)
                    .or_else(|| p.facts.waiting.clone().map(Note::Waiting))
            });
            Source::Resolving(waiting)
        }
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
