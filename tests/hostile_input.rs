//! Hostile and malformed MultiArchImages, sent as raw JSON through the API
//! of the simulated cluster (so wrong types reach the server) and a few
//! through the real `kubectl`, against the real operator. Each case is either
//! refused at admission naming its field, or accepted and ends `Failed` with a
//! `Ready=False` message naming its field. Afterwards the operator is alive,
//! has not panicked, and still builds a valid resource — whose build
//! arguments full of shell metacharacters reach the image unchanged.

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{eventually, tail, World, NAMESPACE};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use multiarch_operator::api::Phase;
use multiarch_operator::validate::{parse_manifests, validate_with, Allowlists};
use serde_json::{json, Value};

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];
const CONTEXT: &str = "hostile-context";
/// The builder images the operator of the table allows.
const ALLOWED_BUILDER_IMAGE: &str = "quay.io/buildah/";

/// The operator's flags for the table, and the same allowlists offline.
fn operator_flags() -> Vec<String> {
    vec![format!("--allowed-builder-image={ALLOWED_BUILDER_IMAGE}")]
}

fn allowlists() -> Allowlists {
    Allowlists {
        builder_images: vec![ALLOWED_BUILDER_IMAGE.into()],
        ..Allowlists::default()
    }
}

/// The password of the git URL case: it must never be echoed or stored.
const URL_SECRET: &str = "s3cret-4f1d2c";

