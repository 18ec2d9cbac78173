//! The state machine, as pure functions: from the resource, its rendered
//! plan and the Jobs and Pods observed, decide what to create and delete, the
//! new status, and the events that tell the story. No client here.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::api::{MultiArchImage, MultiArchImageStatus, Phase, PlatformPhase, PlatformStatus};
use crate::platform::Platform;
use crate::render::{self, BuilderImages, Plan, BUILD_ID_LABEL};

/// The longest message kept in status and events.
const MAX_MESSAGE: usize = 1024;
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Something worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
    /// The Job the event is about, if any: it keeps one platform's events
    /// apart from another's (events are deduplicated per related object).
    pub job: Option<String>,
}

/// What reconcile must do.
#[derive(Debug, Default)]
pub struct Decision {
    pub create: Vec<Job>,
    /// Jobs of superseded builds.
    pub delete: Vec<String>,
    pub status: MultiArchImageStatus,
    pub notices: Vec<Notice>,
}

/// What the API server showed for one resource.
pub struct Observed<'a> {
    pub jobs: &'a [Job],
    pub pods: &'a [Pod],
    pub now: Time,
}

/// Decides the next step of a valid resource.
pub fn decide(
    resource: &MultiArchImage,
    plan: &Plan,
    observed: &Observed,
    images: &BuilderImages,
) -> Decision {
    let old = resource.status.clone().unwrap_or_default();
    let same_build = old.build_id.as_deref() == Some(plan.build_id.as_str());
    let mut decision = Decision {
        delete: superseded_jobs(observed.jobs, &plan.build_id),
        ..Decision::default()
    };
    if !decision.delete.is_empty() {
        decision.notices.push(Notice {
            warning: false,
            reason: "Superseded",
            note: format!(
                "spec changed: build {} replaces the previous build; deleting its {} Job(s)",
                plan.build_id,
                decision.delete.len()
            ),
            job: None,
        });
    }
    let job_named = |name: &str| observed.jobs.iter().find(|j| j.name_any() == name);

    let mut platforms = Vec::new();
    for (platform, desired) in plan.platforms.iter().zip(&plan.build_jobs) {
        let name = desired.name_any();
        let current = job_named(&name);
        if current.is_none() {
            decision.create.push(desired.clone());
        }
        let pods = pods_of(observed.pods, &name);
        let previous = same_build
            .then(|| old.platforms.iter().find(|p| p.job == name))
            .flatten();
        platforms.push(observe_platform(
            platform,
            &name,
            current,
            &pods,
            previous,
            &observed.now,
        ));
    }

    let failed: Vec<&PlatformStatus> = platforms
        .iter()
        .filter(|p| p.phase == PlatformPhase::Failed)
        .collect();
    let ready = platforms
        .iter()
        .filter(|p| p.phase == PlatformPhase::Succeeded)
        .count();
    let mut status = MultiArchImageStatus {
        observed_generation: resource.metadata.generation,
        build_id: Some(plan.build_id.clone()),
        platforms_ready: Some(format!("{ready}/{}", platforms.len())),
        ..MultiArchImageStatus::default()
    };
    let (phase, reason, message) = if !failed.is_empty() {
        let why: Vec<String> = failed
            .iter()
            .map(|p| format!("{}: {}", p.platform, p.message))
            .collect();
        (
            Phase::Failed,
            "BuildFailed",
            truncate(&format!("build failed for {}", why.join("; "))),
        )
    } else if ready == platforms.len() {
        let digests: Vec<(Platform, String)> = plan
            .platforms
            .iter()
            .zip(&platforms)
            .map(|(p, s)| (p.clone(), s.digest.clone().unwrap_or_default()))
            .collect();
        let merge = render::merge_job(resource, &plan.build_id, &digests, images);
        let merge_name = merge.name_any();
        status.merge_job = Some(merge_name.clone());
        match job_named(&merge_name) {
            None => {
                decision.create.push(merge);
                (
                    Phase::Merging,
                    "Merging",
                    "every platform is built; pushing the image index".to_string(),
                )
            }
            Some(job) => {
                match merge_outcome(job, &pods_of(observed.pods, &merge_name), &observed.now) {
                    MergeOutcome::Running(note) => (Phase::Merging, "Merging", note),
                    MergeOutcome::Failed(why) => (
                        Phase::Failed,
                        "MergeFailed",
                        truncate(&format!("merge failed: {why}")),
                    ),
                    MergeOutcome::Pushed(digest) => {
                        status.short_digest = Some(short_digest(&digest));
                        status.image = Some(format!("{}@{digest}", resource.spec.image));
                        status.digest = Some(digest.clone());
                        let tags: Vec<String> = resource
                            .spec
                            .tags
                            .iter()
                            .map(|t| format!("{}:{t}", resource.spec.image))
                            .collect();
                        (
                            Phase::Succeeded,
                            "Succeeded",
                            format!("pushed image index {digest} to {}", tags.join(", ")),
                        )
                    }
                }
            }
        }
    } else if observed
        .jobs
        .iter()
        .any(|j| job_build_id(j) == Some(&plan.build_id))
    {
        let waiting: Vec<String> = platforms
            .iter()
            .filter(|p| p.phase == PlatformPhase::Pending && !p.message.is_empty())
            .map(|p| format!("{}: {}", p.platform, p.message))
            .collect();
        if waiting.is_empty() {
            (
                Phase::Building,
                "Building",
                format!(
                    "building {}/{} platforms",
                    platforms.len() - ready,
                    platforms.len()
                ),
            )
        } else {
            (Phase::Building, "Waiting", truncate(&waiting.join("; ")))
        }
    } else {
        (
            Phase::Pending,
            "Pending",
            "creating the build Jobs".to_string(),
        )
    };
    status.phase = Some(phase);
    status.platforms = platforms;
    status.conditions = conditions(
        &old,
        resource.metadata.generation,
        phase,
        reason,
        &message,
        &observed.now,
    );

    decision
        .notices
        .extend(notices(&old, same_build, &status, &message));
    decision.status = status;
    decision
}

