//! Observe: the Jobs and Pods of one resource, as the watch caches hold
//! them, read once into facts (typed outcomes and reasons) that `decide`
//! works on. Nothing downstream reads a Job or Pod object again.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::render::BUILD_ID_LABEL;

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
    CreateContainerConfigError,
    CreateContainerError,
}

impl WaitingReason {
    fn parse(reason: &str) -> Option<Self> {
        Some(match reason {
            "ErrImagePull" => WaitingReason::ErrImagePull,
            "ImagePullBackOff" => WaitingReason::ImagePullBackOff,
            "InvalidImageName" => WaitingReason::InvalidImageName,
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
            WaitingReason::CreateContainerConfigError => "CreateContainerConfigError",
            WaitingReason::CreateContainerError => "CreateContainerError",
        }
    }

    /// Whether the container will not start without a change (a missing
    /// Secret, a wrong image).
    pub fn is_fatal(self) -> bool {
        !matches!(self, WaitingReason::ErrImagePull)
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
            digest: reported_digest(pod),
        }
    }
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

/// The digest the last container wrote to its termination message, if it
/// is one: the message is the builder's output, so it is checked.
fn reported_digest(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let terminated = c.state.as_ref()?.terminated.as_ref()?;
        if terminated.exit_code != 0 {
            return None;
        }
        parse_digest(terminated.message.as_deref()?)
    })
}

/// A `sha256:<64 hex>` digest alone on the message's last line.
pub fn parse_digest(message: &str) -> Option<String> {
    let line = message.trim().lines().last()?.trim();
    let hex = line.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| line.to_string())
}
