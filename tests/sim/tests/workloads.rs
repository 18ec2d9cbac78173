//! The scheduler, Job controller and local kubelet, driven through kube-rs.

mod common;

use common::{eventually, start_sim, LONG};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_sim::{NodeSpec, Taint};
use serde_json::{json, Value};

fn job(name: &str, script: &str, extra_spec: Value) -> Job {
    let mut pod_spec = json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]});
    for (k, v) in extra_spec.as_object().unwrap() {
        pod_spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}}})).unwrap()
}

fn cond(j: &Job, ty: &str) -> Option<(String, String)> {
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
        async move { jobs.get(&name).await.ok().filter(|j| cond(j, ty).is_some()) }
    })
    .await
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

async fn pending_reason(pods: &Api<Pod>, job: &str) -> String {
    eventually(&format!("{job} unschedulable"), LONG, || {
        let pods = pods.clone();
        async move {
            let p = job_pods(&pods, job).await.into_iter().next()?;
            let c = p
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
            c.message
        }
    })
    .await
}

#[tokio::test]
async fn arm64_job_runs_on_arm64_node_with_termination_message() {
    let sim = start_sim();
    let jobs: Api<Job> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let script = "echo built on $NODE; printf sha256:0123 > /dev/termination-log";
    let extra = json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}, "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script],
        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]});
    jobs.create(&PostParams::default(), &job("arm", "", extra))
        .await
        .unwrap();
    let j = wait_job(&jobs, "arm", "Complete").await;
    let st = j.status.unwrap();
    assert_eq!((st.succeeded, st.active), (Some(1), Some(0)));
    assert!(st.start_time.is_some() && st.completion_time.is_some());
    let conds: Vec<String> = st
        .conditions
        .unwrap()
        .iter()
        .map(|c| c.type_.clone())
        .collect();
    assert_eq!(conds, vec!["SuccessCriteriaMet", "Complete"]);
    let p = job_pods(&pods, "arm").await.remove(0);
    assert_eq!(
        p.spec.as_ref().unwrap().node_name.as_deref(),
        Some("sim-arm64")
    );
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Job", Some(true), Some(true))
    );
    assert!(p.metadata.name.as_ref().unwrap().starts_with("arm-"));
    let ps = p.status.unwrap();
    assert_eq!(ps.phase.as_deref(), Some("Succeeded"));
    let t = ps.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (t.exit_code, t.reason.as_deref(), t.message.as_deref()),
        (0, Some("Completed"), Some("sha256:0123"))
    );
    assert_eq!(
        pods.logs(p.metadata.name.as_ref().unwrap(), &Default::default())
            .await
            .unwrap(),
        "built on sim-arm64\n"
    );
    assert!(
        !std::path::Path::new("/dev/termination-log").exists(),
        "the sandbox leaked onto the host"
    );
    let events: Api<CoreEvent> = Api::default_namespaced(sim.client());
    let evs = events
        .list(&ListParams::default().fields("involvedObject.name=arm,involvedObject.kind=Job"))
        .await
        .unwrap();
    assert!(evs
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some("SuccessfulCreate")));
}