/// How a case must end.
#[derive(Clone, Debug)]
enum Expect {
    /// HTTP 422 Invalid; the Status message or a cause names the field.
    Refused(&'static str),
    /// HTTP 400 (strict field validation); the message names the field.
    RefusedStrict(&'static str),
    /// Accepted; ends `Failed`, `Ready=False`, the message names every one.
    Failed(&'static [&'static str]),
    /// Accepted with the unknown field pruned from the stored object.
    Pruned(&'static str),
}

struct Case {
    what: &'static str,
    /// A JSON merge patch (RFC 7386) over the valid base resource.
    patch: Value,
    query: &'static str,
    expect: Expect,
}

fn case(what: &'static str, patch: Value, expect: Expect) -> Case {
    Case {
        what,
        patch,
        query: "",
        expect,
    }
}

fn spec(fields: Value) -> Value {
    json!({ "spec": fields })
}

/// The hostile table. Merge-patch `null` removes a field.
fn cases() -> Vec<Case> {
    use Expect::*;
    let long_image = format!("127.0.0.1:5000/{}", "a".repeat(10_000));
    let long_tag = "t".repeat(200);
    let huge_value = "x".repeat(1 << 20);
    let hundred_platforms: Vec<String> = (0..100).map(|i| format!("linux/arch{i}")).collect();
    let many_args: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("A{i}"), json!("v"))).collect();
    let many_tags: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let tolerations = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"key": format!("k{i}"), "operator": "Exists"}))
            .collect()
    };
    let (many_tolerations, huge_tolerations) = (tolerations(33), tolerations(2000));
    let many_labels: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    let many_resources: serde_json::Map<String, Value> = (0..17)
        .map(|i| (format!("example.com/r{i}"), json!("1")))
        .collect();
    let heavy_args: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("A{i}"), json!("x".repeat(4000))))
        .collect();
    vec![
        // Wrong types.
        case(
            "platforms is a string",
            spec(json!({"platforms": "linux/amd64"})),
            Refused("spec.platforms"),
        ),
        case(
            "image is a number",
            spec(json!({"image": 42})),
            Refused("spec.image"),
        ),
        case(
            "insecureRegistry is an object",
            spec(json!({"insecureRegistry": {"yes": true}})),
            Refused("spec.insecureRegistry"),
        ),
        case(
            "tags is an object",
            spec(json!({"tags": {"latest": "v1"}})),
            Refused("spec.tags"),
        ),
        case(
            "buildArgs is a list",
            spec(json!({"buildArgs": ["A=1"]})),
            Refused("spec.buildArgs"),
        ),
        case(
            "activeDeadlineSeconds is a string",
            spec(json!({"activeDeadlineSeconds": "3600"})),
            Refused("spec.activeDeadlineSeconds"),
        ),
        case(
            "tolerations is a string",
            spec(json!({"tolerations": "all"})),
            Refused("spec.tolerations"),
        ),
        case(
            "spec is a string",
            json!({"spec": "build it"}),
            Refused("spec"),
        ),
        case(
            "image missing",
            spec(json!({"image": null})),
            Refused("spec.image"),
        ),
        case(
            "source missing",
            spec(json!({"source": null})),
            Refused("spec.source"),
        ),
        // Unknown fields: pruned by default (the API server's default), an
        // error with fieldValidation=Strict (what kubectl asks for).
        case(
            "unknown field, default validation",
            spec(json!({"privileged": true})),
            Pruned("privileged"),
        ),
        Case {
            what: "unknown field, strict validation",
            patch: spec(json!({"privileged": true})),
            query: "?fieldValidation=Strict",
            expect: RefusedStrict("spec.privileged"),
        },
        // Huge values.
        case(
            "image of 10k characters",
            spec(json!({"image": long_image})),
            Refused("spec.image"),
        ),
        case(
            "tag of 200 characters",
            spec(json!({"tags": [long_tag]})),
            Refused("spec.tags[0]"),
        ),
        case(
            "build arg value of 1 MiB",
            spec(json!({"buildArgs": {"BIG": huge_value}})),
            Refused("spec.buildArgs.BIG"),
        ),
        case(
            "65 build args",
            spec(json!({ "buildArgs": many_args })),
            Refused("spec.buildArgs"),
        ),
        case(
            "33 tags",
            spec(json!({ "tags": many_tags })),
            Refused("spec.tags"),
        ),
        case(
            "33 tolerations",
            spec(json!({ "tolerations": many_tolerations })),
            Refused("spec.tolerations"),
        ),
        case(
            "2,000 tolerations",
            spec(json!({ "tolerations": huge_tolerations })),
            Refused("spec.tolerations"),
        ),
        case(
            "33 nodeSelector entries",
            spec(json!({ "nodeSelector": many_labels })),
            Refused("spec.nodeSelector"),
        ),
        case(
            "17 resource limits",
            spec(json!({"resources": {"limits": many_resources}})),
            Refused("spec.resources.limits"),
        ),
        case(
            "build arg name of 200 bytes",
            spec(json!({"buildArgs": {"N".repeat(200): "v"}})),
            Refused("spec.buildArgs"),
        ),
        case(
            "build args of 40 KB together",
            spec(json!({ "buildArgs": heavy_args })),
            Refused("spec.buildArgs"),
        ),
        // Platforms.
        case(
            "100 platforms",
            spec(json!({ "platforms": hundred_platforms })),
            Refused("spec.platforms"),
        ),
        case(
            "no platform",
            spec(json!({"platforms": []})),
            Refused("spec.platforms"),
        ),
        case(
            "duplicate platform",
            spec(json!({"platforms": ["linux/amd64", "linux/amd64"]})),
            Refused("spec.platforms[1]"),
        ),
        case(
            "duplicate platform by alias",
            spec(json!({"platforms": ["linux/arm64", "linux/aarch64"]})),
            Failed(&["spec.platforms[1]"]),
        ),
        case(
            "unknown architecture",
            spec(json!({"platforms": ["linux/sparc64x"]})),
            Failed(&["spec.platforms[0]"]),
        ),
        case(
            "unknown operating system",
            spec(json!({"platforms": ["plan9/amd64"]})),
            Failed(&["spec.platforms[0]"]),
        ),
        case(
            "platform in upper case",
            spec(json!({"platforms": ["Linux/AMD64"]})),
            Refused("spec.platforms[0]"),
        ),
        case(
            "platform without an architecture",
            spec(json!({"platforms": ["linux"]})),
            Refused("spec.platforms[0]"),
        ),
        // Tags and repositories.
        case(
            "tag with shell characters",
            spec(json!({"tags": ["v1;rm -rf /"]})),
            Refused("spec.tags[0]"),
        ),
        case(
            "tag that is an option",
            spec(json!({"tags": ["--insecure"]})),
            Refused("spec.tags[0]"),
        ),
        case(
            "tag starting with a dot",
            spec(json!({"tags": ["latest", ".hidden"]})),
            Refused("spec.tags[1]"),
        ),
        case(
            "duplicate tag",
            spec(json!({"tags": ["v1", "v1"]})),
            Refused("spec.tags[1]"),
        ),
        case(
            "repository in upper case",
            spec(json!({"image": "127.0.0.1:5000/E2E/App"})),
            Refused("spec.image"),
        ),
        case(
            "tag inside image",
            spec(json!({"image": "127.0.0.1:5000/e2e/app:v1"})),
            Refused("spec.image"),
        ),
        case(
            "digest inside image",
            spec(json!({"image": format!("127.0.0.1:5000/e2e/app@sha256:{}", "0".repeat(64))})),
            Refused("spec.image"),
        ),
        case(
            "command substitution in image",
            spec(json!({"image": "127.0.0.1:5000/$(id)"})),
            Refused("spec.image"),
        ),
        case(
            "image with credentials",
            spec(json!({"image": format!("user:{URL_SECRET}@registry.example.com/e2e/app")})),
            Refused("spec.image"),
        ),
        case(
            "image with a scheme and credentials",
            spec(
                json!({"image": format!("https://user:{URL_SECRET}@registry.example.com/e2e/app")}),
            ),
            Refused("spec.image"),
        ),
        case(
            "builder image with credentials",
            spec(json!({"builder": {"strategy": "buildah",
                "image": format!("user:{URL_SECRET}@quay.io/buildah/stable:v1")}})),
            Refused("spec.builder.image"),
        ),
        case(
            "image that is an option",
            spec(json!({"image": "--dest-creds=x"})),
            Refused("spec.image"),
        ),
        // Path traversal.
        case(
            "dockerfile ../Dockerfile",
            spec(json!({"dockerfile": "../Dockerfile"})),
            Refused("spec.dockerfile"),
        ),
        case(
            "dockerfile absolute",
            spec(json!({"dockerfile": "/etc/passwd"})),
            Refused("spec.dockerfile"),
        ),
        case(
            "dockerfile sub/..",
            spec(json!({"dockerfile": "sub/.."})),
            Refused("spec.dockerfile"),
        ),
        case(
            "contextDir a/../../b",
            spec(json!({"contextDir": "a/../../b"})),
            Refused("spec.contextDir"),
        ),
        case(
            "contextDir ..",
            spec(json!({"contextDir": ".."})),
            Refused("spec.contextDir"),
        ),
        case(
            "contextDir absolute",
            spec(json!({"contextDir": "/"})),
            Refused("spec.contextDir"),
        ),
        case(
            "dockerfile .",
            spec(json!({"dockerfile": "."})),
            Refused("spec.dockerfile"),
        ),
        case(
            "dockerfile naming a directory",
            spec(json!({"dockerfile": "docker/"})),
            Refused("spec.dockerfile"),
        ),
        case(
            "dockerfile ending in /.",
            spec(json!({"dockerfile": "docker/."})),
            Refused("spec.dockerfile"),
        ),
        case(
            "dockerfile with a newline",
            spec(json!({"dockerfile": "Docker\nfile"})),
            Failed(&["spec.dockerfile"]),
        ),
        // Build arguments and argument injection.
        case(
            "build arg name starting with a digit",
            spec(json!({"buildArgs": {"1BAD": "x"}})),
            Failed(&["spec.buildArgs.1BAD"]),
        ),
        case(
            "build arg name with '='",
            spec(json!({"buildArgs": {"A=B": "x"}})),
            Failed(&["spec.buildArgs.A=B"]),
        ),
        case(
            "revision that is an option",
            spec(json!({"source": {"configMap": null,
                "git": {"url": "https://example.com/app.git", "revision": "--upload-pack=touch /tmp/pwned"}}})),
            Refused("spec.source.git.revision"),
        ),
        case(
            "target that is an option",
            spec(json!({"target": "--output=type=local,dest=/"})),
            Refused("spec.target"),
        ),
        case(
            "git url that is an option",
            spec(
                json!({"source": {"configMap": null, "git": {"url": "--upload-pack=touch /tmp/pwned"}}}),
            ),
            Refused("spec.source.git.url"),
        ),
        case(
            "git url with the ext:: transport",
            spec(
                json!({"source": {"configMap": null, "git": {"url": "ext::sh -c touch% /tmp/pwned"}}}),
            ),
            Refused("spec.source.git.url"),
        ),
        case(
            "builder image with command substitution",
            spec(json!({"builder": {"strategy": "buildah", "image": "$(rm -rf /)"}})),
            Failed(&["spec.builder.image"]),
        ),
        case(
            "builder image that is an option",
            spec(json!({"builder": {"strategy": "buildah", "image": "--privileged"}})),
            Failed(&["spec.builder.image"]),
        ),
        case(
            "unknown builder strategy",
            spec(json!({"builder": {"strategy": "docker"}})),
            Refused("spec.builder.strategy"),
        ),
        // Sources and secrets.
        case(
            "git url with embedded credentials",
            spec(json!({"source": {"configMap": null,
                "git": {"url": format!("https://user:{URL_SECRET}@git.example.com/repo.git")}}})),
            Refused("spec.source.git.url"),
        ),
        case(
            "ftp url with a password",
            spec(json!({"source": {"configMap": null,
                "git": {"url": format!("ftp://user:{URL_SECRET}@git.example.com/repo.git")}}})),
            Refused("spec.source.git.url"),
        ),
        case(
            "git url with a token in the query",
            spec(json!({"source": {"configMap": null,
                "git": {"url": format!("https://git.example.com/repo.git?private_token={URL_SECRET}")}}})),
            Refused("spec.source.git.url"),
        ),
        case(
            "git url with a token in the fragment",
            spec(json!({"source": {"configMap": null,
                "git": {"url": format!("https://git.example.com/repo.git#{URL_SECRET}")}}})),
            Refused("spec.source.git.url"),
        ),
        case(
            "ssh url with a password",
            spec(json!({"source": {"configMap": null,
                "git": {"url": format!("ssh://git:{URL_SECRET}@git.example.com/repo.git")}}})),
            Refused("spec.source.git.url"),
        ),
        case(
            "both sources",
            spec(json!({"source": {"git": {"url": "https://example.com/app.git"}}})),
            Refused("spec.source"),
        ),
        case(
            "neither source",
            spec(json!({"source": {"configMap": null}})),
            Refused("spec.source"),
        ),
        case(
            "configMap name with illegal characters",
            spec(json!({"source": {"configMap": {"name": "Bad_Name"}}})),
            Refused("spec.source.configMap.name"),
        ),
        case(
            "pushSecret in another namespace",
            spec(json!({"pushSecret": {"name": "other/regcred"}})),
            Refused("spec.pushSecret.name"),
        ),
        case(
            "git secretRef with a path",
            spec(json!({"source": {"configMap": null,
                "git": {"url": "https://example.com/app.git", "secretRef": {"name": "../kube-system/token"}}}})),
            Refused("spec.source.git.secretRef.name"),
        ),
        // Names and numbers.
        case(
            "name with illegal characters",
            json!({"metadata": {"name": "Bad_Name!"}}),
            Refused("metadata.name"),
        ),
        case(
            "name of 300 characters",
            json!({"metadata": {"name": "n".repeat(300)}}),
            Refused("metadata.name"),
        ),
        case(
            "negative activeDeadlineSeconds",
            spec(json!({"activeDeadlineSeconds": -1})),
            Refused("spec.activeDeadlineSeconds"),
        ),
        case(
            "huge activeDeadlineSeconds",
            spec(json!({"activeDeadlineSeconds": 1_000_000_000_000_i64})),
            Refused("spec.activeDeadlineSeconds"),
        ),
        case(
            "negative backoffLimit",
            spec(json!({"backoffLimit": -5})),
            Refused("spec.backoffLimit"),
        ),
        case(
            "backoffLimit is a word",
            spec(json!({"backoffLimit": "two"})),
            Refused("spec.backoffLimit"),
        ),
        case(
            "huge backoffLimit",
            spec(json!({"backoffLimit": 1000})),
            Refused("spec.backoffLimit"),
        ),
        // Scheduling.
        case(
            "toleration with an unknown operator",
            spec(json!({"tolerations": [{"key": "k", "operator": "Maybe"}]})),
            Failed(&["spec.tolerations[0].operator"]),
        ),
        case(
            "toleration with an unknown effect",
            spec(
                json!({"tolerations": [{"key": "k", "operator": "Exists", "effect": "Sometimes"}]}),
            ),
            Failed(&["spec.tolerations[0].effect"]),
        ),
        case(
            "nodeSelector key with illegal characters",
            spec(json!({"nodeSelector": {"bad key!": "x"}})),
            Failed(&["spec.nodeSelector[bad key!]"]),
        ),
        case(
            "nodeSelector value with illegal characters",
            spec(json!({"nodeSelector": {"pool": "a b;c"}})),
            Failed(&["spec.nodeSelector[pool]"]),
        ),
        case(
            "nodeSelector overriding the architecture pin",
            spec(json!({"nodeSelector": {"kubernetes.io/arch": "amd64"}})),
            Failed(&["spec.nodeSelector[kubernetes.io/arch]"]),
        ),
        case(
            "serviceAccountName with illegal characters",
            spec(json!({"serviceAccountName": "Bad Name!"})),
            Refused("spec.serviceAccountName"),
        ),
        // Cluster-wide allowlists of the operator.
        case(
            "builder image outside the allowlist",
            spec(
                json!({"builder": {"strategy": "buildah", "image": "registry.example.com/root/shell:1"}}),
            ),
            Failed(&["spec.builder.image"]),
        ),
        case(
            "toleration of the control-plane taint",
            spec(
                json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                "operator": "Exists", "effect": "NoSchedule"}]}),
            ),
            Failed(&["spec.tolerations[0].key"]),
        ),
        case(
            "toleration of every taint",
            spec(json!({"tolerations": [{"operator": "Exists"}]})),
            Failed(&["spec.tolerations[0]"]),
        ),
        case(
            "nodeSelector on the control plane",
            spec(json!({"nodeSelector": {"node-role.kubernetes.io/master": ""}})),
            Failed(&["spec.nodeSelector[node-role.kubernetes.io/master]"]),
        ),
        case(
            "several problems at once",
            spec(json!({"platforms": ["linux/amd64", "linux/x86_64"],
                "nodeSelector": {"kubernetes.io/os": "linux"}, "buildArgs": {"-X": "1"}})),
            Failed(&[
                "spec.platforms[1]",
                "spec.nodeSelector[kubernetes.io/os]",
                "spec.buildArgs.-X",
            ]),
        ),
    ]
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// A valid resource: one platform, the ConfigMap context, buildah.
fn base(world: &World, name: &str) -> Value {
    base_for(&world.registry.repo(&format!("hostile/{name}")), name)
}

