//! The status transitions as a table of observed Jobs and Pods, through
//! observe, decide and report, as a reconcile runs them.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::*;
use crate::api::{
    CacheState, LocalObjectRef, MultiArchImage, MultiArchImageStatus, Phase, PlatformPhase,
};
use std::time::{Duration, Instant};

use crate::controller::observe::{parse_digest, Observation, Sightings};
use crate::controller::report::{report, Notice};
use crate::render::{build_id, plan, BuilderImages, Plan};
use crate::validate::{parse_manifests, validate};

const RESOURCE: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: app, namespace: ci, uid: u-1, generation: 3}
spec:
  image: localhost:5000/team/app
  tags: [latest, v1]
  source: {configMap: {name: ctx}}
  builder: {strategy: buildah}
"#;

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:x}").repeat(64))
}

fn resource() -> MultiArchImage {
    parse_manifests(RESOURCE).unwrap().remove(0)
}

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

/// A Job of the current build, with the given status conditions.
fn job(name: &str, build_id: &str, conditions: Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ci",
            "labels": {"multiarch.dev/build-id": build_id}},
        "spec": {"template": {}, "backoffLimit": 1, "activeDeadlineSeconds": 3600},
        "status": {"conditions": conditions, "failed": 2,
            "startTime": "2027-01-15T08:00:00Z", "completionTime": "2027-01-15T08:01:00Z"},
    }))
    .unwrap()
}

fn complete() -> Value {
    json!([{"type": "Complete", "status": "True"}])
}

fn failed(reason: &str) -> Value {
    json!([{"type": "Failed", "status": "True", "reason": reason}])
}