/// Status of a resource whose spec is invalid: Failed, naming every field.
pub fn invalid(
    resource: &MultiArchImage,
    build_id: &str,
    errors: &str,
    jobs: &[Job],
    now: &Time,
) -> Decision {
    let old = resource.status.clone().unwrap_or_default();
    let message = truncate(&format!("invalid spec: {}", errors.replace('\n', "; ")));
    let status = MultiArchImageStatus {
        phase: Some(Phase::Failed),
        observed_generation: resource.metadata.generation,
        build_id: Some(build_id.to_string()),
        conditions: conditions(
            &old,
            resource.metadata.generation,
            Phase::Failed,
            "InvalidSpec",
            &message,
            now,
        ),
        ..MultiArchImageStatus::default()
    };
    let notices = if old.conditions.iter().any(|c| c.message == message) {
        Vec::new()
    } else {
        vec![Notice {
            warning: true,
            reason: "InvalidSpec",
            note: message,
            job: None,
        }]
    };
    Decision {
        create: Vec::new(),
        delete: superseded_jobs(jobs, build_id),
        status,
        notices,
    }
}

fn superseded_jobs(jobs: &[Job], build_id: &str) -> Vec<String> {
    jobs.iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter(|j| job_build_id(j).is_some_and(|id| id != build_id))
        .map(|j| j.name_any())
        .collect()
}

fn job_build_id(job: &Job) -> Option<&String> {
    job.metadata.labels.as_ref()?.get(BUILD_ID_LABEL)
}

/// The pods of one Job, newest first.
fn pods_of<'a>(pods: &'a [Pod], job_name: &str) -> Vec<&'a Pod> {
    let mut mine: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.labels().get(JOB_NAME_LABEL).map(String::as_str) == Some(job_name))
        .collect();
    mine.sort_by_key(|p| std::cmp::Reverse(p.creation_timestamp()));
    mine
}

fn job_condition<'a>(
    job: &'a Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// One platform's status from its Job and pods.
