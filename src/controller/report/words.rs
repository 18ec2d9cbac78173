//! The words of status messages and Event notes, and the one place where
//! they are bounded and cleaned before they leave the operator.

use super::super::decide::{MergeFailure, MergeStep, Note, PlatformView, Progress};
use super::super::observe::{JobFailure, PodFailure, Waiting};
use crate::render::{Mounted, DOCKER_CONFIG_DIR};

/// The longest message kept in status, and the longest Event note the API
/// server accepts (events.k8s.io/v1 `note`: 1 KiB).
pub const MAX_MESSAGE: usize = 1024;
/// Lines of a failed container's output quoted in its platform's message.
const TAIL_LINES: usize = 8;

/// Text fit for status and Events: control characters that a terminal
/// would act on (escape sequences from build logs) removed, and at most
/// `MAX_MESSAGE` bytes.
pub fn bounded(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    if clean.len() <= MAX_MESSAGE {
        return clean;
    }
    let mut end = MAX_MESSAGE - 3;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &clean[..end])
}

/// Why one platform waits or failed; empty when there is nothing to say.
pub fn platform_message(view: &PlatformView, mounts: &[Mounted]) -> String {
    let Some(note) = &view.note else {
        return String::new();
    };
    bounded(&match note {
        Note::Unschedulable(why) => format!("cannot be scheduled: {why}"),
        Note::Waiting(waiting) => waiting_text(waiting),
        Note::NotStarted {
            pod,
            node,
            waited,
            namespace,
        } => {
            let check = if mounts.is_empty() {
                String::new()
            } else {
                format!(
                    "; a missing volume keeps a pod there: check {} in namespace {namespace}",
                    joined(mounts)
                )
            };
            format!(
                "pod {pod} on node {} has started no container after {waited}s{check}",
                node.as_deref().unwrap_or("?")
            )
        }
        Note::NoDigest => {
            "the build finished but reported no image digest in its termination message".into()
        }
        Note::ResultGone => {
            "the build Job completed but its succeeded pod, which carries the image digest, is gone"
                .into()
        }
        Note::Failed {
            job,
            reason,
            detail,
        } => {
            let head = match reason {
                JobFailure::DeadlineExceeded => format!(
                    "exceeded spec.activeDeadlineSeconds ({}s)",
                    job.active_deadline_seconds
                ),
                JobFailure::BackoffLimitExceeded => format!(
                    "failed {} time(s), more than spec.backoffLimit ({})",
                    job.failed_pods, job.backoff_limit
                ),
                JobFailure::Other(other) => format!("Job failed ({other})"),
            };
            let push_secret = mounts
                .iter()
                .find(|m| m.volume == crate::render::PUSH_SECRET_VOLUME);
            match (detail.as_ref().map(failure_text), push_secret) {
                // The builder could not read the mounted push secret.
                (Some(detail), Some(secret)) if detail.contains(DOCKER_CONFIG_DIR) => {
                    format!("{head}: {detail} (check {secret})")
                }
                (Some(detail), _) => format!("{head}: {detail}"),
                (None, _) if mounts.is_empty() => head,
                // Nothing reported why: a pod stuck before its first container
                // (a volume that cannot be mounted) says so only in its events.
                (None, _) => format!(
                    "{head}; no container reported a result: a pod never starts while a volume it mounts is missing, so check {} in namespace {}",
                    joined(mounts),
                    job.namespace
                ),
            }
        }
    })
}

/// The reason of the `Ready` condition and the message of the whole build.
pub fn progress_message(
    progress: &Progress,
    platforms: &[(&PlatformView, String)],
    image: &str,
    tags: &[String],
) -> (&'static str, String) {
    let (reason, message) = match progress {
        Progress::Pending => ("Pending", "creating the build Jobs".to_string()),
        Progress::Building => {
            let waiting: Vec<String> = platforms
                .iter()
                .filter(|(p, message)| {
                    p.phase == crate::api::PlatformPhase::Pending && !message.is_empty()
                })
                .map(|(p, message)| format!("{}: {message}", p.platform))
                .collect();
            if waiting.is_empty() {
                let ready = platforms
                    .iter()
                    .filter(|(p, _)| p.phase == crate::api::PlatformPhase::Succeeded)
                    .count();
                (
                    "Building",
                    format!(
                        "building {}/{} platforms",
                        platforms.len() - ready,
                        platforms.len()
                    ),
                )
            } else {
                ("Waiting", waiting.join("; "))
            }
        }
        Progress::MergeStarting => (
            "Merging",
            "every platform is built; pushing the image index".to_string(),
        ),
        Progress::Merging(step) => (
            "Merging",
            match step {
                MergeStep::Pushing => "pushing the image index".to_string(),
                MergeStep::ReadingResult => "reading the merge's result".to_string(),
                MergeStep::Waiting(Note::Waiting(waiting)) => {
                    format!("merge waiting: {}", waiting_text(waiting))
                }
                MergeStep::Waiting(Note::Unschedulable(why)) => format!("merge waiting: {why}"),
                MergeStep::Waiting(_) => "merge waiting".to_string(),
            },
        ),
        Progress::Succeeded { digest } => {
            let targets: Vec<String> = tags.iter().map(|t| format!("{image}:{t}")).collect();
            (
                "Succeeded",
                format!("pushed image index {digest} to {}", targets.join(", ")),
            )
        }
        Progress::PlatformsFailed => {
            let why: Vec<String> = platforms
                .iter()
                .filter(|(p, _)| p.phase == crate::api::PlatformPhase::Failed)
                .map(|(p, message)| format!("{}: {message}", p.platform))
                .collect();
            ("BuildFailed", format!("build failed for {}", why.join("; ")))
        }
        Progress::MergeFailed(failure) => (
            "MergeFailed",
            format!(
                "merge failed: {}",
                match failure {
                    MergeFailure::NoDigest => "the merge finished but reported no index digest".to_string(),
                    MergeFailure::ResultGone => "the merge Job completed but its succeeded pod, which carries the index digest, is gone".to_string(),
                    MergeFailure::Failed(detail) => detail
                        .as_ref()
                        .map(failure_text)
                        .unwrap_or_else(|| "the merge Job failed".into()),
                }
            ),
        ),
        Progress::Invalid(errors) => (
            "InvalidSpec",
            format!("invalid spec: {}", errors.to_string().replace('\n', "; ")),
        ),
    };
    (reason, bounded(&message))
}

fn waiting_text(waiting: &Waiting) -> String {
    format!(
        "container {} cannot start: {}: {}",
        waiting.container,
        waiting.reason.as_str(),
        waiting.message
    )
}

fn failure_text(failure: &PodFailure) -> String {
    match failure {
        PodFailure::Pod { reason, message } => format!("pod {reason}: {message}"),
        PodFailure::Container {
            name,
            exit_code,
            reason,
            message,
        } => {
            let mut text = if reason == "OOMKilled" {
                format!(
                    "container {name} ran out of memory (OOMKilled); raise spec.resources.limits.memory"
                )
            } else {
                format!("container {name} exited with code {exit_code} ({reason})")
            };
            let message = message.trim();
            if !message.is_empty() {
                text.push_str(": ");
                text.push_str(&tail(message, TAIL_LINES));
            }
            text
        }
    }
}

fn joined(mounts: &[Mounted]) -> String {
    mounts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
