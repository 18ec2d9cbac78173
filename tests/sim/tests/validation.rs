//! Validation of built-in objects with the real API server's answers: 422
//! Invalid naming the field (through kube-rs and the real kubectl), 400 for
//! quantities that do not parse; and the API surface kubectl users touch
//! (`kubectl explain` from /openapi/v3, `kubectl cluster-info`).

mod common;

use common::{start_sim, Kubectl};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

fn job(name: &str, pod_spec: Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": pod_spec}},
    }))
    .unwrap()
}

fn container(extra: Value) -> Value {
    let mut c = json!({"name": "main", "image": "busybox", "command": ["true"]});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// The Status of a refused request.
async fn refused(jobs: &Api<Job>, j: Job) -> kube::core::Status {
    match jobs.create(&PostParams::default(), &j).await {
        Err(kube::Error::Api(e)) => *e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_tolerations_quantities_and_requests_are_refused() {
    let sim = start_sim();
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");

    let e = refused(
        &jobs,
        job(
            "tol",
            json!({"restartPolicy": "Never", "containers": [container(json!({}))],
        "tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}),
        ),
    )
    .await;
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{e:?}");
    assert_eq!(
        e.message,
        "Job.batch \"tol\" is invalid: spec.template.spec.tolerations[0].operator: Invalid value: \"Exists\": value must be empty when `operator` is 'Exists'"
    );

    let e = refused(&jobs, job("tol2", json!({"restartPolicy": "Never", "containers": [container(json!({}))],
        "tolerations": [{"key": "a", "operator": "Equal", "value": "x", "effect": "NoSchedule", "tolerationSeconds": 5},
                        {"key": "b", "operator": "Maybe", "effect": "Sometimes"}]}))).await;
    assert!(e.message.contains("spec.template.spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"), "{}", e.message);
    assert!(e.message.contains("spec.template.spec.tolerations[1].operator: Unsupported value: \"Maybe\": supported values: \"Equal\", \"Exists\""), "{}", e.message);
    assert!(e.message.contains("spec.template.spec.tolerations[1].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""), "{}", e.message);

    // A quantity that does not parse fails decoding: 400, as the real server.
    let e = refused(
        &jobs,
        job(
            "q",
            json!({"restartPolicy": "Never",
        "containers": [container(json!({"resources": {"limits": {"cpu": "garbage"}}}))]}),
        ),
    )
    .await;
    assert_eq!(e.code, 400, "{e:?}");
    assert_eq!(
        e.message,
        "Job in version \"v1\" cannot be handled as a Job: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );

    let e = refused(&jobs, job("req", json!({"restartPolicy": "Never",
        "containers": [container(json!({"resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1", "memory": "-1"}}}))]}))).await;
    assert_eq!(e.code, 422, "{e:?}");
    assert!(e.message.contains("spec.template.spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"), "{}", e.message);
    assert!(e.message.contains("spec.template.spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0"), "{}", e.message);
    // The Status carries each cause with its field path.
    let c = sim.cluster();
    let err = c
        .create(&c.def("batch", "jobs"), "default", serde_json::to_value(job("req", json!({"restartPolicy": "Never",
            "containers": [container(json!({"resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}}))]}))).unwrap(),
            &kube_sim::api::WriteOpts::internal("test"))
        .unwrap_err();
    let status = err.status_json();
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "field": "spec.template.spec.containers[0].resources.requests",
            "message": "Invalid value: \"1\": must be less than or equal to cpu limit of 500m"}]),
        "{status}"
    );

    // Names, volumes, mounts, env and duplicates.
    let e = refused(&jobs, job("Bad_Name", json!({"restartPolicy": "Never",
        "volumes": [{"name": "work", "emptyDir": {}}, {"name": "work", "emptyDir": {}}],
        "initContainers": [container(json!({"name": "main"}))],
        "containers": [container(json!({"name": "Main_1", "env": [{"name": "A=B", "value": "x"}],
            "volumeMounts": [{"name": "missing", "mountPath": "/m"}, {"name": "work", "mountPath": "/m", "subPath": "../up"}]}))]}))).await;
    for want in [
        "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain",
        "spec.template.spec.volumes[1].name: Duplicate value: \"work\"",
        "spec.template.spec.containers[0].name: Invalid value: \"Main_1\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc'",
        "spec.template.spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        "spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
        "spec.template.spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/m\": must be unique",
        "spec.template.spec.containers[0].volumeMounts.subPath: Invalid value: \"../up\": must not contain '..'",
    ] {
        assert!(e.message.contains(want), "missing {want:?} in {}", e.message);
    }

    // podFailurePolicy: restartPolicy Never, In/NotIn, values, at most 20 rules.
    let mut j = job(
        "pfp",
        json!({"restartPolicy": "OnFailure", "containers": [container(json!({}))]}),
    );
    let rules: Vec<Value> = (0..21).map(|_| json!({"action": "FailJob", "onExitCodes": {"operator": "Is", "values": [0, 3, 2]}})).collect();
    let mut v = serde_json::to_value(&j).unwrap();
    v["spec"]["podFailurePolicy"] = json!({"rules": rules});
    v["spec"]["backoffLimit"] = json!(-1);
    j = serde_json::from_value(v).unwrap();
    let e = refused(&jobs, j).await;
    for want in [
        "spec.podFailurePolicy.rules: Too many: 21: must have at most 20 items",
        "spec.podFailurePolicy.rules[0].onExitCodes.operator: Unsupported value: \"Is\": supported values: \"In\", \"NotIn\"",
        "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{0, 3, 2}: must be ordered",
        "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified",
        "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
    ] {
        assert!(e.message.contains(want), "missing {want:?} in {}", e.message);
    }
}

#[tokio::test]
async fn an_over_long_event_note_is_refused() {
    let sim = start_sim();
    let events: Api<Event> = Api::namespaced(sim.client(), "default");
    let ev = |name: &str, note: String| -> Event {
        serde_json::from_value(json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name, "namespace": "default"},
            "eventTime": "2025-01-01T00:00:00.000000Z", "type": "Normal", "reason": "Built",
            "action": "Build", "reportingController": "multiarch.dev/operator", "reportingInstance": "op-0",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}, "note": note,
        }))
        .unwrap()
    };
    events
        .create(&PostParams::default(), &ev("ok.1", "x".repeat(1024)))
        .await
        .expect("a 1024-byte note is accepted");
    match events
        .create(&PostParams::default(), &ev("long.1", "x".repeat(1025)))
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422);
            assert_eq!(
                e.message,
                "Event.events.k8s.io \"long.1\" is invalid: message: Invalid value: \"\": can have at most 1024 characters"
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

#[test]
fn kubectl_shows_the_field_of_an_invalid_job() {
    let sim = start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    let bad = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"tol"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"main","image":"busybox"}],"tolerations":[{"key":"a","operator":"Exists","value":"x"}]}}}}"#;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("job.json");
    std::fs::write(&f, bad).unwrap();
    let (ok, _, err) = k.run(&["apply", "-f", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("The Job \"tol\" is invalid: spec.template.spec.tolerations[0].operator: Invalid value: \"Exists\": value must be empty when `operator` is 'Exists'"),
        "{err}"
    );
    let q = bad
        .replace(
            r#""image":"busybox"}"#,
            r#""image":"busybox","resources":{"limits":{"cpu":"garbage"}}}"#,
        )
        .replace(
            r#","tolerations":[{"key":"a","operator":"Exists","value":"x"}]"#,
            "",
        );
    std::fs::write(&f, q).unwrap();
    let (ok, _, err) = k.run(&["create", "-f", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("cannot be handled as a Job: quantities must match the regular expression"),
        "{err}"
    );
}

#[test]
fn explain_and_cluster_info() {
    let sim = start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    let crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/multiarchimages.multiarch.dev.yaml");
    k.ok(&["apply", "-f", crd.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/multiarchimages.multiarch.dev",
    ]);
    let spec = k.ok(&["explain", "multiarchimage.spec"]);
    assert!(
        spec.contains("KIND:       MultiArchImage") && spec.contains("FIELD: spec <Object>"),
        "{spec}"
    );
    assert!(spec.contains("platforms"), "{spec}");
    let job = k.ok(&["explain", "job.spec.podFailurePolicy.rules.onExitCodes"]);
    assert!(
        job.contains("GROUP:      batch") && job.contains("operator"),
        "{job}"
    );
    let info = k.ok(&["cluster-info"]);
    assert!(
        info.contains(&format!(
            "Kubernetes control plane is running at {}",
            sim.url()
        )),
        "{info}"
    );
    let svc = k.ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
    ]);
    assert_eq!(svc, "10.96.0.1 443");
    let ep = k.ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].ports[0].port}",
    ]);
    assert_eq!(ep, sim.url().rsplit(':').next().unwrap());
    let slice = k.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=kubernetes",
        "-o",
        "name",
    ]);
    assert_eq!(slice.trim(), "endpointslice.discovery.k8s.io/kubernetes");
    // Client-side: an unknown field is reported by server-side field validation.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cm.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n",
    )
    .unwrap();
    k.ok(&["apply", "-f", f.to_str().unwrap()]);
}