pub fn observe_platform(
    platform: &Platform,
    job_name: &str,
    job: Option<&Job>,
    pods: &[&Pod],
    previous: Option<&PlatformStatus>,
    now: &Time,
) -> PlatformStatus {
    let mut status = PlatformStatus {
        platform: platform.to_string(),
        phase: PlatformPhase::Pending,
        job: job_name.to_string(),
        node: None,
        digest: None,
        start_time: previous.and_then(|p| p.start_time.clone()),
        completion_time: None,
        message: String::new(),
    };
    let Some(job) = job else {
        return status;
    };
    let newest = pods.first().copied();
    if let Some(pod) = newest {
        status.node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if let Some(start) = pod.status.as_ref().and_then(|s| s.start_time.clone()) {
            status.start_time.get_or_insert(start);
        }
    }
    if status.start_time.is_none() {
        status.start_time = job.status.as_ref().and_then(|s| s.start_time.clone());
    }
    if job_condition(job, "Complete").is_some() {
        status.completion_time = job.status.as_ref().and_then(|s| s.completion_time.clone());
        let succeeded = pods.iter().find(|p| pod_phase(p) == "Succeeded");
        if let Some(pod) = succeeded {
            status.node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        }
        match succeeded.map(|p| reported_digest(p)) {
            Some(Some(digest)) => {
                status.phase = PlatformPhase::Succeeded;
                status.digest = Some(digest);
            }
            Some(None) => {
                status.phase = PlatformPhase::Failed;
                status.message =
                    "the build finished but reported no image digest in its termination message"
                        .into();
            }
            // The Job's news can come before its pod's: wait for the pod.
            None if !result_overdue(job, now) => status.phase = PlatformPhase::Building,
            None => {
                status.phase = PlatformPhase::Failed;
                status.message =
                    "the build Job completed but its succeeded pod, which carries the image digest, is gone"
                        .into();
            }
        }
        return status;
    }
    if let Some(failed) =
        job_condition(job, "Failed").or_else(|| job_condition(job, "FailureTarget"))
    {
        status.phase = PlatformPhase::Failed;
        status.completion_time = failed.last_transition_time.clone();
        let detail = pods.iter().find_map(|p| pod_failure(p));
        let reason = failed.reason.as_deref().unwrap_or("Failed");
        let spec = job.spec.as_ref();
        let head = match reason {
            "DeadlineExceeded" => format!(
                "exceeded spec.activeDeadlineSeconds ({}s)",
                spec.and_then(|s| s.active_deadline_seconds)
                    .unwrap_or_default()
            ),
            "BackoffLimitExceeded" => format!(
                "failed {} time(s), more than spec.backoffLimit ({})",
                job.status.as_ref().and_then(|s| s.failed).unwrap_or(1),
                spec.and_then(|s| s.backoff_limit).unwrap_or_default()
            ),
            other => format!("Job failed ({other})"),
        };
        let mounts = mounted_objects(job);
        let push_secret = mounts.iter().find(|m| m.contains("spec.pushSecret"));
        status.message = truncate(&match (detail, mounts.clone()) {
            // The builder could not read the mounted push secret.
            (Some(detail), _) if detail.contains(render::DOCKER_CONFIG_DIR) && push_secret.is_some() => {
                format!(
                    "{head}: {detail} (check {})",
                    push_secret.map(String::as_str).unwrap_or_default()
                )
            }
            (Some(detail), _) => format!("{head}: {detail}"),
            (None, mounts) if mounts.is_empty() => head,
            // Nothing reported why: a pod stuck before its first container
            // (a volume that cannot be mounted) says so only in its events.
            (None, mounts) => format!(
                "{head}; no container reported a result: a pod never starts while a volume it mounts is missing, so check {} in namespace {}",
                mounts.join(" and "),
                job.namespace().unwrap_or_default()
            ),
        });
        return status;
    }
    let Some(pod) = newest else {
        return status;
    };
    if let Some(why) = unschedulable(pod) {
        status.message = truncate(&format!("cannot be scheduled: {why}"));
        return status;
    }
    if let Some((fatal, why)) = waiting_problem(pod) {
        status.message = truncate(&why);
        if fatal {
            status.phase = PlatformPhase::Failed;
        }
        return status;
    }
    if let Some(waited) = not_started_for(pod, now) {
        // A cluster reports a volume that cannot mount only in the pod's
        // events: say what to check rather than stay silent until the deadline.
        let mounts = mounted_objects(job);
        let check = if mounts.is_empty() {
            String::new()
        } else {
            format!(
                "; a missing volume keeps a pod there: check {} in namespace {}",
                mounts.join(" and "),
                job.namespace().unwrap_or_default()
            )
        };
        status.message = truncate(&format!(
            "pod {} on node {} has started no container after {waited}s{check}",
            pod.name_any(),
            status.node.as_deref().unwrap_or("?")
        ));
        return status;
    }
    if status.node.is_some() {
        status.phase = PlatformPhase::Building;
    }
    status
}

/// How long after a Job completes its succeeded pod may still be unseen (the
/// Job's and the pod's changes arrive separately) before it counts as gone.
const RESULT_GRACE_SECONDS: i64 = 30;

fn result_overdue(job: &Job, now: &Time) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .is_some_and(|done| now.0.duration_since(done.0).as_secs() > RESULT_GRACE_SECONDS)
}

/// How long a scheduled pod may wait for its first container before the
/// platform's message says so.
const NOT_STARTED_AFTER_SECONDS: i64 = 60;