fn pod(job: &str, node: Option<&str>, status: Value) -> Pod {
    let mut spec = json!({"containers": []});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("{job}-abcde"), "namespace": "ci",
            "labels": {"batch.kubernetes.io/job-name": job},
            "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

fn terminated(container: &str, code: i32, reason: &str, message: &str) -> Value {
    json!({"name": container, "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}}})
}

fn succeeded_pod(job: &str, node: &str, message: &str) -> Pod {
    pod(
        job,
        Some(node),
        json!({"phase": "Succeeded", "startTime": "2027-01-15T08:00:05Z",
        "containerStatuses": [terminated("push", 0, "Completed", message)]}),
    )
}

/// What one reconcile would do: the decision and its report.
struct Step {
    create: Vec<Job>,
    delete: Vec<String>,
    status: MultiArchImageStatus,
    notices: Vec<Notice>,
}

fn planned(resource: &MultiArchImage) -> Plan {
    let valid = validate(resource).unwrap();
    plan(
        resource,
        &valid,
        build_id(&resource.spec, &Default::default()),
        &BuilderImages::default(),
        None,
    )
}

struct World {
    resource: MultiArchImage,
    plan: Plan,
    jobs: Vec<Job>,
    pods: Vec<Pod>,
    /// The operator's monotonic clock: when it first saw each timed fact.
    sightings: Sightings,
    started: Instant,
    elapsed: Duration,
}

impl World {
    fn new() -> Self {
        let resource = resource();
        let plan = planned(&resource);
        World {
            resource,
            plan,
            jobs: Vec::new(),
            pods: Vec::new(),
            sightings: Sightings::default(),
            started: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }
    /// The operator's clock moves on by `seconds`.
    fn wait(&mut self, seconds: u64) {
        self.elapsed += Duration::from_secs(seconds);
    }
    /// The resource with a push secret, planned again (before any Job).
    fn with_push_secret(mut self, name: &str) -> Self {
        self.resource.spec.push_secret = Some(LocalObjectRef { name: name.into() });
        self.plan = planned(&self.resource);
        self
    }
    fn name(&self, i: usize) -> String {
        self.plan.build_jobs[i].name_any()
    }
    fn with_jobs(mut self, conditions: [Value; 2]) -> Self {
        for (i, c) in conditions.into_iter().enumerate() {
            self.jobs
                .push(job(&self.name(i), &self.plan.build_id.clone(), c));
        }
        self
    }
    fn decide(&self) -> Step {
        let observed = Observation::of(&self.jobs, &self.pods, now())
            .timed_at(&self.sightings, self.started + self.elapsed);
        let previous = self
            .resource
            .status
            .as_ref()
            .filter(|s| s.build_id.as_deref() == Some(self.plan.build_id.as_str()));
        let retry = self
            .resource
            .annotations()
            .get("multiarch.dev/retry")
            .map(String::as_str);
        let decision = decide(&self.plan, &observed, previous, retry);
        step(&self.resource, decision, &self.plan.mounts)
    }
    fn condition(d: &Step, type_: &str) -> Option<Condition> {
        d.status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
    }
}

fn step(resource: &MultiArchImage, decision: Decision, mounts: &[crate::render::Mounted]) -> Step {
    let report = report(resource, &decision, mounts, &now());
    Step {
        create: decision.create,
        delete: decision.delete,
        status: report.status,
        notices: report.events,
    }
}

#[test]
fn nothing_yet_creates_one_job_per_platform() {
    let w = World::new();
    let d = w.decide();
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(d.create.len(), 2);
    assert_eq!(d.status.platforms_ready.as_deref(), Some("0/2"));
    assert_eq!(d.status.observed_generation, Some(3));
    assert_eq!(d.notices[0].reason, "BuildStarted");
    let ready = World::condition(&d, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.observed_generation),
        ("False", Some(3))
    );
    assert_eq!(World::condition(&d, "Reconciling").unwrap().status, "True");
}

#[test]
fn unschedulable_platform_is_reported_not_failed() {
    let mut w = World::new().with_jobs([json!([]), json!([])]);
    w.pods
        .push(pod(&w.name(0), Some("amd-1"), json!({"phase": "Running"})));
    w.pods.push(pod(&w.name(1), None, json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}]})));
    let d = w.decide();
    assert!(d.create.is_empty());
    assert_eq!(d.status.phase, Some(Phase::Building));
    let arm = &d.status.platforms[1];
    assert_eq!(arm.phase, PlatformPhase::Pending);
    assert!(
        arm.message.starts_with("cannot be scheduled: 0/1 nodes"),
        "{}",
        arm.message
    );
    assert_eq!(d.status.platforms[0].phase, PlatformPhase::Building);
    assert_eq!(d.status.platforms[0].node.as_deref(), Some("amd-1"));
    let unschedulable = d
        .notices
        .iter()
        .find(|n| n.reason == "Unschedulable")
        .unwrap();
    assert!(unschedulable.warning && unschedulable.note.contains("linux/arm64"));
    let ready = World::condition(&d, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Waiting")
    );
}

#[test]
fn all_platforms_built_starts_the_merge_with_their_digests() {
    let mut w = World::new().with_jobs([complete(), complete()]);
    w.pods.push(succeeded_pod(&w.name(0), "amd-1", &digest(1)));
    w.pods.push(succeeded_pod(
        &w.name(1),
        "arm-1",
        &format!("{}\n", digest(2)),
    ));
    let d = w.decide();
    assert_eq!(d.status.phase, Some(Phase::Merging));
    assert_eq!(d.status.platforms_ready.as_deref(), Some("2/2"));
    assert_eq!(d.create.len(), 1);
    let merge = &d.create[0];
    assert_eq!(
        merge.name_any(),
        format!("app-{}-merge", crate::render::short_id(&w.plan.build_id))
    );
    let args = merge
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&format!(
        "linux/amd64=localhost:5000/team/app@{}",
        digest(1)
    )));
    assert!(args.contains(&format!(
        "linux/arm64=localhost:5000/team/app@{}",
        digest(2)
    )));
    assert_eq!(d.status.platforms[1].node.as_deref(), Some("arm-1"));
    assert!(d.notices.iter().any(|n| n.reason == "Merging"));
    assert_eq!(
        d.notices
            .iter()
            .filter(|n| n.reason == "PlatformBuilt")
            .count(),
        2
    );
}

