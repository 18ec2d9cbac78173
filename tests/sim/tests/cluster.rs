//! Cluster behaviour behind the API: PodGC, image pull back-off, evictions
//! and node reclaims with podFailurePolicy, the node-group autoscaler,
//! projected volumes (built through by buildah) and the cluster clock.

mod common;

use common::{eventually, require_tool, LONG};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube_sim::{Disruption, Faults, NodeGroup, NodeSpec, PullFailure, Sim, SimConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A buildah build in a sandbox (vfs storage) takes seconds; allow for a loaded machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

fn sim(cfg: SimConfig) -> Sim {
    require_tool("bwrap", "bubblewrap");
    let mut cfg = SimConfig {
        job_backoff: Duration::from_millis(200),
        ..cfg
    };
    if cfg.images.is_empty() {
        cfg.images = vec![("busybox".into(), None)];
    }
    Sim::start(cfg).expect("start kube-sim")
}

fn pod(name: &str, script: &str, extra: Value) -> Pod {
    let mut spec = json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn phase(pods: &Api<Pod>, name: &str, want: &'static str) -> Pod {
    eventually(&format!("pod {name} {want}"), LONG, || {
        let pods = pods.clone();
        let name = name.to_string();
        async move {
            pods.get(&name)
                .await
                .ok()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(want))
        }
    })
    .await
}

async fn gone(pods: &Api<Pod>, name: &str) {
    eventually(&format!("pod {name} deleted"), LONG, || {
        let pods = pods.clone();
        let name = name.to_string();
        async move {
            matches!(pods.get(&name).await, Err(kube::Error::Api(s)) if s.code == 404).then_some(())
        }
    })
    .await
}

fn condition<'a>(p: &'a Value, ty: &str) -> Option<&'a Value> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty && c["status"] == "True")
}

/// Every distinct consecutive waiting reason of a pod's first container.
fn waiting_reasons(sim: &Sim, name: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for v in sim.history("v1", "Pod", "default", name) {
        let state = &v["status"]["containerStatuses"][0]["state"];
        let r = match state["waiting"]["reason"].as_str() {
            Some(r) => r.to_string(),
            None if !state["running"].is_null() => "Running".into(),
            None if !state["terminated"].is_null() => "Terminated".into(),
            None => continue,
        };
        if out.last() != Some(&r) {
            out.push(r);
        }
    }
    out
}