/// Seconds a scheduled pod has waited without starting any container, once
/// that exceeds `NOT_STARTED_AFTER_SECONDS`.
fn not_started_for(pod: &Pod, now: &Time) -> Option<i64> {
    pod.spec.as_ref()?.node_name.as_ref()?;
    if pod_phase(pod) != "Pending" {
        return None;
    }
    let started = all_statuses(pod).iter().any(|c| {
        c.state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    });
    let created = pod.metadata.creation_timestamp.as_ref()?;
    let waited = now.0.duration_since(created.0).as_secs();
    (!started && waited > NOT_STARTED_AFTER_SECONDS).then_some(waited)
}

/// The Secrets and ConfigMap a build Job's pod mounts, each with the spec
/// field that names it (the volume names are those `render` gives them).
fn mounted_objects(job: &Job) -> Vec<String> {
    let volumes = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let secret = v.secret.as_ref().and_then(|s| s.secret_name.as_deref());
            let config_map = v.config_map.as_ref().map(|c| c.name.as_str());
            match (v.name.as_str(), secret, config_map) {
                ("push-secret", Some(name), _) => Some(format!(
                    "Secret {name:?} (spec.pushSecret: type kubernetes.io/dockerconfigjson, key .dockerconfigjson)"
                )),
                ("git-credentials", Some(name), _) => {
                    Some(format!("Secret {name:?} (spec.source.git.secretRef)"))
                }
                ("source", _, Some(name)) => {
                    Some(format!("ConfigMap {name:?} (spec.source.configMap)"))
                }
                _ => None,
            }
        })
        .collect()
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
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

/// Why a pod failed, from the first container that failed.
fn pod_failure(pod: &Pod) -> Option<String> {
    if let Some(reason) = pod.status.as_ref().and_then(|s| s.reason.as_deref()) {
        if pod_phase(pod) == "Failed"
            && all_statuses(pod).iter().all(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_none()
            })
        {
            let message = pod
                .status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_default();
            return Some(format!("pod {reason}: {message}"));
        }
    }
    all_statuses(pod).into_iter().find_map(|c| {
        let terminated = c.state.as_ref()?.terminated.as_ref()?;
        if terminated.exit_code == 0 {
            return None;
        }
        let reason = terminated.reason.as_deref().unwrap_or("Error");
        let mut text = if reason == "OOMKilled" {
            format!(
                "container {} ran out of memory (OOMKilled); raise spec.resources.limits.memory",
                c.name
            )
        } else {
            format!(
                "container {} exited with code {} ({reason})",
                c.name, terminated.exit_code
            )
        };
        if let Some(message) = terminated
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            text.push_str(": ");
            text.push_str(&tail(message, 8));
        }
        Some(text)
    })
}

/// The scheduler's reason, while the pod cannot be placed on any node.
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

/// A container stuck before it can start; `true` when it will not recover
/// without a change (a missing Secret, a wrong image).
fn waiting_problem(pod: &Pod) -> Option<(bool, String)> {
    all_statuses(pod).into_iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        let fatal = match reason {
            "ImagePullBackOff"
            | "InvalidImageName"
            | "CreateContainerConfigError"
            | "CreateContainerError" => true,
            "ErrImagePull" => false,
            _ => return None,
        };
        let message = waiting.message.clone().unwrap_or_default();
        Some((
            fatal,
            format!("container {} cannot start: {reason}: {message}", c.name),
        ))
    })
}

enum MergeOutcome {
    Running(String),
    Failed(String),
    Pushed(String),
}

fn merge_outcome(job: &Job, pods: &[&Pod], now: &Time) -> MergeOutcome {
    if job_condition(job, "Complete").is_some() {
        let succeeded = pods.iter().find(|p| pod_phase(p) == "Succeeded");
        return match succeeded.map(|p| reported_digest(p)) {
            Some(Some(digest)) => MergeOutcome::Pushed(digest),
            Some(None) => MergeOutcome::Failed("the merge finished but reported no index digest".into()),
            None if !result_overdue(job, now) => MergeOutcome::Running("reading the merge's result".into()),
            None => MergeOutcome::Failed(
                "the merge Job completed but its succeeded pod, which carries the index digest, is gone".into(),
            ),
        };
    }
    if job_condition(job, "Failed").is_some() || job_condition(job, "FailureTarget").is_some() {
        let why = pods
            .iter()
            .find_map(|p| pod_failure(p))
            .unwrap_or_else(|| "the merge Job failed".into());
        return MergeOutcome::Failed(why);
    }
    match pods
        .first()
        .and_then(|p| unschedulable(p).or_else(|| waiting_problem(p).map(|w| w.1)))
    {
        Some(why) => MergeOutcome::Running(truncate(&format!("merge waiting: {why}"))),
        None => MergeOutcome::Running("pushing the image index".into()),
    }
}

