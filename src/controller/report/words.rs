//! The words of status messages and Event notes, and the one place where
//! they are bounded and cleaned before they leave the operator.

use super::super::decide::{MergeFailure, MergeStep, Note, PlatformView, Progress};
use super::super::observe::{JobFailure, PodFailure, Waiting};
use crate::platform::Platform;
use crate::render::{
    Mounted, DOCKER_CONFIG_DIR, MERGE_CONTAINER, MERGE_MEMORY_LIMIT, PULL_CONFIG_DIR,
    PULL_SECRET_VOLUME, PUSH_SECRET_VOLUME,
};

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

/// Why one platform, built on nodes of `built_on`, waits or failed; empty
/// when there is nothing to say.
pub fn platform_message(view: &PlatformView, built_on: &Platform, mounts: &[Mounted]) -> String {
    let Some(note) = &view.note else {
        return String::new();
    };
    // Which nodes it waits for, when they are not the platform's own.
    let nodes = if built_on != &view.platform {
        format!(" of {built_on} (spec.buildOn)")
    } else {
        String::new()
    };
    bounded(&match note {
        Note::Unschedulable(why) if nodes.is_empty() => format!("cannot be scheduled: {why}"),
        Note::Unschedulable(why) => format!("cannot be scheduled on a node{nodes}: {why}"),
        Note::AwaitingNode { why, scale_up } => {
            format!("waiting for a node{nodes}: the cluster autoscaler is adding one ({scale_up}); the scheduler: {why}")
        }
        Note::FailedCreate(message) => format!(
            "the Job controller cannot create its pod: FailedCreate: {message}"
        ),
        Note::NeverScheduled { deadline, last } if last.is_empty() => format!(
            "exceeded spec.activeDeadlineSeconds ({deadline}s) and never got a node"
        ),
        Note::NeverScheduled { deadline, last } => format!(
            "exceeded spec.activeDeadlineSeconds ({deadline}s) and never got a node; it last reported: {last}"
        ),
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
        Note::Rerun => {
            "building again: the build Job completed, but its pod, which carries the image digest, was gone before the digest was seen"
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
            let build = Build {
                target: &view.platform,
                node: built_on,
            };
            match detail.as_ref().map(|d| build_failure_text(d, Some(&build))) {
                // A step could not read a mounted registry Secret.
                Some(detail) => match unreadable_secret(&detail, mounts) {
                    Some(secret) => format!("{head}: {detail} (check {secret})"),
                    None => format!("{head}: {detail}"),
                },
                None if mounts.is_empty() => head,
                // Nothing reported why: a pod stuck before its first container
                // (a volume that cannot be mounted) says so only in its events.
                None => format!(
                    "{head}; no container reported a result: a pod never starts while a volume it mounts is missing, so check {} in namespace {}",
                    joined(mounts),
                    job.namespace
                ),
            }
        }
    })
}

/// The registry Secret whose mount a builder's error names.
fn unreadable_secret<'a>(detail: &str, mounts: &'a [Mounted]) -> Option<&'a Mounted> {
    [
        (PUSH_SECRET_VOLUME, DOCKER_CONFIG_DIR),
        (PULL_SECRET_VOLUME, PULL_CONFIG_DIR),
    ]
    .into_iter()
    .filter(|(_, dir)| detail.contains(dir))
    .find_map(|(volume, _)| mounts.iter().find(|m| m.volume == volume))
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
                MergeStep::Rerun => "pushing the image index again: the merge's pod was gone before its digest was seen".to_string(),
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
        Progress::Resolving(note) => (
            "Resolving",
            match note {
                Some(Note::Waiting(waiting)) => format!(
                    "resolving spec.source.git.revision to a commit; waiting: {}",
                    waiting_text(waiting)
                ),
                Some(Note::Unschedulable(why)) => format!(
                    "resolving spec.source.git.revision to a commit; waiting: {why}"
                ),
                _ => "resolving spec.source.git.revision to a commit".to_string(),
            },
        ),
        Progress::SourceFailed { reason, detail } => (
            "SourceFailed",
            format!(
                "could not resolve spec.source.git.revision to a commit: {}",
                resolve_failure(reason, detail.as_ref())
            ),
        ),
    };
    (reason, bounded(&message))
}

