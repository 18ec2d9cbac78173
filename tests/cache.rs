//! The per-platform build cache and registry mirrors, end to end: the real
//! operator on the simulated cluster, real buildah (its `--layers` cache in
//! the registry) and the real registry.

#[path = "e2e/cache_images.rs"]
mod cache_images;
mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{http_get, World, BUILD_TIMEOUT};
use kube::api::{Patch, PatchParams};
use multiarch_operator::api::{CacheState, MultiArchImage, Phase};
use serde_json::json;

use cache_images::push_base_image;
use common::{require_tool, Registry};

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];
/// The slow first step: long enough that a build running it is told from
/// one taking it from the cache.
const SLOW_STEP_SECONDS: i64 = 6;

fn slow_context(from: &str, last: &str) -> Vec<(&'static str, String)> {
    cache_images::slow_context(from, SLOW_STEP_SECONDS, last)
}

async fn apply(
    world: &World,
    name: &str,
    platforms: &[&str],
    context: &[(&'static str, String)],
    extra: serde_json::Value,
) {
    let context: Vec<(&str, &str)> = context.iter().map(|(k, v)| (*k, v.as_str())).collect();
    world.apply(name, platforms, &context, extra).await;
}

/// Starts a new build of the same spec (`multiarch.dev/rebuild`), then
/// waits for it to succeed.
async fn rebuild(world: &World, name: &str, value: &str) -> MultiArchImage {
    let before = world.get(name).await.status.unwrap().build_id;
    let patch = json!({"metadata": {"annotations": {"multiarch.dev/rebuild": value}}});
    world
        .mais()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    wait_new_build(world, name, before).await
}

/// Waits until a build other than `before` succeeded.
async fn wait_new_build(world: &World, name: &str, before: Option<String>) -> MultiArchImage {
    let deadline = Instant::now() + BUILD_TIMEOUT;
    loop {
        let resource = world.get(name).await;
        let status = resource.status.clone().unwrap_or_default();
        if status.build_id != before && status.phase == Some(Phase::Succeeded) {
            return resource;
        }
        let failed = status.build_id != before && status.phase == Some(Phase::Failed);
        assert!(
            !failed && Instant::now() < deadline,
            "{name}: no new build succeeded: {}\n{}",
            serde_json::to_string_pretty(&status).unwrap(),
            harness::tail(&world.operator.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn cache_states(resource: &MultiArchImage) -> Vec<(String, Option<CacheState>)> {
    let status = resource.status.clone().unwrap();
    status
        .platforms
        .iter()
        .map(|p| (p.platform.clone(), p.cache))
        .collect()
}

/// Seconds each platform's build took (pod start to Job completion).
fn durations(resource: &MultiArchImage) -> Vec<i64> {
    let status = resource.status.clone().unwrap();
    status
        .platforms
        .iter()
        .map(|p| {
            let (start, end) = (
                p.start_time.clone().unwrap(),
                p.completion_time.clone().unwrap(),
            );
            end.0.as_second() - start.0.as_second()
        })
        .collect()
}

/// The `build` container's log of each platform's current Job.
async fn build_logs(world: &World, resource: &MultiArchImage) -> Vec<String> {
    world.platform_logs(resource, "build").await
}

/// The tags of a repository of the test registry.
fn tags(registry: &Registry, repository: &str) -> Vec<String> {
    let port: u16 = registry.host().rsplit(':').next().unwrap().parse().unwrap();
    let Some(body) = http_get(port, &format!("/v2/{repository}/tags/list")) else {
        return Vec::new();
    };
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_platform_pushes_its_cache_and_a_rebuild_reuses_the_earlier_steps() {
    require_tool("ldd", "libc-bin");
    let world = World::start(TWO_NODES).await;
    let base = push_base_image(&world.registry);
    let platforms = ["linux/amd64", "linux/arm64"];
    apply(
        &world,
        "app",
        &platforms,
        &slow_context(&base, "one\n"),
        json!({}),
    )
    .await;
    let cold = world.wait_phase("app", Phase::Succeeded).await;
    assert_eq!(
        cache_states(&cold),
        [
            ("linux/amd64".to_string(), Some(CacheState::Miss)),
            ("linux/arm64".to_string(), Some(CacheState::Miss)),
        ]
    );
    for platform in ["linux-amd64", "linux-arm64"] {
        let cache = tags(&world.registry, &format!("e2e/app-buildcache-{platform}"));
        assert!(
            cache.len() >= 2,
            "{platform}: a cache image per step: {cache:?}"
        );
    }
    let image_tags = tags(&world.registry, "e2e/app");
    assert!(
        image_tags
            .iter()
            .all(|t| !t.contains("buildcache") && t.len() < 64),
        "no cache image among the image's tags: {image_tags:?}"
    );
    assert!(
        image_tags.iter().all(|t| !t.starts_with("mai-")),
        "buildah's images went by digest, under no staging tag: {image_tags:?}"
    );
    let status = cold.status.clone().unwrap();
    let index = common::inspect_raw(&format!("{}:latest", cold.spec.image), None).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    assert!(!index.to_string().contains("buildcache"));
    assert!(
        durations(&cold).iter().all(|d| *d >= SLOW_STEP_SECONDS),
        "{:?}",
        durations(&cold)
    );

    // A change to the last step only: the slow step comes from the cache.
    apply(
        &world,
        "app",
        &platforms,
        &slow_context(&base, "two\n"),
        json!({}),
    )
    .await;
    let warm = rebuild(&world, "app", "2").await;
    assert_ne!(
        warm.status.clone().unwrap().digest,
        status.digest,
        "the last step changed"
    );
    assert!(
        cache_states(&warm)
            .iter()
            .all(|(_, c)| *c == Some(CacheState::Hit)),
        "{:?}",
        cache_states(&warm)
    );
    for log in build_logs(&world, &warm).await {
        assert!(log.contains("--> Cache pulled from remote"), "{log}");
        assert!(log.contains("--> Using cache"), "{log}");
    }
    let (cold_times, warm_times) = (durations(&cold), durations(&warm));
    for (cold, warm) in cold_times.iter().zip(&warm_times) {
        assert!(
            warm < cold && *warm < SLOW_STEP_SECONDS,
            "cold {cold_times:?}, cached {warm_times:?}"
        );
    }
    let metrics = world.operator.metrics();
    assert!(
        metrics.contains("multiarch_platform_build_duration_seconds_count{cache=\"Hit\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("cache=\"Miss\"} 2"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_platform_never_overwrites_another_platforms_cache() {
    let world = World::start(TWO_NODES).await;
    let base = push_base_image(&world.registry);
    let context = slow_context(&base, "same\n");
    apply(&world, "pair", &["linux/arm64"], &context, json!({})).await;
    let first = world.wait_phase("pair", Phase::Succeeded).await;
    assert_eq!(cache_states(&first)[0].1, Some(CacheState::Miss));
    let arm_cache = tags(&world.registry, "e2e/pair-buildcache-linux-arm64");

    apply(&world, "pair", &["linux/amd64"], &context, json!({})).await;
    let amd = world.wait_phase("pair", Phase::Succeeded).await;
    assert_eq!(
        cache_states(&amd),
        [("linux/amd64".to_string(), Some(CacheState::Miss))],
        "amd64 has a cache of its own, empty so far"
    );
    assert_eq!(
        tags(&world.registry, "e2e/pair-buildcache-linux-arm64"),
        arm_cache,
        "arm64's cache is untouched"
    );

    apply(&world, "pair", &["linux/arm64"], &context, json!({})).await;
    let again = rebuild(&world, "pair", "3").await;
    assert_eq!(
        cache_states(&again),
        [("linux/arm64".to_string(), Some(CacheState::Hit))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cache_builds_cold_with_a_warning() {
    let world = World::start(TWO_NODES).await;
    let base = push_base_image(&world.registry);
    let unreachable = format!("127.0.0.1:{}/cache/app", common::closed_port());
    apply(
        &world,
        "cold",
        &["linux/amd64"],
        &slow_context(&base, "x\n"),
        json!({"cache": {"repository": unreachable}}),
    )
    .await;
    let done = world.wait_phase("cold", Phase::Succeeded).await;
    let platform = done.status.clone().unwrap().platforms.remove(0);
    assert_eq!(platform.cache, Some(CacheState::Unavailable));
    assert!(
        platform.message.starts_with("built without its cache")
            && platform.message.contains("connection refused"),
        "{}",
        platform.message
    );
    let event = world.wait_event("cold", "CacheUnavailable").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event
        .message
        .unwrap()
        .contains("linux/amd64: built without its cache"));
    common::inspect_raw(&format!("{}:latest", done.spec.image), None).expect("the index is pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_serves_the_base_image_of_a_registry_that_does_not_resolve() {
    let mirror = Registry::start_plain();
    let base = push_base_image(&mirror);
    let path = base.split_once('/').unwrap().1;
    let flag = format!("registry.invalid=http://{}", mirror.host());
    let world = World::start_with(TWO_NODES, &["--registry-mirror", &flag]).await;
    let from = format!("registry.invalid/{path}");
    apply(
        &world,
        "mirrored",
        &["linux/amd64"],
        &slow_context(&from, "m\n"),
        json!({"cache": {"enabled": false}}),
    )
    .await;
    let done = world.wait_phase("mirrored", Phase::Succeeded).await;
    assert_eq!(
        cache_states(&done)[0].1,
        None,
        "no cache asked for, none reported"
    );
    let log = build_logs(&world, &done).await.remove(0);
    assert!(
        log.contains("STEP 1/3: FROM registry.invalid/base:1"),
        "{log}"
    );
    assert!(
        mirror.log().contains("\"GET /v2/base/blobs/sha256:"),
        "the mirror served the pull: {}",
        mirror.log()
    );
}

/// A server on loopback whose `/changing` answers a new body on every
/// request, and which counts requests for `/ran`.
struct Changing {
    port: u16,
    ran: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Changing {
    fn start() -> Changing {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ran = std::sync::Arc::new(AtomicUsize::new(0));
        let (served, counted) = (std::sync::Arc::new(AtomicUsize::new(0)), ran.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if line.contains(" /ran") {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                let body = format!("{}\n", served.fetch_add(1, Ordering::SeqCst));
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Changing { port, ran }
    }

    fn ran(&self) -> usize {
        self.ran.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The cache export runs in the push container, next to the push
/// credentials. A hostile Dockerfile whose `ADD <url>` changes between the
/// build and the export misses the local cache there: its `RUN` step must
/// not run again (it would, with the credentials mounted). The export fails
/// instead, and the image is pushed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_export_runs_no_step_of_the_dockerfile() {
    let world = World::start(TWO_NODES).await;
    let base = push_base_image(&world.registry);
    let server = Changing::start();
    let port = server.port;
    let context = vec![(
        "Dockerfile",
        format!(
            "FROM {base}\nADD http://127.0.0.1:{port}/changing /changing\n\
             RUN [\"/bin/busybox\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:{port}/ran\"]\n"
        ),
    )];
    apply(&world, "hostile", &["linux/amd64"], &context, json!({})).await;
    let done = world.wait_phase("hostile", Phase::Succeeded).await;
    assert_eq!(server.ran(), 1, "the RUN step ran in the build only");
    let platform = done.status.clone().unwrap().platforms.remove(0);
    assert_eq!(
        platform.cache,
        Some(CacheState::Unavailable),
        "{}",
        platform.message
    );
    assert!(
        platform.message.contains("cache"),
        "the failed export is reported: {}",
        platform.message
    );
    common::inspect_raw(&format!("{}:latest", done.spec.image), None).expect("the index is pushed");
}