#[test]
fn merge_done_is_success_with_the_index_digest() {
    let mut w = World::new().with_jobs([complete(), complete()]);
    w.pods.push(succeeded_pod(&w.name(0), "amd-1", &digest(1)));
    w.pods.push(succeeded_pod(&w.name(1), "arm-1", &digest(2)));
    let merge_name = format!("app-{}-merge", crate::render::short_id(&w.plan.build_id));
    w.jobs
        .push(job(&merge_name, &w.plan.build_id.clone(), complete()));
    w.pods.push(pod(
        &merge_name,
        Some("amd-1"),
        json!({"phase": "Succeeded",
        "containerStatuses": [terminated("merge", 0, "Completed", &digest(9))]}),
    ));
    let d = w.decide();
    assert_eq!(d.status.phase, Some(Phase::Succeeded));
    assert_eq!(d.status.digest, Some(digest(9)));
    assert_eq!(
        d.status.image,
        Some(format!("localhost:5000/team/app@{}", digest(9)))
    );
    assert_eq!(
        d.status.short_digest.as_deref(),
        Some("sha256:999999999999")
    );
    assert!(d.create.is_empty());
    let ready = World::condition(&d, "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert!(ready.message.contains("localhost:5000/team/app:v1"));
    assert!(World::condition(&d, "Reconciling").is_none());
    assert!(World::condition(&d, "Stalled").is_none());
}

#[test]
fn a_failed_platform_fails_the_resource_saying_which_and_why() {
    let mut w = World::new().with_jobs([json!([]), failed("BackoffLimitExceeded")]);
    w.pods
        .push(pod(&w.name(0), Some("amd-1"), json!({"phase": "Running"})));
    w.pods.push(pod(&w.name(1), Some("arm-1"), json!({"phase": "Failed",
        "initContainerStatuses": [terminated("build", 2, "Error", "step 1\nstep 2\nerror: COPY failed: no such file")]})));
    let d = w.decide();
    assert_eq!(d.status.phase, Some(Phase::Failed));
    let arm = &d.status.platforms[1];
    assert_eq!(arm.phase, PlatformPhase::Failed);
    assert!(
        arm.message.contains("more than spec.backoffLimit (1)"),
        "{}",
        arm.message
    );
    assert!(
        arm.message.contains("container build exited with code 2"),
        "{}",
        arm.message
    );
    assert!(arm.message.contains("COPY failed"), "{}", arm.message);
    let ready = World::condition(&d, "Ready").unwrap();
    assert_eq!(ready.reason, "BuildFailed");
    assert!(ready.message.contains("linux/arm64"), "{}", ready.message);
    assert_eq!(World::condition(&d, "Stalled").unwrap().status, "True");
    assert!(d
        .notices
        .iter()
        .any(|n| n.reason == "PlatformFailed" && n.warning));
}

#[test]
fn failure_reasons_are_explained() {
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            failed("BackoffLimitExceeded"),
            json!({"phase": "Failed", "initContainerStatuses": [terminated("build", 137, "OOMKilled", "")]}),
            "ran out of memory (OOMKilled); raise spec.resources.limits.memory",
        ),
        (
            failed("DeadlineExceeded"),
            json!({"phase": "Failed"}),
            "exceeded spec.activeDeadlineSeconds (3600s)",
        ),
        (
            json!([]),
            json!({"phase": "Pending", "containerStatuses": [{"name": "push", "image": "x", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"quay.io/buildah/stable:v0\""}}}]}),
            "container push cannot start: ImagePullBackOff: Back-off pulling image",
        ),
        (
            json!([]),
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "build", "image": "x", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError",
                "message": "secret \"regcred\" not found"}}}]}),
            "secret \"regcred\" not found",
        ),
        (
            complete(),
            json!({"phase": "Succeeded", "containerStatuses": [terminated("push", 0, "Completed", "not a digest")]}),
            "reported no image digest",
        ),
    ];
    for (conditions, pod_status, needle) in cases {
        let mut w = World::new().with_jobs([conditions, json!([])]);
        w.pods.push(pod(&w.name(0), Some("amd-1"), pod_status));
        let d = w.decide();
        let amd = &d.status.platforms[0];
        assert!(amd.message.contains(needle), "{needle}: {}", amd.message);
        // The kubelet retries a pull back-off and a missing Secret key by
        // itself: reported, waited out until the deadline, not failed.
        let transient = needle.contains("ImagePullBackOff") || needle.contains("not found");
        if transient {
            assert_eq!(amd.phase, PlatformPhase::Pending, "{needle}: {amd:?}");
            assert_eq!(d.status.phase, Some(Phase::Building));
        } else {
            assert_eq!(amd.phase, PlatformPhase::Failed, "{needle}: {amd:?}");
            assert_eq!(d.status.phase, Some(Phase::Failed));
        }
    }
}

