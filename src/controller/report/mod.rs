//! Report: the decision in words. Builds the new status (messages,
//! kstatus conditions), finds what changed since the status the resource
//! carries (once, for Events and metrics alike), and writes the Events.

mod build_on;
mod words;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::decide::{Decision, Note, PlatformView, Progress};
use crate::api::{
    CacheState, MultiArchImage, MultiArchImageStatus, Phase, PlatformPhase, PlatformStatus,
    SourceStatus,
};
use crate::platform::Platform;
use crate::render::Mounted;

pub use words::{bounded, poll_failure, MAX_MESSAGE};

/// Something worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    /// At most `MAX_MESSAGE` bytes, cleaned.
    pub note: String,
    /// The Job the event is about, if any: it keeps one platform's events
    /// apart from another's (events are deduplicated per related object).
    pub job: Option<String>,
}

/// What changed from the status the resource carries to the new one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transitions {
    /// The status described another build (or none).
    pub new_build: bool,
    /// The phase the resource entered, if it changed.
    pub entered: Option<Phase>,
    /// Platforms whose phase or message changed, by index in the new status.
    pub platforms: Vec<PlatformChange>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlatformChange {
    pub index: usize,
    /// The phase it entered, if it changed.
    pub entered: Option<PlatformPhase>,
    pub message_changed: bool,
}

/// The decision in words.
#[derive(Clone, Debug)]
pub struct Report {
    pub status: MultiArchImageStatus,
    pub transitions: Transitions,
    pub events: Vec<Notice>,
}

/// Describes `decision` for `resource`, whose pods mount `mounts`.
pub fn report(
    resource: &MultiArchImage,
    decision: &Decision,
    mounts: &[Mounted],
    now: &Time,
) -> Report {
    let old = resource.status.clone().unwrap_or_default();
    // Where each platform builds: its own nodes, or its spec.buildOn entry's.
    let built_on: Vec<_> = decision
        .platforms
        .iter()
        .map(|p| crate::render::node_platform(&resource.spec, &p.platform))
        .collect();
    let messages: Vec<String> = decision
        .platforms
        .iter()
        .zip(&built_on)
        .map(|(p, node)| platform_message(p, node, mounts))
        .collect();
    let views: Vec<_> = decision.platforms.iter().zip(messages.clone()).collect();
    let (reason, message) = words::progress_message(
        &decision.progress,
        &views,
        &resource.spec.image,
        &resource.spec.tags,
    );
    let phase = phase_of(&decision.progress);
    let generation = resource.metadata.generation;
    let mut status = MultiArchImageStatus {
        phase: Some(phase),
        observed_generation: generation,
        build_id: Some(decision.build_id.clone()),
        last_handled_retry: decision.attempt.clone(),
        source: decision.source.clone(),
        conditions: conditions(&old, generation, phase, reason, &message, now),
        ..MultiArchImageStatus::default()
    };
    stalled_on_create(&mut status.conditions, &old, decision, generation, now);
    if let Progress::Invalid(_) = decision.progress {
        // Unchanged words, no new Event: a resync of an invalid spec is quiet.
        let events = if old.conditions.iter().any(|c| c.message == message) {
            Vec::new()
        } else {
            vec![Notice {
                warning: true,
                reason: "InvalidSpec",
                note: message,
                job: None,
            }]
        };
        return Report {
            transitions: transitions(&old, &status),
            status,
            events,
        };
    }
    let ready = decision
        .platforms
        .iter()
        .filter(|p| p.phase == PlatformPhase::Succeeded)
        .count();
    if !decision.platforms.is_empty() {
        status.platforms_ready = Some(format!("{ready}/{}", decision.platforms.len()));
    }
    status.merge_job = decision.merge_job.clone();
    if let Progress::Succeeded { digest } = &decision.progress {
        status.short_digest = Some(digest.chars().take("sha256:".len() + 12).collect());
        status.image = Some(format!("{}@{digest}", resource.spec.image));
        status.digest = Some(digest.clone());
    }
    status.platforms = decision
        .platforms
        .iter()
        .zip(messages)
        .zip(&built_on)
        .map(|((p, message), built_on)| PlatformStatus {
            platform: p.platform.to_string(),
            phase: p.phase,
            job: p.job.clone(),
            node: p.node.clone(),
            built_on: Some(built_on.to_string()),
            cache: p.cache.as_ref().map(|c| c.state),
            digest: p.digest.clone(),
            start_time: p.start_time.clone(),
            completion_time: p.completion_time.clone(),
            message,
        })
        .collect();
    let transitions = transitions(&old, &status);
    let mut events = Vec::new();
    if !decision.delete.is_empty() {
        events.push(Notice {
            warning: false,
            reason: "Superseded",
            note: format!(
                "spec changed: build {} replaces the previous build; deleting its {} Job(s)",
                decision.build_id,
                decision.delete.len()
            ),
            job: None,
        });
    }
    events.extend(source_notices(old.source.as_ref(), status.source.as_ref()));
    events.extend(notices(
        &transitions,
        &status,
        &decision.platforms,
        &message,
    ));
    Report {
        status,
        transitions,
        events,
    }
}

