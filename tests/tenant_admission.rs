//! The chart's admission policy, as the chart renders it, on the simulated
//! API server: a tenant whose Role allows only `multiarchimages` cannot use
//! a MultiArchImage to reach a Secret or ConfigMap they cannot read, nor to
//! choose the image, ServiceAccount or nodes a build runs with; each refusal
//! names the field and the missing permission. The same specs pass from an
//! admin; a spec change is checked whole, a metadata change and the
//! operator's status writes are not checked.

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::process::Command;

use harness::{
    install_admission_policy, install_crd, install_operator_identity, start_sim_with, NAMESPACE,
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use kube_sim::{Sim, UserInfo};
use multiarch_operator::api::MultiArchImage;
use serde_json::{json, Value};

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];
const TENANT: &str = "tenant";
const POLICY: &str = "multiarch-operator-tenant-rights";

fn base(name: &str) -> Value {
    json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "image": "registry.example.com/team/app",
            "platforms": ["linux/amd64"],
            "source": {"git": {"url": "https://git.example.com/app.git"}},
        },
    })
}

fn with_spec(name: &str, fields: &Value) -> Value {
    let mut body = base(name);
    for (k, v) in fields.as_object().unwrap() {
        body["spec"][k] = v.clone();
    }
    body
}

async fn post(client: &Client, body: &Value) -> (u16, Value) {
    let request = http::Request::post(format!(
        "/apis/multiarch.dev/v1alpha1/namespaces/{NAMESPACE}/multiarchimages"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(body).unwrap())
    .unwrap();
    let response = client.send(request.map(Into::into)).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A cluster with the CRD, the chart's policy, and a tenant allowed every
/// verb on `multiarchimages` in NAMESPACE, nothing else there.
async fn cluster() -> Sim {
    let sim = start_sim_with(TWO_NODES, |c| c.users = vec![(TENANT.into(), vec![])]);
    install_crd(&sim.client()).await;
    install_admission_policy(&sim);
    let objects = format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: image-author, namespace: {NAMESPACE}}}
rules:
  - apiGroups: [multiarch.dev]
    resources: [multiarchimages]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: image-author, namespace: {NAMESPACE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: image-author}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {TENANT}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: regcred, namespace: {NAMESPACE}}}
type: kubernetes.io/dockerconfigjson
stringData: {{.dockerconfigjson: '{{"auths": {{}}}}'}}
---
apiVersion: v1
kind: Secret
metadata: {{name: git-cred, namespace: {NAMESPACE}}}
type: kubernetes.io/basic-auth
stringData: {{username: u, password: p}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: context, namespace: {NAMESPACE}}}
data: {{Dockerfile: "FROM scratch\n"}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: deployer, namespace: {NAMESPACE}}}
"#
    );
    sim.apply_manifest(&objects)
        .expect("the tenant's RBAC and objects");
    sim
}

fn crd_has_field(field: &str) -> bool {
    let crd = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crds/multiarchimages.multiarch.dev.yaml"),
    )
    .unwrap();
    crd.contains(&format!("\n              {field}:"))
}

