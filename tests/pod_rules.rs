//! `validate()` refuses what the API server refuses in the build pod's
//! `tolerations` and `resources`, and accepts what it accepts: each case is
//! put into the Job the operator renders and sent, as a dry run, to the
//! simulated API server (whose pod validation follows
//! pkg/apis/core/validation/validation.go and whose decoder follows
//! resource.ParseQuantity), and `validate()` judges the same spec.

use std::process::Command;

use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::Api;
use multiarch_operator::api::MultiArchImage;
use multiarch_operator::validate::{validate_with, Allowlists};
use serde_json::{json, Value};

const BASE: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: app, namespace: default, uid: 00000000-0000-0000-0000-000000000001}
spec:
  image: registry.example.com/team/app
  platforms: [linux/amd64]
  source: {configMap: {name: ctx}}
"#;

/// The spec fragment, and the field `validate()` must name (None: valid).
fn cases() -> Vec<(Value, Option<&'static str>)> {
    vec![
        (
            json!({"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}),
            Some("spec.tolerations[0].value"),
        ),
        (
            json!({"tolerations": [{"operator": "Equal", "value": "x"}]}),
            Some("spec.tolerations[0].operator"),
        ),
        (
            json!({"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]}),
            Some("spec.tolerations[0].effect"),
        ),
        (
            json!({"tolerations": [{"key": "bad key!", "operator": "Exists"}]}),
            Some("spec.tolerations[0].key"),
        ),
        (
            json!({"tolerations": [{"key": "a", "value": "not a label value"}]}),
            Some("spec.tolerations[0].value"),
        ),
        (
            json!({"tolerations": [{"key": "a", "operator": "Maybe"}]}),
            Some("spec.tolerations[0].operator"),
        ),
        (
            json!({"tolerations": [{"key": "a", "operator": "Exists", "effect": "Sometimes"}]}),
            Some("spec.tolerations[0].effect"),
        ),
        (
            json!({"resources": {"limits": {"cpu": "garbage"}}}),
            Some("spec.resources.limits.cpu"),
        ),
        (
            json!({"resources": {"requests": {"memory": "1KK"}}}),
            Some("spec.resources.requests.memory"),
        ),
        (
            json!({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}),
            Some("spec.resources.requests.cpu"),
        ),
        (
            json!({"resources": {"requests": {"cpu": "-1"}}}),
            Some("spec.resources.requests.cpu"),
        ),
        (
            json!({"resources": {"limits": {"gpu": "1"}}}),
            Some("spec.resources.limits.gpu"),
        ),
        (
            json!({"resources": {"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}}}),
            Some("spec.resources.requests.example.com/gpu"),
        ),
        (json!({"tolerations": [{"operator": "Exists"}]}), None),
        (
            json!({"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]}),
            None,
        ),
        (
            json!({"tolerations": [{"key": "example.com/pool", "value": "builds", "effect": "PreferNoSchedule"}]}),
            None,
        ),
        (
            json!({"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}}),
            None,
        ),
        (
            json!({"resources": {"requests": {"example.com/gpu": "2"}, "limits": {"example.com/gpu": "2"}}}),
            None,
        ),
    ]
}

fn resource(fragment: &Value) -> MultiArchImage {
    let mut value: Value = serde_yaml_ng::from_str(BASE).unwrap();
    for (k, v) in fragment.as_object().unwrap() {
        value["spec"][k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

/// The first build Job `render` makes of the valid base resource.
fn base_job(dir: &std::path::Path) -> Value {
    let file = dir.join("base.yaml");
    std::fs::write(&file, BASE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_multiarch-operator"))
        .args(["render", "-f", file.to_str().unwrap()])
        .output()
        .expect("run multiarch-operator render");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text
        .split("\n---\n")
        .find(|d| d.contains("kind: Job"))
        .unwrap();
    serde_yaml_ng::from_str(first).unwrap()
}

/// The Job with the fragment in its pod: tolerations after the automatic
/// one, resources on the build container, as `render` places them.
fn job_with(base: &Value, fragment: &Value) -> Job {
    let mut job = base.clone();
    let pod = &mut job["spec"]["template"]["spec"];
    if let Some(extra) = fragment["tolerations"].as_array() {
        pod["tolerations"]
            .as_array_mut()
            .expect("the automatic toleration")
            .extend(extra.iter().cloned());
    }
    if !fragment["resources"].is_null() {
        let mut placed = false;
        for list in ["initContainers", "containers"] {
            for container in pod[list].as_array_mut().into_iter().flatten() {
                if container["name"] == "build" {
                    container["resources"] = fragment["resources"].clone();
                    placed = true;
                }
            }
        }
        assert!(placed, "the build container");
    }
    serde_json::from_value(job).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_the_api_server_agree_on_the_build_pod_fields() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_job(dir.path());
    let sim = kube_sim::Sim::start(kube_sim::SimConfig::default()).expect("start kube-sim");
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for (fragment, field) in cases() {
        let server = jobs.create(&dry_run, &job_with(&base, &fragment)).await;
        // The API server's rules only: the operator's own refusal of
        // control-plane placement (a toleration of every taint) is not one.
        let pod_rules_only = Allowlists {
            allow_control_plane: true,
            ..Allowlists::default()
        };
        let offline = validate_with(&resource(&fragment), &pod_rules_only);
        match field {
            Some(field) => {
                let errors = offline.expect_err(&fragment.to_string());
                assert!(
                    errors.0.iter().any(|e| e.field == field),
                    "{fragment}: validate() names {errors}, not {field}"
                );
                match server {
                    Err(kube::Error::Api(status)) => {
                        assert!((400..500).contains(&status.code), "{fragment}: {status:?}")
                    }
                    other => panic!("{fragment}: the API server accepted it: {other:?}"),
                }
            }
            None => {
                offline.unwrap_or_else(|e| panic!("{fragment}: {e}"));
                server.unwrap_or_else(|e| panic!("{fragment}: the API server refused: {e}"));
            }
        }
    }
}
