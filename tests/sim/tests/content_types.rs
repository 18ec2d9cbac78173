//! Protobuf request and response bodies: the real kubectl's generators send
//! built-in objects as `application/vnd.kubernetes.protobuf`; custom
//! resources have no protobuf form (415/406 as on a real server).

mod common;

use common::{fixture, start_sim, Kubectl};
use serde_json::{json, Value};

#[test]
fn kubectl_generators_create_through_protobuf() {
    let sim = start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    assert_eq!(
        k.ok(&["create", "namespace", "ci"]).trim(),
        "namespace/ci created"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "secret",
            "docker-registry",
            "regcred",
            "-n",
            "ci",
            "--docker-server=registry.example.com",
            "--docker-username=u",
            "--docker-password=p",
        ])
        .trim(),
        "secret/regcred created"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "configmap",
            "cfg",
            "-n",
            "ci",
            "--from-literal=greeting=hello",
        ])
        .trim(),
        "configmap/cfg created"
    );
    assert_eq!(
        k.ok(&[
            "create",
            "job",
            "hello",
            "-n",
            "ci",
            "--image=busybox",
            "--",
            "echo",
            "hi",
        ])
        .trim(),
        "job.batch/hello created"
    );
    // The requests really were protobuf, and the objects arrived intact.
    let log = sim.requests();
    let creates: Vec<_> = log.iter().filter(|r| r.verb == "create").collect();
    assert!(creates.len() >= 4, "{creates:?}");
    let secret = k.ok(&["get", "secret", "regcred", "-n", "ci", "-o", "json"]);
    let secret: Value = serde_json::from_str(&secret).unwrap();
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    let cfg =
        kube_sim::api::b64_decode(secret["data"][".dockerconfigjson"].as_str().unwrap()).unwrap();
    let cfg: Value = serde_json::from_slice(&cfg).unwrap();
    assert_eq!(cfg["auths"]["registry.example.com"]["username"], "u");
    let cm = k.ok(&[
        "get",
        "configmap",
        "cfg",
        "-n",
        "ci",
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(cm, "hello");
    let job = k.ok(&["get", "job", "hello", "-n", "ci", "-o", "json"]);
    let job: Value = serde_json::from_str(&job).unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox");
    assert_eq!(c["command"], json!(["echo", "hi"]));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    // The Job runs: its pod's log is the command's output.
    k.ok(&[
        "wait",
        "--for=condition=Complete",
        "--timeout=60s",
        "-n",
        "ci",
        "job/hello",
    ]);
    assert_eq!(k.ok(&["logs", "-n", "ci", "job/hello"]).trim(), "hi");
}

fn raw(
    sim: &kube_sim::Sim,
    method: &str,
    path: &str,
    ctype: &str,
    accept: &str,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let addr = sim.url().trim_start_matches("https://").to_string();
    let token = sim.admin_token();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: {ctype}\r\nAccept: {accept}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut out = vec![];
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&out[..split]).to_string();
    let code: u16 = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ct = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(String::from)
        })
        .unwrap_or_default();
    let mut body = out[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (code, ct, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 4 + n..];
    }
}

const PB: &str = "application/vnd.kubernetes.protobuf";

#[test]
fn protobuf_get_and_list_responses_decode() {
    let sim = start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    k.ok(&["create", "configmap", "one", "--from-literal=a=1"]);
    k.ok(&["create", "configmap", "two", "--from-literal=b=2"]);
    let (code, ct, body) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps/one",
        "",
        PB,
        vec![],
    );
    assert_eq!((code, ct.as_str()), (200, PB));
    let d = kube_sim::protobuf::decode(&body).unwrap();
    assert_eq!(
        (d.api_version.as_str(), d.kind.as_str()),
        ("v1", "ConfigMap")
    );
    assert_eq!(d.object["data"]["a"], "1");
    assert!(d.object["metadata"]["creationTimestamp"].is_string());
    let (code, ct, body) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "",
        &format!("{PB}, application/json"),
        vec![],
    );
    assert_eq!((code, ct.as_str()), (200, PB));
    let l = kube_sim::protobuf::decode(&body).unwrap();
    assert_eq!(l.kind, "ConfigMapList");
    let names: Vec<&str> = l.object["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"one") && names.contains(&"two"),
        "{names:?}"
    );
    assert!(l.object["metadata"]["resourceVersion"].is_string());
    // JSON first in Accept: JSON.
    let (_, ct, _) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps/one",
        "",
        "application/json, application/vnd.kubernetes.protobuf",
        vec![],
    );
    assert_eq!(ct, "application/json");
}

#[test]
fn custom_resources_refuse_protobuf() {
    let sim = start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    k.ok(&["apply", "-f", fixture("widget-crd.yaml").to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/widgets.sim.example.com",
    ]);
    let body = kube_sim::protobuf::encode(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    )
    .unwrap();
    let (code, _, out) = raw(
        &sim,
        "POST",
        "/apis/sim.example.com/v1/namespaces/default/widgets",
        PB,
        "application/json",
        body,
    );
    let status: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(code, 415, "{status}");
    assert_eq!(status["reason"], "UnsupportedMediaType");
    assert_eq!(
        status["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
    );
    let (code, _, out) = raw(
        &sim,
        "GET",
        "/apis/sim.example.com/v1/namespaces/default/widgets",
        "",
        PB,
        vec![],
    );
    let status: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(code, 406, "{status}");
    assert_eq!(status["reason"], "NotAcceptable");
    // With JSON as a fallback the list is served as JSON.
    let (code, ct, _) = raw(
        &sim,
        "GET",
        "/apis/sim.example.com/v1/namespaces/default/widgets",
        "",
        &format!("{PB}, application/json"),
        vec![],
    );
    assert_eq!((code, ct.as_str()), (200, "application/json"));
}