#[test]
fn an_invalid_image_name_fails_at_once() {
    let mut w = World::new().with_jobs([json!([]), json!([])]);
    w.pods.push(pod(
        &w.name(0),
        Some("amd-1"),
        json!({"phase": "Pending", "initContainerStatuses": [{"name": "build", "image": "x", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "InvalidImageName",
            "message": "Failed to apply default image tag \"BAD\": couldn't parse image name"}}}]}),
    ));
    let d = w.decide();
    assert_eq!(d.status.platforms[0].phase, PlatformPhase::Failed);
    assert!(d.status.platforms[0].message.contains("InvalidImageName"));
    assert_eq!(d.status.phase, Some(Phase::Failed));
}

#[test]
fn a_built_platform_keeps_its_digest_when_its_pod_and_job_are_gone() {
    // amd64 built, then its pod was collected (PodGC, a node scaled away)
    // while arm64 still builds.
    let mut w = World::new().with_jobs([complete(), json!([])]);
    w.pods.push(succeeded_pod(&w.name(0), "amd-1", &digest(1)));
    w.pods
        .push(pod(&w.name(1), Some("arm-1"), json!({"phase": "Running"})));
    let first = w.decide();
    assert_eq!(first.status.platforms[0].phase, PlatformPhase::Succeeded);
    w.resource.status = Some(first.status.clone());
    w.pods.remove(0);
    w.jobs.remove(0);
    let later = w.decide();
    let amd = &later.status.platforms[0];
    assert_eq!(amd.phase, PlatformPhase::Succeeded, "{amd:?}");
    assert_eq!(amd.digest, Some(digest(1)));
    assert_eq!(later.status.phase, Some(Phase::Building));
    assert!(later.create.is_empty(), "nothing is built again");
    assert!(later.notices.is_empty(), "{:?}", later.notices);
}

#[test]
fn a_transient_pull_error_is_only_reported() {
    let mut w = World::new().with_jobs([json!([]), json!([])]);
    w.pods.push(pod(
        &w.name(0),
        Some("amd-1"),
        json!({"phase": "Pending", "containerStatuses": [{
        "name": "push", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "timeout"}}}]}),
    ));
    let d = w.decide();
    assert_eq!(d.status.platforms[0].phase, PlatformPhase::Pending);
    assert_eq!(d.status.phase, Some(Phase::Building));
}

#[test]
fn jobs_of_a_superseded_build_are_deleted() {
    let mut w = World::new();
    w.jobs
        .push(job("app-0ld1d000-linux-amd64", "0ld1d000", json!([])));
    let d = w.decide();
    assert_eq!(d.delete, ["app-0ld1d000-linux-amd64"]);
    assert!(d.notices.iter().any(|n| n.reason == "Superseded"));
    assert_eq!(d.create.len(), 2, "the new build starts at once");
}

#[test]
fn the_same_observation_twice_changes_nothing() {
    let mut w = World::new().with_jobs([json!([]), json!([])]);
    w.pods.push(pod(
        &w.name(0),
        Some("amd-1"),
        json!({"phase": "Running", "startTime": "2027-01-15T08:00:05Z"}),
    ));
    let first = w.decide();
    w.resource.status = Some(first.status.clone());
    let mut later = w.decide();
    later
        .status
        .conditions
        .iter_mut()
        .for_each(|c| c.last_transition_time = now());
    assert_eq!(first.status, later.status);
    assert!(later.notices.is_empty(), "{:?}", later.notices);
    assert!(later.create.is_empty() && later.delete.is_empty());
}