fn base_for(image: &str, name: &str) -> Value {
    json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "image": image,
            "tags": ["latest"],
            "platforms": ["linux/amd64"],
            "source": {"configMap": {"name": CONTEXT}},
            "builder": {"strategy": "buildah"},
            "insecureRegistry": true,
        },
    })
}

/// POSTs raw JSON: the status code and the body (a Status on errors).
async fn post(client: &Client, body: &Value, query: &str) -> (u16, Value) {
    let request = http::Request::post(format!(
        "/apis/multiarch.dev/v1alpha1/namespaces/{NAMESPACE}/multiarchimages{query}"
    ))
    .header("content-type", "application/json")
    .body(kube::client::Body::from(serde_json::to_vec(body).unwrap()))
    .unwrap();
    let response = client.send(request).await.expect("the API server answers");
    let code = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (
        code,
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes))),
    )
}

/// The Status message and every cause's field and message, as one text.
fn status_text(status: &Value) -> String {
    let mut text = status["message"].as_str().unwrap_or_default().to_string();
    for cause in status["details"]["causes"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "\n  cause {}: {}",
            cause["field"].as_str().unwrap_or_default(),
            cause["message"].as_str().unwrap_or_default()
        ));
    }
    text
}

fn one_line(text: &str, max: usize) -> String {
    let line = text.replace('\n', " ");
    if line.chars().count() <= max {
        line
    } else {
        format!("{}…", line.chars().take(max).collect::<String>())
    }
}

