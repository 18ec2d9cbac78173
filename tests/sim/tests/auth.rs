//! Authentication, RBAC and admission through kube-rs and the real kubectl:
//! 401 without credentials, 403 with the real wording, roles with
//! subresources and resource names, access reviews (`kubectl auth can-i`),
//! TokenRequest (`kubectl create token`), impersonation (`kubectl --as`),
//! ServiceAccount and Pod Security admission (the Job's `FailedCreate`),
//! and OwnerReferencesPermissionEnforcement.

mod common;

use common::{eventually, require_tool, Kubectl, LONG};
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReview};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::Api;
use kube_sim::{Sim, SimConfig, UserInfo};
use serde_json::json;
use std::time::Duration;

fn sim_with_users() -> Sim {
    require_tool("bwrap", "bubblewrap");
    Sim::start(SimConfig {
        images: vec![("busybox".into(), None)],
        users: vec![
            ("alice".into(), vec!["team-a".into()]),
            ("bob".into(), vec![]),
        ],
        ..Default::default()
    })
    .expect("start kube-sim")
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

async fn create_namespace(admin: &kube::Client, name: &str, labels: serde_json::Value) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn bind(
    admin: &kube::Client,
    ns: &str,
    name: &str,
    role: (&str, &str),
    subject: serde_json::Value,
) {
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role.0, "name": role.1},
        "subjects": [subject],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &rb)
        .await
        .unwrap();
}

fn job(name: &str, pod_spec: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}},
    }))
    .unwrap()
}

fn plain_pod_spec() -> serde_json::Value {
    json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]})
}

/// A raw GET with optional bearer token: (status, body).
fn raw_get(sim: &Sim, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let port = sim
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let code = r[9..12].parse().unwrap();
    (
        code,
        r.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default(),
    )
}

