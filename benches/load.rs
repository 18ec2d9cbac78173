//! Load: many MultiArchImages applied at once to the real operator on the
//! simulated cluster, with real buildah builds and real merges, completing
//! in whatever order the machine makes. Checks that every one ends
//! `Succeeded` and that nothing was built twice, and prints the time, the
//! operator's peak memory (VmHWM) and its API calls by verb and resource.
//!
//! Run: `cargo bench --bench load` (LOAD_COUNT=200 resources by default,
//! LOAD_PLATFORMS=1 platform each, alternating linux/amd64 and
//! linux/arm64; LOAD_PLATFORMS=2 builds both for every resource).
//! A 20-resource version runs in CI: tests/faults.rs.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use harness::{assert_one_job_per_platform, tail, World};
use kube::api::ListParams;
use multiarch_operator::api::{Phase, PlatformPhase};
use serde_json::json;

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_memory_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let count = env_number("LOAD_COUNT", 200);
    let per_resource = env_number("LOAD_PLATFORMS", 1).clamp(1, 2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(count, per_resource));
}

async fn run(count: usize, per_resource: usize) {
    let world = World::start(TWO_NODES).await;
    let names: Vec<String> = (0..count).map(|i| format!("load{i}")).collect();
    let platforms: Vec<Vec<&str>> = (0..count)
        .map(|i| match (per_resource, i % 2) {
            (2, _) => vec!["linux/amd64", "linux/arm64"],
            (_, 0) => vec!["linux/amd64"],
            _ => vec!["linux/arm64"],
        })
        .collect();
    // Distinct contexts of different sizes: builds finish in mixed order.
    let texts: Vec<String> = (0..count)
        .map(|i| format!("load {i}\n{}\n", "x".repeat((i * 7919) % 65_536)))
        .collect();
    world.sim.clear_requests();
    let started = Instant::now();
    futures::future::join_all(names.iter().zip(&platforms).zip(&texts).map(
        |((name, platforms), text)| {
            let context = [
                ("Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n"),
                ("hello.txt", text.as_str()),
            ];
            let world = &world;
            async move { world.apply(name, platforms, &context, json!({})).await }
        },
    ))
    .await;
    let applied = started.elapsed();
    println!(
        "applied {count} MultiArchImages in {:.1} s",
        applied.as_secs_f64()
    );

    // Wait for all, failing fast on any Failed.
    let mut last_report = Instant::now();
    let resources = loop {
        let list = world
            .mais()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let mut phases: BTreeMap<String, usize> = BTreeMap::new();
        for resource in &list {
            let phase = resource.status.as_ref().and_then(|s| s.phase);
            *phases.entry(format!("{phase:?}")).or_insert(0) += 1;
            if phase == Some(Phase::Failed) {
                panic!(
                    "{} failed: {}\noperator log tail:\n{}",
                    resource.metadata.name.as_deref().unwrap_or_default(),
                    serde_json::to_string_pretty(&resource.status).unwrap(),
                    tail(&world.operator.log(), 40)
                );
            }
        }
        let succeeded = phases.get("Some(Succeeded)").copied().unwrap_or(0);
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  {:>5.0} s: {phases:?}", started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        if succeeded == count {
            break list;
        }
        assert!(started.elapsed() < TIMEOUT, "not done in time: {phases:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let elapsed = started.elapsed();
    let peak = peak_memory_kib(world.operator.pid());
    let records: Vec<_> = world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("multiarch-operator/"))
        .collect();

    // Nothing built twice: one Job per platform and one merge Job, each
    // created once, each with one pod that succeeded and none that failed.
    let jobs: BTreeMap<String, k8s_openapi::api::batch::v1::Job> = world
        .jobs()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| (j.metadata.name.clone().unwrap(), j))
        .collect();
    let mut order = Vec::new();
    for resource in &resources {
        let name = resource.metadata.name.clone().unwrap();
        let status = resource.status.clone().unwrap();
        assert_one_job_per_platform(&world, &name, status.platforms.len()).await;
        let mut job_names: Vec<String> = status.platforms.iter().map(|p| p.job.clone()).collect();
        job_names.push(status.merge_job.clone().unwrap());
        for job in &job_names {
            let job_status = jobs[job].status.clone().unwrap_or_default();
            assert_eq!(
                (
                    job_status.failed.unwrap_or(0),
                    job_status.succeeded.unwrap_or(0)
                ),
                (0, 1),
                "{job}: one pod, run once"
            );
        }
        assert!(status
            .platforms
            .iter()
            .all(|p| p.phase == PlatformPhase::Succeeded));
        let raw = common::inspect_raw(&format!("{}:latest", resource.spec.image), None).unwrap();
        assert_eq!(Some(common::sha256_digest(&raw)), status.digest, "{name}");
        let built = status
            .platforms
            .iter()
            .filter_map(|p| p.completion_time.clone())
            .max();
        order.push((built, name));
    }
    order.sort();
    let index_of = |name: &str| name.trim_start_matches("load").parse::<usize>().unwrap();
    let out_of_order = order
        .windows(2)
        .filter(|w| index_of(&w[0].1) > index_of(&w[1].1))
        .count();

    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        let mut what = format!("{} {}", r.verb, r.resource);
        if !r.subresource.is_empty() {
            what = format!("{what}/{}", r.subresource);
        }
        *calls.entry(what).or_insert(0) += 1;
    }
    let codes: BTreeSet<u16> = records.iter().map(|r| r.code).collect();
    let platforms_total: usize = platforms.iter().map(Vec::len).sum();

    println!();
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| resources applied at once | {count} ({platforms_total} build Jobs, {count} merge Jobs) |"
    );
    println!("| apply → all Succeeded | {:.1} s |", elapsed.as_secs_f64());
    println!(
        "| completion order | {out_of_order} of {} neighbours out of apply order |",
        count.saturating_sub(1)
    );
    println!("| rebuilt twice | none (every Job created once, 1 pod each, 0 failed) |");
    println!(
        "| operator peak memory (VmHWM) | {:.1} MiB |",
        peak as f64 / 1024.0
    );
    println!(
        "| operator API calls | {} ({:.1} per resource), answer codes {codes:?} |",
        records.len(),
        records.len() as f64 / count as f64
    );
    for (what, n) in &calls {
        println!("| `{what}` | {n} |");
    }
}