#[test]
fn an_invalid_spec_fails_naming_the_field() {
    let mut r = resource();
    r.spec.platforms = vec!["linux/amd65".into()];
    let errors = crate::validate::validate(&r).unwrap_err();
    let jobs = [job("app-0ld1d000-linux-amd64", "0ld1d000", json!([]))];
    let observed = Observation::of(&jobs, &[], now());
    let d = step(&r, invalid("abcd1234", errors, &observed, None), &[]);
    assert_eq!(d.status.phase, Some(Phase::Failed));
    let ready = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("spec.platforms[0]"),
        "{}",
        ready.message
    );
    assert_eq!(d.delete.len(), 1, "the old build stops");
    assert!(d.notices[0].warning);
}

#[test]
fn termination_messages_are_checked_before_use() {
    assert_eq!(parse_digest(&digest(1)), Some(digest(1)));
    assert_eq!(
        parse_digest(&format!("pushing\n{}\n", digest(1))),
        Some(digest(1))
    );
    for bad in [
        "",
        "sha256:",
        "sha256:XYZ",
        "sha512:abc",
        &format!("{}0", digest(1)),
        "sha256:../../etc",
    ] {
        assert_eq!(parse_digest(bad), None, "{bad}");
    }
}

#[test]
fn a_deadline_without_a_reason_names_what_the_pod_mounts() {
    // The resource names a push secret and a ConfigMap context: the pods
    // mount both.
    let w = World::new()
        .with_push_secret("regcred")
        .with_jobs([failed("DeadlineExceeded"), json!([])]);
    let d = w.decide();
    let message = &d.status.platforms[0].message;
    assert!(
        message.starts_with("exceeded spec.activeDeadlineSeconds (3600s); "),
        "{message}"
    );
    for needle in [
        "Secret \"regcred\" (spec.pushSecret",
        "ConfigMap \"ctx\" (spec.source.configMap)",
        "in namespace ci",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // With a container's own reason, that reason is the message.
    let mut w = World::new().with_jobs([failed("DeadlineExceeded"), json!([])]);
    w.pods.push(pod(
        &w.name(0),
        Some("amd-1"),
        json!({"phase": "Failed", "initContainerStatuses": [terminated("build", 1, "Error", "boom")]}),
    ));
    let message = w.decide().status.platforms[0].message.clone();
    assert!(
        message.ends_with("container build exited with code 1 (Error): boom"),
        "{message}"
    );
}

#[test]
fn an_unreadable_push_secret_is_named() {
    // A builder that cannot read the push secret's config.json: the message
    // names the Secret and the field.
    let mut w = World::new()
        .with_push_secret("opaque")
        .with_jobs([failed("BackoffLimitExceeded"), json!([])]);
    w.pods.push(pod(
        &w.name(0),
        Some("amd-1"),
        json!({"phase": "Failed", "containerStatuses": [terminated("push", 125, "Error",
            "Error: checking authfile: stat /var/run/multiarch/docker/config.json: no such file or directory")]}),
    ));
    let message = w.decide().status.platforms[0].message.clone();
    assert!(
        message.ends_with("no such file or directory (check Secret \"opaque\" (spec.pushSecret: type kubernetes.io/dockerconfigjson, key .dockerconfigjson))"),
        "{message}"
    );
}

#[test]
fn a_pod_that_never_starts_says_what_to_check() {
    let mut w = World::new().with_jobs([json!([]), json!([])]);
    // The rendered Job, whose pod mounts the ConfigMap context.
    w.jobs[0] = w.plan.build_jobs[0].clone();
    let stuck = pod(
        &w.name(0),
        Some("amd-1"),
        json!({"phase": "Pending",
        "initContainerStatuses": [{"name": "build", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}),
    );
    w.pods.push(stuck);
    assert!(
        w.decide().status.platforms[0].message.is_empty(),
        "just seen"
    );
    // Seen stuck for five minutes, as the operator's own clock measures.
    w.wait(300);
    // Just scheduled: nothing to say yet.
    w.pods
        .push(pod(&w.name(1), Some("arm-1"), json!({"phase": "Pending"})));
    let d = w.decide();
    let amd = &d.status.platforms[0];
    assert_eq!(amd.phase, PlatformPhase::Pending);
    assert!(
        amd.message.contains("has started no container after 300s"),
        "{}",
        amd.message
    );
    assert!(
        amd.message
            .contains("ConfigMap \"ctx\" (spec.source.configMap)"),
        "{}",
        amd.message
    );
    assert!(d.status.platforms[1].message.is_empty());
    assert!(d
        .notices
        .iter()
        .any(|n| n.reason == "PlatformWaiting" && n.warning));
}

#[test]
fn a_completed_job_waits_a_moment_for_its_pod_to_be_seen() {
    // The Job's change can arrive before its pod's: not a failure yet.
    let w = World::new().with_jobs([complete(), json!([])]);
    let d = w.decide();
    assert_eq!(d.status.platforms[0].phase, PlatformPhase::Building);
    assert_eq!(d.status.phase, Some(Phase::Building));
    // Long after the operator saw it complete with no succeeded pod in
    // sight, it is one.
    let mut late = World::new().with_jobs([complete(), json!([])]);
    late.decide();
    late.wait(31);
    let d = late.decide();
    // Its digest was never seen: the platform builds again, it does not fail.
    assert_eq!(d.status.platforms[0].phase, PlatformPhase::Pending);
    assert!(
        d.status.platforms[0].message.contains("building again"),
        "{}",
        d.status.platforms[0].message
    );
    assert_eq!(d.delete, [late.name(0)]);
    assert_eq!(d.status.phase, Some(Phase::Building));
}

#[test]
fn a_retry_reruns_only_the_failed_platform() {
    let mut w = World::new().with_jobs([complete(), failed("BackoffLimitExceeded")]);
    w.pods.push(succeeded_pod(&w.name(0), "amd-1", &digest(1)));
    let failed_build = w.decide();
    assert_eq!(failed_build.status.phase, Some(Phase::Failed));
    w.resource.status = Some(failed_build.status);
    // The same observation again: nothing changes without a retry.
    assert!(w.decide().delete.is_empty());

    w.resource
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("multiarch.dev/retry".into(), "1".into());
    let retried = w.decide();
    assert_eq!(retried.delete, [w.name(1)], "only the failed Job goes");
    assert!(
        retried.create.is_empty(),
        "its successor waits for it to go"
    );
    assert_eq!(retried.status.last_handled_retry.as_deref(), Some("1"));
    assert_eq!(retried.status.phase, Some(Phase::Building));
    let amd = &retried.status.platforms[0];
    assert_eq!(
        (amd.phase, amd.digest.clone()),
        (PlatformPhase::Succeeded, Some(digest(1)))
    );
    assert_eq!(retried.status.platforms[1].phase, PlatformPhase::Pending);

    // Seen again before the deletion shows: the failed Job of the earlier
    // attempt does not fail the build again.
    w.resource.status = Some(retried.status);
    let racing = w.decide();
    assert_eq!(racing.status.phase, Some(Phase::Building));
    assert_eq!(racing.delete, [w.name(1)]);

    // Gone: made again under the new attempt; amd64 is not rebuilt.
    w.jobs.remove(1);
    let again = w.decide();
    assert_eq!(again.create.len(), 1);
    assert_eq!(again.create[0].name_any(), w.name(1));
    assert_eq!(
        again.create[0]
            .annotations()
            .get("multiarch.dev/retry")
            .map(String::as_str),
        Some("1")
    );
}

#[test]
fn an_operator_clock_ahead_of_the_api_server_neither_reruns_nor_says_not_started() {
    // The server stamped the completion and the pod's creation an hour
    // before the operator's clock: the operator has only just seen them.
    let hour_ago = Time(Timestamp::from_second(1_800_000_000 - 3600).unwrap());
    let mut w = World::new().with_jobs([complete(), json!([])]);
    w.jobs[0].status.as_mut().unwrap().completion_time = Some(hour_ago.clone());
    let mut scheduled = pod(&w.name(1), Some("arm-1"), json!({"phase": "Pending"}));
    scheduled.metadata.creation_timestamp = Some(hour_ago);
    w.pods.push(scheduled);
    let d = w.decide();
    assert_eq!(d.status.platforms[0].phase, PlatformPhase::Building);
    assert!(d.delete.is_empty(), "not run again: {:?}", d.delete);
    assert!(
        d.status.platforms[1].message.is_empty(),
        "{}",
        d.status.platforms[1].message
    );
    // Half a minute later on the operator's clock, the pod is still within
    // its grace; the Job's result is overdue only after 30 s.
    w.wait(29);
    assert!(w.decide().delete.is_empty());
    w.wait(2);
    assert_eq!(w.decide().delete, [w.name(0)]);
    w.wait(30);
    let d = w.decide();
    assert!(
        d.status.platforms[1]
            .message
            .contains("has started no container after 61s"),
        "{}",
        d.status.platforms[1].message
    );
}

/// A core/v1 Event about an object, as a cluster component writes it.
fn event(kind: &str, name: &str, reason: &str, message: &str) -> k8s_openapi::api::core::v1::Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}.1"), "namespace": "ci"},
        "involvedObject": {"kind": kind, "name": name, "namespace": "ci"},
        "reason": reason, "message": message, "type": "Warning", "count": 1,
    }))
    .unwrap()
}