#[test]
fn requests_without_valid_credentials_get_401() {
    let sim = common::start_sim();
    let (code, body) = raw_get(&sim, "/api/v1/namespaces", None);
    assert_eq!(code, 401, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(
        raw_get(&sim, "/api/v1/namespaces", Some("not-a-token")).0,
        401
    );
    // Health and version are public, as with kubeadm's anonymous defaults.
    assert_eq!(raw_get(&sim, "/healthz", None).0, 200);
    assert_eq!(raw_get(&sim, "/version", None).0, 200);
    // The admin token of the default kubeconfig works.
    let kc = std::fs::read_to_string(sim.kubeconfig_path()).unwrap();
    let token = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap();
    assert_eq!(raw_get(&sim, "/api/v1/namespaces", Some(token)).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_roles_subresources_and_resource_names() {
    let sim = sim_with_users();
    let admin = sim.client();
    create_namespace(&admin, "ci", json!({})).await;
    let alice = sim.client_for(&UserInfo::new("alice", &["team-a"]));
    let jobs: Api<Job> = Api::namespaced(alice.clone(), "ci");
    let e = api_error(
        jobs.create(&PostParams::default(), &job("j", plain_pod_spec()))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert_eq!(e.reason, "Forbidden");
    assert_eq!(
        e.message,
        "jobs.batch is forbidden: User \"alice\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"ci\""
    );
    // The default `edit` ClusterRole, bound in ci to alice's group.
    bind(
        &admin,
        "ci",
        "team-a-edit",
        ("ClusterRole", "edit"),
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-a"}),
    )
    .await;
    jobs.create(&PostParams::default(), &job("j", plain_pod_spec()))
        .await
        .unwrap();
    // Not elsewhere, and not the namespace-scoped RBAC objects (edit cannot).
    let e = api_error(
        Api::<Job>::namespaced(alice.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.message, "jobs.batch is forbidden: User \"alice\" cannot list resource \"jobs\" in API group \"batch\" in the namespace \"default\"");
    let e = api_error(
        Api::<RoleBinding>::namespaced(alice.clone(), "ci")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);

    // A Role with a subresource and a resource name.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "one-config", "namespace": "ci"},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]},
            {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
        ],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), "ci")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    bind(
        &admin,
        "ci",
        "bob-one-config",
        ("Role", "one-config"),
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}),
    )
    .await;
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "settings"}})).unwrap();
    let admin_cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "ci");
    admin_cms.create(&PostParams::default(), &cm).await.unwrap();
    let other: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap();
    admin_cms
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let bob = sim.client_for(&UserInfo::new("bob", &[]));
    let bob_cms: Api<ConfigMap> = Api::namespaced(bob.clone(), "ci");
    bob_cms.get("settings").await.unwrap();
    let e = api_error(bob_cms.get("other").await.unwrap_err());
    assert_eq!(e.message, "configmaps \"other\" is forbidden: User \"bob\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"ci\"");
    assert_eq!(
        api_error(bob_cms.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
    let bob_jobs: Api<Job> = Api::namespaced(bob.clone(), "ci");
    bob_jobs.get_status("j").await.unwrap();
    let e = api_error(bob_jobs.get("j").await.unwrap_err());
    assert_eq!(e.code, 403);

    // A binding to a missing role says so in the reason.
    bind(
        &admin,
        "ci",
        "dangling",
        ("ClusterRole", "no-such-role"),
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}),
    )
    .await;
    let e = api_error(bob_cms.get("other").await.unwrap_err());
    assert!(
        e.message.ends_with(
            ": RBAC: [clusterrole.rbac.authorization.k8s.io \"no-such-role\" not found]"
        ),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_answer_for_self_and_others() {
    let sim = sim_with_users();
    let admin = sim.client();
    create_namespace(&admin, "ci", json!({})).await;
    bind(
        &admin,
        "ci",
        "alice-view",
        ("ClusterRole", "view"),
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}),
    )
    .await;
    let review = |verb: &str, resource: &str| -> SelfSubjectAccessReview {
        serde_json::from_value(json!({"spec": {"resourceAttributes": {"namespace": "ci", "verb": verb, "resource": resource}}})).unwrap()
    };
    let alice = sim.client_for(&UserInfo::new("alice", &[]));
    let ssar: Api<SelfSubjectAccessReview> = Api::all(alice);
    let r = ssar
        .create(&PostParams::default(), &review("list", "pods"))
        .await
        .unwrap();
    let st = r.status.unwrap();
    assert!(st.allowed);
    assert_eq!(
        st.reason.as_deref(),
        Some("RBAC: allowed by RoleBinding \"alice-view/ci\" of ClusterRole \"view\" to User \"alice\"")
    );
    let r = ssar
        .create(&PostParams::default(), &review("delete", "pods"))
        .await
        .unwrap();
    assert!(!r.status.unwrap().allowed);

    let sar: Api<SubjectAccessReview> = Api::all(admin.clone());
    let ask = |user: &str| -> SubjectAccessReview {
        serde_json::from_value(json!({"spec": {"user": user, "resourceAttributes": {"namespace": "ci", "verb": "get", "resource": "pods", "subresource": "log"}}})).unwrap()
    };
    assert!(
        sar.create(&PostParams::default(), &ask("alice"))
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    assert!(
        !sar.create(&PostParams::default(), &ask("bob"))
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
    // A tenant may not ask about others.
    let bob = sim.client_for(&UserInfo::new("bob", &[]));
    let e = api_error(
        Api::<SubjectAccessReview>::all(bob)
            .create(&PostParams::default(), &ask("alice"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.message, "subjectaccessreviews.authorization.k8s.io is forbidden: User \"bob\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope");
}

fn rolebinding_yaml(name: &str, role: &str, subject: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\n  namespace: ci\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {role}\nsubjects:\n- {subject}\n"
    )
}

#[test]
fn kubectl_forbidden_impersonation_and_service_account_tokens() {
    let sim = sim_with_users();
    let k = Kubectl::new(sim.kubeconfig_path());
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ci\n",
    );
    let (ok, _, err) = k.run(&["--context", "alice", "get", "pods", "-n", "ci"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"ci\""
    );
    k.ok_stdin(
        &["apply", "-f", "-"],
        &rolebinding_yaml("alice-edit", "edit", "{kind: User, name: alice}"),
    );
    k.ok(&["--context", "alice", "get", "pods", "-n", "ci"]);
    // Discovery works for a tenant (system:discovery), and RBAC kinds have tables.
    assert!(k
        .ok(&["--context", "alice", "api-resources"])
        .contains("rolebindings"));
    let out = k.ok(&["get", "rolebindings", "-n", "ci"]);
    assert!(out.contains("alice-edit   ClusterRole/edit"), "{out}");

    // The admin impersonates alice; alice may not impersonate bob.
    let (ok, _, err) = k.run(&["--as", "alice", "get", "pods", "-n", "default"]);
    assert!(!ok);
    assert!(err.contains("User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""), "{err}");
    // Impersonated groups count: bob as a member of system:masters.
    let (ok, _, _) = k.run(&["--as", "bob", "get", "configmaps", "-n", "default"]);
    assert!(!ok);
    k.ok(&[
        "--as",
        "bob",
        "--as-group",
        "system:masters",
        "get",
        "configmaps",
        "-n",
        "default",
    ]);
    let (ok, _, err) = k.run(&[
        "--context",
        "alice",
        "--as",
        "bob",
        "get",
        "pods",
        "-n",
        "ci",
    ]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );

    // A ServiceAccount's token authenticates as it, while the account exists.
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: builder\n  namespace: ci\n",
    );
    let token = sim.service_account_token("ci", "builder").unwrap();
    let kc = sim.workdir().join("builder.kubeconfig");
    sim.write_kubeconfig_with_token(&kc, "builder", &token)
        .unwrap();
    let as_sa = Kubectl::new(&kc);
    let (ok, _, err) = as_sa.run(&["get", "jobs", "-n", "ci"]);
    assert!(!ok);
    assert!(err.contains("User \"system:serviceaccount:ci:builder\" cannot list resource \"jobs\" in API group \"batch\" in the namespace \"ci\""), "{err}");
    // edit lets alice impersonate ServiceAccounts in ci, with their rights.
    let (ok, _, err) = k.run(&[
        "--context",
        "alice",
        "--as",
        "system:serviceaccount:ci:builder",
        "get",
        "jobs",
        "-n",
        "ci",
    ]);
    assert!(
        !ok && err.contains("User \"system:serviceaccount:ci:builder\" cannot list"),
        "{err}"
    );
    k.ok_stdin(
        &["apply", "-f", "-"],
        &rolebinding_yaml(
            "builder-view",
            "view",
            "{kind: ServiceAccount, name: builder, namespace: ci}",
        ),
    );
    as_sa.ok(&["get", "jobs", "-n", "ci"]);
    k.ok(&[
        "--context",
        "alice",
        "--as",
        "system:serviceaccount:ci:builder",
        "get",
        "jobs",
        "-n",
        "ci",
    ]);
    k.ok(&["delete", "serviceaccount", "builder", "-n", "ci"]);
    let (ok, _, err) = as_sa.run(&["get", "jobs", "-n", "ci"]);
    assert!(!ok);
    assert!(err.contains("Unauthorized"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_naming_a_missing_service_account_is_refused() {
    let sim = common::start_sim();
    let admin = sim.client();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let mut spec = plain_pod_spec();
    spec["serviceAccountName"] = json!("builder");
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap();
    let e = api_error(pods.create(&PostParams::default(), &pod).await.unwrap_err());
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "pods \"p\" is forbidden: error looking up service account default/builder: serviceaccount \"builder\" not found"
    );
    // A Job's pods: the controller records FailedCreate on the Job.
    let jobs: Api<Job> = Api::namespaced(admin.clone(), "default");
    jobs.create(&PostParams::default(), &job("needs-sa", spec))
        .await
        .unwrap();
    let event = failed_create(&admin, "default", "needs-sa").await;
    assert!(event.contains("error looking up service account default/builder: serviceaccount \"builder\" not found"), "{event}");
}

async fn failed_create(client: &kube::Client, ns: &str, job: &str) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually("a FailedCreate event", LONG, || async {
        events
            .list(&ListParams::default().fields(&format!("involvedObject.name={job}")))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("FailedCreate") && e.type_.as_deref() == Some("Warning")
            })
            .and_then(|e| e.message)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_restricted_refuses_privileged_pods_and_job_pods() {
    let sim = common::start_sim();
    let admin = sim.client();
    create_namespace(
        &admin,
        "locked",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    create_namespace(
        &admin,
        "base",
        json!({"pod-security.kubernetes.io/enforce": "baseline"}),
    )
    .await;
    let privileged = json!({"restartPolicy": "Never", "containers": [{"name": "build", "image": "busybox", "command": ["true"],
        "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}, "seccompProfile": {"type": "Unconfined"}}}],
        "volumes": [{"name": "host", "hostPath": {"path": "/tmp"}}]});
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": privileged})).unwrap();
    let e = api_error(
        Api::<Pod>::namespaced(admin.clone(), "locked")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": non-default capabilities (container \"build\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), privileged (container \"build\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"build\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"build\" must set securityContext.capabilities.drop=[\"ALL\"]; container \"build\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), restricted volume types (volume \"host\" uses restricted volume type \"hostPath\"), runAsNonRoot != true (pod or container \"build\" must set securityContext.runAsNonRoot=true), seccompProfile (container \"build\" must not set securityContext.seccompProfile.type to \"Unconfined\")"
    );
    let e = api_error(
        Api::<Pod>::namespaced(admin.clone(), "base")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "pods \"p\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities (container \"build\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), privileged (container \"build\" must not set securityContext.privileged=true), hostPath volumes (volume \"host\"), seccompProfile (container \"build\" must not set securityContext.seccompProfile.type to \"Unconfined\")"
    );
    // A pod that follows the restricted profile is admitted.
    let good: Pod = serde_json::from_value(json!({"metadata": {"name": "ok"}, "spec": {"restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "busybox", "command": ["true"],
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}})).unwrap();
    Api::<Pod>::namespaced(admin.clone(), "locked")
        .create(&PostParams::default(), &good)
        .await
        .unwrap();
    // The Job is stored (controllers are not enforced), its pods are refused.
    Api::<Job>::namespaced(admin.clone(), "locked")
        .create(&PostParams::default(), &job("build", plain_pod_spec()))
        .await
        .unwrap();
    let event = failed_create(&admin, "locked", "build").await;
    assert!(
        event.starts_with("Error creating: pods \"build-"),
        "{event}"
    );
    assert!(event.contains("is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false)"), "{event}");
    let pods = Api::<Pod>::namespaced(admin.clone(), "locked")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 1, "only the restricted pod");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_references_permission_enforcement_needs_the_finalizers_grant() {
    require_tool("bwrap", "bubblewrap");
    let sim = Sim::start(SimConfig {
        owner_references_permission_enforcement: true,
        ..Default::default()
    })
    .unwrap();
    let admin = sim.client();
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
    let owner = Api::<ConfigMap>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &owner)
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "cm", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete", "get"]}],
    })).unwrap();
    Api::<Role>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    bind(
        &admin,
        "default",
        "carol-cm",
        ("Role", "cm"),
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}),
    )
    .await;
    let carol = sim.client_for(&UserInfo::new("carol", &[]));
    let dependent = |name: &str, block: bool| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.clone().unwrap(),
            "blockOwnerDeletion": block}]}})).unwrap()
    };
    let cms: Api<ConfigMap> = Api::namespaced(carol.clone(), "default");
    cms.create(&PostParams::default(), &dependent("plain", false))
        .await
        .unwrap();
    let e = api_error(
        cms.create(&PostParams::default(), &dependent("blocking", true))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "configmaps \"blocking\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>"
    );
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "cm-finalizers", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps/finalizers"], "verbs": ["update"]}],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    bind(
        &admin,
        "default",
        "carol-finalizers",
        ("Role", "cm-finalizers"),
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}),
    )
    .await;
    cms.create(&PostParams::default(), &dependent("blocking", true))
        .await
        .unwrap();
}