#[tokio::test]
async fn unschedulable_until_a_node_or_toleration_exists() {
    let sim = start_sim();
    let jobs: Api<Job> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    jobs.create(
        &PostParams::default(),
        &job(
            "rv",
            "true",
            json!({"nodeSelector": {"kubernetes.io/arch": "riscv64"}}),
        ),
    )
    .await
    .unwrap();
    let msg = pending_reason(&pods, "rv").await;
    assert_eq!(msg, "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.");
    let events: Api<CoreEvent> = Api::default_namespaced(sim.client());
    let pod_name = job_pods(&pods, "rv").await[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let evs = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod_name}")))
        .await
        .unwrap();
    let fs = evs
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .expect("FailedScheduling event");
    assert_eq!(
        (
            fs.type_.as_deref(),
            fs.source.as_ref().unwrap().component.as_deref()
        ),
        (Some("Warning"), Some("default-scheduler"))
    );

    // Taint the arm64 node like GKE does: untolerated pods stay pending.
    sim.set_taints(
        "sim-arm64",
        vec![Taint::new("kubernetes.io/arch", "arm64", "NoSchedule")],
    )
    .unwrap();
    jobs.create(
        &PostParams::default(),
        &job(
            "tainted",
            "true",
            json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
        ),
    )
    .await
    .unwrap();
    let msg = pending_reason(&pods, "tainted").await;
    assert_eq!(msg, "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {kubernetes.io/arch: arm64}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.");
    let tol = json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}, "tolerations": [{"key": "kubernetes.io/arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}]});
    jobs.create(&PostParams::default(), &job("tolerated", "true", tol))
        .await
        .unwrap();
    wait_job(&jobs, "tolerated", "Complete").await;

    // A riscv64 node appears: the pending pod is scheduled and runs.
    sim.add_node(NodeSpec::new("sim-riscv64", "linux/riscv64"));
    wait_job(&jobs, "rv", "Complete").await;
    assert_eq!(
        job_pods(&pods, "rv").await[0]
            .spec
            .as_ref()
            .unwrap()
            .node_name
            .as_deref(),
        Some("sim-riscv64")
    );
}

#[tokio::test]
async fn unknown_image_fails_to_pull() {
    let sim = start_sim();
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "nope"}, "spec": {"containers": [{"name": "c", "image": "registry.invalid/nope:1", "command": ["true"]}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    for reason in ["ErrImagePull", "ImagePullBackOff"] {
        let msg = eventually(reason, LONG, || {
            let pods = pods.clone();
            async move {
                let p = pods.get("nope").await.ok()?;
                let w = p
                    .status?
                    .container_statuses?
                    .into_iter()
                    .next()?
                    .state?
                    .waiting?;
                (w.reason.as_deref() == Some(reason)).then_some(w.message.unwrap_or_default())
            }
        })
        .await;
        assert!(msg.contains("registry.invalid/nope"), "{msg}");
    }
    assert_eq!(
        pods.get("nope")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );
}

#[tokio::test]
async fn backoff_limit_and_deadline_fail_the_job() {
    let sim = start_sim();
    let jobs: Api<Job> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let mut j = job("flaky", "echo failing; exit 3", json!({}));
    j.spec.as_mut().unwrap().backoff_limit = Some(1);
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let done = wait_job(&jobs, "flaky", "Failed").await;
    assert_eq!(
        cond(&done, "Failed").unwrap(),
        (
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into()
        )
    );
    assert!(cond(&done, "FailureTarget").is_some());
    assert_eq!(done.status.unwrap().failed, Some(2));
    let ps = job_pods(&pods, "flaky").await;
    assert_eq!(ps.len(), 2);
    let t = ps[0].status.clone().unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));

    let mut slow = job("slow", "sleep 60", json!({}));
    slow.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    jobs.create(&PostParams::default(), &slow).await.unwrap();
    let done = wait_job(&jobs, "slow", "Failed").await;
    assert_eq!(cond(&done, "Failed").unwrap().0, "DeadlineExceeded");
    // The running pod was killed.
    eventually("deadline pod gone", LONG, || {
        let pods = pods.clone();
        async move { job_pods(&pods, "slow").await.is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn fallback_to_logs_volumes_and_config_errors() {
    let sim = start_sim();
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let secrets: Api<Secret> = Api::default_namespaced(sim.client());
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "vols"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox", "workingDir": "/work-kube-sim-test",
            "command": ["sh", "-c", "pwd; cat /etc/cred/token; echo \" $TOKEN\"; ls -l /etc/cred | grep -c token; touch /scratch/x; exit 4"],
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "cred", "key": "token"}}}],
            "volumeMounts": [{"name": "cred", "mountPath": "/etc/cred", "readOnly": true}, {"name": "scratch", "mountPath": "/scratch"}]}],
        "volumes": [{"name": "cred", "secret": {"secretName": "cred", "items": [{"key": "token", "path": "token"}]}}, {"name": "scratch", "emptyDir": {}}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    eventually("pod waits for its secret", LONG, || {
        let pods = pods.clone();
        async move {
            let ev: Api<CoreEvent> = Api::default_namespaced(pods.clone().into_client());
            let l = ev
                .list(&ListParams::default().fields("involvedObject.name=vols,reason=FailedMount"))
                .await
                .ok()?;
            l.items.first().map(|e| {
                assert_eq!(
                    e.message.as_deref(),
                    Some(
                        "MountVolume.SetUp failed for volume \"cred\" : secret \"cred\" not found"
                    )
                )
            })
        }
    })
    .await;
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "cred"}, "stringData": {"token": "s3cret"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let t = eventually("pod finished", LONG, || {
        let pods = pods.clone();
        async move {
            pods.get("vols")
                .await
                .ok()?
                .status?
                .container_statuses?
                .into_iter()
                .next()?
                .state?
                .terminated
        }
    })
    .await;
    assert_eq!(t.exit_code, 4);
    assert_eq!(
        t.message.as_deref(),
        Some("/work-kube-sim-test\ns3cret s3cret\n1\n")
    );
    assert!(
        !std::path::Path::new("/work-kube-sim-test").exists()
            && !std::path::Path::new("/scratch").exists()
    );
    assert_eq!(
        pods.get("vols")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Failed")
    );
}