#[test]
fn a_pod_the_job_controller_cannot_create_is_named_and_stalls() {
    let mut w = World::new().with_jobs([json!([]), json!([])]);
    w.pods
        .push(pod(&w.name(0), Some("amd-1"), json!({"phase": "Running"})));
    let refusal = "Error creating: pods \"app-x\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false";
    let events = [event("Job", &w.name(1), "FailedCreate", refusal)];
    let observed = Observation::of(&w.jobs, &w.pods, now()).with_events(&events);
    let d = step(
        &w.resource,
        decide(&w.plan, &observed, None, None),
        &w.plan.mounts,
    );
    let arm = &d.status.platforms[1];
    assert_eq!(
        arm.phase,
        PlatformPhase::Pending,
        "not failed: it may clear"
    );
    assert!(
        arm.message.contains("FailedCreate") && arm.message.contains("PodSecurity"),
        "{}",
        arm.message
    );
    let stalled = World::condition(&d, "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "FailedCreate")
    );
    assert!(
        stalled.message.contains("linux/arm64"),
        "{}",
        stalled.message
    );
    assert_eq!(d.status.phase, Some(Phase::Building));
    let notice = d
        .notices
        .iter()
        .find(|n| n.reason == "FailedCreate")
        .unwrap();
    assert!(notice.warning && notice.note.contains("PodSecurity"));
    // Once a pod exists, the old Event says nothing more.
    w.pods
        .push(pod(&w.name(1), Some("arm-1"), json!({"phase": "Running"})));
    let observed = Observation::of(&w.jobs, &w.pods, now()).with_events(&events);
    let d = step(&w.resource, decide(&w.plan, &observed, None, None), &[]);
    assert!(d.status.platforms[1].message.is_empty());
    assert!(World::condition(&d, "Stalled").is_none());
}

