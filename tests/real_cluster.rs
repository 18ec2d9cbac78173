//! The scenarios that matter, on the real control plane (Kubernetes v1.34
//! built from its Go modules by scripts/upstream.sh) with two node agents:
//! the real scheduler, Job controller, garbage collector and admission
//! judge what the operator renders.

mod common;
#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/real.rs"]
mod real;

use harness::{assert_clients_get_their_platform, hello_context};
use multiarch_operator::api::{Phase, PlatformPhase};
use real::RealWorld;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platforms_end_in_a_pushed_index_on_the_real_control_plane() {
    let world = RealWorld::start(&[]).await;
    world
        .apply(
            "hello",
            &["linux/amd64", "linux/arm64"],
            &hello_context("hello\n"),
            json!({}),
        )
        .await;
    let done = world.wait_phase("hello", Phase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.platforms_ready.as_deref(), Some("2/2"));
    let nodes: Vec<_> = status
        .platforms
        .iter()
        .map(|p| p.node.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        nodes,
        ["node-amd64", "node-arm64"],
        "the real scheduler put each platform on its own architecture"
    );
    assert!(status
        .platforms
        .iter()
        .all(|p| p.phase == PlatformPhase::Succeeded && p.digest.is_some()));
    let raw = common::inspect_raw(&format!("{}:latest", done.spec.image), None).unwrap();
    assert_eq!(
        Some(common::sha256_digest(&raw)),
        status.digest,
        "the tag holds the index in status"
    );
    assert_clients_get_their_platform("hello", &done);
}
