//! Fault campaign: the real operator against the simulated cluster with
//! injected API errors, throttling, cut watches, forced conflicts, latency,
//! crashes, a registry outage during the merge, a build pod deleted by hand,
//! a node lost under its pod, and many resources at once. Every test ends in
//! the right final state with exactly one Job per platform (and one merge
//! Job), and a correct index in the registry.
//!
//! API faults are scoped to the operator's User-Agent, so the test's own
//! calls are never faulted. Each test prints what was injected and survived
//! (run with `-- --nocapture` to see the figures).
//!
//! `FAULT_RUNS` sets how many seeded crash runs
//! `the_operator_killed_at_random_points_loses_nothing` makes (default 20)
//! and `FAULT_SEED` their seed.

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::gate::Gate;
use harness::{
    assert_clients_get_their_platform, assert_one_job_per_platform, eventually, hello_context,
    http_get, tail, World, NAMESPACE,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::Api;
use kube_sim::{Faults, NodeSpec, RequestRecord, Taint};
use multiarch_operator::api::{MultiArchImage, Phase, PlatformPhase};
use serde_json::json;

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];
const TWO_PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64"];
const OPERATOR_AGENT: &str = "multiarch-operator/";

// ---------------------------------------------------------------------------
// Helpers

/// A world whose operator is up (ready, and leading when it elects).
async fn started_world(operator_flags: &[&str]) -> World {
    let world = World::start_with(TWO_NODES, operator_flags).await;
    let elects = !operator_flags.contains(&"--leader-elect=false");
    eventually("the operator to be ready", Duration::from_secs(60), || {
        let ready = http_get(world.operator.metrics_port, "/readyz").is_some()
            && (!elects || world.operator.log().contains("became the leader"));
        async move { ready.then_some(()) }
    })
    .await;
    world
}

/// Faults that hit the operator's requests only.
fn on_operator(faults: Faults) -> Faults {
    Faults {
        user_agent_prefix: Some(OPERATOR_AGENT.into()),
        ..faults
    }
}

/// A world whose operator meets `faults` from its first watch on (its
/// start-up too, unless it was quicker than this test; then it is
/// restarted so that its watches open under the faults). The request log
/// starts when the faults do.
async fn faulted_world(faults: Faults) -> World {
    let mut world = World::start_with(TWO_NODES, &[]).await;
    world.sim.clear_requests();
    world.sim.set_faults(on_operator(faults));
    let early = operator_requests(&world)
        .iter()
        .filter(|r| r.verb == "watch")
        .count();
    if early > 0 {
        world.operator.restart();
    }
    eventually(
        "the operator to watch under faults",
        Duration::from_secs(60),
        || {
            let watches = operator_requests(&world)
                .iter()
                .filter(|r| r.verb == "watch")
                .count();
            async move { (watches >= early + 3).then_some(()) }
        },
    )
    .await;
    world
}

fn operator_requests(world: &World) -> Vec<RequestRecord> {
    world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with(OPERATOR_AGENT))
        .collect()
}

/// What the operator's requests met: totals by answer code, and watches.
struct Tally {
    requests: usize,
    by_code: BTreeMap<u16, usize>,
    watches: usize,
}

impl Tally {
    fn of(records: &[RequestRecord]) -> Tally {
        let mut by_code = BTreeMap::new();
        for r in records {
            *by_code.entry(r.code).or_insert(0) += 1;
        }
        Tally {
            requests: records.len(),
            by_code,
            watches: records.iter().filter(|r| r.verb == "watch").count(),
        }
    }

    fn code(&self, code: u16) -> usize {
        self.by_code.get(&code).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} operator requests, answers by code {:?}, {} watch requests",
            self.requests, self.by_code, self.watches
        )
    }
}

/// The operator's API calls by verb and resource (and subresource).
fn calls_by_verb(records: &[RequestRecord]) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for r in records {
        let mut what = format!("{} {}", r.verb, r.resource);
        if !r.subresource.is_empty() {
            what = format!("{what}/{}", r.subresource);
        }
        *calls.entry(what).or_insert(0) += 1;
    }
    calls
}

/// Applies a two-platform build and checks it ends right: Succeeded, one
/// Job per platform and one merge Job, the index serving each platform.
async fn build_and_check(world: &World, name: &str, text: &'static str) -> MultiArchImage {
    world
        .apply(name, TWO_PLATFORMS, &hello_context(text), json!({}))
        .await;
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(world, name, &done).await;
    done
}

async fn check_succeeded(world: &World, name: &str, done: &MultiArchImage) {
    let status = done.status.clone().unwrap();
    assert_eq!(status.platforms_ready.as_deref(), Some("2/2"), "{name}");
    let raw = common::inspect_raw(&format!("{}:latest", done.spec.image), None).unwrap();
    assert_eq!(
        Some(common::sha256_digest(&raw)),
        status.digest,
        "{name}: the tag holds the index in status"
    );
    assert_clients_get_their_platform(name, done);
    assert_one_job_per_platform(world, name, 2).await;
}