/// Why a resolve Job found no commit.
fn resolve_failure(reason: &JobFailure, detail: Option<&PodFailure>) -> String {
    match (reason, detail) {
        (_, Some(detail)) => failure_text(detail),
        (JobFailure::DeadlineExceeded, None) => {
            "the resolve Job exceeded its time limit".to_string()
        }
        (JobFailure::Other(other), None) if other == "NoCommit" => {
            "the resolve Job reported no commit".to_string()
        }
        (_, None) => "the resolve Job failed".to_string(),
    }
}

/// The source's message after a failed check of a polled revision: the
/// build of the commit found before stands.
pub fn poll_failure(reason: &JobFailure, detail: Option<&PodFailure>) -> String {
    bounded(&format!(
        "the last check of spec.source.git.revision failed; still building the commit found before: {}",
        resolve_failure(reason, detail)
    ))
}

fn waiting_text(waiting: &Waiting) -> String {
    format!(
        "container {} cannot start: {}: {}",
        waiting.container,
        waiting.reason.as_str(),
        waiting.message
    )
}

/// The platform a build Job builds, and the platform of its node.
struct Build<'a> {
    target: &'a Platform,
    node: &'a Platform,
}

fn failure_text(failure: &PodFailure) -> String {
    build_failure_text(failure, None)
}

/// A failed container in words; for a build on another platform's node
/// (`spec.buildOn`), an `exec format error` is explained first, before the
/// quoted output, so that a cut message still says it.
fn build_failure_text(failure: &PodFailure, build: Option<&Build>) -> String {
    match failure {
        PodFailure::Pod { reason, message } => format!("pod {reason}: {message}"),
        PodFailure::Container {
            name,
            exit_code,
            reason,
            message,
        } => {
            let mut text = if reason == "OOMKilled" && name == MERGE_CONTAINER {
                // The user cannot raise this one: the operator sets it.
                format!(
                    "container {name} ran out of memory (OOMKilled) at the merge's own limit of \
                     {MERGE_MEMORY_LIMIT}, which the operator sets and spec.resources does not \
                     change; the merge holds at most one 4 MiB manifest or 8 MiB config per \
                     source, so report this with the merge's log"
                )
            } else if reason == "OOMKilled" {
                format!(
                    "container {name} ran out of memory (OOMKilled); raise spec.resources.limits.memory"
                )
            } else {
                format!("container {name} exited with code {exit_code} ({reason})")
            };
            let message = message.trim();
            let foreign = build.filter(|b| b.target != b.node);
            let emulated = foreign.filter(|_| message.contains("exec format error"));
            if let Some(build) = emulated {
                text.push_str(": ");
                text.push_str(&no_emulator(build.target, build.node));
            }
            let emulated = emulated.is_some();
            if !message.is_empty() {
                text.push_str(if emulated { "; its output: " } else { ": " });
                text.push_str(&tail(message, TAIL_LINES));
            }
            if let Some(hint) = node_hint(message).filter(|_| !emulated) {
                text.push_str(hint);
            }
            text
        }
    }
}

/// Failures that come from the node rather than the build, in the words
/// the builders print (docs/troubleshooting.md, "User namespaces"). The hint
/// goes after the quoted output, where a reader of a cut message sees it.
fn node_hint(output: &str) -> Option<&'static str> {
    const NO_USER_NAMESPACES: &[&str] = &[
        "unshare(CLONE_NEWUSER)",
        "failed to start the child: fork/exec /proc/self/exe: operation not permitted",
        "cannot clone: Operation not permitted",
    ];
    if NO_USER_NAMESPACES.iter().any(|m| output.contains(m)) {
        return Some(
            " (the node forbids unprivileged user namespaces, which both builders need: on Ubuntu 24.04 set kernel.apparmor_restrict_unprivileged_userns=0, on Bottlerocket raise user.max_user_namespaces; see docs/troubleshooting.md#user-namespaces)",
        );
    }
    output.contains("exec format error").then_some(
        " (exec format error: the node runs another architecture than the image; check the node's kubernetes.io/arch label and that spec.builder.image and the FROM images are published for this platform)",
    )
}

