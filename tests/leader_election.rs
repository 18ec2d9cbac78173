//! Leader election against another replica whose clock is skewed: the real
//! operator binary judges the other's Lease on its own monotonic clock, from
//! when it saw the record change, so it neither takes a renewed Lease early
//! nor waits on a far-future `renewTime`.
//!
//! The other replica is played by the test, writing the Lease as client-go
//! or this operator would, with `renewTime` on a clock an hour off. And a
//! leader whose calls hang steps down, by its call timeouts, before a
//! standby may take over.

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{eventually, hello_context, World};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use multiarch_operator::api::Phase;
use serde_json::json;

const NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64")];
const LEASE: &str = "multiarch-operator";
/// The duration the other replica promises in its Lease.
const GHOST_SECONDS: u64 = 6;
/// The operator looks at the Lease every quarter of its lease duration (the
/// harness runs it with 8 s); the rest is room for a busy machine.
const TAKEOVER_SLACK: Duration = Duration::from_secs(4);

fn ghost_spec(clock_offset: SignedDuration) -> LeaseSpec {
    let now = MicroTime(Timestamp::now() + clock_offset);
    LeaseSpec {
        holder_identity: Some("ghost".into()),
        lease_duration_seconds: Some(GHOST_SECONDS as i32),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(0),
        ..LeaseSpec::default()
    }
}

/// The cluster with the other replica's Lease in place, then the operator.
async fn world_with_ghost(clock_offset: SignedDuration) -> (World, Api<Lease>, Instant) {
    let sim = harness::start_sim(NODES);
    harness::install_operator_identity(&sim);
    let leases: Api<Lease> = Api::namespaced(sim.client(), harness::OPERATOR_NAMESPACE);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(LEASE.into()),
            ..ObjectMeta::default()
        },
        spec: Some(ghost_spec(clock_offset)),
    };
    let written = Instant::now();
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the other replica's Lease");
    (World::start_on(sim, &[]).await, leases, written)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .unwrap()?
        .spec
        .and_then(|s| s.holder_identity)
}

/// Waits for the operator to hold the Lease; how long after `since`.
async fn takeover_after(world: &World, leases: &Api<Lease>, since: Instant) -> Duration {
    eventually(
        "the operator to take the Lease",
        Duration::from_secs(30),
        || async {
            let holder = holder(leases).await;
            (holder.as_deref().is_some_and(|h| h.starts_with("e2e-"))).then(Instant::now)
        },
    )
    .await;
    let elapsed = since.elapsed();
    assert!(
        world.operator.log().contains("became the leader"),
        "{}",
        world.operator.log()
    );
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewing_holder_an_hour_behind_keeps_the_lease_and_is_replaced_a_lease_duration_after_it_stops(
) {
    let behind = SignedDuration::from_hours(-1);
    let (world, leases, _) = world_with_ghost(behind).await;
    world
        .apply(
            "waits",
            &["linux/amd64"],
            &hello_context("waits\n"),
            json!({}),
        )
        .await;
    // The other replica renews every second for 10 s. Its renewTime, an hour
    // old by our clock, must not make the operator take over: were it to,
    // the renewal after would meet a changed resourceVersion (409).
    let mut last_write = Instant::now();
    let renewing = Instant::now();
    while renewing.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut lease = leases.get(LEASE).await.unwrap();
        assert_eq!(
            lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref()),
            Some("ghost"),
            "the operator took a Lease that was being renewed\n{}",
            world.operator.log()
        );
        let mut spec = ghost_spec(behind);
        spec.acquire_time = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
        lease.spec = Some(spec);
        last_write = Instant::now();
        leases
            .replace(LEASE, &PostParams::default(), &lease)
            .await
            .expect("the other replica renews its own Lease");
    }
    let waiting = world.get("waits").await;
    assert!(
        waiting.status.is_none(),
        "a standby reconciled: {:?}",
        waiting.status
    );
    assert!(!world.operator.log().contains("became the leader"));

    // It stops renewing: the operator takes over after the promised 6 s,
    // counted from when it saw the last renewal, and never before.
    let elapsed = takeover_after(&world, &leases, last_write).await;
    assert!(
        elapsed >= Duration::from_secs(GHOST_SECONDS),
        "took over {elapsed:?} after the last renewal, before the {GHOST_SECONDS} s lease ran out"
    );
    assert!(
        elapsed < Duration::from_secs(GHOST_SECONDS) + TAKEOVER_SLACK,
        "took over only {elapsed:?} after the last renewal"
    );
    let lease = leases.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(lease.lease_transitions, Some(1));
    // Now the leader, it builds what waited.
    world.wait_phase("waits", Phase::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_holder_an_hour_ahead_is_replaced_after_its_lease_duration_not_an_hour() {
    let (world, leases, written) = world_with_ghost(SignedDuration::from_hours(1)).await;
    let elapsed = takeover_after(&world, &leases, written).await;
    assert!(
        elapsed >= Duration::from_secs(GHOST_SECONDS),
        "took over {elapsed:?} after the Lease was written, before its {GHOST_SECONDS} s ran out"
    );
    assert!(
        elapsed < Duration::from_secs(GHOST_SECONDS) + TAKEOVER_SLACK,
        "took over only {elapsed:?} after the Lease was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_steps_down_before_a_standby_may_take_over() {
    let sim = harness::start_sim(NODES);
    let mut world = World::start_on(sim, &["--lease-duration-seconds", "4"]).await;
    let leases: Api<Lease> = Api::namespaced(world.client.clone(), harness::OPERATOR_NAMESPACE);
    eventually("the operator to lead", Duration::from_secs(20), || async {
        holder(&leases).await.filter(|h| h.starts_with("e2e-"))
    })
    .await;
    // Every request of the operator now hangs for a minute: without a
    // timeout on its lease calls it would wait on its renewal, still
    // leading, while a standby takes over after the 4 s lease.
    let hung = Instant::now();
    world.sim.set_faults(kube_sim::Faults {
        latency: Duration::from_secs(60),
        user_agent_prefix: Some("multiarch-operator/".into()),
        ..Default::default()
    });
    let status = world.operator.wait_exit(Duration::from_secs(15));
    let elapsed = hung.elapsed();
    world.sim.set_faults(kube_sim::Faults::default());
    let status = status.unwrap_or_else(|| {
        panic!(
            "the operator still runs {elapsed:?} after its renewals hung\n{}",
            world.operator.log()
        )
    });
    assert!(!status.success(), "a lost lease is an error exit");
    // It stopped leading, and exited, at the renew deadline (3/4 of the 4 s
    // lease) after its last renewal started, which was before the hang; a
    // lost lease is not released, so nothing more waits on the server.
    let log = world.operator.log();
    assert!(
        elapsed < Duration::from_secs(5),
        "stepped down only {elapsed:?} after the hang\n{log}"
    );
    assert!(log.contains("stepping down"), "{log}");
}