#[test]
fn kubectl_auth_can_i_and_create_token() {
    let sim = sim_with_users();
    let k = Kubectl::new(sim.kubeconfig_path());
    k.ok(&["create", "namespace", "ci"]);
    assert_eq!(
        k.ok(&["auth", "can-i", "create", "jobs", "-n", "ci"])
            .trim(),
        "yes"
    );
    let (ok, out, _) = k.run(&[
        "--context",
        "alice",
        "auth",
        "can-i",
        "create",
        "jobs",
        "-n",
        "ci",
    ]);
    assert!(!ok);
    assert_eq!(out.trim(), "no");
    k.ok_stdin(
        &["apply", "-f", "-"],
        &rolebinding_yaml("alice-edit", "edit", "{kind: User, name: alice}"),
    );
    assert_eq!(
        k.ok(&[
            "--context",
            "alice",
            "auth",
            "can-i",
            "create",
            "jobs",
            "-n",
            "ci"
        ])
        .trim(),
        "yes"
    );
    k.ok(&["create", "serviceaccount", "builder", "-n", "ci"]);
    let token = k.ok(&["create", "token", "builder", "-n", "ci"]);
    let kc = sim.workdir().join("builder.kubeconfig");
    sim.write_kubeconfig_with_token(&kc, "builder", token.trim())
        .unwrap();
    let (ok, out, _) = Kubectl::new(&kc).run(&["auth", "can-i", "list", "jobs", "-n", "ci"]);
    assert!(!ok);
    assert_eq!(out.trim(), "no");
    let who = Kubectl::new(&kc).ok(&["auth", "can-i", "create", "selfsubjectaccessreviews"]);
    assert_eq!(who.trim(), "yes");
}