/// A platform's message: why it waits or failed, or, once built, why
/// it built without its cache.
fn platform_message(view: &PlatformView, built_on: &Platform, mounts: &[Mounted]) -> String {
    let message = words::platform_message(view, built_on, mounts);
    if !message.is_empty() || view.phase != PlatformPhase::Succeeded {
        return message;
    }
    match &view.cache {
        Some(cache) if cache.state == CacheState::Unavailable => {
            bounded(cache.detail.as_deref().unwrap_or("built without its cache"))
        }
        _ => String::new(),
    }
}

/// Events for a git source whose commit or check changed.
fn source_notices(old: Option<&SourceStatus>, new: Option<&SourceStatus>) -> Vec<Notice> {
    let Some(new) = new else {
        return Vec::new();
    };
    let mut notices = Vec::new();
    let revision = if new.revision.is_empty() {
        "the default branch"
    } else {
        new.revision.as_str()
    };
    let before = old.filter(|o| o.url == new.url && o.revision == new.revision);
    if before.map(|o| &o.commit) != Some(&new.commit) {
        let was = before.map_or(String::new(), |o| format!(" (was {})", o.commit));
        notices.push(Notice {
            warning: false,
            reason: "SourceResolved",
            note: bounded(&format!(
                "{revision} of {} is commit {}{was}",
                new.url, new.commit
            )),
            job: None,
        });
    }
    if !new.message.is_empty() && before.map(|o| &o.message) != Some(&new.message) {
        notices.push(Notice {
            warning: true,
            reason: "SourceCheckFailed",
            note: bounded(&new.message),
            job: None,
        });
    }
    notices
}

fn phase_of(progress: &Progress) -> Phase {
    match progress {
        Progress::Pending | Progress::Resolving(_) => Phase::Pending,
        Progress::Building => Phase::Building,
        Progress::MergeStarting | Progress::Merging(_) => Phase::Merging,
        Progress::Succeeded { .. } => Phase::Succeeded,
        Progress::PlatformsFailed
        | Progress::MergeFailed(_)
        | Progress::Invalid(_)
        | Progress::SourceFailed { .. } => Phase::Failed,
    }
}

/// What changed between two statuses; platforms are matched by name within
/// the same build.
pub fn transitions(old: &MultiArchImageStatus, new: &MultiArchImageStatus) -> Transitions {
    let new_build = old.build_id != new.build_id;
    let entered = (new_build || old.phase != new.phase)
        .then_some(new.phase)
        .flatten();
    let platforms = new
        .platforms
        .iter()
        .enumerate()
        .filter_map(|(index, platform)| {
            let before = (!new_build)
                .then(|| {
                    old.platforms
                        .iter()
                        .find(|p| p.platform == platform.platform)
                })
                .flatten();
            let entered =
                (before.map(|b| b.phase) != Some(platform.phase)).then_some(platform.phase);
            let message_changed = before.map(|b| &b.message) != Some(&platform.message);
            (entered.is_some() || message_changed).then_some(PlatformChange {
                index,
                entered,
                message_changed,
            })
        })
        .collect();
    Transitions {
        new_build,
        entered,
        platforms,
    }
}