/// The pods of one resource's build, by platform label value.
async fn pods_of(world: &World, name: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(world.client.clone(), NAMESPACE)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .collect()
}

fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// `(failed, succeeded)` pod counts in a Job's status.
async fn job_counts(world: &World, job: &str) -> (i32, i32) {
    let status = world
        .jobs()
        .get(job)
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    (status.failed.unwrap_or(0), status.succeeded.unwrap_or(0))
}

async fn apply_owned(
    world: &World,
    name: &str,
    context: &[(&'static str, String)],
    extra: serde_json::Value,
) {
    let borrowed: Vec<(&str, &str)> = context.iter().map(|(k, v)| (*k, v.as_str())).collect();
    world.apply(name, TWO_PLATFORMS, &borrowed, extra).await;
}

fn platform_message(resource: &MultiArchImage, platform: &str) -> String {
    resource
        .status
        .as_ref()
        .and_then(|s| s.platforms.iter().find(|p| p.platform == platform))
        .map(|p| p.message.clone())
        .unwrap_or_default()
}

fn ready_message(resource: &MultiArchImage) -> String {
    resource
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// A small seeded RNG (splitmix64): the crash points are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every tag of the repository either does not exist or holds something
/// complete: an image index is only ever pushed after all its children.
fn assert_no_half_pushed_tag(registry: &common::Registry, name: &str, repository: &str) {
    let path = format!("/v2/{}/tags/list", repository.split_once('/').unwrap().1);
    let tags: Vec<String> = registry_get(registry.host(), &path)
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| serde_json::from_value(v["tags"].clone()).ok())
        .unwrap_or_default();
    for tag in &tags {
        let reference = format!("{repository}:{tag}");
        let raw = common::inspect_raw(&reference, None)
            .unwrap_or_else(|e| panic!("{name}: listed tag {reference} does not resolve: {e}"));
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        for child in manifest["manifests"].as_array().into_iter().flatten() {
            let digest = child["digest"].as_str().unwrap();
            common::inspect_raw(&format!("{repository}@{digest}"), None)
                .unwrap_or_else(|e| panic!("{name}: {reference} lists {digest}, missing: {e}"));
        }
    }
    println!("{name}: tags present after the outage: {tags:?}, each complete");
}

/// A GET on the registry; the body when the answer is 200.
fn registry_get(host: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

// ---------------------------------------------------------------------------
// API faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenth_of_api_requests_failing_with_500_and_429_is_survived() {
    let world = faulted_world(Faults {
        error_rate: 0.1,
        error_code: 0,
        retry_after_seconds: 1,
        seed: 7,
        ..Faults::default()
    })
    .await;
    futures::join!(
        build_and_check(&world, "errors-a", "errors a\n"),
        build_and_check(&world, "errors-b", "errors b\n"),
    );
    let tally = Tally::of(&operator_requests(&world));
    world.sim.set_faults(Faults::default());
    println!("FAULT 10% 500/429 (seed 7): {tally}");
    assert!(
        tally.code(500) + tally.code(429) > 0,
        "errors were injected: {tally}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_cut_every_two_seconds_are_survived() {
    let world = faulted_world(Faults {
        watch_cut_after: Some(Duration::from_secs(2)),
        seed: 11,
        ..Faults::default()
    })
    .await;
    build_and_check(&world, "cuts-a", "cuts a\n").await;
    // Let a few cuts happen between builds, with nothing to do.
    let before = Tally::of(&operator_requests(&world)).watches;
    eventually(
        "watches to be cut and reopened",
        Duration::from_secs(60),
        || {
            let now = Tally::of(&operator_requests(&world)).watches;
            async move { (now >= before + 3).then_some(()) }
        },
    )
    .await;
    build_and_check(&world, "cuts-b", "cuts b\n").await;
    let tally = Tally::of(&operator_requests(&world));
    world.sim.set_faults(Faults::default());
    // Three watches (resources, Jobs, Pods) open at start; every further
    // watch request reopens a cut stream.
    let reopened = tally.watches.saturating_sub(3);
    println!("FAULT watch cut every 2 s: {tally}, i.e. {reopened} streams cut and reopened");
    assert!(reopened >= 3, "{tally}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_conflicts_on_status_writes_are_survived() {
    let world = faulted_world(Faults {
        conflict_rate: 0.5,
        conflicts_status_only: true,
        seed: 13,
        ..Faults::default()
    })
    .await;
    futures::join!(
        build_and_check(&world, "conflicts-a", "conflicts a\n"),
        build_and_check(&world, "conflicts-b", "conflicts b\n"),
    );
    let records = operator_requests(&world);
    world.sim.set_faults(Faults::default());
    let status_writes: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| r.subresource == "status" && r.verb == "patch")
        .collect();
    let conflicts = status_writes.iter().filter(|r| r.code == 409).count();
    println!(
        "FAULT 50% 409 on status writes (seed 13): {} status writes, {conflicts} answered 409; {}",
        status_writes.len(),
        Tally::of(&records)
    );
    assert!(conflicts > 0, "conflicts were injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_latency_of_200_ms_is_survived() {
    let world = faulted_world(Faults {
        latency: Duration::from_millis(200),
        seed: 17,
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    build_and_check(&world, "slow", "slow\n").await;
    let tally = Tally::of(&operator_requests(&world));
    world.sim.set_faults(Faults::default());
    println!(
        "FAULT 200 ms on every operator request: {tally}; apply to checked index in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Crashes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_killed_at_random_points_loses_nothing() {
    let runs = env_number("FAULT_RUNS", 20) as usize;
    let seed = env_number("FAULT_SEED", 20240607);
    let mut rng = Rng(seed);
    // No leader election: a restarted operator starts at once instead of
    // waiting out its predecessor's Lease (the election itself is covered
    // by operator_e2e's crash test).
    let mut world = started_world(&["--leader-elect=false"]).await;
    let started = Instant::now();
    let mut at_kill: BTreeMap<String, usize> = BTreeMap::new();
    // Every resource's phase at every kill (earlier runs' builds included).
    let mut in_flight: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = Vec::new();
    // Runs overlap: each applies a resource and kills the operator at a
    // random point after it, so earlier builds are interrupted again.
    for run in 0..runs {
        let name = format!("crash{run}");
        world
            .apply(&name, TWO_PLATFORMS, &hello_context("crash\n"), json!({}))
            .await;
        let delay = Duration::from_millis(rng.below(3000));
        tokio::time::sleep(delay).await;
        let phase = world.get(&name).await.status.and_then(|s| s.phase);
        for other in world.mais().list(&ListParams::default()).await.unwrap() {
            let phase = other.status.and_then(|s| s.phase);
            *in_flight.entry(format!("{phase:?}")).or_insert(0) += 1;
        }
        world.operator.kill();
        let down = Duration::from_millis(rng.below(1000));
        tokio::time::sleep(down).await;
        world.operator.restart();
        *at_kill.entry(format!("{phase:?}")).or_insert(0) += 1;
        seen.push(format!(
            "{name}: killed {} ms after apply in {phase:?}, down {} ms",
            delay.as_millis(),
            down.as_millis()
        ));
    }
    for run in 0..runs {
        let name = format!("crash{run}");
        let done = world.wait_phase(&name, Phase::Succeeded).await;
        check_succeeded(&world, &name, &done).await;
    }
    println!("{}", seen.join("\n"));
    println!(
        "FAULT operator SIGKILLed {runs} times (seed {seed}): phase of the run's resource at its kill {at_kill:?}, \
         of every resource at every kill {in_flight:?}; \
         all {runs} Succeeded with one Job per platform and one merge Job, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Registry outage during the merge

/// Builds `name` with the merge pod held unschedulable (a taint on every
/// node) until the registry has been stopped: the outage starts while the
/// resource is `Merging`, before the merge ever talks to the registry.
async fn stop_the_registry_when_merging(world: &mut World, gate: &Gate, name: &str) -> Instant {
    apply_owned(world, name, &gate.context(name), json!({})).await;
    gate.wait_hits(2).await;
    let hold = Taint::new("faults.test/hold", "merge", "NoSchedule");
    for (node, _) in TWO_NODES {
        world.sim.set_taints(node, vec![hold.clone()]).unwrap();
    }
    gate.open();
    eventually(
        "Merging, the merge pod held",
        Duration::from_secs(120),
        || async {
            let merging =
                world.get(name).await.status.and_then(|s| s.phase) == Some(Phase::Merging);
            let held = pods_of(world, name)
                .await
                .iter()
                .any(|p| p.metadata.name.as_deref().unwrap_or("").contains("-merge-"));
            (merging && held).then_some(())
        },
    )
    .await;
    world.registry.stop_serving();
    let stopped = Instant::now();
    for (node, _) in TWO_NODES {
        world.sim.set_taints(node, vec![]).unwrap();
    }
    stopped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_during_the_merge_is_retried_within_the_backoff() {
    let mut world = started_world(&[]).await;
    let gate = Gate::start();
    let name = "outage";
    let stopped = stop_the_registry_when_merging(&mut world, &gate, name).await;
    let merge_job = world.get(name).await.status.unwrap().merge_job.unwrap();
    // The merge fails against the stopped registry at least once...
    eventually(
        "a failed merge attempt",
        Duration::from_secs(60),
        || async { (job_counts(&world, &merge_job).await.0 >= 1).then_some(()) },
    )
    .await;
    // ...then the registry comes back, on the same port with the same storage.
    world.registry.serve_again();
    let down_for = stopped.elapsed();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    let (failed, succeeded) = job_counts(&world, &merge_job).await;
    assert_eq!(succeeded, 1);
    assert!(failed <= 3, "within backoffLimit 3: {failed} failures");
    println!(
        "FAULT registry stopped while Merging, down {:.1} s: \
         merge Job failed {failed} time(s), then pushed the index",
        down_for.as_secs_f64()
    );
    assert_no_half_pushed_tag(&world.registry, name, &done.spec.image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_longer_than_the_backoff_fails_clearly_and_pushes_nothing() {
    let mut world = started_world(&[]).await;
    let gate = Gate::start();
    let name = "long-outage";
    stop_the_registry_when_merging(&mut world, &gate, name).await;
    let failed = world.wait_phase(name, Phase::Failed).await;
    let message = ready_message(&failed);
    println!("FAULT registry down past the merge backoff: Ready=False: {message}");
    assert!(message.contains("merge"), "names the merge: {message}");
    assert!(
        message.contains(world.registry.host()),
        "names the registry: {message}"
    );
    let merge_job = failed.status.clone().unwrap().merge_job.unwrap();
    assert_eq!(
        job_counts(&world, &merge_job).await,
        (4, 0),
        "backoffLimit 3"
    );
    world.registry.serve_again();
    for tag in &failed.spec.tags {
        let reference = format!("{}:{tag}", failed.spec.image);
        assert!(
            common::inspect_raw(&reference, None).is_err(),
            "{reference} was never pushed"
        );
    }
    assert_no_half_pushed_tag(&world.registry, name, &failed.spec.image);

    // The registry is back: `kubectl annotate mai long-outage
    // multiarch.dev/retry=1` runs the merge again, and no platform.
    let before = job_uids(&world, name).await;
    let home = tempfile::tempdir().unwrap();
    let annotate = std::process::Command::new(common::require_tool("kubectl", "kubernetes-client"))
        .args([
            "annotate",
            "mai",
            name,
            "multiarch.dev/retry=1",
            "-n",
            NAMESPACE,
        ])
        .env("KUBECONFIG", world.sim.kubeconfig_path())
        .env("HOME", home.path())
        .output()
        .expect("run kubectl");
    assert!(
        annotate.status.success(),
        "{}",
        String::from_utf8_lossy(&annotate.stderr)
    );
    let done = eventually(
        "the retried merge to succeed",
        Duration::from_secs(120),
        || async {
            let resource = world.get(name).await;
            let status = resource.status.clone()?;
            (status.last_handled_retry.as_deref() == Some("1")
                && status.phase == Some(Phase::Succeeded))
            .then_some(resource)
        },
    )
    .await;
    // The index, as in check_succeeded (whose one-Job-each check the rerun
    // merge Job would fail by design).
    let raw = common::inspect_raw(&format!("{}:latest", done.spec.image), None).unwrap();
    assert_eq!(
        Some(common::sha256_digest(&raw)),
        done.status.clone().unwrap().digest
    );
    assert_clients_get_their_platform(name, &done);
    let after = job_uids(&world, name).await;
    let status = done.status.clone().unwrap();
    for platform in &status.platforms {
        assert_eq!(
            after.get(&platform.job),
            before.get(&platform.job),
            "{} not rebuilt",
            platform.platform
        );
        assert_eq!(job_counts(&world, &platform.job).await, (0, 1));
    }
    assert_ne!(
        after.get(&merge_job),
        before.get(&merge_job),
        "the merge ran again"
    );
    assert_eq!(after.len(), 3, "{after:?}");
    println!("FAULT registry down past the merge retries, then retry=1: {name} Succeeded, no platform rebuilt");
}

// ---------------------------------------------------------------------------
// Pods and nodes lost

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_pod_deleted_by_hand_is_replaced_and_the_build_succeeds() {
    let world = started_world(&[]).await;
    let gate = Gate::start();
    let name = "deleted-pod";
    apply_owned(&world, name, &gate.context(name), json!({})).await;
    gate.wait_hits(2).await;
    // The build runs in an init container (the pod shows Pending, Init:1/2):
    // it is at the gate, so it runs.
    let victim = pods_of(&world, name)
        .await
        .into_iter()
        .find(|p| pod_node(p) == Some("sim-arm64"))
        .expect("the arm64 build pod");
    assert!(
        matches!(pod_phase(&victim), "Pending" | "Running"),
        "not finished: {:?}",
        victim.status
    );
    let victim_name = victim.metadata.name.clone().unwrap();
    Api::<Pod>::namespaced(world.client.clone(), NAMESPACE)
        .delete(&victim_name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("a replacement pod", Duration::from_secs(60), || async {
        pods_of(&world, name)
            .await
            .iter()
            .any(|p| {
                pod_node(p) == Some("sim-arm64")
                    && p.metadata.name.as_deref() != Some(&victim_name)
                    && p.metadata.deletion_timestamp.is_none()
            })
            .then_some(())
    })
    .await;
    gate.open();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    let arm = &done.status.clone().unwrap().platforms[1];
    assert_eq!(arm.platform, "linux/arm64");
    assert_eq!(
        job_counts(&world, &arm.job).await,
        (1, 1),
        "one pod lost, one more ran"
    );
    println!("FAULT build pod {victim_name} deleted while running: replaced, {name} Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_under_its_build_is_retried_once_it_is_back() {
    let world = started_world(&[]).await;
    let gate = Gate::start();
    let name = "lost-node";
    apply_owned(
        &world,
        name,
        &gate.context(name),
        json!({"backoffLimit": 1}),
    )
    .await;
    gate.wait_hits(2).await;
    world.sim.remove_node("sim-arm64");
    // The Job's next pod has nowhere to go: the operator says so.
    let waiting = eventually(
        "arm64 reported unschedulable",
        Duration::from_secs(60),
        || async {
            let resource = world.get(name).await;
            let message = platform_message(&resource, "linux/arm64");
            message.contains("cannot be scheduled").then_some(message)
        },
    )
    .await;
    world
        .sim
        .add_node(NodeSpec::new("sim-arm64", "linux/arm64"));
    gate.open();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    let arm = &done.status.clone().unwrap().platforms[1];
    // The pod lost with its node carries DisruptionTarget: the Job's
    // podFailurePolicy ignores it, so it counts no failure.
    assert_eq!(job_counts(&world, &arm.job).await, (0, 1));
    println!("FAULT node sim-arm64 removed under its build: reported \"{waiting}\"; after the node came back, {name} Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lost_under_a_build_without_retries_does_not_fail_it() {
    // backoffLimit 0 allows no failure of the build itself, and losing the
    // node is none: the disrupted pod is replaced, waits for a node, and
    // the build succeeds once one is back.
    let world = started_world(&[]).await;
    let gate = Gate::start();
    let name = "lost-node-no-retry";
    apply_owned(
        &world,
        name,
        &gate.context(name),
        json!({"backoffLimit": 0}),
    )
    .await;
    gate.wait_hits(2).await;
    world.sim.remove_node("sim-arm64");
    eventually(
        "arm64 waiting for a node",
        Duration::from_secs(60),
        || async {
            let resource = world.get(name).await;
            let status = resource.status.clone()?;
            assert_ne!(
                status.phase,
                Some(Phase::Failed),
                "a disruption failed the build: {status:?}"
            );
            platform_message(&resource, "linux/arm64")
                .contains("cannot be scheduled")
                .then_some(())
        },
    )
    .await;
    world
        .sim
        .add_node(NodeSpec::new("sim-arm64", "linux/arm64"));
    gate.open();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    let arm = &done.status.clone().unwrap().platforms[1];
    assert_eq!(job_counts(&world, &arm.job).await, (0, 1));
    println!(
        "FAULT node removed, backoffLimit 0: not counted, {name} Succeeded once the node was back"
    );
}

// ---------------------------------------------------------------------------
// Load (the full 200 is `cargo bench --bench load`)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_resources_at_once_all_succeed_and_none_is_rebuilt() {
    let count = 20;
    let world = started_world(&[]).await;
    world.sim.clear_requests();
    let started = Instant::now();
    let names: Vec<String> = (0..count).map(|i| format!("load{i}")).collect();
    let contexts: Vec<Vec<(&'static str, String)>> = (0..count)
        .map(|i| {
            vec![
                (
                    "Dockerfile",
                    "FROM scratch\nCOPY hello.txt /hello.txt\n".to_string(),
                ),
                ("hello.txt", format!("load {i}\n{}\n", "x".repeat(i * 997))),
            ]
        })
        .collect();
    futures::future::join_all(
        names
            .iter()
            .zip(&contexts)
            .map(|(name, context)| apply_owned(&world, name, context, json!({}))),
    )
    .await;
    let mut results = Vec::new();
    for name in &names {
        results.push(world.wait_phase(name, Phase::Succeeded).await);
    }
    let elapsed = started.elapsed();
    let mut finished = Vec::new();
    for (name, done) in names.iter().zip(&results) {
        let status = done.status.clone().unwrap();
        for platform in &status.platforms {
            assert_eq!(platform.phase, PlatformPhase::Succeeded);
            assert_eq!(
                job_counts(&world, &platform.job).await,
                (0, 1),
                "{name}: built once"
            );
        }
        let merge = status.merge_job.clone().unwrap();
        assert_eq!(
            job_counts(&world, &merge).await,
            (0, 1),
            "{name}: merged once"
        );
        check_succeeded(&world, name, done).await;
        let last_built = status
            .platforms
            .iter()
            .filter_map(|p| p.completion_time.clone())
            .max();
        finished.push((last_built, name.clone()));
    }
    finished.sort();
    let order: Vec<&str> = finished.iter().map(|(_, n)| n.as_str()).collect();
    let records = operator_requests(&world);
    println!(
        "LOAD {count} at once: all Succeeded in {:.1} s; build completion order {order:?}; \
         operator peak memory {}; {} API calls: {:?}",
        elapsed.as_secs_f64(),
        peak_memory(world.operator.pid()),
        records.len(),
        calls_by_verb(&records)
    );
}

fn peak_memory(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_failing_while_the_operator_starts_is_waited_out() {
    let mut world = World::start_with(TWO_NODES, &[]).await;
    world.operator.kill();
    world.sim.clear_requests();
    world.sim.set_faults(on_operator(Faults {
        error_rate: 1.0,
        error_code: 500,
        seed: 19,
        ..Faults::default()
    }));
    world.operator.restart();
    // Three failed requests: it retried rather than exit.
    let deadline = Instant::now() + Duration::from_secs(60);
    while operator_requests(&world)
        .iter()
        .filter(|r| r.code == 500)
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "the operator gave up: {:?}\n{}",
            operator_requests(&world),
            tail(&world.operator.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.sim.set_faults(Faults::default());
    let tally = Tally::of(&operator_requests(&world));
    build_and_check(&world, "late-start", "late start\n").await;
    println!("FAULT every request failing (500) while the operator starts: {tally}; then it built");
}

// ---------------------------------------------------------------------------
// The cluster's own behaviour: collected pods, pull back-off, evictions,
// reclaimed and late nodes, refused pods, refused specs, skewed clocks

/// The build pod of `platform`'s Job, by the node it runs on.
async fn build_pod_on(world: &World, name: &str, node: &str) -> Pod {
    pods_of(world, name)
        .await
        .into_iter()
        .find(|p| {
            pod_node(p) == Some(node)
                && !p.metadata.name.as_deref().unwrap_or("").contains("-merge-")
        })
        .unwrap_or_else(|| panic!("{name}: a build pod on {node}"))
}

/// The uids of every Job of `name`, by Job name.
async fn job_uids(world: &World, name: &str) -> BTreeMap<String, String> {
    world
        .jobs()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| Some((j.metadata.name?, j.metadata.uid?)))
        .filter(|(job, _)| job.starts_with(&format!("{name}-")))
        .collect()
}

fn repository_of(image: &str) -> String {
    image.rsplit_once(':').map(|(r, _)| r.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_pod_collected_while_another_platform_builds_keeps_its_digest() {
    let world = started_world(&[]).await;
    let gate = Gate::start();
    let name = "vanished";
    // amd64 builds at once; arm64 waits at the gate.
    gate.pass("amd64");
    let context = vec![(
        "Dockerfile",
        format!(
            "FROM scratch\nARG TARGETARCH\nADD http://127.0.0.1:{}/{name}-${{TARGETARCH}}.txt /gated.txt\n",
            gate.port
        ),
    )];
    apply_owned(&world, name, &context, json!({})).await;
    let amd = eventually("amd64 built", Duration::from_secs(120), || async {
        let status = world.get(name).await.status?;
        status
            .platforms
            .into_iter()
            .find(|p| p.platform == "linux/amd64" && p.phase == PlatformPhase::Succeeded)
    })
    .await;
    assert_eq!(
        world.get(name).await.status.unwrap().phase,
        Some(Phase::Building)
    );
    // Its finished pod is collected (PodGC, a scaled-down node).
    let pods: Api<Pod> = Api::namespaced(world.client.clone(), NAMESPACE);
    let mut deleted = 0;
    for pod in pods_of(&world, name).await {
        if pod_node(&pod) == Some("sim-amd64") && pod_phase(&pod) == "Succeeded" {
            pods.delete(
                pod.metadata.name.as_deref().unwrap(),
                &DeleteParams::default(),
            )
            .await
            .unwrap();
            deleted += 1;
        }
    }
    assert_eq!(deleted, 1);
    // Long enough for any grace period to run out before arm64 finishes.
    tokio::time::sleep(Duration::from_secs(35)).await;
    gate.open();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    let kept = &done.status.clone().unwrap().platforms[0];
    assert_eq!(kept.digest, amd.digest, "the digest seen once is kept");
    assert_eq!(job_counts(&world, &amd.job).await, (0, 1), "not rebuilt");
    println!("FAULT finished amd64 pod deleted: {name} Succeeded with its kept digest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_two_image_pulls_failing_are_waited_out() {
    let world = started_world(&[]).await;
    let image = repository_of(multiarch_operator::render::DEFAULT_BUILDAH_IMAGE);
    world.sim.set_faults(Faults {
        image_pull_failures: vec![kube_sim::PullFailure::new(
            &image,
            2,
            "toomanyrequests: You have reached your pull rate limit",
        )],
        ..Faults::default()
    });
    let name = "pulls";
    world
        .apply(
            name,
            TWO_PLATFORMS,
            &hello_context("pulls\n"),
            json!({"backoffLimit": 0}),
        )
        .await;
    let reported = eventually(
        "a pull failure reported",
        Duration::from_secs(60),
        || async {
            let resource = world.get(name).await;
            let status = resource.status.clone()?;
            assert_ne!(
                status.phase,
                Some(Phase::Failed),
                "a pull back-off failed the build"
            );
            status
                .platforms
                .iter()
                .find(|p| p.message.contains("rate limit"))
                .map(|p| p.message.clone())
        },
    )
    .await;
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    println!("FAULT the first two pulls of {image} failed: reported \"{reported}\", then {name} Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_mid_build_is_retried_without_counting_against_backoff_limit() {
    let world = started_world(&[]).await;
    let gate = Gate::start();
    let name = "evicted";
    apply_owned(
        &world,
        name,
        &gate.context(name),
        json!({"backoffLimit": 0}),
    )
    .await;
    gate.wait_hits(2).await;
    let victim = build_pod_on(&world, name, "sim-arm64").await;
    let victim_name = victim.metadata.name.clone().unwrap();
    Api::<Pod>::namespaced(world.client.clone(), NAMESPACE)
        .evict(&victim_name, &Default::default())
        .await
        .expect("evict through the Eviction API");
    eventually("a replacement pod", Duration::from_secs(60), || async {
        pods_of(&world, name)
            .await
            .iter()
            .any(|p| {
                pod_node(p) == Some("sim-arm64") && p.metadata.name.as_deref() != Some(&victim_name)
            })
            .then_some(())
    })
    .await;
    gate.open();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    let arm = &done.status.clone().unwrap().platforms[1];
    assert_eq!(
        job_counts(&world, &arm.job).await,
        (0, 1),
        "the eviction counted no failure"
    );
    println!("FAULT {victim_name} evicted mid-build with backoffLimit 0: {name} Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_karpenter_reclaim_of_the_arm64_node_is_survived() {
    let world = started_world(&[]).await;
    let gate = Gate::start();
    let name = "reclaimed";
    apply_owned(
        &world,
        name,
        &gate.context(name),
        json!({"backoffLimit": 0}),
    )
    .await;
    gate.wait_hits(2).await;
    world
        .sim
        .reclaim_node("sim-arm64", kube_sim::Disruption::KarpenterConsolidation)
        .unwrap();
    eventually(
        "arm64 waiting for a node",
        Duration::from_secs(60),
        || async {
            let resource = world.get(name).await;
            assert_ne!(resource.status.clone()?.phase, Some(Phase::Failed));
            platform_message(&resource, "linux/arm64")
                .contains("cannot be scheduled")
                .then_some(())
        },
    )
    .await;
    // Karpenter brings up a replacement.
    world
        .sim
        .add_node(NodeSpec::new("arm-replacement", "linux/arm64"));
    gate.open();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    let arm = &done.status.clone().unwrap().platforms[1];
    assert_eq!(arm.node.as_deref(), Some("arm-replacement"));
    assert_eq!(job_counts(&world, &arm.job).await, (0, 1));
    println!("FAULT sim-arm64 reclaimed by Karpenter consolidation mid-build: {name} Succeeded on the replacement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm64_from_a_node_group_scaled_from_zero_is_waited_for() {
    let world = World::start_configured(&[("sim-amd64", "linux/amd64")], &[], |config| {
        config.node_groups = vec![kube_sim::NodeGroup::new(
            "arm",
            "linux/arm64",
            0,
            3,
            Duration::from_secs(20),
        )];
    })
    .await;
    let name = "scale-up";
    let started = Instant::now();
    world
        .apply(name, TWO_PLATFORMS, &hello_context("scale\n"), json!({}))
        .await;
    let waiting = eventually(
        "arm64 waiting for a node",
        Duration::from_secs(30),
        || async {
            let resource = world.get(name).await;
            let message = platform_message(&resource, "linux/arm64");
            message.contains("waiting for a node").then_some(message)
        },
    )
    .await;
    assert!(waiting.contains("arm 0->1"), "{waiting}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "reported before the node came"
    );
    let event = world.wait_event(name, "WaitingForNode").await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
    println!(
        "FAULT arm64 from zero nodes: reported \"{waiting}\" in time; {name} Succeeded after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A namespace with these labels.
async fn namespace(world: &World, name: &str, labels: serde_json::Value) {
    let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(world.client.clone())
        .patch(
            name,
            &kube::api::PatchParams::apply("e2e").force(),
            &kube::api::Patch::Apply(&ns),
        )
        .await
        .unwrap();
}

/// Waits until `name` in `namespace` names the Job controller's refusal
/// containing `words`, with the `Stalled` condition; the seconds it took.
async fn wait_failed_create(world: &World, namespace: &str, name: &str, words: &str) -> f64 {
    let started = Instant::now();
    let message = eventually("FailedCreate named", Duration::from_secs(20), || async {
        let resource = world.mais_in(namespace).get(name).await.ok()?;
        let status = resource.status.clone()?;
        let stalled = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "FailedCreate");
        let message = status
            .platforms
            .iter()
            .map(|p| p.message.clone())
            .find(|m| m.contains("FailedCreate") && m.contains(words))?;
        stalled.then_some(message)
    })
    .await;
    let took = started.elapsed().as_secs_f64();
    println!("FAULT {namespace}/{name}: named in {took:.1} s: {message}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_refused_by_pod_security_are_named_within_seconds() {
    let world = started_world(&[]).await;
    let ns = "restricted";
    namespace(
        &world,
        ns,
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    world
        .apply_in(ns, "psa", TWO_PLATFORMS, &hello_context("psa\n"), json!({}))
        .await;
    let took = wait_failed_create(&world, ns, "psa", "PodSecurity").await;
    assert!(took < 15.0, "{took} s");
    // The administrator relaxes the namespace: the build goes on by itself.
    namespace(
        &world,
        ns,
        json!({"pod-security.kubernetes.io/enforce": "privileged"}),
    )
    .await;
    eventually("psa Succeeded", Duration::from_secs(120), || async {
        let status = world.mais_in(ns).get("psa").await.ok()?.status?;
        (status.phase == Some(Phase::Succeeded)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_service_account_is_named_and_the_build_goes_on_once_it_exists() {
    let world = started_world(&[]).await;
    let name = "no-sa";
    world
        .apply(
            name,
            TWO_PLATFORMS,
            &hello_context("sa\n"),
            json!({"serviceAccountName": "builder"}),
        )
        .await;
    let took = wait_failed_create(
        &world,
        NAMESPACE,
        name,
        "serviceaccount \"builder\" not found",
    )
    .await;
    assert!(took < 15.0, "{took} s");
    let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "builder", "namespace": NAMESPACE},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(world.client.clone(), NAMESPACE)
        .create(&Default::default(), &sa)
        .await
        .unwrap();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    check_succeeded(&world, name, &done).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_the_api_server_refuses_ends_invalid_spec_naming_the_field_once() {
    let world = started_world(&[]).await;
    let cases = [
        (
            "bad-toleration",
            json!({"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}),
            "spec.tolerations[0]",
        ),
        (
            "bad-resources",
            json!({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}),
            "spec.resources",
        ),
    ];
    for (name, spec, field) in &cases {
        world
            .apply(
                name,
                TWO_PLATFORMS,
                &hello_context("refused\n"),
                spec.clone(),
            )
            .await;
        let failed = world.wait_phase(name, Phase::Failed).await;
        let status = failed.status.clone().unwrap();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(ready.message.contains(field), "{name}: {}", ready.message);
        assert!(
            !ready.message.contains("spec.template"),
            "{}",
            ready.message
        );
        let event = world.wait_event(name, "InvalidSpec").await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        println!("FAULT {name}: Ready=False InvalidSpec: {}", ready.message);
    }
    // Settled: no Job is applied again and again.
    world.sim.clear_requests();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let applies = operator_requests(&world)
        .iter()
        .filter(|r| r.resource == "jobs" && r.verb == "patch")
        .count();
    assert_eq!(applies, 0, "refused Jobs are not retried");
    assert!(world.job_names().await.is_empty(), "nothing runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_60_seconds_ahead_of_the_api_server_misjudges_nothing() {
    let world = World::start_configured(TWO_NODES, &[], |config| {
        config.clock_offset_seconds = -60;
    })
    .await;
    let name = "skewed";
    // The context ConfigMap appears late: the pods wait, scheduled, with
    // no container started, for a while.
    world
        .apply(
            name,
            TWO_PLATFORMS,
            &hello_context("skew\n"),
            json!({"source": {"configMap": {"name": "late-context"}}}),
        )
        .await;
    let watch_until = Instant::now() + Duration::from_secs(15);
    let mut scheduled = false;
    while Instant::now() < watch_until {
        let resource = world.get(name).await;
        for platform in resource.status.iter().flat_map(|s| s.platforms.iter()) {
            assert!(
                !platform.message.contains("started no container"),
                "judged by the API server's timestamps: {}",
                platform.message
            );
            scheduled |= platform.node.is_some();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(scheduled, "the pods were scheduled meanwhile");
    let config_map: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "late-context", "namespace": NAMESPACE},
        "data": {"Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n", "hello.txt": "skew\n"},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(world.client.clone(), NAMESPACE)
        .create(&Default::default(), &config_map)
        .await
        .unwrap();
    let done = world.wait_phase(name, Phase::Succeeded).await;
    for platform in &done.status.clone().unwrap().platforms {
        assert_eq!(
            job_counts(&world, &platform.job).await,
            (0, 1),
            "never run again"
        );
    }
    let uids = job_uids(&world, name).await;
    assert_eq!(
        uids.len(),
        3,
        "one Job per platform and the merge: {uids:?}"
    );
    println!("FAULT the operator 60 s ahead of the API server: {name} Succeeded, nothing rerun");
}