/// kstatus conditions: `Ready`, plus `Reconciling` while work is under way
/// and `Stalled` when it cannot go on without a change.
fn conditions(
    old: &MultiArchImageStatus,
    generation: Option<i64>,
    phase: Phase,
    reason: &str,
    message: &str,
    now: &Time,
) -> Vec<Condition> {
    let previous: BTreeMap<&str, &Condition> = old
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c))
        .collect();
    let make = |type_: &str, on: bool, reason: &str, message: &str| {
        let status = if on { "True" } else { "False" };
        let since = previous
            .get(type_)
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: generation,
            last_transition_time: since,
        }
    };
    let done = matches!(phase, Phase::Succeeded | Phase::Failed);
    let mut conditions = vec![make("Ready", phase == Phase::Succeeded, reason, message)];
    if !done {
        conditions.push(make("Reconciling", true, reason, message));
    }
    if phase == Phase::Failed {
        conditions.push(make("Stalled", true, reason, message));
    }
    conditions
}

/// Events for what changed since the last status.
fn notices(
    old: &MultiArchImageStatus,
    same_build: bool,
    new: &MultiArchImageStatus,
    message: &str,
) -> Vec<Notice> {
    let mut notices = Vec::new();
    if !same_build {
        notices.push(Notice {
            warning: false,
            reason: "BuildStarted",
            note: format!(
                "build {} of {} platform(s): {}",
                new.build_id.as_deref().unwrap_or_default(),
                new.platforms.len(),
                new.platforms
                    .iter()
                    .map(|p| p.platform.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            job: None,
        });
    }
    for platform in &new.platforms {
        let before = same_build
            .then(|| {
                old.platforms
                    .iter()
                    .find(|p| p.platform == platform.platform)
            })
            .flatten();
        let changed = |f: fn(&PlatformStatus) -> String| before.map(f) != Some(f(platform));
        if changed(|p| format!("{:?}", p.phase))
            || (changed(|p| p.message.clone()) && !platform.message.is_empty())
        {
            let note = match platform.phase {
                PlatformPhase::Pending if platform.message.is_empty() => continue,
                PlatformPhase::Pending => format!("{}: {}", platform.platform, platform.message),
                PlatformPhase::Building => format!(
                    "{} building on node {}",
                    platform.platform,
                    platform.node.as_deref().unwrap_or("?")
                ),
                PlatformPhase::Succeeded => format!(
                    "{} built on node {}: {}",
                    platform.platform,
                    platform.node.as_deref().unwrap_or("?"),
                    platform.digest.as_deref().unwrap_or_default()
                ),
                PlatformPhase::Failed => {
                    format!("{} failed: {}", platform.platform, platform.message)
                }
            };
            let (warning, reason) = match platform.phase {
                PlatformPhase::Pending if platform.message.starts_with("cannot be scheduled") => {
                    (true, "Unschedulable")
                }
                PlatformPhase::Pending => (true, "PlatformWaiting"),
                PlatformPhase::Building => (false, "PlatformBuilding"),
                PlatformPhase::Succeeded => (false, "PlatformBuilt"),
                PlatformPhase::Failed => (true, "PlatformFailed"),
            };
            notices.push(Notice {
                warning,
                reason,
                note,
                job: Some(platform.job.clone()),
            });
        }
    }
    let phase_changed = !same_build || old.phase != new.phase;
    match new.phase {
        Some(Phase::Merging) if phase_changed => notices.push(Notice {
            warning: false,
            reason: "Merging",
            note: format!(
                "every platform is built; merge Job {} pushes the index",
                new.merge_job.as_deref().unwrap_or_default()
            ),
            job: None,
        }),
        Some(Phase::Succeeded) if phase_changed => notices.push(Notice {
            warning: false,
            reason: "Succeeded",
            note: message.to_string(),
            job: None,
        }),
        Some(Phase::Failed) if phase_changed => notices.push(Notice {
            warning: true,
            reason: "Failed",
            note: message.to_string(),
            job: None,
        }),
        _ => {}
    }
    notices
}

fn short_digest(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_MESSAGE {
        return text.to_string();
    }
    let mut end = MAX_MESSAGE - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