#[tokio::test]
async fn deleting_pods_kills_processes_and_node_loss_retries() {
    let sim = start_sim();
    sim.add_node(NodeSpec::new("sim-arm64-b", "linux/arm64"));
    let jobs: Api<Job> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let mut j = job(
        "long",
        "touch /dev/shm/kube-sim-marker-$(hostname) 2>/dev/null; sleep 300",
        json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
    );
    j.spec.as_mut().unwrap().backoff_limit = Some(3);
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let running = |pods: Api<Pod>| async move {
        job_pods(&pods, "long").await.into_iter().find(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
        })
    };
    let first = eventually("pod running", LONG, || running(pods.clone())).await;
    let node = first.spec.as_ref().unwrap().node_name.clone().unwrap();
    sim.remove_node(&node);
    let second = eventually("replacement pod running", LONG, || {
        let pods = pods.clone();
        let first = first.metadata.name.clone();
        async move { running(pods).await.filter(|p| p.metadata.name != first) }
    })
    .await;
    assert_ne!(
        second.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node.as_str())
    );
    let j = jobs.get("long").await.unwrap();
    assert_eq!(
        j.status.unwrap().failed,
        Some(1),
        "a pod lost with its node counts as failed"
    );
    // Deleting the pod (gracefully) kills `sleep` and the Job replaces it.
    let name = second.metadata.name.clone().unwrap();
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("deleted pod gone", LONG, || {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            matches!(pods.get(&name).await, Err(kube::Error::Api(s)) if s.code == 404).then_some(())
        }
    })
    .await;
    let third = eventually("third pod", LONG, || {
        let pods = pods.clone();
        let seen = [first.metadata.name.clone(), second.metadata.name.clone()];
        async move {
            running(pods)
                .await
                .filter(|p| !seen.contains(&p.metadata.name))
        }
    })
    .await;
    assert!(third.metadata.name.is_some());
    // Deleting the Job in the background cascades to its pod.
    jobs.delete("long", &DeleteParams::background())
        .await
        .unwrap();
    eventually("job pods gone", LONG, || {
        let pods = pods.clone();
        async move { job_pods(&pods, "long").await.is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn an_image_whose_program_lives_under_tmp_runs() {
    require_bwrap();
    // A checkout under /tmp (as CI's may be): every container gets a fresh
    // /tmp, yet the mapped program must still be there.
    let bin = tempfile::Builder::new()
        .prefix("kube-sim-bin-")
        .tempdir_in("/tmp")
        .unwrap();
    let program = bin.path().join("say-hello");
    std::fs::write(
        &program,
        "#!/bin/sh\necho hello-from-tmp > /dev/termination-log\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sim = kube_sim::Sim::start(kube_sim::SimConfig {
        images: vec![("example.com/tool".into(), Some(bin.path().to_path_buf()))],
        ..Default::default()
    })
    .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(sim.client());
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "tmp-tool"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "example.com/tool:1", "command": ["say-hello"]}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let message = eventually("the pod to finish", LONG, || {
        let pods = pods.clone();
        async move {
            let status = pods.get("tmp-tool").await.ok()?.status?;
            let terminated = status
                .container_statuses?
                .into_iter()
                .next()?
                .state?
                .terminated?;
            Some((terminated.exit_code, terminated.message.unwrap_or_default()))
        }
    })
    .await;
    assert_eq!(message, (0, "hello-from-tmp\n".to_string()));
}

fn require_bwrap() {
    common::require_tool("bwrap", "bubblewrap");
}
