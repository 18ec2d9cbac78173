//! The operator's resident memory with the largest MultiArchImages the caps
//! allow (not a timed test): prints the figures.
//!
//! Three maximal resources (16 platforms, the most tolerations, nodeSelector
//! entries, tags and build-arg bytes), each of whose 16 build Jobs is
//! created and waits for a node that never comes. Target: at most 16 MiB
//! above the idle operator.
//!
//! Run: `cargo bench --bench memory` (add `--profile dev` to skip the
//! release build; the figures then include debug overhead).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::time::Duration;

use harness::World;
use kube::api::{ListParams, Patch, PatchParams};
use multiarch_operator::api::{
    MAX_BUILD_ARGS_TOTAL, MAX_BUILD_ARG_VALUE, MAX_NODE_SELECTOR, MAX_PLATFORMS, MAX_TAGS,
    MAX_TOLERATIONS,
};
use serde_json::json;

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];
const PLATFORMS: [&str; MAX_PLATFORMS] = [
    "linux/amd64",
    "linux/amd64/v2",
    "linux/amd64/v3",
    "linux/amd64/v4",
    "linux/arm64",
    "linux/arm64/v8.1",
    "linux/arm64/v8.2",
    "linux/arm64/v9",
    "linux/arm/v5",
    "linux/arm/v6",
    "linux/arm/v7",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64le",
];
const COUNT: usize = 3;

fn kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn maximal_spec(world: &World, i: usize) -> serde_json::Value {
    let tags: Vec<String> = (0..MAX_TAGS)
        .map(|t| format!("t{t:02}-{}", "x".repeat(124)))
        .collect();
    let tolerations: Vec<_> = (0..MAX_TOLERATIONS)
        .map(|t| json!({"key": format!("example.com/taint-{t}-{}", "k".repeat(40)), "operator": "Exists", "effect": "NoSchedule"}))
        .collect();
    let node_selector: serde_json::Map<String, serde_json::Value> = (0..MAX_NODE_SELECTOR)
        .map(|n| (format!("example.com/pool-{n}"), json!("v".repeat(63))))
        .collect();
    // As many build-arg bytes as the total cap allows, in values of the
    // largest size.
    let per_arg = MAX_BUILD_ARG_VALUE - 16;
    let build_args: serde_json::Map<String, serde_json::Value> = (0..MAX_BUILD_ARGS_TOTAL
        / MAX_BUILD_ARG_VALUE)
        .map(|a| (format!("ARG_{a}"), json!("a".repeat(per_arg))))
        .collect();
    json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": format!("maximal-{i}"), "namespace": harness::NAMESPACE},
        "spec": {
            "image": world.registry.repo(&format!("bench/maximal-{i}")),
            "tags": tags,
            "platforms": PLATFORMS,
            "source": {"configMap": {"name": "maximal-context"}},
            "tolerations": tolerations,
            "nodeSelector": node_selector,
            "buildArgs": build_args,
        },
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let world = World::start(TWO_NODES).await;
    let pid = world.operator.pid();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = kib(pid, "VmRSS:");
    let params = PatchParams::apply("bench").force();
    for i in 0..COUNT {
        let resource = maximal_spec(&world, i);
        world
            .mais()
            .patch(&format!("maximal-{i}"), &params, &Patch::Apply(&resource))
            .await
            .expect("a maximal MultiArchImage is admitted");
    }
    let jobs = COUNT * MAX_PLATFORMS;
    harness::eventually(
        "every build Job of the maximal resources",
        Duration::from_secs(120),
        || async {
            let list = world.jobs().list(&ListParams::default()).await.ok()?;
            (list.items.len() >= jobs).then_some(())
        },
    )
    .await;
    // Let the pods appear and be reported on.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let busy = kib(pid, "VmRSS:");
    println!(
        "operator memory with {COUNT} maximal MultiArchImages ({jobs} build Jobs, {} platforms, {MAX_TOLERATIONS} tolerations, {MAX_NODE_SELECTOR} nodeSelector entries, {MAX_TAGS} tags, {} KiB of build args each):",
        MAX_PLATFORMS,
        MAX_BUILD_ARGS_TOTAL / 1024
    );
    println!(
        "  resident {idle} KiB idle, {busy} KiB with them, {} KiB peak: {:+.1} MiB (target <= 16 MiB)",
        kib(pid, "VmHWM:"),
        (busy as f64 - idle as f64) / 1024.0
    );
}
