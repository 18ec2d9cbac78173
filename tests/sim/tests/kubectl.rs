//! The real kubectl against the simulated cluster: apply (client- and
//! server-side), get (tables, wide, yaml), describe with events, wait,
//! logs, delete with cascading, scheduling failures, image pull errors, and
//! the `kube-sim serve` binary.

mod common;

use common::{fixture, start_sim, Kubectl};
use std::time::{Duration, Instant};

#[test]
fn crd_and_custom_resource_workflow() {
    let sim = start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    let crd = fixture("widget-crd.yaml");
    let out = k.ok(&["apply", "-f", crd.to_str().unwrap()]);
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.sim.example.com created"
    );
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/widgets.sim.example.com",
    ]);
    let w = fixture("widget.yaml");
    assert_eq!(
        k.ok(&["apply", "-f", w.to_str().unwrap()]).trim(),
        "widget.sim.example.com/w1 created"
    );
    assert_eq!(
        k.ok(&["apply", "-f", w.to_str().unwrap()]).trim(),
        "widget.sim.example.com/w1 unchanged"
    );
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", w.to_str().unwrap()])
            .trim(),
        "widget.sim.example.com/w1 serverside-applied"
    );
    // Server-side apply of the CRD itself too.
    assert!(k
        .ok(&["apply", "--server-side", "-f", crd.to_str().unwrap()])
        .contains("serverside-applied"));

    // Printer columns; priority 1 (Color) only with -o wide; short name.
    let table = k.ok(&["get", "wd"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "PHASE", "READY", "AGE"], "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("w1 "), "{table}");
    let wide = k.ok(&["get", "widgets", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap().contains("COLOR") && wide.contains("blue"),
        "{wide}"
    );
    let yaml = k.ok(&["get", "widget", "w1", "-o", "yaml"]);
    assert!(
        yaml.contains("color: blue") && yaml.contains("size: 3") && yaml.contains("generation: 1"),
        "{yaml}"
    );
    assert!(k.ok(&["get", "all"]).contains("widget.sim.example.com/w1"));

    // A Ready condition written through the status subresource satisfies kubectl wait.
    let (ready_early, _, _) =
        k.run(&["wait", "--for=condition=Ready", "--timeout=1s", "widget/w1"]);
    assert!(!ready_early, "Ready before any status was written");
    let patch = r#"{"status":{"phase":"Done","conditions":[{"type":"Ready","status":"True","reason":"Finished","message":"all good"}]}}"#;
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=30s",
        "widget/w1",
    ]);
    let row = k.ok(&["get", "wd", "w1", "--no-headers"]);
    assert!(row.contains("Done") && row.contains("True"), "{row}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // An event written by kube-runtime's Recorder shows in `kubectl describe`.
    rt.block_on(async {
        let client = sim.client();
        let recorder = kube::runtime::events::Recorder::new(
            client,
            kube::runtime::events::Reporter {
                controller: "widget-operator".into(),
                instance: None,
            },
        );
        let obj = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("sim.example.com/v1".into()),
            kind: Some("Widget".into()),
            name: Some("w1".into()),
            namespace: Some("default".into()),
            uid: Some(uid_of(&k)),
            ..Default::default()
        };
        let ev = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: "Polished".into(),
            note: Some("widget polished".into()),
            action: "Polish".into(),
            secondary: None,
        };
        recorder.publish(&ev, &obj).await.unwrap();
    });
    let d = k.ok(&["describe", "widget", "w1"]);
    assert!(
        d.contains("Polished") && d.contains("widget-operator") && d.contains("widget polished"),
        "{d}"
    );
    // Events through both APIs.
    assert!(k.ok(&["get", "events"]).contains("widget polished"));
    assert!(k
        .ok(&["get", "events.v1.events.k8s.io", "-o", "yaml"])
        .contains("note: widget polished"));

    // Validation errors read like a real server's.
    let (ok, _, err) = k.run(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":0}}"#,
    ]);
    assert!(
        !ok && err.contains(
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        ),
        "{err}"
    );

    // The operator's real CRD, once generated, must apply too.
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/multiarchimages.multiarch.dev.yaml");
    if std::fs::metadata(&real)
        .map(|m| m.len() > 0)
        .unwrap_or(false)
    {
        k.ok(&["apply", "--server-side", "-f", real.to_str().unwrap()]);
        k.ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/multiarchimages.multiarch.dev",
        ]);
        k.ok(&["get", "mai"]);
    }
    k.ok(&["delete", "widget", "w1"]);
    assert!(k.ok(&["get", "wd"]).is_empty());
}