#[test]
fn a_pod_waiting_for_an_autoscaler_is_waited_for_then_fails_saying_it_never_got_a_node() {
    let mut w = World::new().with_jobs([json!([]), json!([])]);
    let arm = format!("{}-abcde", w.name(1));
    w.pods.push(pod(&w.name(1), None, json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}]})));
    let events = [event(
        "Pod",
        &arm,
        "TriggeredScaleUp",
        "pod triggered scale-up: [{arm 0->1 (max: 3)}]",
    )];
    let observed = Observation::of(&w.jobs, &w.pods, now()).with_events(&events);
    let waiting = step(&w.resource, decide(&w.plan, &observed, None, None), &[]);
    let platform = &waiting.status.platforms[1];
    assert_eq!(platform.phase, PlatformPhase::Pending);
    assert!(
        platform.message.contains("waiting for a node") && platform.message.contains("arm 0->1"),
        "{}",
        platform.message
    );
    assert!(
        platform.message.contains("didn't match"),
        "the scheduler's reason: {}",
        platform.message
    );
    let notice = waiting
        .notices
        .iter()
        .find(|n| n.reason == "WaitingForNode")
        .unwrap();
    assert!(!notice.warning, "waited for, not a problem");
    // The deadline passes with no node: the Job fails, and says why.
    w.resource.status = Some(waiting.status);
    w.jobs[1] = job(&w.name(1), &w.plan.build_id, failed("DeadlineExceeded"));
    w.pods.clear();
    let d = w.decide();
    let platform = &d.status.platforms[1];
    assert_eq!(platform.phase, PlatformPhase::Failed);
    assert!(
        platform
            .message
            .contains("activeDeadlineSeconds (3600s) and never got a node")
            && platform.message.contains("arm 0->1"),
        "{}",
        platform.message
    );
    // A platform that ran and then timed out is no such case.
    let mut ran = World::new().with_jobs([json!([]), failed("DeadlineExceeded")]);
    ran.pods
        .push(pod(&ran.name(1), Some("arm-1"), json!({"phase": "Failed"})));
    let d = ran.decide();
    assert!(!d.status.platforms[1].message.contains("never got a node"));
}