/// Each escalation path: (name, spec fields, the field named, the permission named).
fn escalations() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let control_plane = "node-role.kubernetes.io/control-plane";
    let cases = vec![
        (
            "push-secret",
            json!({"pushSecret": {"name": "regcred"}}),
            "spec.pushSecret.name",
            "may not get secrets \"regcred\"",
        ),
        (
            "pull-secret",
            json!({"pullSecret": {"name": "basecred"}}),
            "spec.pullSecret.name",
            "may not get secrets \"basecred\"",
        ),
        (
            "git-secret",
            json!({"source": {"git": {"url": "https://git.example.com/app.git",
                "secretRef": {"name": "git-cred"}}}}),
            "spec.source.git.secretRef.name",
            "may not get secrets \"git-cred\"",
        ),
        (
            "config-map",
            json!({"source": {"configMap": {"name": "context"}}}),
            "spec.source.configMap.name",
            "may not get configmaps \"context\"",
        ),
        (
            "builder-image",
            json!({"builder": {"strategy": "buildah", "image": "registry.example.com/mine:1"}}),
            "spec.builder.image",
            "may not create pods",
        ),
        (
            "service-account",
            json!({"serviceAccountName": "deployer"}),
            "spec.serviceAccountName",
            "may not create pods",
        ),
        (
            "toleration",
            json!({"tolerations": [{"key": control_plane, "operator": "Exists", "effect": "NoSchedule"}]}),
            "spec.tolerations",
            "may not create pods",
        ),
        (
            "node-selector",
            json!({"nodeSelector": {control_plane: ""}}),
            "spec.nodeSelector",
            "may not create pods",
        ),
        (
            "build-on",
            json!({"platforms": ["linux/amd64", "linux/arm64"], "buildOn": {"linux/arm64": "linux/amd64"}}),
            "spec.buildOn",
            "may not create pods",
        ),
    ];
    // A field the CRD lacked would be pruned before admission, and nothing
    // would be asked of it.
    for (name, fields, _, _) in &cases {
        for field in fields.as_object().unwrap().keys() {
            assert!(crd_has_field(field), "{name}: the CRD has no spec.{field}");
        }
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_escalate_through_a_multiarchimage() {
    let sim = cluster().await;
    let admin = sim.client();
    let tenant = sim.client_for(&UserInfo::new(TENANT, &[]));

    // Without anything beyond the defaults, the tenant may create one.
    let (code, answer) = post(&tenant, &base("plain")).await;
    assert_eq!(code, 201, "{answer}");

    for (name, fields, field, permission) in escalations() {
        let (code, answer) = post(&tenant, &with_spec(name, &fields)).await;
        let message = answer["message"].as_str().unwrap_or_default();
        println!("{name}: {code} {message}");
        assert_eq!(code, 403, "{name}: {answer}");
        assert_eq!(answer["reason"], "Forbidden", "{name}: {answer}");
        assert!(
            message.contains(&format!("ValidatingAdmissionPolicy '{POLICY}'")),
            "{name}: {message}"
        );
        assert!(
            message.contains(&format!("denied request: {field}: {TENANT} may not ")),
            "{name}: the refusal does not name {field}: {message}"
        );
        assert!(
            message.contains(permission),
            "{name}: the refusal does not name the permission ({permission}): {message}"
        );
        // The same spec from an admin (system:masters) is admitted.
        let (code, answer) = post(&admin, &with_spec(&format!("admin-{name}"), &fields)).await;
        assert_eq!(code, 201, "admin {name}: {answer}");
    }

    // Every path at once: every field of a check is named in one refusal.
    let mut all = json!({});
    for (_, fields, _, _) in escalations() {
        for (k, v) in fields.as_object().unwrap() {
            if k != "source" {
                all[k] = v.clone();
            }
        }
    }
    let (code, answer) = post(&tenant, &with_spec("everything", &all)).await;
    assert_eq!(code, 403, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("spec.pushSecret.name"), "{message}");

    // Granted `get` on that one Secret, the tenant may name it; still not
    // the other one.
    sim.apply_manifest(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: regcred-reader, namespace: {NAMESPACE}}}
rules: [{{apiGroups: [""], resources: [secrets], resourceNames: [regcred], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: regcred-reader, namespace: {NAMESPACE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: regcred-reader}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {TENANT}}}]
"#
    ))
    .unwrap();
    let (code, answer) = post(
        &tenant,
        &with_spec("granted", &json!({"pushSecret": {"name": "regcred"}})),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    let (code, answer) = post(
        &tenant,
        &with_spec(
            "granted-not-git",
            &json!({"pushSecret": {"name": "regcred"}, "source": {"git": {
                "url": "https://git.example.com/app.git", "secretRef": {"name": "git-cred"}}}}),
        ),
    )
    .await;
    assert_eq!(code, 403, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("spec.source.git.secretRef.name") && !message.contains("pushSecret"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_checked_when_the_spec_changes_and_status_never() {
    let sim = cluster().await;
    let admin = sim.client();
    let tenant = sim.client_for(&UserInfo::new(TENANT, &[]));
    let placed = json!({"tolerations": [{"key": "pool", "operator": "Exists"}]});
    let (code, answer) = post(&admin, &with_spec("placed", &placed)).await;
    assert_eq!(code, 201, "{answer}");
    let mais: Api<MultiArchImage> = Api::namespaced(tenant.clone(), NAMESPACE);

    // Metadata only (a label, the retry annotation): no new right used.
    mais.patch(
        "placed",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"},
            "annotations": {"multiarch.dev/retry": "1"}}})),
    )
    .await
    .expect("a metadata change needs no right beyond multiarchimages");

    // A spec change is checked whole: the admin's toleration would serve
    // whatever the tenant now builds.
    let refused = mais
        .patch(
            "placed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tags": ["v2"]}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = refused else {
        panic!("{refused}")
    };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status.message.contains("spec.tolerations") && status.message.contains("create pods"),
        "{}",
        status.message
    );
    // Dropping the placement is a spec the tenant may write.
    mais.patch(
        "placed",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"tags": ["v2"], "tolerations": null}})),
    )
    .await
    .expect("a spec within the tenant's rights");

    // The operator's status writes (a subresource) are not matched: the
    // operator may not read Secrets, yet reports on a spec naming one.
    let (code, answer) = post(
        &admin,
        &with_spec("secretive", &json!({"pushSecret": {"name": "regcred"}})),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    install_operator_identity(&sim);
    let operator = sim
        .client_for_service_account(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
        .unwrap();
    let as_operator: Api<MultiArchImage> = Api::namespaced(operator, NAMESPACE);
    as_operator
        .patch_status(
            "secretive",
            &PatchParams::apply("multiarch-operator").force(),
            &Patch::Apply(json!({
                "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
                "status": {"phase": "Pending"},
            })),
        )
        .await
        .expect("the operator's status write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_shows_the_field_and_the_missing_permission() {
    let sim = cluster().await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("escalate.json");
    let body = with_spec(
        "escalate",
        &json!({"serviceAccountName": "deployer", "nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}),
    );
    std::fs::write(&file, serde_json::to_vec_pretty(&body).unwrap()).unwrap();
    let kubectl = |context: &str| {
        let out = Command::new(common::require_tool("kubectl", "kubernetes-client"))
            .args(["--context", context, "apply", "-f"])
            .arg(&file)
            .env("KUBECONFIG", sim.kubeconfig_path())
            .env("HOME", home.path())
            .output()
            .expect("run kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, output) = kubectl(TENANT);
    println!("kubectl --context {TENANT} apply: {}", output.trim());
    assert!(!ok, "{output}");
    assert!(
        output.contains(&format!(
            "denied request: spec.serviceAccountName, spec.nodeSelector: {TENANT} may not create pods in namespace \"{NAMESPACE}\""
        )),
        "{output}"
    );
    let (ok, output) = kubectl("kube-sim");
    assert!(ok, "the admin applies the same file: {output}");
}
