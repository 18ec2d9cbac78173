//! Benchmark of the build cache (not a timed test): prints figures.
//!
//! A two-platform buildah build on the simulated cluster whose first step
//! takes 10 s, then a rebuild after a change to its last step: the time to
//! index (apply, or the `multiarch.dev/rebuild` annotation, to
//! `phase: Succeeded`) cold and with the cache, per platform (the build
//! Job's pod start to its completion) and overall, and their ratio
//! (target: at most 0.2).
//!
//! Run: `cargo bench --bench cache` (RUNS=1 by default).

#[path = "../tests/e2e/cache_images.rs"]
mod cache_images;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::World;
use kube::api::{Patch, PatchParams};
use multiarch_operator::api::{CacheState, MultiArchImage, Phase};
use serde_json::json;

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];
const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];
const SLOW_STEP_SECONDS: i64 = 10;
/// The target of the cached rebuild's time to index, against the cold one.
const TARGET_RATIO: f64 = 0.2;

/// Waits until a build other than `before` succeeded; the time it took.
async fn until_built(
    world: &World,
    before: Option<String>,
    since: Instant,
) -> (MultiArchImage, Duration) {
    loop {
        let resource = world.get("bench").await;
        let status = resource.status.clone().unwrap_or_default();
        if status.build_id.is_some() && status.build_id != before {
            match status.phase {
                Some(Phase::Succeeded) => return (resource, since.elapsed()),
                Some(Phase::Failed) => panic!("the build failed: {status:?}"),
                _ => {}
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(300),
            "no build in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per platform: seconds from the build pod's start to the Job's completion, and the cache state.
fn platforms(resource: &MultiArchImage) -> Vec<(String, i64, Option<CacheState>)> {
    resource
        .status
        .clone()
        .unwrap()
        .platforms
        .into_iter()
        .map(|p| {
            let took =
                p.completion_time.unwrap().0.as_second() - p.start_time.unwrap().0.as_second();
            (p.platform, took, p.cache)
        })
        .collect()
}

/// Each container's seconds, per platform's build pod.
async fn steps(world: &World, resource: &MultiArchImage) -> Vec<String> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(world.client.clone(), harness::NAMESPACE);
    let mut out = Vec::new();
    for platform in resource.status.clone().unwrap().platforms {
        let selector = format!("batch.kubernetes.io/job-name={}", platform.job);
        let list = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .unwrap();
        let Some(status) = list.items.into_iter().next().and_then(|p| p.status) else {
            continue;
        };
        let times: Vec<String> = status
            .init_container_statuses
            .into_iter()
            .flatten()
            .chain(status.container_statuses.into_iter().flatten())
            .filter_map(|c| {
                let t = c.state?.terminated?;
                let took = t.finished_at?.0.as_millisecond() - t.started_at?.0.as_millisecond();
                Some(format!("{} {:.1} s", c.name, took as f64 / 1000.0))
            })
            .collect();
        out.push(format!("{}: {}", platform.platform, times.join(", ")));
    }
    out
}

async fn apply(world: &World, base: &str, last: &str) {
    let context = cache_images::slow_context(base, SLOW_STEP_SECONDS, last);
    let context: Vec<(&str, &str)> = context.iter().map(|(k, v)| (*k, v.as_str())).collect();
    world.apply("bench", &PLATFORMS, &context, json!({})).await;
}

async fn one_run(run: usize) -> (Duration, Duration) {
    let world = World::start(TWO_NODES).await;
    let base = cache_images::push_base_image(&world.registry);
    let started = Instant::now();
    apply(&world, &base, "one\n").await;
    let (cold, cold_time) = until_built(&world, None, started).await;

    let before = cold.status.clone().unwrap().build_id;
    let started = Instant::now();
    apply(&world, &base, "two\n").await;
    let patch = json!({"metadata": {"annotations": {"multiarch.dev/rebuild": format!("{run}")}}});
    world
        .mais()
        .patch("bench", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    let (warm, warm_time) = until_built(&world, before, started).await;

    println!("run {run}:");
    for line in steps(&world, &warm).await {
        println!("  cached steps, {line}");
    }
    for ((platform, cold_s, cold_cache), (_, warm_s, warm_cache)) in
        platforms(&cold).into_iter().zip(platforms(&warm))
    {
        println!(
            "  {platform}: cold {cold_s} s ({cold_cache:?}), cached {warm_s} s ({warm_cache:?})"
        );
    }
    println!(
        "  time to index: cold {:.1} s, cached {:.1} s, ratio {:.2} (target <= {TARGET_RATIO})",
        cold_time.as_secs_f64(),
        warm_time.as_secs_f64(),
        warm_time.as_secs_f64() / cold_time.as_secs_f64()
    );
    (cold_time, warm_time)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    println!(
        "cache benchmark: two platforms (buildah), first step {SLOW_STEP_SECONDS} s, rebuild after a change to the last step; {runs} run(s)"
    );
    let mut ratios = Vec::new();
    for run in 1..=runs {
        let (cold, warm) = one_run(run).await;
        ratios.push(warm.as_secs_f64() / cold.as_secs_f64());
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median ratio cached/cold: {:.2}", ratios[ratios.len() / 2]);
}