#[test]
fn the_build_report_gives_each_platform_its_cache_state_and_an_unavailable_one_a_warning() {
    let mut w = World::new().with_jobs([complete(), complete()]);
    w.pods.push(succeeded_pod(
        &w.name(0),
        "amd-1",
        &format!("digest={}\ncache-hits=4\n", digest(1)),
    ));
    w.pods.push(succeeded_pod(
        &w.name(1),
        "arm-1",
        &format!(
            "digest={}\ncache-hits=0\ncache-export-error=failed pushing cache to \"x\": connection refused\n",
            digest(2)
        ),
    ));
    let d = w.decide();
    let states: Vec<_> = d.status.platforms.iter().map(|p| p.cache).collect();
    assert_eq!(
        states,
        [Some(CacheState::Hit), Some(CacheState::Unavailable)]
    );
    assert_eq!(d.status.platforms[0].message, "");
    let arm = &d.status.platforms[1];
    assert_eq!(arm.digest, Some(digest(2)), "the build stands");
    assert_eq!(
        arm.message,
        "built without its cache, which could not be written: failed pushing cache to \"x\": connection refused"
    );
    let warnings: Vec<_> = d
        .notices
        .iter()
        .filter(|n| n.reason == "CacheUnavailable")
        .collect();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].warning);
    assert!(warnings[0]
        .note
        .starts_with("linux/arm64: built without its cache"));
    assert_eq!(d.status.phase, Some(Phase::Merging));

    // Kept from the status once the pods are gone: the same words, no new Event.
    w.resource.status = Some(d.status.clone());
    w.pods.clear();
    let again = w.decide();
    assert_eq!(again.status.platforms, d.status.platforms);
    assert!(again.notices.iter().all(|n| n.reason != "CacheUnavailable"));
}

#[test]
fn a_changed_mirror_flag_never_touches_a_build_under_way() {
    // The Jobs were made before the admin added a mirror; the operator now
    // renders them differently, yet a Job's pod template is immutable: an
    // existing Job is never applied again, only missing ones are made.
    let mut w = World::new().with_jobs([json!([]), json!([])]);
    let images = BuilderImages {
        mirrors: vec!["docker.io=https://mirror.internal".parse().unwrap()],
        ..BuilderImages::default()
    };
    let valid = validate(&w.resource).unwrap();
    let mirrored = plan(&w.resource, &valid, w.plan.build_id.clone(), &images, None);
    assert_ne!(
        mirrored.build_jobs, w.plan.build_jobs,
        "the mirror is rendered"
    );
    assert_eq!(mirrored.build_id, w.plan.build_id, "the same build");
    w.plan = mirrored;
    let d = w.decide();
    assert!(d.create.is_empty(), "{:?}", d.create);
    assert!(d.delete.is_empty());
}
