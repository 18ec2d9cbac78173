//! ValidatingAdmissionPolicy through kube-rs and kubectl: CEL over
//! `object`, `oldObject`, `params`, `request.userInfo` and the `authorizer`
//! library answered by RBAC, with `messageExpression`, a parameter binding
//! and `failurePolicy`.

mod common;

use common::{require_tool, Kubectl};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use kube_sim::{Sim, SimConfig, UserInfo};
use serde_json::json;

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

const POLICY: &str = "secret-readers-only";

async fn install(admin: &kube::Client) {
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}]},
            "matchConditions": [{"name": "not-the-params", "expression": "object.metadata.name != 'limits'"}],
            "variables": [{"name": "ref", "expression": "has(object.data) && has(object.data.secretRef) ? object.data.secretRef : ''"}],
            "validations": [
                {"expression": "variables.ref == '' || authorizer.group('').resource('secrets').namespace(object.metadata.namespace).name(variables.ref).check('get').allowed()",
                 "messageExpression": "'user ' + request.userInfo.username + ' may not read secret ' + variables.ref",
                 "reason": "Forbidden"},
                {"expression": "!has(object.data) || size(object.data) <= int(params.data.maxKeys)", "message": "too many keys"},
                {"expression": "oldObject == null || !has(oldObject.data) || !has(oldObject.data.owner) || object.data.owner == oldObject.data.owner"},
            ],
        },
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(admin.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": POLICY},
        "spec": {"policyName": POLICY, "validationActions": ["Deny"],
            "paramRef": {"name": "limits", "namespace": "default", "parameterNotFoundAction": "Deny"}},
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_authorizer_allows_one_user_and_refuses_another() {
    require_tool("bwrap", "bubblewrap");
    let sim = Sim::start(SimConfig {
        users: vec![("bob".into(), vec![])],
        ..Default::default()
    })
    .unwrap();
    let admin = sim.client();
    let cms = Api::<ConfigMap>::namespaced(admin.clone(), "default");
    cms.create(
        &PostParams::default(),
        &cm("limits", json!({"maxKeys": "2"})),
    )
    .await
    .unwrap();
    install(&admin).await;
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s1"}, "stringData": {"k": "v"}}))
            .unwrap();
    Api::<Secret>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // Both may write ConfigMaps; only alice may read the secret.
    let role: Role = serde_json::from_value(json!({"metadata": {"name": "cm-writer", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "update", "patch", "get"]}]})).unwrap();
    let reader: Role = serde_json::from_value(json!({"metadata": {"name": "s1-reader", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"], "verbs": ["get"]}]})).unwrap();
    let roles = Api::<Role>::namespaced(admin.clone(), "default");
    roles.create(&PostParams::default(), &role).await.unwrap();
    roles.create(&PostParams::default(), &reader).await.unwrap();
    let rb = |name: &str, role: &str, users: &[&str]| -> RoleBinding {
        let subjects: Vec<_> = users
            .iter()
            .map(|u| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}, "subjects": subjects})).unwrap()
    };
    let rbs = Api::<RoleBinding>::namespaced(admin.clone(), "default");
    rbs.create(
        &PostParams::default(),
        &rb("writers", "cm-writer", &["alice", "bob"]),
    )
    .await
    .unwrap();
    rbs.create(
        &PostParams::default(),
        &rb("readers", "s1-reader", &["alice"]),
    )
    .await
    .unwrap();

    let alice =
        Api::<ConfigMap>::namespaced(sim.client_for(&UserInfo::new("alice", &[])), "default");
    let bob = Api::<ConfigMap>::namespaced(sim.client_for(&UserInfo::new("bob", &[])), "default");
    alice
        .create(&PostParams::default(), &cm("a", json!({"secretRef": "s1"})))
        .await
        .unwrap();
    let e = api_error(
        bob.create(&PostParams::default(), &cm("b", json!({"secretRef": "s1"})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "configmaps \"b\" is forbidden: ValidatingAdmissionPolicy 'secret-readers-only' with binding 'secret-readers-only' denied request: user bob may not read secret s1"
    );
    bob.create(
        &PostParams::default(),
        &cm("b", json!({"note": "no secret"})),
    )
    .await
    .unwrap();
    // params: at most two keys.
    let e = api_error(
        alice
            .create(
                &PostParams::default(),
                &cm("big", json!({"x": "1", "y": "2", "z": "3"})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.ends_with("denied request: too many keys"),
        "{}",
        e.message
    );
    // oldObject on updates; a rule without a message names its expression.
    alice
        .create(
            &PostParams::default(),
            &cm("owned", json!({"owner": "alice"})),
        )
        .await
        .unwrap();
    let e = api_error(
        alice
            .patch(
                "owned",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"owner": "mallory"}})),
            )
            .await
            .unwrap_err(),
    );
    assert!(e.message.ends_with("denied request: failed expression: oldObject == null || !has(oldObject.data) || !has(oldObject.data.owner) || object.data.owner == oldObject.data.owner"), "{}", e.message);

    // The real kubectl shows the refusal.
    let k = Kubectl::new(sim.kubeconfig_path());
    let (ok, _, err) = k.run_stdin(
        &["--context", "bob", "apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\ndata:\n  secretRef: s1\n",
    );
    assert!(!ok);
    assert!(
        err.contains("denied request: user bob may not read secret s1"),
        "{err}"
    );
    // Without its params the binding denies (parameterNotFoundAction: Deny).
    cms.delete("limits", &Default::default()).await.unwrap();
    let e = api_error(
        cms.create(&PostParams::default(), &cm("late", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "configmaps \"late\" is forbidden: ValidatingAdmissionPolicy 'secret-readers-only' with binding 'secret-readers-only' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
    );
    cms.create(
        &PostParams::default(),
        &cm("limits", json!({"maxKeys": "2"})),
    )
    .await
    .unwrap_err();
}

fn crd_with_rule(items: serde_json::Value) -> String {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.sim.example.com"},
        "spec": {"group": "sim.example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {"names": items}}}}}}]},
    });
    serde_json::to_string(&crd).unwrap()
}

/// Rules each within the per-expression budget but together over the
/// per-CRD one (StaticEstimatedCRDCostLimit) are refused, naming the most
/// expensive; one rule fewer passes.
#[test]
fn a_crd_whose_rules_together_exceed_the_crd_budget_is_refused() {
    let sim = common::start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    let names = |rules: usize| {
        let rules: Vec<serde_json::Value> = (0..rules)
            .map(|i| json!({"rule": format!("!self.contains('x{i}')")}))
            .collect();
        json!({"type": "array", "maxItems": 10000,
            "items": {"type": "string", "maxLength": 8000, "x-kubernetes-validations": rules}})
    };
    let (ok, _, err) = k.run_stdin(&["apply", "-f", "-"], &crd_with_rule(names(13)));
    assert!(!ok);
    let root = "spec.versions[0].schema.openAPIV3Schema";
    assert!(
        err.contains(&format!("{root}.properties[spec].properties[names].items.x-kubernetes-validations[0].rule: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{root}: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of 1.04")),
        "{err}"
    );
    k.ok_stdin(&["apply", "-f", "-"], &crd_with_rule(names(12)));
}

#[test]
fn a_crd_whose_rule_is_too_expensive_is_refused_at_creation() {
    let sim = common::start_sim();
    let k = Kubectl::new(sim.kubeconfig_path());
    let rule = "self.all(n, n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))";
    // Unbounded list of unbounded strings: refused, as by a real API server.
    let unbounded = json!({"type": "array", "items": {"type": "string"},
        "x-kubernetes-validations": [{"rule": rule}]});
    let (ok, _, err) = k.run_stdin(&["apply", "-f", "-"], &crd_with_rule(unbounded));
    assert!(!ok);
    assert!(
        err.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[names].x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule(s), or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"),
        "{err}"
    );
    // A rule that does not compile is refused too.
    let broken = json!({"type": "array", "items": {"type": "string"}, "maxItems": 4,
        "x-kubernetes-validations": [{"rule": "self.all(n, "}]});
    let (ok, _, err) = k.run_stdin(&["apply", "-f", "-"], &crd_with_rule(broken));
    assert!(!ok);
    assert!(
        err.contains(
            "x-kubernetes-validations[0].rule: Invalid value: \"self.all(n, \": compilation failed"
        ),
        "{err}"
    );
    // Bounded, the same rule is accepted and enforced.
    let bounded = json!({"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 63},
        "x-kubernetes-validations": [{"rule": rule, "messageExpression": "'first bad name: ' + self.filter(n, !n.matches('^[a-z0-9]+$'))[0]"}]});
    k.ok_stdin(&["apply", "-f", "-"], &crd_with_rule(bounded));
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/gadgets.sim.example.com",
    ]);
    let (ok, _, err) = k.run_stdin(
        &["apply", "-f", "-"],
        "apiVersion: sim.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\nspec:\n  names: [ok, Not_OK]\n",
    );
    assert!(!ok);
    assert!(
        err.contains("spec.names: Invalid value: \"array\": first bad name: Not_OK"),
        "{err}"
    );
    // The operator's own CRD passes.
    let operator_crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/multiarchimages.multiarch.dev.yaml");
    k.ok(&["apply", "-f", operator_crd.to_str().unwrap()]);
}