/// `exec format error` in a build on another platform's node: a step ran
/// the target platform's code there, and the node cannot run it.
fn no_emulator(target: &Platform, node: &Platform) -> String {
    format!(
        "a build step ran {target} code on a {node} node (spec.buildOn), and that node cannot run it (exec format error: no emulator for {target} is registered there). Either move that step into a `FROM --platform=$BUILDPLATFORM` stage that cross-compiles for $TARGETPLATFORM, so it runs as {node} code, or register QEMU for {target} through binfmt_misc on the {node} nodes (the tonistiigi/binfmt DaemonSet, or the distribution's qemu-user-static package); see docs/building-on-other-platforms.md"
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> String {
        failure_text(&PodFailure::Container {
            name: "build".into(),
            exit_code: 1,
            reason: "Error".into(),
            message: message.into(),
        })
    }

    #[test]
    fn exec_format_error_on_another_platforms_node_names_both_and_the_ways_out() {
        let (arm64, amd64) = (
            Platform::parse("linux/arm64").unwrap(),
            Platform::parse("linux/amd64").unwrap(),
        );
        let output = format!(
            "{}error building at STEP \"RUN make\": exec /bin/sh: exec format error",
            "STEP 2/3: RUN make\n".repeat(200)
        );
        let failure = PodFailure::Container {
            name: "build".into(),
            exit_code: 1,
            reason: "Error".into(),
            message: output.clone(),
        };
        let text = bounded(&build_failure_text(
            &failure,
            Some(&Build {
                target: &arm64,
                node: &amd64,
            }),
        ));
        for needle in [
            "ran linux/arm64 code on a linux/amd64 node",
            "FROM --platform=$BUILDPLATFORM",
            "binfmt_misc",
            "qemu-user-static",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        // Natively, the same output keeps the generic hint.
        let native = build_failure_text(
            &failure,
            Some(&Build {
                target: &arm64,
                node: &arm64,
            }),
        );
        assert!(!native.contains("spec.buildOn"), "{native}");
        assert!(native.contains("kubernetes.io/arch"), "{native}");
    }

    #[test]
    fn an_oom_kill_names_whose_limit_it_was() {
        let oom = |name: &str| {
            failure_text(&PodFailure::Container {
                name: name.into(),
                exit_code: 137,
                reason: "OOMKilled".into(),
                message: String::new(),
            })
        };
        assert!(oom("build").contains("raise spec.resources.limits.memory"));
        let merge = oom(MERGE_CONTAINER);
        assert!(merge.contains("the merge's own limit of 128Mi"), "{merge}");
        assert!(!merge.contains("raise spec.resources"), "{merge}");
    }

    #[test]
    fn a_platform_waiting_for_nodes_of_another_platform_says_which() {
        let view = PlatformView {
            platform: Platform::parse("linux/arm64").unwrap(),
            job: "app-1234abcd-linux-arm64".into(),
            phase: crate::api::PlatformPhase::Pending,
            node: None,
            digest: None,
            start_time: None,
            completion_time: None,
            cache: None,
            note: Some(Note::Unschedulable(
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
                    .into(),
            )),
        };
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let message = platform_message(&view, &amd64, &[]);
        assert!(
            message.starts_with("cannot be scheduled on a node of linux/amd64 (spec.buildOn): 0/1"),
            "{message}"
        );
        let native = platform_message(&view, &view.platform.clone(), &[]);
        assert!(native.starts_with("cannot be scheduled: 0/1"), "{native}");
    }

    #[test]
    fn node_failures_get_a_hint_naming_the_fix() {
        let buildah = failed("Error during unshare(CLONE_NEWUSER): Operation not permitted");
        assert!(
            buildah.contains("apparmor_restrict_unprivileged_userns"),
            "{buildah}"
        );
        assert!(buildah.contains("user.max_user_namespaces"), "{buildah}");
        let rootless = failed("[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: operation not permitted");
        assert!(rootless.contains("user namespaces"), "{rootless}");
        let arch = failed("exec /bin/sh: exec format error");
        assert!(arch.contains("kubernetes.io/arch"), "{arch}");
        let own = failed("RUN make: exit 2");
        assert!(
            !own.contains("the node"),
            "no hint for a build's own failure: {own}"
        );
    }
}