async fn events_for(sim: &Sim, name: &str, reason: &str) -> Vec<CoreEvent> {
    let ev: Api<CoreEvent> = Api::default_namespaced(sim.client());
    ev.list(&ListParams::default().fields(&format!("involvedObject.name={name},reason={reason}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn podgc_collects_terminated_pods_above_the_threshold_and_orphans() {
    let sim = sim(SimConfig {
        terminated_pod_gc_threshold: 1,
        ..Default::default()
    });
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    pods.create(&PostParams::default(), &pod("first", "true", json!({})))
        .await
        .unwrap();
    phase(&pods, "first", "Succeeded").await;
    // Creation timestamps have second precision: make the order certain.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pods.create(&PostParams::default(), &pod("second", "exit 1", json!({})))
        .await
        .unwrap();
    phase(&pods, "second", "Failed").await;
    gone(&pods, "first").await;
    assert!(pods.get("second").await.is_ok(), "only the oldest goes");

    // A pod bound to a node that disappears is failed and deleted.
    let p = pod(
        "orphan",
        "sleep 300",
        json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
    );
    pods.create(&PostParams::default(), &p).await.unwrap();
    phase(&pods, "orphan", "Running").await;
    sim.remove_node("sim-arm64");
    gone(&pods, "orphan").await;
    let last = sim
        .history("v1", "Pod", "default", "orphan")
        .into_iter()
        .rev()
        .find(|v| condition(v, "DisruptionTarget").is_some())
        .expect("a version with DisruptionTarget");
    assert_eq!(
        condition(&last, "DisruptionTarget").unwrap()["reason"],
        "DeletionByPodGC"
    );
    assert_eq!(last["status"]["phase"], "Failed");
    // The node comes back and takes pods again.
    sim.add_node(NodeSpec::new("sim-arm64", "linux/arm64"));
    pods.create(
        &PostParams::default(),
        &pod(
            "back",
            "true",
            json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
        ),
    )
    .await
    .unwrap();
    let back = phase(&pods, "back", "Succeeded").await;
    assert_eq!(back.spec.unwrap().node_name.as_deref(), Some("sim-arm64"));
}

#[tokio::test]
async fn image_pulls_back_off_and_retry_until_they_succeed() {
    let sim = sim(SimConfig {
        image_pull_backoff: Duration::from_millis(400),
        faults: Faults {
            image_pull_failures: vec![PullFailure::new(
                "docker.io/library/busybox",
                2,
                "toomanyrequests: You have reached your pull rate limit",
            )],
            ..Default::default()
        },
        ..Default::default()
    });
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    pods.create(
        &PostParams::default(),
        &pod("pull", "echo pulled", json!({})),
    )
    .await
    .unwrap();
    phase(&pods, "pull", "Succeeded").await;
    assert_eq!(
        waiting_reasons(&sim, "pull"),
        [
            "ContainerCreating",
            "ErrImagePull",
            "ImagePullBackOff",
            "ErrImagePull",
            "ImagePullBackOff",
            "Running",
            "Terminated"
        ]
    );
    let err = sim
        .history("v1", "Pod", "default", "pull")
        .into_iter()
        .find_map(|v| {
            let w = &v["status"]["containerStatuses"][0]["state"]["waiting"];
            (w["reason"] == "ErrImagePull").then(|| w["message"].as_str().unwrap_or("").to_string())
        })
        .unwrap();
    assert!(err.contains("toomanyrequests"), "{err}");
    let pulling = events_for(&sim, "pull", "Pulling").await;
    assert_eq!(pulling[0].count, Some(3), "three pull attempts");
    // A second pod on the same node finds the image present.
    pods.create(
        &PostParams::default(),
        &pod(
            "again",
            "true",
            json!({"nodeName": pods.get("pull").await.unwrap().spec.unwrap().node_name}),
        ),
    )
    .await
    .unwrap();
    phase(&pods, "again", "Succeeded").await;
    let pulled = events_for(&sim, "again", "Pulled").await;
    assert!(
        pulled[0]
            .message
            .as_deref()
            .unwrap()
            .contains("already present on machine"),
        "{pulled:?}"
    );

    // Permanent failures never recover.
    let invalid =
        json!({"containers": [{"name": "main", "image": "Busybox:1", "command": ["true"]}]});
    let never = json!({"containers": [{"name": "main", "image": "busybox:never-pulled", "imagePullPolicy": "Never", "command": ["true"]}]});
    pods.create(&PostParams::default(), &pod("invalid", "", invalid))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("never", "", never))
        .await
        .unwrap();
    for (name, reason) in [
        ("invalid", "InvalidImageName"),
        ("never", "ErrImageNeverPull"),
    ] {
        eventually(reason, LONG, || {
            let sim = &sim;
            async move {
                waiting_reasons(sim, name)
                    .contains(&reason.to_string())
                    .then_some(())
            }
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        waiting_reasons(&sim, "invalid"),
        ["ContainerCreating", "InvalidImageName"]
    );
    assert_eq!(
        waiting_reasons(&sim, "never"),
        ["ContainerCreating", "ErrImageNeverPull"]
    );
    let p = pods.get("never").await.unwrap();
    let w = p.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(
        w.message.as_deref(),
        Some("Container image \"busybox:never-pulled\" is not present with pull policy of Never")
    );
}

fn job(name: &str, script: &str, backoff: i32, policy: Value, extra: Value) -> Job {
    let mut spec = json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut j = json!({"metadata": {"name": name}, "spec": {"backoffLimit": backoff, "template": {"spec": spec}}});
    if !policy.is_null() {
        j["spec"]["podFailurePolicy"] = policy;
    }
    serde_json::from_value(j).unwrap()
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

async fn running_pod(pods: &Api<Pod>, job: &str, not: &[String]) -> Pod {
    eventually(&format!("a running pod of {job}"), LONG, || {
        let pods = pods.clone();
        async move {
            job_pods(&pods, job).await.into_iter().find(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && p.metadata.deletion_timestamp.is_none()
                    && !not.contains(p.metadata.name.as_ref().unwrap())
            })
        }
    })
    .await
}

fn job_cond(j: &Job, ty: &str) -> Option<(String, String)> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn wait_job(jobs: &Api<Job>, name: &str, ty: &'static str) -> Job {
    eventually(&format!("job {name} {ty}"), LONG, || {
        let jobs = jobs.clone();
        let name = name.to_string();
        async move {
            jobs.get(&name)
                .await
                .ok()
                .filter(|j| job_cond(j, ty).is_some())
        }
    })
    .await
}

fn ignore_disruptions() -> Value {
    json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]})
}

#[tokio::test]
async fn evictions_carry_disruption_target_and_pod_failure_policy_decides() {
    let sim = sim(SimConfig::default());
    let jobs: Api<Job> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    // Ignore: an evicted pod is replaced and not counted against backoffLimit 0.
    jobs.create(
        &PostParams::default(),
        &job("evicted", "sleep 300", 0, ignore_disruptions(), json!({})),
    )
    .await
    .unwrap();
    let first = running_pod(&pods, "evicted", &[]).await;
    let first_name = first.metadata.name.clone().unwrap();
    assert!(first
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"batch.kubernetes.io/job-tracking".to_string()));
    pods.evict(&first_name, &EvictParams::default())
        .await
        .unwrap();
    let second = running_pod(&pods, "evicted", std::slice::from_ref(&first_name)).await;
    assert_ne!(second.metadata.name, first.metadata.name);
    let last = sim
        .history("v1", "Pod", "default", &first_name)
        .into_iter()
        .rev()
        .find(|v| v["status"]["phase"] == "Failed")
        .expect("the evicted pod ended Failed");
    let dt = condition(&last, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(
        (&dt["reason"], &dt["message"]),
        (
            &json!("EvictionByEvictionAPI"),
            &json!("Eviction API: evicting")
        )
    );
    gone(&pods, &first_name).await;
    let j = jobs.get("evicted").await.unwrap();
    assert_eq!(
        j.status.as_ref().unwrap().failed,
        None,
        "ignored, not counted"
    );
    assert!(job_cond(&j, "FailureTarget").is_none());

    // Without the policy the same eviction exhausts backoffLimit 0.
    jobs.create(
        &PostParams::default(),
        &job("counted", "sleep 300", 0, Value::Null, json!({})),
    )
    .await
    .unwrap();
    let p = running_pod(&pods, "counted", &[]).await;
    pods.evict(p.metadata.name.as_ref().unwrap(), &EvictParams::default())
        .await
        .unwrap();
    let done = wait_job(&jobs, "counted", "Failed").await;
    assert_eq!(job_cond(&done, "Failed").unwrap().0, "BackoffLimitExceeded");

    // FailJob on an exit code fails the Job at once, whatever backoffLimit says.
    let policy = json!({"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]});
    jobs.create(
        &PostParams::default(),
        &job("failjob", "exit 42", 5, policy, json!({})),
    )
    .await
    .unwrap();
    let done = wait_job(&jobs, "failjob", "Failed").await;
    let (reason, msg) = job_cond(&done, "Failed").unwrap();
    assert_eq!(reason, "PodFailurePolicy");
    let pod_name = job_pods(&pods, "failjob").await[0]
        .metadata
        .name
        .clone()
        .unwrap();
    assert_eq!(
        msg,
        format!("Container main for pod default/{pod_name} failed with exit code 42 matching FailJob rule at index 0")
    );
    assert_eq!(
        job_cond(&done, "FailureTarget").unwrap().0,
        "PodFailurePolicy"
    );
    assert_eq!(done.status.unwrap().failed, Some(1));

    // Count: exit 3 counts, exit 7 is ignored (rules apply in order).
    let policy = json!({"rules": [
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [7]}}]});
    jobs.create(
        &PostParams::default(),
        &job("count", "exit 3", 1, policy, json!({})),
    )
    .await
    .unwrap();
    let done = wait_job(&jobs, "count", "Failed").await;
    assert_eq!(job_cond(&done, "Failed").unwrap().0, "BackoffLimitExceeded");
    assert_eq!(done.status.unwrap().failed, Some(2));

    // The API requires restartPolicy Never with a podFailurePolicy.
    let mut bad = job("bad", "true", 0, ignore_disruptions(), json!({}));
    bad.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .restart_policy = Some("OnFailure".into());
    match jobs.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message
                    .contains("only \"Never\" is supported when podFailurePolicy is specified"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

#[tokio::test]
async fn reclaimed_and_drained_nodes_disrupt_their_pods() {
    let sim = sim(SimConfig::default());
    let mut spot = NodeSpec::new("spot-1", "linux/arm64");
    spot.labels.push(("pool".into(), "spot".into()));
    sim.add_node(spot.clone());
    let jobs: Api<Job> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let nodes: Api<Node> = Api::all(sim.client());
    jobs.create(
        &PostParams::default(),
        &job(
            "spot",
            "sleep 300",
            0,
            ignore_disruptions(),
            json!({"nodeSelector": {"pool": "spot"}}),
        ),
    )
    .await
    .unwrap();
    let first = running_pod(&pods, "spot", &[]).await;
    let first_name = first.metadata.name.clone().unwrap();
    sim.reclaim_node("spot-1", Disruption::SpotInterruption)
        .unwrap();
    eventually("the reclaimed node gone", LONG, || {
        let nodes = nodes.clone();
        async move {
            matches!(nodes.get("spot-1").await, Err(kube::Error::Api(s)) if s.code == 404)
                .then_some(())
        }
    })
    .await;
    let dt = sim
        .history("v1", "Pod", "default", &first_name)
        .into_iter()
        .find_map(|v| condition(&v, "DisruptionTarget").cloned())
        .expect("DisruptionTarget");
    assert_eq!(dt["reason"], "TerminationByKubelet");
    // A new spot node takes the replacement; nothing was counted.
    spot.name = "spot-2".into();
    sim.add_node(spot);
    let second = running_pod(&pods, "spot", std::slice::from_ref(&first_name)).await;
    assert_eq!(
        second.spec.as_ref().unwrap().node_name.as_deref(),
        Some("spot-2")
    );
    assert_eq!(jobs.get("spot").await.unwrap().status.unwrap().failed, None);

    // Karpenter consolidation: tainted, evicted through the API, removed.
    sim.reclaim_node("spot-2", Disruption::KarpenterConsolidation)
        .unwrap();
    let n = nodes.get("spot-2").await;
    if let Ok(n) = n {
        let taints = n.spec.unwrap().taints.unwrap_or_default();
        assert!(taints.iter().any(|t| t.key == "karpenter.sh/disrupted"));
    }
    let second_name = second.metadata.name.clone().unwrap();
    gone(&pods, &second_name).await;
    let dt = sim
        .history("v1", "Pod", "default", &second_name)
        .into_iter()
        .find_map(|v| condition(&v, "DisruptionTarget").cloned())
        .unwrap();
    assert_eq!(dt["reason"], "EvictionByEvictionAPI");

    // Drain: cordoned, pods evicted, the node stays.
    pods.create(
        &PostParams::default(),
        &pod("plain", "sleep 300", json!({"nodeName": "sim-amd64"})),
    )
    .await
    .unwrap();
    phase(&pods, "plain", "Running").await;
    let evicted = sim.drain_node("sim-amd64").unwrap();
    assert_eq!(evicted, ["plain"]);
    gone(&pods, "plain").await;
    let n = nodes.get("sim-amd64").await.unwrap();
    assert_eq!(n.spec.unwrap().unschedulable, Some(true));
}

#[tokio::test]
async fn a_node_group_scales_from_zero_for_a_pending_pod_and_back() {
    let delay = Duration::from_secs(2);
    let sim = sim(SimConfig {
        nodes: vec![NodeSpec::new("sim-amd64", "linux/amd64")],
        node_groups: vec![NodeGroup::new("arm", "linux/arm64", 0, 2, delay)
            .with_scale_down_unneeded(Duration::from_secs(1))],
        ..Default::default()
    });
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let nodes: Api<Node> = Api::all(sim.client());
    let group_nodes = |nodes: Api<Node>| async move {
        nodes
            .list(&ListParams::default().labels("kube-sim/node-group=arm"))
            .await
            .unwrap()
            .items
    };
    assert!(group_nodes(nodes.clone()).await.is_empty());
    let start = Instant::now();
    pods.create(
        &PostParams::default(),
        &pod(
            "arm",
            "sleep 1",
            json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
        ),
    )
    .await
    .unwrap();
    let node = eventually("a node of group arm", LONG, || {
        let nodes = nodes.clone();
        async move { group_nodes(nodes).await.into_iter().next() }
    })
    .await;
    let took = start.elapsed();
    assert!(
        took >= delay && took < delay + Duration::from_secs(5),
        "node after {took:?}"
    );
    let node_name = node.metadata.name.clone().unwrap();
    assert_eq!(node.metadata.labels.unwrap()["kubernetes.io/arch"], "arm64");
    let ev = events_for(&sim, "arm", "TriggeredScaleUp").await;
    assert_eq!(
        ev[0].message.as_deref(),
        Some("pod triggered scale-up: [{arm 0->1 (max: 2)}]")
    );
    let done = phase(&pods, "arm", "Succeeded").await;
    assert_eq!(done.spec.unwrap().node_name, Some(node_name.clone()));
    // Empty for the unneeded time: removed.
    eventually("the idle node removed", LONG, || {
        let nodes = nodes.clone();
        let n = node_name.clone();
        async move {
            matches!(nodes.get(&n).await, Err(kube::Error::Api(s)) if s.code == 404).then_some(())
        }
    })
    .await;

    // No group fits: the pod says why.
    pods.create(
        &PostParams::default(),
        &pod(
            "s390x",
            "true",
            json!({"nodeSelector": {"kubernetes.io/arch": "s390x"}}),
        ),
    )
    .await
    .unwrap();
    let ev = eventually("NotTriggerScaleUp", LONG, || {
        let sim = &sim;
        async move {
            events_for(sim, "s390x", "NotTriggerScaleUp")
                .await
                .into_iter()
                .next()
        }
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some("pod didn't trigger scale-up: 1 node(s) didn't match Pod's node affinity/selector")
    );
}

#[tokio::test]
async fn configmap_volumes_are_projected_like_the_kubelet() {
    let sim = sim(SimConfig::default());
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"},
        "data": {"a.txt": "alpha", "b.txt": "beta"}}))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let script = "cd /cfg && readlink ..data; readlink a.txt; stat -c %a ..data/a.txt; stat -c %a \"$(readlink -f ..data)\"; \
        cat a.txt; echo; readlink /items/deep; stat -L -c %a /items/deep/dir/b; cat /items/deep/dir/b; echo; ls /items; ls -A /none";
    let extra = json!({"containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", format!("({script}) > /dev/termination-log 2>&1")],
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}, {"name": "items", "mountPath": "/items"}, {"name": "none", "mountPath": "/none"}]}],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o440}},
            {"name": "items", "configMap": {"name": "cfg", "items": [{"key": "b.txt", "path": "deep/dir/b", "mode": 0o400}]}},
            {"name": "none", "configMap": {"name": "missing", "optional": true}}]});
    pods.create(&PostParams::default(), &pod("proj", "", extra))
        .await
        .unwrap();
    let p = phase(&pods, "proj", "Succeeded").await;
    let msg = p.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap()
        .message
        .unwrap();
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines.len(), 11, "{msg}");
    // ..data -> ..<UTC timestamp>.<random>, keys are symlinks into it.
    let ts = regex::Regex::new(r"^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\w+$").unwrap();
    assert!(ts.is_match(lines[0]), "..data -> {}", lines[0]);
    assert_eq!(
        &lines[1..9],
        [
            "..data/a.txt",
            "440",
            "755",
            "alpha",
            "..data/deep",
            "400",
            "beta",
            "deep"
        ],
        "{msg}"
    );
    // An optional source that does not exist: an empty projection.
    assert!(ts.is_match(lines[9]), "{msg}");
    assert_eq!(lines[10], "..data");

    // A running pod sees an update of its ConfigMap (a new ..data target).
    let watch = "old=$(readlink /cfg/..data); for i in $(seq 1 150); do \
        if [ \"$(cat /cfg/a.txt)\" = updated ] && [ \"$(readlink /cfg/..data)\" != \"$old\" ]; then exit 0; fi; sleep 0.2; done; exit 1";
    let extra = json!({"containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", watch],
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]});
    pods.create(&PostParams::default(), &pod("follow", "", extra))
        .await
        .unwrap();
    phase(&pods, "follow", "Running").await;
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a.txt": "updated"}})),
    )
    .await
    .unwrap();
    phase(&pods, "follow", "Succeeded").await;
}