/// Events for what changed.
fn notices(
    changes: &Transitions,
    new: &MultiArchImageStatus,
    views: &[PlatformView],
    message: &str,
) -> Vec<Notice> {
    let mut notices = Vec::new();
    if changes.new_build {
        let platforms: Vec<&str> = new.platforms.iter().map(|p| p.platform.as_str()).collect();
        notices.push(Notice {
            warning: false,
            reason: "BuildStarted",
            note: bounded(&format!(
                "build {} of {} platform(s): {}",
                new.build_id.as_deref().unwrap_or_default(),
                new.platforms.len(),
                platforms.join(", ")
            )),
            job: None,
        });
    }
    for change in &changes.platforms {
        let platform = &new.platforms[change.index];
        if change.entered.is_none() && platform.message.is_empty() {
            continue;
        }
        let node = platform.node.as_deref().unwrap_or("?");
        let (warning, reason, note) = match platform.phase {
            PlatformPhase::Pending if platform.message.is_empty() => continue,
            PlatformPhase::Pending => {
                let (warning, reason) = match views[change.index].note {
                    Some(Note::Unschedulable(_)) => (true, "Unschedulable"),
                    Some(Note::FailedCreate(_)) => (true, "FailedCreate"),
                    // Waited for: a node is on its way.
                    Some(Note::AwaitingNode { .. }) => (false, "WaitingForNode"),
                    _ => (true, "PlatformWaiting"),
                };
                (
                    warning,
                    reason,
                    format!("{}: {}", platform.platform, platform.message),
                )
            }
            PlatformPhase::Building => (
                false,
                "PlatformBuilding",
                format!(
                    "{} building on node {node}{}",
                    platform.platform,
                    build_on::elsewhere(platform)
                ),
            ),
            PlatformPhase::Succeeded => (
                false,
                "PlatformBuilt",
                format!(
                    "{} built on node {node}: {}",
                    platform.platform,
                    platform.digest.as_deref().unwrap_or_default()
                ),
            ),
            PlatformPhase::Failed => (
                true,
                "PlatformFailed",
                format!("{} failed: {}", platform.platform, platform.message),
            ),
        };
        notices.push(Notice {
            warning,
            reason,
            note: bounded(&note),
            job: Some(platform.job.clone()),
        });
        if let Some(notice) = build_on::built_elsewhere(change, platform) {
            notices.push(notice);
        }
        if platform.phase == PlatformPhase::Succeeded
            && platform.cache == Some(CacheState::Unavailable)
        {
            notices.push(Notice {
                warning: true,
                reason: "CacheUnavailable",
                note: bounded(&format!("{}: {}", platform.platform, platform.message)),
                job: Some(platform.job.clone()),
            });
        }
    }
    let entered = |phase| changes.entered == Some(phase);
    if entered(Phase::Merging) {
        notices.push(Notice {
            warning: false,
            reason: "Merging",
            note: bounded(&format!(
                "every platform is built; merge Job {} pushes the index",
                new.merge_job.as_deref().unwrap_or_default()
            )),
            job: None,
        });
    } else if entered(Phase::Succeeded) || entered(Phase::Failed) {
        let failed = entered(Phase::Failed);
        notices.push(Notice {
            warning: failed,
            reason: if failed { "Failed" } else { "Succeeded" },
            note: message.to_string(),
            job: None,
        });
    }
    notices
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
    let make = |type_: &str, on: bool| {
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
    let mut conditions = vec![make("Ready", phase == Phase::Succeeded)];
    if !done {
        conditions.push(make("Reconciling", true));
    }
    if phase == Phase::Failed {
        conditions.push(make("Stalled", true));
    }
    conditions
}

/// `Stalled` while a platform's pod cannot be created: the build cannot go
/// on until the cluster (or the spec) changes, although it is not failed.
fn stalled_on_create(
    conditions: &mut Vec<Condition>,
    old: &MultiArchImageStatus,
    decision: &Decision,
    generation: Option<i64>,
    now: &Time,
) {
    let blocked: Vec<String> = decision
        .platforms
        .iter()
        .filter_map(|p| match &p.note {
            Some(Note::FailedCreate(message)) => Some(format!("{}: {message}", p.platform)),
            _ => None,
        })
        .collect();
    if blocked.is_empty() || conditions.iter().any(|c| c.type_ == "Stalled") {
        return;
    }
    let since = old
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True")
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    conditions.push(Condition {
        type_: "Stalled".into(),
        status: "True".into(),
        reason: "FailedCreate".into(),
        message: bounded(&format!(
            "the Job controller cannot create pods: {}",
            blocked.join("; ")
        )),
        observed_generation: generation,
        last_transition_time: since,
    });
}