/// kubectl's RBAC generators send protobuf (rbac.authorization.k8s.io/v1
/// in the envelope); what they create grants exactly what was asked.
#[test]
fn kubectl_create_role_and_bindings_grant_as_asked() {
    let sim = sim_with_users();
    let k = Kubectl::new(sim.kubeconfig_path());
    k.ok(&["create", "namespace", "ci"]);
    let can = |user: &str, args: &[&str]| -> String {
        let mut a = vec!["--context", user, "auth", "can-i"];
        a.extend_from_slice(args);
        k.run(&a).1.trim().to_string()
    };
    assert_eq!(can("alice", &["get", "pods", "-n", "ci"]), "no");
    k.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods,pods/log",
        "-n",
        "ci",
    ]);
    let rules = k.ok(&[
        "get",
        "role",
        "pod-reader",
        "-n",
        "ci",
        "-o",
        "jsonpath={.rules}",
    ]);
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    assert_eq!(
        rules,
        json!([{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}])
    );
    k.ok(&[
        "create",
        "rolebinding",
        "alice-reads",
        "--role=pod-reader",
        "--user=alice",
        "-n",
        "ci",
    ]);
    assert_eq!(can("alice", &["get", "pods", "-n", "ci"]), "yes");
    assert_eq!(can("alice", &["get", "pods", "-n", "default"]), "no");
    assert_eq!(can("alice", &["delete", "pods", "-n", "ci"]), "no");

    k.ok(&[
        "create",
        "clusterrole",
        "node-viewer",
        "--verb=get,list,watch",
        "--resource=nodes",
    ]);
    assert_eq!(can("bob", &["list", "nodes"]), "no");
    k.ok(&[
        "create",
        "clusterrolebinding",
        "bob-nodes",
        "--clusterrole=node-viewer",
        "--user=bob",
    ]);
    assert_eq!(can("bob", &["list", "nodes"]), "yes");
    k.ok(&["--context", "bob", "get", "nodes"]);
    let subjects = k.ok(&[
        "get",
        "clusterrolebinding",
        "bob-nodes",
        "-o",
        "jsonpath={.roleRef.name} {.subjects[0].kind}/{.subjects[0].name}",
    ]);
    assert_eq!(subjects, "node-viewer User/bob");
}