fn uid_of(k: &Kubectl) -> String {
    k.ok(&["get", "widget", "w1", "-o", "jsonpath={.metadata.uid}"])
}

const ARM_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: hello}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {kubernetes.io/arch: arm64}
      containers:
      - name: main
        image: busybox:1.36
        command: [sh, -c, 'echo hello from $(NODE); echo sha256:feed > /dev/termination-log']
        env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
"#;

#[test]
fn jobs_logs_describe_and_cascading_delete() {
    let sim = start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    assert_eq!(
        k.ok_stdin(&["apply", "-f", "-"], ARM_JOB).trim(),
        "job.batch/hello created"
    );
    k.ok(&[
        "wait",
        "--for=condition=Complete",
        "--timeout=30s",
        "job/hello",
    ]);
    assert_eq!(k.ok(&["logs", "job/hello"]), "hello from sim-arm64\n");
    let jobs = k.ok(&["get", "jobs"]);
    let row: Vec<&str> = jobs.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["hello", "Complete", "1/1"], "{jobs}");
    let pods = k.ok(&["get", "pods", "-o", "wide"]);
    assert!(pods.lines().next().unwrap().contains("NODE"), "{pods}");
    let row: Vec<&str> = pods.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        (row[1], row[2], row[6]),
        ("0/1", "Completed", "sim-arm64"),
        "{pods}"
    );
    let msg = k.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=hello",
        "-o",
        "jsonpath={.items[0].status.containerStatuses[0].state.terminated.message}",
    ]);
    assert_eq!(msg, "sha256:feed\n");
    let d = k.ok(&["describe", "job", "hello"]);
    assert!(
        d.contains("SuccessfulCreate") && d.contains("job-controller") && d.contains("Completed"),
        "{d}"
    );
    let dp = k.ok(&["describe", "pods", "-l", "job-name=hello"]);
    assert!(
        dp.contains("Scheduled") && dp.contains("default-scheduler") && dp.contains("Started"),
        "{dp}"
    );
    // kubectl delete cascades in the background: the pod goes too.
    k.ok(&["delete", "job", "hello"]);
    k.until(&["get", "pods", "-o", "name"], "job pods deleted", |o| {
        o.trim().is_empty()
    });
}

#[test]
fn scheduling_failures_and_image_pull_errors_are_visible() {
    let sim = start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    let job = ARM_JOB
        .replace("name: hello", "name: nowhere")
        .replace("arm64", "s390x");
    k.ok_stdin(&["apply", "-f", "-"], &job);
    let out = k.until(
        &["describe", "pods", "-l", "job-name=nowhere"],
        "FailedScheduling event",
        |o| o.contains("FailedScheduling"),
    );
    assert!(
        out.contains(
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        ),
        "{out}"
    );
    assert!(k
        .ok(&["get", "pods", "-l", "job-name=nowhere"])
        .contains("Pending"));

    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: badimage}\nspec:\n  containers: [{name: c, image: 'example.invalid/missing:v1', command: ['true']}]\n";
    k.ok_stdin(&["apply", "-f", "-"], pod);
    k.until(&["get", "pod", "badimage"], "ErrImagePull", |o| {
        o.contains("ErrImagePull") || o.contains("ImagePullBackOff")
    });
    let d = k.until(
        &["describe", "pod", "badimage"],
        "pull failure event",
        |o| o.contains("Failed to pull image"),
    );
    assert!(d.contains("example.invalid/missing:v1"), "{d}");
    k.ok(&["delete", "pod", "badimage", "--wait=true", "--timeout=30s"]);
}

#[test]
fn serve_binary_writes_kubeconfig_and_stops_on_sigterm() {
    common::require_tool("bwrap", "bubblewrap");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "serve",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--node",
            "n1=linux/arm64/v8",
            "--taint",
            "n1=dedicated=ci:NoSchedule",
            "--image",
            "busybox",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !kc.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "kubeconfig never written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let k = Kubectl::new(&kc);
    let nodes = k.ok(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.labels.kubernetes\\.io/arch} {.spec.taints[0].key}{end}"]);
    assert_eq!(nodes, "n1 arm64 dedicated");
    assert!(k.ok(&["get", "ns"]).contains("kube-system"));
    assert!(k.ok(&["get", "serviceaccounts"]).contains("default"));
    // SIGTERM: stops by itself.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kube-sim did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
