//! Observe: the Jobs and Pods of one resource, as the watch caches hold
//! them, read once into facts (typed outcomes and reasons) that `decide`
//! works on. Nothing downstream reads a Job or Pod object again.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

pub use super::sightings::Sightings;
use crate::api::RETRY_ANNOTATION;
use crate::render::BUILD_ID_LABEL;
use crate::termination::{self, BuildReport, CacheOutcome};

/// The label the Job controller puts on its pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// What the caches showed for one resource, at one instant.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Every Job of the resource, of any build.
    pub jobs: Vec<JobFacts>,
    /// The pods of the current build's Jobs.
    pub pods: Vec<PodFacts>,
    pub now: Time,
}

impl Observation {
    /// Reads the objects into facts.
    pub fn of(jobs: &[Job], pods: &[Pod], now: Time) -> Self {
        Observation {
            jobs: jobs.iter().map(JobFacts::of).collect(),
            pods: pods.iter().map(PodFacts::of).collect(),
            now,
        }
    }

    /// Adds how long the operator has seen each timed fact (a Job complete,
    /// a scheduled pod with no container started), on its own monotonic
    /// clock: no decision compares a server timestamp with the local
    /// clock, which may run ahead of the API server's.
    pub fn timed(self, sightings: &Sightings) -> Self {
        self.timed_at(sightings, Instant::now())
    }

    /// `timed`, as of `at`.
    pub fn timed_at(mut self, sightings: &Sightings, at: Instant) -> Self {
        self.jobs = self
            .jobs
            .into_iter()
            .map(|job| job.timed_at(sightings, at))
            .collect();
        for pod in &mut self.pods {
            if pod.node.is_some() && pod.phase == PodPhase::Pending && !pod.started {
                pod.not_started_for =
                    Some(sightings.seen_for(&format!("{}/not-started", pod.key), at));
            }
        }
        sightings.forget_older_than(at);
        self
    }

    /// Adds what the cluster's Events say of these Jobs and pods: a pod the
    /// Job controller could not create (`FailedCreate`: Pod Security, a
    /// missing ServiceAccount, quota, a webhook), and a pod that made the
    /// cluster autoscaler add a node (`TriggeredScaleUp`). Each is the
    /// newest such Event about the object (by uid, or by name in tests).
    pub fn with_events(mut self, events: &[Event]) -> Self {
        let about = |kind: &str, reason: &str, key: &str, name: &str, namespace: &str| {
            events
                .iter()
                .filter(|e| {
                    let o = &e.involved_object;
                    e.reason.as_deref() == Some(reason)
                        && o.kind.as_deref() == Some(kind)
                        && o.namespace.as_deref() == Some(namespace)
                        && match o.uid.as_deref() {
                            Some(uid) if !key.contains('/') => uid == key,
                            _ => o.name.as_deref() == Some(name),
                        }
                })
                .max_by_key(|e| (e.count.unwrap_or(1), event_time(e)))
                .and_then(|e| e.message.clone())
        };
        for job in &mut self.jobs {
            job.failed_create = about("Job", "FailedCreate", &job.key, &job.name, &job.namespace);
        }
        for pod in &mut self.pods {
            pod.scale_up = about(
                "Pod",
                "TriggeredScaleUp",
                &pod.key,
                &pod.name,
                &pod.namespace,
            );
        }
        self
    }

    pub fn job(&self, name: &str) -> Option<&JobFacts> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The pods of one Job, newest first.
    pub fn pods_of(&self, job: &str) -> Vec<&PodFacts> {
        let mut mine: Vec<&PodFacts> = self
            .pods
            .iter()
            .filter(|p| p.job.as_deref() == Some(job))
            .collect();
        mine.sort_by_key(|p| std::cmp::Reverse(p.created.clone()));
        mine
    }
}

/// One Job, as far as the operator cares.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFacts {
    pub name: String,
    pub namespace: String,
    /// The build the Job belongs to (its build-id label).
    pub build_id: Option<String>,
    /// Being deleted already.
    pub deleting: bool,
    pub outcome: JobOutcome,
    pub start_time: Option<Time>,
    /// Pods that failed so far.
    pub failed_pods: i32,
    pub backoff_limit: i32,
    pub active_deadline_seconds: i64,
    /// The `multiarch.dev/retry` value the Job was made under.
    pub attempt: Option<String>,
    /// Its uid (or namespace/name): what the operator's sightings are kept by.
    pub key: String,
    /// How long the operator has seen it complete, once timed.
    pub complete_for: Option<Duration>,
    /// The Job controller's newest `FailedCreate` message, if any.
    pub failed_create: Option<String>,
}

