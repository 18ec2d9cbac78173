//! Security: credentials never reach logs, status, events, Jobs or errors;
//! Jobs mount only Secrets of the resource's own namespace; the default
//! builder's pods are not privileged; the merge runs non-root on a read-only
//! root filesystem.
//!
//! The operator's own Deployment (non-root, read-only root filesystem, no
//! capabilities, no privilege escalation) is asserted by
//! `tests/chart.rs::the_operator_pod_is_locked_down_and_probed`; it is not
//! repeated here.

#[path = "e2e/cache_images.rs"]
mod cache_images;
mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::time::Duration;

use base64::Engine as _;
use common::registry::{AUTH_PASSWORD, AUTH_USER};
use harness::{install_crd, start_sim, Operator, BUILD_TIMEOUT, NAMESPACE};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use multiarch_operator::api::{MultiArchImage, Phase};
use multiarch_operator::render::{self, BuilderImages};
use multiarch_operator::validate::validate;
use serde_json::{json, Value};

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Every rendered container (init and main) of a Job, with the pod spec.
fn containers(job: &Job) -> (Value, Vec<Value>) {
    let job = serde_json::to_value(job).unwrap();
    let pod = job["spec"]["template"]["spec"].clone();
    let all = pod["initContainers"]
        .as_array()
        .into_iter()
        .chain(pod["containers"].as_array())
        .flatten()
        .cloned()
        .collect();
    (pod, all)
}

/// The names of the Secrets a Job's pod mounts.
fn mounted_secrets(job: &Job) -> Vec<String> {
    let (pod, _) = containers(job);
    pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["secret"]["secretName"].as_str().map(String::from))
        .collect()
}

