//! Benchmarks of the operator (not timed tests): prints figures.
//!
//! 1. Time to index: apply → `Ready=True` for a two-platform buildah build
//!    on the simulated cluster, against the slowest single-platform build
//!    done alone with the same builder commands on the same machine.
//! 2. API calls per two-platform build, reads and writes.
//! 3. 1,000 MultiArchImages at rest: the operator's resident memory, CPU,
//!    and writes while nothing changes.
//!
//! Run: `cargo bench --bench operator` (RUNS=5 by default).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{hello_context, World};
use kube::api::{Patch, PatchParams, PostParams};
use multiarch_operator::api::MultiArchImage;
use serde_json::json;

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

type Context = Vec<(String, String)>;

fn borrowed(context: &Context) -> Vec<(&str, &str)> {
    context
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A loopback HTTP server answering every request after `delay`: a build
/// step (`ADD http://...`) that takes that long, for both contenders.
fn slow_server(delay: Duration) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                std::thread::sleep(delay);
                let body = "slow step done\n";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// The build Job's two steps, run directly: `buildah bud` then `buildah push`.
fn single_platform_build(
    registry: &common::Registry,
    platform: &str,
    run: usize,
    files: &Context,
) -> f64 {
    let buildah = common::Buildah::new();
    let context = tempfile::tempdir().unwrap();
    for (file, content) in files {
        std::fs::write(context.path().join(file), content).unwrap();
    }
    let started = Instant::now();
    buildah.build(
        platform,
        &context.path().join("Dockerfile"),
        context.path(),
        "localhost/bench:latest",
    );
    let destination = registry.repo(&format!("baseline/r{run}:{}", platform.replace('/', "-")));
    buildah.push(
        "localhost/bench:latest",
        &destination,
        common::ManifestFormat::Oci,
        None,
    );
    started.elapsed().as_secs_f64()
}

async fn time_to_index(world: &World, name: &str, files: &Context) -> f64 {
    let started = Instant::now();
    world
        .apply(
            name,
            &["linux/amd64", "linux/arm64"],
            &borrowed(files),
            json!({}),
        )
        .await;
    loop {
        let resource = world.get(name).await;
        let ready = resource.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < harness::BUILD_TIMEOUT,
            "{name} never became Ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let world = World::start(TWO_NODES).await;

    let tiny: Context = hello_context("bench\n")
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let port = slow_server(Duration::from_secs(10));
    let slow: Context = vec![(
        "Dockerfile".into(),
        format!("FROM scratch\nADD http://127.0.0.1:{port}/step /step.txt\n"),
    )];
    // Warm up (first process starts, page cache) before measuring.
    time_to_index(&world, "warmup", &tiny).await;
    single_platform_build(&world.registry, "linux/arm64", 1000, &tiny);

    for (scenario, files, runs) in [
        ("a tiny build (one COPY)", &tiny, runs),
        (
            "a 10 s build step (ADD from a slow loopback server)",
            &slow,
            runs.min(3),
        ),
    ] {
        let mut operator = Vec::new();
        let mut baseline = Vec::new();
        for run in 0..runs {
            let name = format!(
                "bench-{}-{run}",
                if files == &tiny { "tiny" } else { "slow" }
            );
            operator.push(time_to_index(&world, &name, files).await);
            let slowest = ["linux/amd64", "linux/arm64"]
                .iter()
                .map(|p| single_platform_build(&world.registry, p, run, files))
                .fold(0.0, f64::max);
            baseline.push(slowest);
        }
        let (ours, alone) = (median(operator.clone()), median(baseline.clone()));
        println!(
            "time to index, {scenario}, {runs} runs (two platforms, buildah, simulated cluster):"
        );
        println!("  apply -> Ready=True: median {ours:.2}s  runs {operator:.2?}");
        println!("  slowest single-platform build alone: median {alone:.2}s  runs {baseline:.2?}");
        println!(
            "  difference {:.2}s, ratio {:.3} (target: <= 1s and <= 1.1)",
            ours - alone,
            ours / alone
        );
    }

    // API calls of one build, from the simulated API server's request log.
    world.sim.clear_requests();
    time_to_index(&world, "api-calls", &tiny).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls: Vec<_> = world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("multiarch-operator/"))
        .filter(|r| r.resource != "leases")
        .collect();
    let reads = calls
        .iter()
        .filter(|r| matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .count();
    let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
    for r in &calls {
        let key = format!(
            "{} {}{}",
            r.verb,
            r.resource,
            if r.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", r.subresource)
            }
        );
        *by_kind.entry(key).or_default() += 1;
    }
    println!(
        "API calls for one two-platform build: {} ({} reads, {} writes)",
        calls.len(),
        reads,
        calls.len() - reads
    );
    for (kind, n) in by_kind {
        println!("  {n:4}  {kind}");
    }
    drop(world);
    at_rest(1000).await;
}

/// 1,000 settled MultiArchImages: memory, CPU and writes of an idle operator.
async fn at_rest(count: usize) {
    let sim = harness::start_sim(TWO_NODES);
    let client = sim.client();
    harness::install_crd(&client).await;
    let api: kube::Api<MultiArchImage> = kube::Api::namespaced(client.clone(), harness::NAMESPACE);
    let created = Instant::now();
    for i in 0..count {
        let resource: MultiArchImage = serde_json::from_value(json!({
            "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
            "metadata": {"name": format!("rest-{i:04}"), "namespace": harness::NAMESPACE},
            "spec": {"image": format!("registry.example.com/rest/app{i}"), "source": {"configMap": {"name": "ctx"}}},
        }))
        .unwrap();
        let stored = api.create(&PostParams::default(), &resource).await.unwrap();
        let build_id = multiarch_operator::render::build_id(&stored.spec, &Default::default());
        let digest = format!("sha256:{}", "ab".repeat(32));
        let status = json!({
            "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
            "status": {"phase": "Succeeded", "observedGeneration": stored.metadata.generation, "buildId": build_id,
                "digest": digest, "platformsReady": "2/2",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "done",
                    "observedGeneration": stored.metadata.generation, "lastTransitionTime": "2026-11-28T00:00:00Z"}]},
        });
        api.patch_status(
            &format!("rest-{i:04}"),
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    }
    println!(
        "at rest: created {count} settled MultiArchImages in {:.1}s",
        created.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let operator = harness::Operator::start(&sim, dir.path());
    let pid = operator.pid();
    let reconciles = || {
        operator
            .metrics()
            .lines()
            .find(|l| l.starts_with("multiarch_reconciles_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    harness::eventually(
        "the operator to look at every resource",
        Duration::from_secs(120),
        || async { (reconciles() >= count).then_some(()) },
    )
    .await;
    let seen = reconciles();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.clear_requests();
    let (cpu_before, window) = (cpu_seconds(pid), Duration::from_secs(15));
    tokio::time::sleep(window).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let requests: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("multiarch-operator/"))
        .collect();
    let writes: Vec<_> = requests
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .collect();
    let lease_writes = writes.iter().filter(|r| r.resource == "leases").count();
    println!("at rest with {count} MultiArchImages ({seen} reconciles at start-up):");
    println!(
        "  resident memory {} KiB now, {} KiB peak (target <= 65536 KiB)",
        proc_status_kib(pid, "VmRSS:"),
        proc_status_kib(pid, "VmHWM:")
    );
    println!(
        "  CPU {:.2}s over {}s idle ({:.1}%)",
        cpu,
        window.as_secs(),
        100.0 * cpu / window.as_secs_f64()
    );
    println!(
        "  writes while idle: {} to MultiArchImages/Jobs/Events, {} lease renewals (leader election), {} requests in all",
        writes.len() - lease_writes,
        lease_writes,
        requests.len()
    );
}
