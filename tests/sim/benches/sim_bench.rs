//! kube-sim benchmark (not a timed test): 1,000 custom resources plus one
//! Job each. Prints create throughput, full-list latency, watch fan-out delay
//! to 10 watchers (median, p99) and resident memory.
//!
//! The client is a tenant: a non-admin user bound by RBAC (the `edit`
//! ClusterRole in `default`, aggregating a Widget role), over HTTPS with a
//! bearer token, so every request is authenticated and authorized.
//!
//! Run: cargo bench -p kube-sim --bench sim_bench

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sim::{Sim, SimConfig, UserInfo};
use serde_json::json;
use std::time::{Duration, Instant};

const N: usize = 1000;
const WATCHERS: usize = 10;
const UPDATES: usize = 200;
const CONCURRENCY: usize = 8;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let rss_before = rss_kib();
    let sim = Sim::start(SimConfig {
        images: vec![("busybox".into(), None)],
        ..Default::default()
    })
    .unwrap();
    let admin = sim.client();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/widget-crd.yaml"
    );
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let widget_role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "widget-editor", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
        "rules": [{"apiGroups": ["sim.example.com"], "resources": ["widgets", "widgets/status"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
    }))
    .unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &widget_role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "bench-edit", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "bench-team"}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let client = sim.client_for(&UserInfo::new("bench", &["bench-team"]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sim.example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let jobs: Api<Job> = Api::default_namespaced(client.clone());

    // Create: N widgets and N (suspended) Jobs, CONCURRENCY requests in flight.
    let t = Instant::now();
    futures::stream::iter(0..N)
        .map(|i| {
            let (widgets, jobs) = (widgets.clone(), jobs.clone());
            async move {
                let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "sim.example.com/v1", "kind": "Widget",
                    "metadata": {"name": format!("w-{i:04}")}, "spec": {"size": 1 + i % 10}})).unwrap();
                widgets.create(&PostParams::default(), &w).await.unwrap();
                let j: Job = serde_json::from_value(json!({"metadata": {"name": format!("w-{i:04}")}, "spec": {"suspend": true, "template": {"spec": {
                    "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}})).unwrap();
                jobs.create(&PostParams::default(), &j).await.unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let create_s = t.elapsed().as_secs_f64();

    // List latency (full lists, no pagination).
    let mut list_ms = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        let l = widgets.list(&ListParams::default()).await.unwrap();
        assert_eq!(l.items.len(), N);
        list_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    list_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let t = Instant::now();
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        N
    );
    let job_list_ms = t.elapsed().as_secs_f64() * 1000.0;

    // Watch fan-out: WATCHERS watches from now; UPDATES status patches.
    let rv = widgets
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut handles = vec![];
    for _ in 0..WATCHERS {
        let mut s = widgets
            .watch(&WatchParams::default().timeout(120), &rv)
            .await
            .unwrap()
            .boxed();
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            while let Ok(Some(ev)) = s.try_next().await {
                if let WatchEvent::Modified(o) = ev {
                    let _ = tx.send((o.metadata.resource_version.unwrap(), Instant::now()));
                }
            }
        }));
    }
    drop(tx);
    let mut sent = std::collections::HashMap::new();
    for i in 0..UPDATES {
        let name = format!("w-{:04}", i % N);
        let p = json!({"status": {"phase": format!("p{i}")}});
        let t = Instant::now();
        let o = widgets
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap();
        sent.insert(o.metadata.resource_version.unwrap(), t);
    }
    let mut delays = vec![];
    while delays.len() < UPDATES * WATCHERS {
        let Ok(Some((rv, at))) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await
        else {
            break;
        };
        if let Some(t0) = sent.get(&rv) {
            delays.push((at - *t0).as_secs_f64() * 1000.0);
        }
    }
    for h in handles {
        h.abort();
    }
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rss = rss_kib();
    println!("kube-sim benchmark: {N} custom resources + {N} Jobs (suspended), {CONCURRENCY} requests in flight");
    println!(
        "  create throughput : {:.0} objects/s ({} objects in {:.2} s)",
        (2 * N) as f64 / create_s,
        2 * N,
        create_s
    );
    println!(
        "  list {N} widgets   : median {:.1} ms, max {:.1} ms; list {N} jobs: {:.1} ms",
        pct(&list_ms, 0.5),
        list_ms[list_ms.len() - 1],
        job_list_ms
    );
    println!("  watch fan-out     : {} deliveries to {WATCHERS} watchers, median {:.2} ms, p99 {:.2} ms (write start to delivery)",
        delays.len(), pct(&delays, 0.5), pct(&delays, 0.99));
    println!("  resident memory   : {} MiB (process VmRSS: server, controllers and this client; {} MiB before start)", rss / 1024, rss_before / 1024);
}