/// Waits for the resource to end Failed with a Ready=False message; returns it.
async fn failed_message(world: &World, name: &str) -> String {
    let what = format!("{name} to end Failed");
    let deadline = Duration::from_secs(90);
    let started = Instant::now();
    loop {
        let resource = world.get(name).await;
        let status = resource.status.clone().unwrap_or_default();
        let seen = status.observed_generation == resource.metadata.generation;
        if seen && status.phase == Some(Phase::Failed) {
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap_or_else(|| panic!("{name}: no Ready condition: {status:?}"));
            assert_eq!(ready.status, "False", "{name}: {ready:?}");
            assert_eq!(ready.observed_generation, resource.metadata.generation);
            return ready.message.clone();
        }
        assert!(
            !(seen && status.phase == Some(Phase::Succeeded)),
            "{name} succeeded"
        );
        assert!(
            started.elapsed() < deadline,
            "timed out waiting for {what}: {status:?}\noperator log tail:\n{}",
            tail(&world.operator.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn apply_config_map(client: &Client, name: &str, data: Value) {
    let config_map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": data,
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .patch(
            name,
            &PatchParams::apply("hostile").force(),
            &Patch::Apply(&config_map),
        )
        .await
        .expect("apply a ConfigMap");
}

/// The operator process is alive (not exited, not a zombie) and has not
/// panicked.
fn assert_operator_healthy(world: &World) {
    let pid = world.operator.pid();
    let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = state
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("State: gone");
    assert!(
        !line.contains('Z') && !line.contains("gone"),
        "the operator is not running ({line})\n{}",
        tail(&world.operator.log(), 40)
    );
    let log = world.operator.log();
    assert!(
        !log.contains("panicked") && !log.contains("RUST_BACKTRACE"),
        "the operator panicked:\n{}",
        tail(&log, 60)
    );
}

/// The same table offline, through what `render -f` runs (the strict parse,
/// then `validate()`): every case the API server refuses, and every case
/// the operator fails, is refused naming the same field. So the CRD schema
/// and `validate()` cannot drift apart.
#[test]
fn validate_names_the_same_field_as_the_api_server() {
    let table = cases();
    for (i, case) in table.iter().enumerate() {
        let name = format!("h{i:02}");
        let mut body = base_for(&format!("127.0.0.1:5000/hostile/{name}"), &name);
        merge(&mut body, &case.patch);
        let offline = parse_manifests(&body.to_string())
            .and_then(|found| validate_with(&found[0], &allowlists()).map_err(|e| e.to_string()));
        let fields: Vec<String> = match &case.expect {
            Expect::Refused(field) | Expect::RefusedStrict(field) => vec![field.to_string()],
            // Offline is strict, as kubectl is: an unknown field is refused.
            Expect::Pruned(field) => vec![format!("spec.{field}")],
            Expect::Failed(fields) => fields.iter().map(|f| f.to_string()).collect(),
        };
        let errors = match offline {
            Ok(_) => panic!("{name} ({}): accepted offline", case.what),
            Err(errors) => errors,
        };
        for field in &fields {
            assert!(
                errors.contains(field.as_str()),
                "{name} ({}): offline, the refusal does not name {field}: {errors}",
                case.what
            );
        }
        assert!(
            !errors.contains(URL_SECRET),
            "{name} ({}): the refusal repeats the URL password",
            case.what
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_specs_are_refused_or_fail_naming_their_field() {
    let flags = operator_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let world = World::start_with(TWO_NODES, &flags).await;
    apply_config_map(
        &world.client,
        CONTEXT,
        json!({"Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n", "hello.txt": "hi\n"}),
    )
    .await;

    let table = cases();
    assert!(table.len() >= 40, "{} cases", table.len());
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut pending_failures: Vec<(String, &'static str, &'static [&'static str])> = Vec::new();
    let mut refused = 0;
    let mut pruned = 0;
    for (i, case) in table.iter().enumerate() {
        let name = format!("h{i:02}");
        let mut body = base(&world, &name);
        merge(&mut body, &case.patch);
        let (code, answer) = post(&world.client, &body, case.query).await;
        let text = status_text(&answer);
        match &case.expect {
            Expect::Refused(field) | Expect::RefusedStrict(field) => {
                let want = if matches!(case.expect, Expect::Refused(_)) {
                    422
                } else {
                    400
                };
                assert_eq!(
                    code, want,
                    "{name} ({}): expected a refusal naming {field}, got {code}: {answer}",
                    case.what
                );
                assert!(
                    text.contains(field),
                    "{name} ({}): the refusal does not name {field}: {text}",
                    case.what
                );
                assert!(
                    !text.contains(URL_SECRET),
                    "{name} ({}): the refusal repeats the URL password: {text}",
                    case.what
                );
                refused += 1;
                rows.push((
                    case.what.to_string(),
                    format!("refused ({code}): {}", one_line(&text, 150)),
                ));
            }
            Expect::Pruned(field) => {
                assert_eq!(code, 201, "{name} ({}): {answer}", case.what);
                assert!(
                    answer["spec"].get(*field).is_none(),
                    "{name}: {field} was stored: {answer}"
                );
                let stored = world.get(&name).await;
                let stored = serde_json::to_value(&stored).unwrap();
                assert!(stored["spec"].get(*field).is_none(), "{stored}");
                // It is a valid resource otherwise: it need not build here.
                world
                    .mais()
                    .delete(&name, &DeleteParams::background())
                    .await
                    .unwrap();
                pruned += 1;
                rows.push((case.what.to_string(), format!("accepted, {field} pruned")));
            }
            Expect::Failed(fields) => {
                assert_eq!(
                    code, 201,
                    "{name} ({}): expected acceptance (the schema cannot say this), got {code}: {text}",
                    case.what
                );
                pending_failures.push((name, case.what, fields));
            }
        }
    }
    // The accepted ones, all in flight at once.
    let mut failed = 0;
    for (name, what, fields) in &pending_failures {
        let message = failed_message(&world, name).await;
        for field in fields.iter() {
            assert!(
                message.contains(field),
                "{name} ({what}): the message does not name {field}: {message}"
            );
        }
        assert!(
            world
                .job_names()
                .await
                .iter()
                .all(|j| !j.starts_with(&format!("{name}-"))),
            "{name}: an invalid spec created Jobs"
        );
        failed += 1;
        rows.push((
            what.to_string(),
            format!("Failed: {}", one_line(&message, 150)),
        ));
    }
    // The refusal of a URL with credentials does not repeat them, and
    // nothing the cluster or the operator kept does.
    let everything = captured(&world).await;
    assert!(
        !everything.contains(URL_SECRET),
        "the git URL password leaked into what was captured"
    );

    println!("\n{:<48} outcome", "case");
    for (what, outcome) in &rows {
        println!("{what:<48} {outcome}");
    }
    println!(
        "\n{} cases: {refused} refused at admission, {failed} Failed naming the field, {pruned} accepted with the unknown field pruned",
        table.len()
    );
    assert_eq!(refused + failed + pruned, table.len());

    assert_operator_healthy(&world);
    // Not wedged: a valid resource, with build arguments full of shell
    // metacharacters, builds — and the values reach the image unchanged.
    build_args_reach_the_image_unchanged(&world).await;
    assert_operator_healthy(&world);
}

/// Everything the cluster and the operator kept: objects, events, the
/// operator's log.
async fn captured(world: &World) -> String {
    let mut text = world.operator.log();
    for (group, resource) in [
        ("apis/multiarch.dev/v1alpha1", "multiarchimages"),
        ("apis/batch/v1", "jobs"),
        ("api/v1", "pods"),
        ("api/v1", "events"),
        ("apis/events.k8s.io/v1", "events"),
    ] {
        let request = http::Request::get(format!("/{group}/namespaces/{NAMESPACE}/{resource}"))
            .body(Vec::new())
            .unwrap();
        text.push_str(&world.client.request_text(request).await.unwrap());
    }
    for record in world.sim.requests() {
        text.push_str(&record.path);
        text.push('\n');
    }
    text
}

/// Shell metacharacters are valid build argument values: they must reach
/// the builder as one argument and the image unchanged.
async fn build_args_reach_the_image_unchanged(world: &World) {
    let nasty = r#"$(touch /tmp/pwned); `id` && echo "q" | cat > /x || true & 'single' \back $HOME ${PATH} * ? [a] {b,c} ~ ! # < > %"#;
    world
        .apply(
            "metachars",
            &["linux/amd64"],
            &[
                (
                    "Dockerfile",
                    "FROM scratch\nARG X\nARG Y\nLABEL x=\"$X\" y=\"$Y\"\nCOPY hello.txt /hello.txt\n",
                ),
                ("hello.txt", "hi\n"),
            ],
            json!({"buildArgs": {"X": nasty, "Y": "--output=type=local,dest=/ --privileged"}}),
        )
        .await;
    let done = world.wait_phase("metachars", Phase::Succeeded).await;
    let reference = format!("{}:latest", done.spec.image);
    let output = common::run_checked(
        common::skopeo::command()
            .args(["inspect", "--config", "--tls-verify=false", "--no-creds"])
            .arg(format!("docker://{reference}")),
    );
    let config: Value = serde_json::from_slice(&output.stdout).unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["x"], json!(nasty), "{config}");
    assert_eq!(
        labels["y"],
        json!("--output=type=local,dest=/ --privileged"),
        "{config}"
    );
}

// ---------------------------------------------------------------------------
// Push secrets that cannot work: the build pod cannot start.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_push_secret_fails_naming_it() {
    let world = World::start(TWO_NODES).await;
    apply_config_map(
        &world.client,
        CONTEXT,
        json!({"Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n", "hello.txt": "hi\n"}),
    )
    .await;
    // An Opaque Secret without `.dockerconfigjson`.
    let opaque: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "opaque-cred", "namespace": NAMESPACE},
        "stringData": {"username": "u", "password": "opaque-pw-never-shown"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(world.client.clone(), NAMESPACE)
        .create(&Default::default(), &opaque)
        .await
        .unwrap();
    for (name, secret) in [
        ("nosecret", "regcred-missing"),
        ("wrongtype", "opaque-cred"),
    ] {
        let mut body = base(&world, name);
        merge(
            &mut body,
            &spec(json!({"pushSecret": {"name": secret}, "activeDeadlineSeconds": 15})),
        );
        let (code, answer) = post(&world.client, &body, "").await;
        assert_eq!(code, 201, "{answer}");
    }
    for (name, secret) in [
        ("nosecret", "regcred-missing"),
        ("wrongtype", "opaque-cred"),
    ] {
        let message = failed_message(&world, name).await;
        println!("{name}: Failed: {message}");
        assert!(message.contains("spec.pushSecret"), "{name}: {message}");
        assert!(message.contains(secret), "{name}: {message}");
    }
    let everything = captured(&world).await;
    assert!(!everything.contains("opaque-pw-never-shown"));
    assert_operator_healthy(&world);
}

// ---------------------------------------------------------------------------
// The real kubectl: what users see.

fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(common::require_tool("kubectl", "kubernetes-client"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()
        .expect("run kubectl");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_refusal_naming_the_field() {
    let world = World::start(TWO_NODES).await;
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = world.sim.kubeconfig_path().to_path_buf();
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "k-dup",
            spec(json!({"platforms": ["linux/amd64", "linux/amd64"]})),
            &["spec.platforms[1]", "Duplicate value"],
        ),
        (
            "k-traversal",
            spec(json!({"contextDir": "a/../../b"})),
            &["spec.contextDir", "no '..' segment"],
        ),
        (
            "k-creds",
            spec(json!({"source": {"configMap": null,
                "git": {"url": format!("https://user:{URL_SECRET}@git.example.com/repo.git")}}})),
            &["spec.source.git.url", "must not embed credentials"],
        ),
        (
            "k-ftp-creds",
            spec(json!({"source": {"configMap": null,
                "git": {"url": format!("ftp://user:{URL_SECRET}@git.example.com/repo.git")}}})),
            &["spec.source.git.url", "must not embed credentials"],
        ),
        (
            "k-query-token",
            spec(json!({"source": {"configMap": null,
                "git": {"url": format!("https://git.example.com/repo.git?private_token={URL_SECRET}")}}})),
            &["spec.source.git.url", "must not carry a query or fragment"],
        ),
        (
            "k-type",
            spec(json!({"backoffLimit": "two"})),
            &["spec.backoffLimit", "must be of type integer"],
        ),
        (
            "k-dockerfile-dot",
            spec(json!({"dockerfile": "."})),
            &["spec.dockerfile", "must name a file"],
        ),
        (
            "k-sources",
            spec(json!({"source": {"git": {"url": "https://example.com/app.git"}}})),
            &["spec.source", "exactly one of"],
        ),
        (
            "k-unknown",
            spec(json!({"privileged": true})),
            &["unknown field", "spec.privileged"],
        ),
    ];
    for (name, patch, wanted) in cases {
        let mut body = base(&world, name);
        merge(&mut body, &patch);
        let file = home.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&body).unwrap()).unwrap();
        let (ok, output) = kubectl(
            &kubeconfig,
            home.path(),
            &["apply", "-f", file.to_str().unwrap()],
        );
        println!("kubectl apply {name}: {}", output.trim());
        assert!(!ok, "{name}: kubectl apply succeeded: {output}");
        for want in wanted {
            assert!(output.contains(want), "{name}: {want:?} not in {output}");
        }
        assert!(!output.contains(URL_SECRET), "{name}: {output}");
    }
    // Nothing was stored.
    eventually("an empty list", Duration::from_secs(5), || async {
        let list = world.mais().list(&Default::default()).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
}

/// `render -f` reads at most what the API server would accept, nested no
/// deeper than a MultiArchImage can be, and names the field of a type error.
#[test]
fn render_bounds_its_input_and_names_type_errors() {
    use multiarch_operator::validate::{MAX_MANIFEST_BYTES, MAX_MANIFEST_DEPTH};
    let mut body = base_for("127.0.0.1:5000/hostile/render", "render");
    body["metadata"]["annotations"] = json!({"pad": "x".repeat(MAX_MANIFEST_BYTES)});
    let error = parse_manifests(&body.to_string()).unwrap_err();
    assert!(
        error.contains(&format!("at most {MAX_MANIFEST_BYTES}")),
        "{error}"
    );

    let mut body = base_for("127.0.0.1:5000/hostile/render", "render");
    let mut deep = json!("bottom");
    for _ in 0..MAX_MANIFEST_DEPTH {
        deep = json!([deep]);
    }
    body["spec"]["buildArgs"] = json!({"DEEP": deep});
    let error = parse_manifests(&body.to_string()).unwrap_err();
    assert!(error.contains("nested deeper than"), "{error}");

    let mut body = base_for("127.0.0.1:5000/hostile/render", "render");
    body["spec"]["backoffLimit"] = json!("two");
    let error = parse_manifests(&body.to_string()).unwrap_err();
    assert!(
        error.ends_with("spec.backoffLimit: expected an integer, got \"two\""),
        "{error}"
    );
    body["spec"]["backoffLimit"] = json!(URL_SECRET.repeat(10));
    let error = parse_manifests(&body.to_string()).unwrap_err();
    assert!(
        error.ends_with("spec.backoffLimit: expected an integer, got a string of 130 characters"),
        "{error}"
    );
}