/// Where a Job stands, from its conditions.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    Running,
    Complete {
        at: Option<Time>,
    },
    Failed {
        reason: JobFailure,
        at: Option<Time>,
    },
}

/// The Job controller's reason for a failed Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobFailure {
    DeadlineExceeded,
    BackoffLimitExceeded,
    Other(String),
}

impl JobFacts {
    /// Adds how long the operator has seen the Job complete (see
    /// `Observation::timed`).
    pub fn timed(self, sightings: &Sightings) -> Self {
        self.timed_at(sightings, Instant::now())
    }

    pub fn timed_at(mut self, sightings: &Sightings, at: Instant) -> Self {
        if let JobOutcome::Complete { .. } = self.outcome {
            self.complete_for = Some(sightings.seen_for(&format!("{}/complete", self.key), at));
        }
        self
    }

    pub fn of(job: &Job) -> Self {
        let status = job.status.as_ref();
        let spec = job.spec.as_ref();
        let outcome = if condition(job, "Complete").is_some() {
            JobOutcome::Complete {
                at: status.and_then(|s| s.completion_time.clone()),
            }
        } else if let Some(failed) =
            condition(job, "Failed").or_else(|| condition(job, "FailureTarget"))
        {
            JobOutcome::Failed {
                reason: match failed.reason.as_deref() {
                    Some("DeadlineExceeded") => JobFailure::DeadlineExceeded,
                    Some("BackoffLimitExceeded") => JobFailure::BackoffLimitExceeded,
                    other => JobFailure::Other(other.unwrap_or("Failed").to_string()),
                },
                at: failed.last_transition_time.clone(),
            }
        } else {
            JobOutcome::Running
        };
        JobFacts {
            name: job.name_any(),
            namespace: job.namespace().unwrap_or_default(),
            build_id: job.labels().get(BUILD_ID_LABEL).cloned(),
            deleting: job.metadata.deletion_timestamp.is_some(),
            outcome,
            start_time: status.and_then(|s| s.start_time.clone()),
            failed_pods: status.and_then(|s| s.failed).unwrap_or(1),
            backoff_limit: spec.and_then(|s| s.backoff_limit).unwrap_or_default(),
            active_deadline_seconds: spec
                .and_then(|s| s.active_deadline_seconds)
                .unwrap_or_default(),
            attempt: job.annotations().get(RETRY_ANNOTATION).cloned(),
            key: key_of(job),
            complete_for: None,
            failed_create: None,
        }
    }
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// One pod, as far as the operator cares.
#[derive(Clone, Debug, PartialEq)]
pub struct PodFacts {
    pub name: String,
    /// The Job that made it.
    pub job: Option<String>,
    pub created: Option<Time>,
    pub node: Option<String>,
    pub phase: PodPhase,
    pub start_time: Option<Time>,
    /// The scheduler's reason, while no node fits.
    pub unschedulable: Option<String>,
    /// The first container stuck before it can start, for a reason the
    /// operator knows.
    pub waiting: Option<Waiting>,
    /// Some container is running or has terminated.
    pub started: bool,
    /// Why the pod failed, from the first failure it shows.
    pub failure: Option<PodFailure>,
    /// The digest a container that exited 0 wrote as its termination message.
    pub digest: Option<String>,
    /// What the same message says of the build cache, if it used one.
    pub cache: Option<CacheOutcome>,
    /// Its uid (or namespace/name).
    pub key: String,
    /// How long the operator has seen it scheduled with no container
    /// started, once timed.
    pub not_started_for: Option<Duration>,
    pub namespace: String,
    /// The cluster autoscaler's `TriggeredScaleUp` message: a node is coming.
    pub scale_up: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// A container waiting before it can start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub container: String,
    pub reason: WaitingReason,
    pub message: String,
}

/// The kubelet's waiting reasons the operator acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitingReason {
    ErrImagePull,
    ImagePullBackOff,
    InvalidImageName,
    ErrImageNeverPull,
    CreateContainerConfigError,
    CreateContainerError,
}

