//! The OwnerReferencesPermissionEnforcement admission plugin (on by default
//! in OpenShift; plugin/pkg/admission/gc/gc_admission.go) on the simulated
//! cluster: the build Jobs' owner reference sets `blockOwnerDeletion`, which
//! it allows only to who may update the MultiArchImage's finalizers. The
//! operator runs as its ServiceAccount under the chart-rendered RBAC.

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{eventually, hello_context, World};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::PostParams;
use kube::Api;
use kube_sim::Sim;
use multiarch_operator::api::Phase;
use serde_json::json;

const NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];

fn enforcing_sim() -> Sim {
    let config = kube_sim::SimConfig {
        owner_references_permission_enforcement: true,
        ..harness::sim_config(NODES)
    };
    Sim::start(config).expect("start the simulated cluster")
}

/// The operator's ClusterRole as the chart renders it with `sets`.
fn rendered_cluster_role(sets: &[&str]) -> ClusterRole {
    let mut args = vec!["tests/chart/render.py".to_string()];
    for set in sets {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    let out = std::process::Command::new("python3")
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 (Debian package python3) runs tests/chart/render.py");
    assert!(
        out.status.success(),
        "render.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("\n---\n")
        .find(|doc| doc.lines().any(|l| l == "kind: ClusterRole"))
        .map(|doc| serde_yaml_ng::from_str(doc).unwrap())
        .expect("a ClusterRole in the rendering")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_rbac_a_build_succeeds_under_the_plugin() {
    let world = World::start_on(enforcing_sim(), &[]).await;
    world
        .apply(
            "owned",
            &["linux/amd64", "linux/arm64"],
            &hello_context("owned\n"),
            json!({}),
        )
        .await;
    world.wait_phase("owned", Phase::Succeeded).await;
    // The plugin really looked: the Jobs carry blockOwnerDeletion.
    let job = world
        .jobs()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("a Job");
    let owner = &job.metadata.owner_references.unwrap()[0];
    assert_eq!(owner.kind, "MultiArchImage");
    assert_eq!(owner.block_owner_deletion, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_finalizers_grant_the_plugin_refuses_the_job_apply() {
    let world = World::start_on(enforcing_sim(), &[]).await;
    // The RBAC of a chart installed with the grant turned off.
    let roles: Api<ClusterRole> = Api::all(world.client.clone());
    let mut live = roles.get("multiarch-operator").await.unwrap();
    let without = rendered_cluster_role(&["rbac.ownerReferencesPermissionEnforcement=false"]);
    assert!(
        !serde_json::to_string(&without.rules)
            .unwrap()
            .contains("finalizers"),
        "the rendering still grants finalizers"
    );
    live.rules = without.rules;
    roles
        .replace("multiarch-operator", &PostParams::default(), &live)
        .await
        .unwrap();

    world
        .apply(
            "refused",
            &["linux/amd64"],
            &hello_context("refused\n"),
            json!({}),
        )
        .await;
    let refused = eventually(
        "the operator's Job apply to be refused",
        Duration::from_secs(30),
        || async {
            world.sim.requests().into_iter().find(|r| {
                r.user_agent.starts_with("multiarch-operator/")
                    && r.resource == "jobs"
                    && r.verb == "patch"
                    && r.code == 403
            })
        },
    )
    .await;
    assert_eq!(refused.namespace, harness::NAMESPACE);
    assert!(
        world.job_names().await.is_empty(),
        "no Job was created: {:?}",
        world.job_names().await
    );
    // Every Job apply is refused, none got through.
    assert!(!world.sim.requests().iter().any(|r| {
        r.user_agent.starts_with("multiarch-operator/")
            && r.resource == "jobs"
            && r.verb == "patch"
            && r.code < 300
    }));
}