async fn get_text(client: &Client, path: &str) -> String {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_credentials_appear_nowhere() {
    let registry = common::shared_auth_registry();
    let sim = start_sim(TWO_NODES);
    let client = sim.client();
    install_crd(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = Operator::start(&sim, dir.path());

    let auth = b64(&format!("{AUTH_USER}:{AUTH_PASSWORD}"));
    let config = json!({"auths": {registry.host(): {"auth": auth}}}).to_string();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": NAMESPACE},
        "data": {".dockerconfigjson": b64(&config)},
    }))
    .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), NAMESPACE);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // The base image is private: the build pulls it with the pull secret
    // (a read credential; the test registry has one user).
    let mut pull_secret = secret.clone();
    pull_secret.metadata.name = Some("pullcred".into());
    secrets
        .create(&PostParams::default(), &pull_secret)
        .await
        .unwrap();
    let base = cache_images::push_base_image_as(registry, registry.creds_arg().as_deref());
    let config_map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "secure-context", "namespace": NAMESPACE},
        "data": {
            "Dockerfile": format!("FROM {base}\nCOPY hello.txt probe.sh /\nRUN [\"/bin/busybox\", \"sh\", \"/probe.sh\"]\n"),
            "hello.txt": "secure\n",
            "probe.sh": common::probe::script(None),
        },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();
    let resource = json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": "secure", "namespace": NAMESPACE},
        "spec": {
            "image": registry.repo("security/secure"),
            "tags": ["latest"],
            "platforms": ["linux/amd64", "linux/arm64"],
            "source": {"configMap": {"name": "secure-context"}},
            "builder": {"strategy": "buildah"},
            "pushSecret": {"name": "regcred"},
            "pullSecret": {"name": "pullcred"},
            "insecureRegistry": true,
        },
    });
    let mais: Api<MultiArchImage> = Api::namespaced(client.clone(), NAMESPACE);
    mais.patch(
        "secure",
        &PatchParams::apply("security").force(),
        &Patch::Apply(&resource),
    )
    .await
    .unwrap();

    // Succeeded, through the credentials.
    let deadline = std::time::Instant::now() + BUILD_TIMEOUT * 2;
    let done = loop {
        let current = mais.get("secure").await.unwrap();
        let status = current.status.clone().unwrap_or_default();
        if status.phase == Some(Phase::Succeeded) {
            break current;
        }
        assert!(
            status.phase != Some(Phase::Failed) && std::time::Instant::now() < deadline,
            "secure: {status:?}\noperator log:\n{}",
            harness::tail(&operator.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let digest = done.status.clone().unwrap().digest.unwrap();
    let raw = common::inspect_raw(
        &format!("{}:latest", done.spec.image),
        registry.creds_arg().as_deref(),
    )
    .expect("the index is there, behind the credentials");
    assert_eq!(common::sha256_digest(&raw), digest);
    assert!(
        common::inspect_raw(&format!("{}:latest", done.spec.image), None).is_err(),
        "the registry really wants credentials"
    );

    // Everything captured.
    let mut captured = vec![("operator log", operator.log())];
    captured.push((
        "MultiArchImage",
        get_text(
            &client,
            &format!("/apis/multiarch.dev/v1alpha1/namespaces/{NAMESPACE}/multiarchimages"),
        )
        .await,
    ));
    for (what, path) in [
        (
            "Jobs",
            format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs"),
        ),
        ("Pods", format!("/api/v1/namespaces/{NAMESPACE}/pods")),
        ("Events", format!("/api/v1/namespaces/{NAMESPACE}/events")),
        (
            "Events (events.k8s.io)",
            format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events"),
        ),
        (
            "MultiArchImage status",
            format!(
                "/apis/multiarch.dev/v1alpha1/namespaces/{NAMESPACE}/multiarchimages/secure/status"
            ),
        ),
    ] {
        captured.push((what, get_text(&client, &path).await));
    }
    let mut history: Vec<Value> = sim.history(
        "multiarch.dev/v1alpha1",
        "MultiArchImage",
        NAMESPACE,
        "secure",
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    for job in jobs.list(&ListParams::default()).await.unwrap().items {
        let name = job.metadata.name.unwrap();
        history.extend(sim.history("batch/v1", "Job", NAMESPACE, &name));
    }
    captured.push((
        "every version of the resource and its Jobs",
        serde_json::to_string(&history).unwrap(),
    ));
    captured.push((
        "sim request log",
        sim.requests()
            .iter()
            .map(|r| format!("{} {} {}\n", r.verb, r.path, r.user_agent))
            .collect(),
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut pod_logs = String::new();
    let mut logged_containers = 0;
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        let name = pod.metadata.name.clone().unwrap();
        let spec = pod.spec.clone().unwrap();
        for container in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let params = LogParams {
                container: Some(container.name.clone()),
                ..LogParams::default()
            };
            let log = pods.logs(&name, &params).await.unwrap_or_default();
            logged_containers += 1;
            pod_logs.push_str(&format!("--- {name}/{}\n{log}\n", container.name));
        }
    }
    assert!(
        logged_containers >= 5,
        "two build pods (build, push) and the merge: {logged_containers}"
    );
    assert!(
        pod_logs.contains(&digest),
        "the merge's log is really there:\n{pod_logs}"
    );
    captured.push(("pod logs", pod_logs.clone()));

    // The hostile step reached its container's files (the pull secret)
    // and found no push credentials there.
    let probe = common::probe::findings(&pod_logs);
    assert!(
        probe
            .iter()
            .any(|f| f.ends_with("/multiarch/pull/config.json")),
        "the probe saw its container: {probe:?}"
    );
    assert!(
        probe.iter().all(|f| !f.contains("multiarch/docker")),
        "the push secret within a RUN step's reach: {probe:?}"
    );

    for job in jobs.list(&ListParams::default()).await.unwrap().items {
        // Names only: the Secrets are mounted, never copied into the Job.
        let build = job.metadata.labels.as_ref().unwrap()["multiarch.dev/component"] == "build";
        let expected: &[&str] = if build {
            &["pullcred", "regcred"]
        } else {
            &["regcred"]
        };
        assert_eq!(mounted_secrets(&job), expected, "{:?}", job.metadata.name);
        assert_eq!(job.metadata.namespace.as_deref(), Some(NAMESPACE));
    }

    for needle in [
        AUTH_PASSWORD.to_string(),
        auth.clone(),
        b64(&config),
        b64(AUTH_PASSWORD),
    ] {
        for (what, text) in &captured {
            assert!(
                !text.contains(&needle),
                "a credential ({} chars) appears in the {what}",
                needle.len()
            );
        }
    }
    let total: usize = captured.iter().map(|(_, t)| t.len()).sum();
    println!(
        "grepped {total} bytes ({} sources) for the password and the auth string: none",
        captured.len()
    );
    let log = operator.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// A resource in `namespace` from JSON.
fn resource(namespace: &str, spec: Value) -> MultiArchImage {
    let mut base = json!({
        "image": "registry.example.com/team/app",
        "platforms": ["linux/amd64", "linux/arm64"],
        "source": {"git": {"url": "https://git.example.com/app.git",
            "secretRef": {"name": "git-cred"}}},
        "pushSecret": {"name": "regcred"},
    });
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": "app", "namespace": namespace, "uid": "0000"},
        "spec": base,
    }))
    .unwrap()
}

/// Every Job a resource renders: the build Jobs and the merge Job.
fn all_jobs(resource: &MultiArchImage) -> Vec<Job> {
    let images = BuilderImages::default();
    let valid = validate(resource).expect("valid");
    let plan = render::plan(
        resource,
        &valid,
        render::build_id(&resource.spec, &Default::default()),
        &images,
        None,
    );
    let digests: Vec<String> = plan
        .platforms
        .iter()
        .map(|_| format!("sha256:{}", "a".repeat(64)))
        .collect();
    let merge = plan.merge.job(&digests);
    plan.build_jobs.into_iter().chain([merge]).collect()
}

#[test]
fn jobs_mount_only_secrets_named_in_their_own_namespace() {
    for strategy in ["buildkit", "buildah"] {
        let resource = resource("team-a", json!({"builder": {"strategy": strategy}}));
        for job in all_jobs(&resource) {
            let name = job.metadata.name.clone().unwrap();
            assert_eq!(job.metadata.namespace.as_deref(), Some("team-a"), "{name}");
            for secret in mounted_secrets(&job) {
                assert!(
                    secret == "regcred" || secret == "git-cred",
                    "{name} mounts {secret}"
                );
            }
            let (pod, containers) = containers(&job);
            // No other way to reach a Secret: no env from Secrets, no
            // projected volumes, no service account token.
            assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
            for volume in pod["volumes"].as_array().into_iter().flatten() {
                assert!(
                    volume.get("projected").is_none() && volume.get("hostPath").is_none(),
                    "{name}: {volume}"
                );
            }
            for container in &containers {
                let text = container.to_string();
                assert!(
                    !text.contains("secretKeyRef") && !text.contains("secretRef"),
                    "{name}: {text}"
                );
            }
        }
        // The build Jobs mount both, the merge only the push secret.
        let jobs = all_jobs(&resource);
        assert_eq!(mounted_secrets(&jobs[0]), ["regcred", "git-cred"]);
        assert_eq!(mounted_secrets(jobs.last().unwrap()), ["regcred"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_another_namespace_cannot_be_named() {
    // The names are object names (no '/'): the schema refuses a namespace.
    let sim = start_sim(TWO_NODES);
    let client = sim.client();
    install_crd(&client).await;
    let mais: Api<MultiArchImage> = Api::namespaced(client.clone(), NAMESPACE);
    let attempts = [
        (
            "push",
            json!({"pushSecret": {"name": "kube-system/regcred"}}),
            "spec.pushSecret.name",
        ),
        (
            "git",
            json!({"source": {"git": {"url": "https://git.example.com/app.git",
                "secretRef": {"name": "kube-system/git-cred"}}}}),
            "spec.source.git.secretRef.name",
        ),
        (
            "dots",
            json!({"pushSecret": {"name": "../kube-system/regcred"}}),
            "spec.pushSecret.name",
        ),
        (
            "namespace-field",
            json!({"pushSecret": {"name": "regcred", "namespace": "kube-system"}}),
            "spec.pushSecret.namespace",
        ),
    ];
    for (name, spec, field) in attempts {
        // Raw JSON: the typed struct could not even hold some of these.
        let mut resource = serde_json::to_value(resource(NAMESPACE, json!({}))).unwrap();
        resource["metadata"] = json!({"name": name});
        for (k, v) in spec.as_object().unwrap() {
            resource["spec"][k] = v.clone();
        }
        let request = http::Request::post(format!(
            "/apis/multiarch.dev/v1alpha1/namespaces/{NAMESPACE}/multiarchimages?fieldValidation=Strict"
        ))
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(&resource).unwrap(),
        ))
        .unwrap();
        let response = client.send(request).await.unwrap();
        let code = response.status().as_u16();
        let body = response.into_body().collect_bytes().await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(
            code == 422 || code == 400,
            "{name}: accepted ({code}): {body}"
        );
        assert!(body.contains(field), "{name}: {body}");
    }
    assert!(mais
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    // The typed API cannot even say it: LocalObjectRef has a name only, so
    // an extra `namespace` is dropped by the schema (pruned) by default.
    let mut pruned = serde_json::to_value(resource(NAMESPACE, json!({}))).unwrap();
    pruned["metadata"] = json!({"name": "pruned"});
    pruned["spec"]["pushSecret"] = json!({"name": "regcred", "namespace": "kube-system"});
    let request = http::Request::post(format!(
        "/apis/multiarch.dev/v1alpha1/namespaces/{NAMESPACE}/multiarchimages"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&pruned).unwrap())
    .unwrap();
    let stored: Value = client.request(request).await.unwrap();
    assert_eq!(stored["spec"]["pushSecret"], json!({"name": "regcred"}));
    let stored: MultiArchImage = serde_json::from_value(stored).unwrap();
    let mut stored = stored;
    stored.metadata.namespace = Some(NAMESPACE.into());
    for job in all_jobs(&stored) {
        assert_eq!(job.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert!(mounted_secrets(&job)
            .iter()
            .all(|s| s == "regcred" || s == "git-cred"));
    }
}

#[test]
fn the_default_builder_is_not_privileged_and_the_merge_is_locked_down() {
    let resource = resource("team-a", json!({}));
    assert_eq!(
        serde_json::to_value(&resource.spec.builder).unwrap()["strategy"],
        "buildkit",
        "buildkit is the default"
    );
    let jobs = all_jobs(&resource);
    let (merge, builds) = jobs.split_last().unwrap();
    for job in builds {
        let name = job.metadata.name.clone().unwrap();
        let (pod, containers) = containers(job);
        for key in ["hostNetwork", "hostPID", "hostIPC"] {
            assert!(pod.get(key).is_none_or(|v| v == false), "{name}: {key}");
        }
        // Rootless BuildKit: the pod runs as a non-root user.
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["securityContext"]["runAsUser"], 1000, "{name}");
        for container in &containers {
            let security = &container["securityContext"];
            let who = format!("{name}/{}", container["name"]);
            assert!(
                security.get("privileged").is_none_or(|p| p == false),
                "{who} is privileged"
            );
            // build.rs documents no added capability for BuildKit (only
            // seccomp/AppArmor unconfined for its own namespaces).
            assert!(
                security["capabilities"].get("add").is_none(),
                "{who} adds capabilities: {security}"
            );
            assert!(
                security.get("runAsUser").is_none_or(|u| u != 0),
                "{who} runs as root"
            );
        }
    }
    // buildah (opt-in) is root in its container but not privileged, and adds
    // only the documented SETFCAP.
    let buildah = resource_with_buildah();
    for job in all_jobs(&buildah).split_last().unwrap().1 {
        for container in containers(job).1 {
            let security = &container["securityContext"];
            assert!(security.get("privileged").is_none_or(|p| p == false));
            let added = security["capabilities"]["add"].clone();
            assert!(
                added.is_null() || added == json!(["SETFCAP"]),
                "{}: {added}",
                container["name"]
            );
        }
    }

    let (pod, containers) = containers(merge);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(containers.len(), 1);
    let security = &containers[0]["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{security}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{security}");
    assert_eq!(
        security["capabilities"]["drop"],
        json!(["ALL"]),
        "{security}"
    );
    assert!(security["capabilities"].get("add").is_none());
    assert!(security.get("privileged").is_none_or(|p| p == false));
}

fn resource_with_buildah() -> MultiArchImage {
    resource("team-a", json!({"builder": {"strategy": "buildah"}}))
}
