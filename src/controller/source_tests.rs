//! The source step, as a table of situations.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{GitSource, SourceStatus};
use crate::controller::observe::{
    JobFacts, JobFailure, JobOutcome, PodFacts, PodFailure, PodPhase,
};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const NEWER: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn git() -> GitSource {
    serde_json::from_value(serde_json::json!({
        "url": "https://git.example.com/team/app.git",
        "revision": "main",
    }))
    .unwrap()
}

fn desired(name: &str) -> Job {
    let mut job = Job::default();
    job.metadata.name = Some(name.to_string());
    job
}

fn job(name: &str, outcome: JobOutcome) -> JobFacts {
    JobFacts {
        name: name.to_string(),
        namespace: "ci".into(),
        build_id: None,
        deleting: false,
        outcome,
        start_time: None,
        failed_pods: 0,
        backoff_limit: 2,
        active_deadline_seconds: 300,
        attempt: None,
        key: format!("ci/{name}"),
        complete_for: None,
        failed_create: None,
    }
}

fn pod(
    job: &str,
    phase: PodPhase,
    commit: Option<&str>,
    failure: Option<PodFailure>,
) -> ResolvePod {
    ResolvePod {
        facts: PodFacts {
            name: format!("{job}-x"),
            job: Some(job.to_string()),
            created: None,
            node: Some("n".into()),
            phase,
            start_time: None,
            unschedulable: None,
            waiting: None,
            started: true,
            failure,
            digest: None,
            cache: None,
            key: format!("ci/{job}-x"),
            not_started_for: None,
            namespace: "ci".into(),
            scale_up: None,
        },
        commit: commit.map(str::to_string),
    }
}

fn known(commit: &str, job: &str) -> SourceStatus {
    SourceStatus {
        url: git().url,
        revision: "main".into(),
        commit: commit.into(),
        resolve_job: job.into(),
        message: String::new(),
    }
}

fn seen(jobs: Vec<JobFacts>, pods: Vec<ResolvePod>) -> SourceObservation {
    SourceObservation {
        jobs,
        pods,
        now: Time(Timestamp::now()),
    }
}

fn complete() -> JobOutcome {
    JobOutcome::Complete {
        at: Some(Time(Timestamp::now())),
    }
}

fn failed() -> JobOutcome {
    JobOutcome::Failed {
        reason: JobFailure::BackoffLimitExceeded,
        at: None,
    }
}

fn git_said(text: &str) -> PodFailure {
    PodFailure::Container {
        name: "resolve".into(),
        exit_code: 1,
        reason: "Error".into(),
        message: text.into(),
    }
}

#[test]
fn a_first_resolution_creates_the_resolve_job_and_builds_nothing() {
    let step = resolve(
        &git(),
        &desired("app-r1-resolve"),
        None,
        &seen(vec![], vec![]),
        None,
        None,
    );
    assert_eq!(step.source, Source::Resolving(None));
    assert_eq!(step.create.len(), 1);
    assert!(step.delete.is_empty());
}

#[test]
fn the_commit_of_a_completed_resolve_job_is_known_and_recorded_with_its_job() {
    let name = "app-r1-resolve";
    let observed = seen(
        vec![job(name, complete())],
        vec![pod(name, PodPhase::Succeeded, Some(COMMIT), None)],
    );
    let step = resolve(&git(), &desired(name), None, &observed, None, None);
    assert_eq!(step.source, Source::Known(known(COMMIT, name)));
    assert!(step.create.is_empty());
}

#[test]
fn a_recorded_commit_stands_when_the_resolve_job_and_its_pod_are_gone() {
    let name = "app-r1-resolve";
    let step = resolve(
        &git(),
        &desired(name),
        Some(&known(COMMIT, name)),
        &seen(vec![], vec![]),
        None,
        None,
    );
    assert_eq!(step.source, Source::Known(known(COMMIT, name)));
    assert!(
        step.create.is_empty(),
        "an unchanged source is not resolved again"
    );
}