#[tokio::test]
async fn buildah_builds_a_configmap_context_through_the_projected_layout() {
    require_tool("buildah", "buildah");
    let sim = sim(SimConfig {
        images: vec![
            ("busybox".into(), None),
            ("quay.io/buildah/stable".into(), None),
        ],
        ..Default::default()
    });
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "context"},
        "data": {"Containerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n", "hello.txt": "hello from a configmap\n"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let script = "set -e; test -L /workspace/source/hello.txt; \
        buildah bud --quiet --format oci -f /workspace/source/Containerfile -t localhost/ctx:latest /workspace/source >/dev/null; \
        buildah push --quiet localhost/ctx:latest oci:/out/ctx:latest; \
        for b in /out/ctx/blobs/sha256/*; do tar -xOf \"$b\" hello.txt 2>/dev/null || true; done > /dev/termination-log";
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "build"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "build", "image": "quay.io/buildah/stable:v1", "command": ["sh", "-c", script],
            "env": [{"name": "STORAGE_DRIVER", "value": "vfs"}, {"name": "BUILDAH_ISOLATION", "value": "chroot"}],
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": [{"name": "source", "mountPath": "/workspace/source", "readOnly": true},
                {"name": "storage", "mountPath": "/var/lib/containers"}, {"name": "out", "mountPath": "/out"}]}],
        "volumes": [{"name": "source", "configMap": {"name": "context"}}, {"name": "storage", "emptyDir": {}}, {"name": "out", "emptyDir": {}}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let start = Instant::now();
    let done = loop {
        let p = pods.get("build").await.unwrap();
        let t = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c[0].state.as_ref())
            .and_then(|s| s.terminated.clone());
        if let Some(t) = t {
            break t;
        }
        if start.elapsed() > BUILD_TIMEOUT {
            let log = pods
                .logs("build", &Default::default())
                .await
                .unwrap_or_default();
            panic!("build did not finish: {:?}\nlog: {log}", p.status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (done.exit_code, done.message.as_deref()),
        (0, Some("hello from a configmap\n")),
        "the layer holds the key's content, not a symlink"
    );
}

#[tokio::test]
async fn the_cluster_clock_offset_shows_in_server_written_times() {
    let sim = sim(SimConfig {
        clock_offset_seconds: -60,
        ..Default::default()
    });
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "t"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let lag = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
        (k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second()) as f64
    };
    let behind = lag(created.metadata.creation_timestamp.as_ref().unwrap());
    assert!(
        (58.0..63.0).contains(&behind),
        "creationTimestamp {behind}s behind"
    );
    let applied = cms
        .patch(
            "t",
            &PatchParams::apply("skew-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": {"k": "v"}})),
        )
        .await
        .unwrap();
    let mf = applied.metadata.managed_fields.unwrap();
    let t = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("skew-test"))
        .unwrap();
    assert!(
        (58.0..63.0).contains(&lag(t.time.as_ref().unwrap())),
        "managedFields time"
    );
    // Controllers write on the same clock (the kubelet's startTime).
    pods.create(&PostParams::default(), &pod("clock", "true", json!({})))
        .await
        .unwrap();
    let p = phase(&pods, "clock", "Succeeded").await;
    assert!((58.0..65.0).contains(&lag(p.status.unwrap().start_time.as_ref().unwrap())));
    // And the offset can change at runtime.
    sim.set_clock_offset(0);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "u"}})).unwrap();
    let now = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(lag(now.metadata.creation_timestamp.as_ref().unwrap()) < 3.0);
}