impl WaitingReason {
    fn parse(reason: &str) -> Option<Self> {
        Some(match reason {
            "ErrImagePull" => WaitingReason::ErrImagePull,
            "ImagePullBackOff" => WaitingReason::ImagePullBackOff,
            "InvalidImageName" => WaitingReason::InvalidImageName,
            "ErrImageNeverPull" => WaitingReason::ErrImageNeverPull,
            "CreateContainerConfigError" => WaitingReason::CreateContainerConfigError,
            "CreateContainerError" => WaitingReason::CreateContainerError,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WaitingReason::ErrImagePull => "ErrImagePull",
            WaitingReason::ImagePullBackOff => "ImagePullBackOff",
            WaitingReason::InvalidImageName => "InvalidImageName",
            WaitingReason::ErrImageNeverPull => "ErrImageNeverPull",
            WaitingReason::CreateContainerConfigError => "CreateContainerConfigError",
            WaitingReason::CreateContainerError => "CreateContainerError",
        }
    }

    /// Whether the container will never start without a change to the
    /// spec. The kubelet retries every other reason by itself: a pull
    /// back-off clears when a registry blip or a rate limit does, a missing
    /// Secret key when the Secret appears. Those are reported and waited
    /// out until the Job's deadline. Follows pkg/kubelet/images/types.go
    /// (ErrInvalidImageName, ErrImageNeverPull are never retried).
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            WaitingReason::InvalidImageName | WaitingReason::ErrImageNeverPull
        )
    }
}

/// Why a pod failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodFailure {
    /// The pod failed before any container terminated (evicted, say).
    Pod { reason: String, message: String },
    /// A container exited non-zero.
    Container {
        name: String,
        exit_code: i32,
        reason: String,
        /// Its termination message (or log tail), as the kubelet kept it.
        message: String,
    },
}

impl PodFacts {
    pub fn of(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Pending,
        };
        let containers = all_statuses(pod);
        let report = reported(pod).unwrap_or_default();
        let started = containers.iter().any(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        });
        PodFacts {
            name: pod.name_any(),
            job: pod.labels().get(JOB_NAME_LABEL).cloned(),
            created: pod.metadata.creation_timestamp.clone(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            phase,
            start_time: status.and_then(|s| s.start_time.clone()),
            unschedulable: unschedulable(pod),
            waiting: containers.iter().find_map(|c| waiting(c)),
            started,
            failure: failure(pod, phase, &containers),
            digest: report.digest,
            cache: report.cache,
            key: key_of(pod),
            not_started_for: None,
            namespace: pod.namespace().unwrap_or_default(),
            scale_up: None,
        }
    }
}

/// When an Event last happened, as its writer stamped it.
fn event_time(event: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
}

/// An object's uid, or namespace/name when it has none (in tests).
fn key_of<K: kube::Resource>(object: &K) -> String {
    let meta = object.meta();
    meta.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        )
    })
}

fn all_statuses(pod: &Pod) -> Vec<&ContainerStatus> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .collect()
}

fn unschedulable(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    (scheduled.status == "False" && scheduled.reason.as_deref() == Some("Unschedulable")).then(
        || {
            scheduled
                .message
                .clone()
                .unwrap_or_else(|| "no node fits".into())
        },
    )
}

fn waiting(container: &ContainerStatus) -> Option<Waiting> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    Some(Waiting {
        container: container.name.clone(),
        reason: WaitingReason::parse(waiting.reason.as_deref()?)?,
        message: waiting.message.clone().unwrap_or_default(),
    })
}

fn failure(pod: &Pod, phase: PodPhase, containers: &[&ContainerStatus]) -> Option<PodFailure> {
    let terminated = |c: &&ContainerStatus| c.state.as_ref().and_then(|s| s.terminated.clone());
    let status = pod.status.as_ref();
    if let Some(reason) = status.and_then(|s| s.reason.clone()) {
        if phase == PodPhase::Failed && containers.iter().all(|c| terminated(c).is_none()) {
            return Some(PodFailure::Pod {
                reason,
                message: status.and_then(|s| s.message.clone()).unwrap_or_default(),
            });
        }
    }
    containers.iter().find_map(|c| {
        let terminated = terminated(c)?;
        (terminated.exit_code != 0).then(|| PodFailure::Container {
            name: c.name.clone(),
            exit_code: terminated.exit_code,
            reason: terminated.reason.unwrap_or_else(|| "Error".into()),
            message: terminated.message.unwrap_or_default(),
        })
    })
}

/// What the last container wrote to its termination message, once it
/// exited 0 with a digest in it: the message is the builder's output, so
/// it is checked (`crate::termination::parse`).
fn reported(pod: &Pod) -> Option<BuildReport> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let terminated = c.state.as_ref()?.terminated.as_ref()?;
        if terminated.exit_code != 0 {
            return None;
        }
        let report = termination::parse(terminated.message.as_deref()?);
        report.digest.is_some().then_some(report)
    })
}

/// The digest of a termination message (either form).
pub fn parse_digest(message: &str) -> Option<String> {
    termination::parse(message).digest
}
