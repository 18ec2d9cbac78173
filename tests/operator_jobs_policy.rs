//! The chart's policy on the operator's own ServiceAccount, as the chart
//! renders it, on the simulated API server: with the operator's token, only
//! Jobs like the operator's are admitted (no hostPath, host namespaces,
//! privileged containers or added capabilities but SETFCAP; not in
//! kube-system or the operator's namespace; the operator's label), so a
//! stolen token cannot take the cluster. An admin is not bound by it, and
//! the Jobs the operator renders pass it for both builders.

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use harness::{
    install_admission_policy, install_crd, install_operator_identity, start_sim, NAMESPACE,
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT,
};
use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::{Api, Client};
use multiarch_operator::api::MultiArchImage;
use multiarch_operator::render::{build_id, plan, BuilderImages};
use multiarch_operator::validate::{parse_manifests, validate};
use serde_json::{json, Value};

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];

/// The build Jobs the operator renders for a git-sourced resource with a
/// push secret (every kind of volume it mounts), as JSON.
fn rendered_jobs(strategy: &str) -> Vec<Value> {
    let yaml = format!(
        "apiVersion: multiarch.dev/v1alpha1\nkind: MultiArchImage\nmetadata: {{name: app, namespace: {NAMESPACE}, uid: u1}}\nspec:\n  image: registry.example.com/app\n  platforms: [linux/amd64]\n  source: {{git: {{url: 'https://git.example.com/app.git', secretRef: {{name: git-cred}}}}}}\n  pushSecret: {{name: regcred}}\n  builder: {{strategy: {strategy}}}\n"
    );
    let resource: MultiArchImage = parse_manifests(&yaml).unwrap().remove(0);
    let valid = validate(&resource).unwrap();
    let id = build_id(&resource.spec, &Default::default());
    let plan = plan(
        &resource,
        &valid,
        id,
        &BuilderImages::default(),
        Some("0123456789abcdef0123456789abcdef01234567"),
    );
    plan.build_jobs
        .iter()
        .map(|job| {
            let mut job = serde_json::to_value(job).unwrap();
            // Owned by a resource that does not exist here.
            job["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("ownerReferences");
            job
        })
        .collect()
}

async fn create(client: &Client, namespace: &str, job: &Value) -> Result<(), String> {
    let job: Job = serde_json::from_value(job.clone()).unwrap();
    Api::<Job>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &job)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn renamed(job: &Value, name: &str) -> Value {
    let mut job = job.clone();
    job["metadata"]["name"] = json!(name);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_operator_token_creates_only_jobs_like_the_operators() {
    let sim = start_sim(TWO_NODES);
    install_crd(&sim.client()).await;
    install_operator_identity(&sim);
    install_admission_policy(&sim);
    let operator = sim
        .client_for_service_account(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
        .unwrap();
    let admin = sim.client();

    // What the operator renders passes, for both builders.
    for strategy in ["buildah", "buildkit"] {
        for (i, job) in rendered_jobs(strategy).iter().enumerate() {
            create(
                &operator,
                NAMESPACE,
                &renamed(job, &format!("{strategy}-{i}")),
            )
            .await
            .unwrap_or_else(|e| panic!("the operator's own {strategy} Job: {e}"));
        }
    }

    let job = rendered_jobs("buildah").remove(0);
    // The Job with its pod spec changed by `change`.
    let with_pod = |change: &dyn Fn(&mut Value)| {
        let mut changed = job.clone();
        change(&mut changed["spec"]["template"]["spec"]);
        changed
    };
    let mut escalations: Vec<(&str, Value, &str)> = vec![
        (
            "a hostPath volume",
            with_pod(&|pod| {
                pod["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "root", "hostPath": {"path": "/"}}))
            }),
            "(no hostPath)",
        ),
        (
            "hostNetwork",
            with_pod(&|pod| pod["hostNetwork"] = json!(true)),
            "use no host namespace",
        ),
        (
            "hostPID",
            with_pod(&|pod| pod["hostPID"] = json!(true)),
            "use no host namespace",
        ),
        (
            "a privileged container",
            with_pod(&|pod| {
                pod["initContainers"][0]["securityContext"] = json!({"privileged": true})
            }),
            "no privileged container",
        ),
        (
            "SYS_ADMIN",
            with_pod(&|pod| {
                pod["initContainers"][0]["securityContext"] =
                    json!({"capabilities": {"add": ["SYS_ADMIN"]}})
            }),
            "no capability but SETFCAP",
        ),
    ];
    let mut unlabelled = job.clone();
    unlabelled["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app.kubernetes.io/managed-by");
    escalations.push((
        "no managed-by label",
        unlabelled,
        "app.kubernetes.io/managed-by=multiarch-operator",
    ));
    for (i, (what, job, needle)) in escalations.iter().enumerate() {
        let job = renamed(job, &format!("escalation-{i}"));
        let refused = create(&operator, NAMESPACE, &job)
            .await
            .expect_err(&format!("{what} refused for the operator's token"));
        assert!(refused.contains(needle), "{what}: {refused}");
        assert!(
            refused.contains("multiarch-operator-jobs"),
            "{what}: the refusal names the policy: {refused}"
        );
        // The policy binds the operator's ServiceAccount only.
        create(&admin, NAMESPACE, &job)
            .await
            .unwrap_or_else(|e| panic!("{what} from an admin: {e}"));
    }
    for namespace in ["kube-system", OPERATOR_NAMESPACE] {
        let mut elsewhere = renamed(&job, "elsewhere");
        elsewhere["metadata"]["namespace"] = json!(namespace);
        let refused = create(&operator, namespace, &elsewhere)
            .await
            .expect_err("no Job in kube-system or the operator's namespace");
        assert!(
            refused.contains("no Jobs in kube-system or in its own namespace"),
            "{namespace}: {refused}"
        );
    }
}
