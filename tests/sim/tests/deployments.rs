//! apps/v1 Deployments and ReplicaSets: the Deployment controller's
//! ReplicaSet per template, a rolling update, the status `kubectl rollout
//! status` reads, validation, and pods that reach the API server
//! in-cluster with their ServiceAccount token.

mod common;

use common::{eventually, Kubectl, LONG};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

fn deployment(name: &str, replicas: i32, script: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}}},
    }))
    .unwrap()
}

async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    eventually("the rollout to finish", LONG, || async {
        let d = api.get(name).await.ok()?;
        let st = d.status.clone()?;
        (d.metadata.generation == st.observed_generation
            && st.updated_replicas == Some(replicas)
            && st.replicas == Some(replicas)
            && st.available_replicas == Some(replicas))
        .then_some(d)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_and_rolls_over_to_a_new_template() {
    let sim = common::start_sim();
    let client = sim.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &deployment("web", 2, "sleep 3600"))
        .await
        .unwrap();
    let d = rolled_out(&api, "web", 2).await;
    let conds = d.status.unwrap().conditions.unwrap();
    let cond = |ty: &str| conds.iter().find(|c| c.type_ == ty).unwrap().clone();
    assert_eq!(
        cond("Available").reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(
        cond("Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let rs = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs.len(), 1);
    let hash = rs[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs[0].metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs[0].metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    let owned = pods
        .list(&ListParams::default().labels(&format!("pod-template-hash={hash}")))
        .await
        .unwrap()
        .items;
    assert_eq!(owned.len(), 2);
    for p in &owned {
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((r.kind.as_str(), r.controller), ("ReplicaSet", Some(true)));
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    }

    // kubectl's rollout status reads the same status.
    let k = Kubectl::new(sim.kubeconfig_path());
    let out = k.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    assert_eq!(out.trim(), "deployment \"web\" successfully rolled out");
    let table = k.ok(&["get", "deploy", "web"]);
    assert!(table.contains("2/2"), "{table}");

    // A new template: a second ReplicaSet takes over, the first goes to zero.
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "busybox", "command": ["sh", "-c", "sleep 3601"]}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let d = rolled_out(&api, "web", 2).await;
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let rs = eventually("the old ReplicaSet scaled to zero", LONG, || async {
        let rs = sets.list(&ListParams::default()).await.ok()?.items;
        (rs.len() == 2
            && rs.iter().any(|r| {
                r.spec.as_ref().unwrap().replicas == Some(0)
                    && r.status.as_ref().unwrap().replicas == 0
            }))
        .then_some(rs)
    })
    .await;
    let new = rs
        .iter()
        .find(|r| r.spec.as_ref().unwrap().replicas == Some(2))
        .unwrap();
    assert_eq!(
        new.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_that_does_not_match_the_template_is_refused() {
    let sim = common::start_sim();
    let api: Api<Deployment> = Api::default_namespaced(sim.client());
    let mut d = deployment("bad", 1, "true");
    d.spec.as_mut().unwrap().selector.match_labels =
        Some([("app".to_string(), "other".to_string())].into());
    let e = api.create(&PostParams::default(), &d).await.unwrap_err();
    let kube::Error::Api(s) = e else {
        panic!("{e}")
    };
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains("spec.template.metadata.labels: Invalid value: {\"app\":\"bad\"}: `selector` does not match template `labels`")
            || s.message.contains("`selector` does not match template `labels`"),
        "{}",
        s.message
    );
}

/// A pod reaches the API server as a real one does: the `kubernetes`
/// Service's variables and the ServiceAccount token, CA and namespace under
/// /var/run/secrets/kubernetes.io/serviceaccount; kubectl inside it is
/// authenticated as the pod's ServiceAccount (and refused by RBAC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_in_cluster_credentials() {
    let sim = common::start_sim();
    let kubectl = common::require_tool("kubectl", "kubernetes-client");
    let api: Api<Deployment> = Api::default_namespaced(sim.client());
    let script = format!(
        "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; \
         echo port=$KUBERNETES_SERVICE_PORT; {} get pods 2>&1; sleep 3600",
        kubectl.display()
    );
    api.create(&PostParams::default(), &deployment("probe", 1, &script))
        .await
        .unwrap();
    rolled_out(&api, "probe", 1).await;
    let k = Kubectl::new(sim.kubeconfig_path());
    let log = eventually("the pod's kubectl answer", LONG, || async {
        let (_, out, _) = k.run(&["logs", "-l", "app=probe"]);
        out.contains("forbidden").then_some(out)
    })
    .await;
    assert!(log.starts_with("default\n"), "{log}");
    let port = sim.url().rsplit(':').next().unwrap().to_string();
    assert!(log.contains(&format!("port={port}\n")), "{log}");
    assert!(
        log.contains(
            "User \"system:serviceaccount:default:default\" cannot list resource \"pods\""
        ),
        "{log}"
    );
}

/// kubectl's generator sends the Deployment as protobuf (apps/v1 in the
/// field table); rollout status and the wide table read it back.
#[test]
fn kubectl_create_deployment_rolls_out() {
    let sim = common::start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    k.ok(&[
        "create",
        "deployment",
        "hello",
        "--image=busybox",
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]);
    // kubectl prints a "Waiting for deployment ..." line per watch event
    // until the rollout is done (kubectl rollout_status.go), so how many
    // come first depends on timing; the verdict is the last line.
    let out = k.ok(&["rollout", "status", "deployment/hello", "--timeout=30s"]);
    let lines: Vec<&str> = out.trim().lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some("deployment \"hello\" successfully rolled out"),
        "{out}"
    );
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("Waiting for deployment \"hello\" rollout to finish: ")),
        "{out}"
    );
    let wide = k.ok(&["get", "deploy", "hello", "-o", "wide"]);
    assert!(
        wide.contains("2/2") && wide.contains("busybox") && wide.contains("app=hello"),
        "{wide}"
    );
    let rs = k.ok(&[
        "get",
        "rs",
        "-l",
        "app=hello",
        "-o",
        "jsonpath={.items[*].status.readyReplicas}",
    ]);
    assert_eq!(rs.trim(), "2");
}