#[test]
fn a_poll_runs_beside_the_known_commit_and_a_new_commit_replaces_it() {
    let (old, new) = ("app-r1-resolve", "app-r2-resolve");
    let before = known(COMMIT, old);
    // The new interval's Job is made; the build of the known commit goes on.
    let step = resolve(
        &git(),
        &desired(new),
        Some(&before),
        &seen(vec![job(old, complete())], vec![]),
        None,
        None,
    );
    assert_eq!(step.source, Source::Known(before.clone()));
    assert_eq!(step.create.len(), 1);
    assert!(
        step.delete.is_empty(),
        "the known commit's Job is kept until replaced"
    );
    // It found a newer commit: that is the one to build, and the older
    // run's Job goes.
    let observed = seen(
        vec![job(old, complete()), job(new, complete())],
        vec![pod(new, PodPhase::Succeeded, Some(NEWER), None)],
    );
    let step = resolve(&git(), &desired(new), Some(&before), &observed, None, None);
    assert_eq!(step.source, Source::Known(known(NEWER, new)));
    let step = resolve(
        &git(),
        &desired(new),
        Some(&known(NEWER, new)),
        &observed,
        None,
        None,
    );
    assert_eq!(step.delete, [old]);
}

#[test]
fn a_failed_poll_keeps_the_known_commit_and_says_why() {
    let (old, new) = ("app-r1-resolve", "app-r2-resolve");
    let observed = seen(
        vec![job(new, failed())],
        vec![pod(
            new,
            PodPhase::Failed,
            None,
            Some(git_said("fatal: unable to access: 503")),
        )],
    );
    let step = resolve(
        &git(),
        &desired(new),
        Some(&known(COMMIT, old)),
        &observed,
        None,
        None,
    );
    let Source::Known(source) = step.source else {
        panic!("the known commit stands");
    };
    assert_eq!(source.commit, COMMIT);
    assert!(source.message.contains("503"), "{}", source.message);
}

#[test]
fn a_failed_first_resolution_fails_and_a_retry_runs_it_again() {
    let name = "app-r1-resolve";
    let observed = seen(
        vec![job(name, failed())],
        vec![pod(
            name,
            PodPhase::Failed,
            None,
            Some(git_said("no branch or tag main")),
        )],
    );
    let step = resolve(&git(), &desired(name), None, &observed, None, None);
    assert!(
        matches!(step.source, Source::Failed { .. }),
        "{:?}",
        step.source
    );
    assert!(step.delete.is_empty() && step.create.is_empty());
    // `multiarch.dev/retry=1`: the failed Job is deleted, then made again
    // under the new attempt.
    let step = resolve(&git(), &desired(name), None, &observed, Some("1"), None);
    assert_eq!(step.source, Source::Resolving(None));
    assert_eq!(step.delete, [name]);
    assert_eq!(step.attempt.as_deref(), Some("1"));
    let step = resolve(
        &git(),
        &desired(name),
        None,
        &seen(vec![], vec![]),
        Some("1"),
        None,
    );
    let made = &step.create[0];
    assert_eq!(
        made.metadata.annotations.as_ref().unwrap()[crate::api::RETRY_ANNOTATION],
        "1"
    );
}

#[test]
fn another_revision_waits_for_its_own_commit() {
    let name = "app-r9-resolve";
    let mut other = git();
    other.revision = Some("release-1".into());
    let step = resolve(
        &other,
        &desired(name),
        Some(&known(COMMIT, "app-r1-resolve")),
        &seen(vec![], vec![]),
        None,
        None,
    );
    assert_eq!(
        step.source,
        Source::Resolving(None),
        "main's commit is not release-1's"
    );
    assert_eq!(step.create.len(), 1);
}

#[test]
fn poll_ticks_follow_the_interval_on_the_local_clock() {
    use crate::render::{poll_tick, until_next_tick};
    use std::time::Duration;
    let minute = Some(Duration::from_secs(60));
    assert_eq!(poll_tick(None, Duration::from_secs(1_000_000)), 0);
    assert_eq!(poll_tick(minute, Duration::from_secs(119)), 1);
    assert_eq!(poll_tick(minute, Duration::from_secs(120)), 2);
    assert_eq!(
        until_next_tick(Duration::from_secs(60), Duration::from_secs(119)),
        Duration::from_secs(1)
    );
    let g = git();
    assert_ne!(
        crate::render::source_run(&g, 1),
        crate::render::source_run(&g, 2)
    );
    assert_eq!(
        crate::render::source_run(&g, 1),
        crate::render::source_run(&g, 1)
    );
}