/// Namespaces carry `kubernetes.io/metadata.name` (namespace/strategy.go
/// Canonicalize), so a binding can select namespaces by name: the policy
/// applies in `team-a` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_selects_namespaces_by_their_name_label() {
    require_tool("bwrap", "bubblewrap");
    let sim = Sim::start(SimConfig::default()).unwrap();
    let admin = sim.client();
    sim.apply_manifest("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n")
        .unwrap();
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone());
    for name in ["default", "team-a"] {
        let ns = namespaces.get(name).await.unwrap();
        assert_eq!(
            ns.metadata.labels.unwrap_or_default()["kubernetes.io/metadata.name"],
            name
        );
    }
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": "no-forbidden-key"},
        "spec": {"failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]}]},
            "validations": [{"expression": "!has(object.data) || !('forbidden' in object.data)", "message": "forbidden key"}]},
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(admin.clone())
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": "no-forbidden-key"},
        "spec": {"policyName": "no-forbidden-key", "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}}},
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let bad = cm("c", json!({"forbidden": "x"}));
    let e = api_error(
        Api::<ConfigMap>::namespaced(admin.clone(), "team-a")
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.ends_with("denied request: forbidden key"),
        "{}",
        e.message
    );
    Api::<ConfigMap>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &bad)
        .await
        .expect("the binding does not select default");
}
