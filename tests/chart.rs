//! The Helm chart and the plain manifest, rendered by Helm's own engine
//! (`tests/chart/render.py`, through the helm-python-sdk package), checked by
//! a real Kubernetes schema validator and for what the operator's security
//! rests on: least-privilege RBAC, a locked-down pod, flags the binary knows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

/// Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.34.0";
const MANIFEST: &str = "deploy/multiarch-operator.yaml";
const REGENERATE: &str =
    "python3 tests/chart/render.py --manifest > deploy/multiarch-operator.yaml";
const CRD: &str = "crds/multiarchimages.multiarch.dev.yaml";
const CHART_CRD: &str = "charts/multiarch-operator/crds/multiarchimages.multiarch.dev.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `tests/chart/render.py ARGS`: the chart rendered by Helm's engine. The
/// script names the missing package when helm-python-sdk is absent.
fn render(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(repo("tests/chart/render.py"))
        .args(args)
        .output()
        .expect("python3 is missing: install the Debian package python3");
    assert!(
        out.status.success(),
        "tests/chart/render.py {args:?} failed (helm-python-sdk is installed by \
         `python3 -m pip install helm-python-sdk`, which scripts/test.sh runs):\n{}",
        text(&out)
    );
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], wanted: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == wanted).collect()
}

fn one<'a>(docs: &'a [Value], wanted: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind(d) == wanted && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {wanted} {name} in the rendering"))
}

/// Runs `kubernetes-validate --strict` on YAML and checks that every object,
/// but the kinds Kubernetes itself does not define, passed.
fn strict_validate(yaml: &str, label: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("{label}.yaml"));
    std::fs::write(&file, yaml).expect("write the rendering");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(&file)
        .output()
        .expect("kubernetes-validate is missing: install it with `python3 -m pip install kubernetes-validate` (scripts/test.sh does)");
    let report = text(&out);
    assert!(
        out.status.success(),
        "{label}: kubernetes-validate failed:\n{report}"
    );
    let docs = documents(yaml);
    let builtin = docs.iter().filter(|d| kind(d) != "ServiceMonitor").count();
    let passed = report.matches(" passed for resource ").count();
    assert_eq!(
        passed, builtin,
        "{label}: {builtin} Kubernetes objects rendered, {passed} passed:\n{report}"
    );
}

/// A rule flattened to what RBAC evaluates: (apiGroup, resource, verb).
type Grant = (String, String, String);

fn grants(role: &Value) -> BTreeSet<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn grant_set(list: &[(&str, &str, &[&str])]) -> BTreeSet<Grant> {
    list.iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(move |verb| (group.to_string(), resource.to_string(), verb.to_string()))
        })
        .collect()
}

/// Exactly what the operator calls in the namespaces it watches.
fn operator_grants() -> BTreeSet<Grant> {
    grant_set(&[
        ("multiarch.dev", "multiarchimages", &["list", "watch"]),
        ("multiarch.dev", "multiarchimages/status", &["patch"]),
        // Checked by OwnerReferencesPermissionEnforcement, never called.
        ("multiarch.dev", "multiarchimages/finalizers", &["update"]),
        (
            "batch",
            "jobs",
            &["list", "watch", "create", "patch", "delete"],
        ),
        ("", "pods", &["list", "watch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
        ("", "events", &["list", "watch"]),
    ])
}

fn lease_grants() -> BTreeSet<Grant> {
    grant_set(&[(
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    )])
}

/// No rule anywhere grants Secrets, ConfigMaps or a wildcard.
fn assert_least_privilege(docs: &[Value], label: &str) {
    for role in docs
        .iter()
        .filter(|d| matches!(kind(d), "ClusterRole" | "Role"))
    {
        for (group, resource, verb) in grants(role) {
            let name = &role["metadata"]["name"];
            assert!(
                !["secrets", "configmaps"].contains(&resource.as_str()),
                "{label}: {} {name} grants {verb} on {resource}: the operator never reads them",
                kind(role)
            );
            assert!(
                group != "*" && !resource.contains('*') && verb != "*",
                "{label}: {} {name} has a wildcard ({group}/{resource} {verb})",
                kind(role)
            );
        }
    }
}

fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment", "multiarch-operator")["spec"]["template"]["spec"]["containers"][0]
}

fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let prefix = format!("--{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the Deployment passes no --{name}: {args:?}"))
}

fn env(docs: &[Value], name: &str) -> Option<Value> {
    container(docs)["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

fn operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_multiarch-operator"))
        .args(args)
        .output()
        .expect("run multiarch-operator")
}

/// `[default: VALUE]` of a flag in `controller --help`.
fn binary_default(help: &str, flag: &str) -> String {
    let start = help
        .find(&format!("--{flag} "))
        .unwrap_or_else(|| panic!("controller --help has no --{flag}"));
    let rest = &help[start..];
    let value = rest
        .split_once("[default: ")
        .and_then(|(_, v)| v.split_once(']'))
        .unwrap_or_else(|| panic!("--{flag} has no default"))
        .0;
    value.to_string()
}

#[test]
fn default_rendering_with_crds_is_strictly_valid() {
    strict_validate(&render(&["--include-crds"]), "default");
}

#[test]
fn namespaced_rendering_is_strictly_valid() {
    let yaml = render(&[
        "--set",
        "watchNamespace=team-a",
        "--set",
        "replicaCount=2",
        "--set",
        "rbac.ownerReferencesPermissionEnforcement=true",
    ]);
    strict_validate(&yaml, "namespaced");
}

#[test]
fn the_plain_manifest_is_the_default_rendering() {
    let committed = std::fs::read_to_string(repo(MANIFEST)).expect("read the plain manifest");
    assert!(
        committed == render(&["--manifest"]),
        "{MANIFEST} differs from the chart's default rendering: regenerate it with `{REGENERATE}`"
    );
    strict_validate(&committed, "plain-manifest");
    let docs = documents(&committed);
    let namespace = &of_kind(&docs, "Namespace")[0]["metadata"]["name"];
    assert_eq!(namespace, "multiarch-system");
    assert_eq!(of_kind(&docs, "CustomResourceDefinition").len(), 1);
    for doc in docs
        .iter()
        .filter(|d| d["metadata"]["namespace"].is_string())
    {
        assert_eq!(doc["metadata"]["namespace"], "multiarch-system", "{doc}");
    }
}

#[test]
fn the_chart_ships_the_repository_crd() {
    let crd = std::fs::read(repo(CRD)).expect("read the CRD");
    let shipped = std::fs::read(repo(CHART_CRD)).expect("the chart has no CRD under crds/");
    assert!(
        crd == shipped,
        "{CHART_CRD} differs from {CRD}: copy it with `cp {CRD} {CHART_CRD}` \
         (then regenerate the plain manifest: `{REGENERATE}`)"
    );
}

#[test]
fn cluster_mode_grants_exactly_what_the_operator_uses_through_a_cluster_role() {
    let docs = documents(&render(&[]));
    let role = one(&docs, "ClusterRole", "multiarch-operator");
    assert_eq!(grants(role), operator_grants());
    let binding = one(&docs, "ClusterRoleBinding", "multiarch-operator");
    assert_eq!(binding["roleRef"]["name"], "multiarch-operator");
    assert_eq!(binding["subjects"][0]["name"], "multiarch-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "multiarch-system");

    // The only Role is the Lease's, in the release namespace.
    let roles = of_kind(&docs, "Role");
    assert_eq!(roles.len(), 1, "{roles:?}");
    let lease = roles[0];
    assert_eq!(lease["metadata"]["namespace"], "multiarch-system");
    assert_eq!(grants(lease), lease_grants());
    // get/update only on the operator's own Lease, by the name it uses.
    let chart_args = args(&docs);
    let lease_name = flag(&chart_args, "lease-name");
    for rule in lease["rules"].as_array().unwrap() {
        let verbs = &rule["verbs"];
        if verbs.as_array().unwrap().iter().any(|v| v != "create") {
            assert_eq!(rule["resourceNames"], serde_json::json!([lease_name]));
        }
    }
    assert!(env(&docs, "WATCH_NAMESPACE").is_none());
    assert_least_privilege(&docs, "cluster mode");
}

#[test]
fn namespaced_mode_uses_a_role_in_the_watched_namespace_and_nothing_cluster_wide() {
    let docs = documents(&render(&["--set", "watchNamespace=team-a"]));
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let role = one(&docs, "Role", "multiarch-operator");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(grants(role), operator_grants());
    let binding = one(&docs, "RoleBinding", "multiarch-operator");
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["namespace"], "multiarch-system");
    let lease = one(&docs, "Role", "multiarch-operator-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "multiarch-system");
    assert_eq!(grants(lease), lease_grants());
    assert_eq!(
        env(&docs, "WATCH_NAMESPACE").expect("WATCH_NAMESPACE is set")["value"],
        "team-a"
    );
    assert_least_privilege(&docs, "namespaced mode");
}

#[test]
fn several_watched_namespaces_get_a_role_each_and_nothing_cluster_wide() {
    let docs = documents(&render(&[
        "--set",
        "watchNamespaces={team-a,team-b}",
        "--set",
        "watchNamespace=team-c",
    ]));
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let in_namespace = |kind: &str| -> Vec<String> {
        let mut namespaces: Vec<String> = of_kind(&docs, kind)
            .into_iter()
            .filter(|d| d["metadata"]["name"] == "multiarch-operator")
            .map(|d| d["metadata"]["namespace"].as_str().unwrap().to_string())
            .collect();
        namespaces.sort();
        namespaces
    };
    assert_eq!(in_namespace("Role"), ["team-a", "team-b", "team-c"]);
    assert_eq!(in_namespace("RoleBinding"), ["team-a", "team-b", "team-c"]);
    for role in of_kind(&docs, "Role")
        .into_iter()
        .filter(|d| d["metadata"]["name"] == "multiarch-operator")
    {
        assert_eq!(grants(role), operator_grants());
    }
    assert_eq!(
        env(&docs, "WATCH_NAMESPACE").expect("WATCH_NAMESPACE is set")["value"],
        "team-a,team-b,team-c"
    );
    assert_least_privilege(&docs, "several namespaces");
}

#[test]
fn no_combination_of_values_grants_secrets_or_configmaps() {
    for sets in [
        vec![],
        vec!["watchNamespace=team-a"],
        vec!["watchNamespaces={team-a,team-b}"],
        vec!["rbac.ownerReferencesPermissionEnforcement=false"],
        vec!["leaderElection.enabled=false"],
    ] {
        let args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s]).collect();
        assert_least_privilege(&documents(&render(&args)), &format!("{sets:?}"));
    }
}

#[test]
fn every_rbac_rule_says_why_it_is_needed() {
    let yaml = render(&[]);
    let lines: Vec<&str> = yaml.lines().collect();
    let mut rules = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            rules += 1;
            let previous = lines[..i].iter().rev().find(|l| !l.trim().is_empty());
            assert!(
                previous.is_some_and(|l| l.trim_start().starts_with('#')),
                "this RBAC rule has no comment saying why it is needed:\n{}",
                lines[i.saturating_sub(3)..=i].join("\n")
            );
        }
    }
    assert!(rules >= 7, "found only {rules} rules");
}

/// OwnerReferencesPermissionEnforcement (plugin/pkg/admission/gc/
/// gc_admission.go) refuses the Jobs' blockOwnerDeletion owner reference
/// without `update` on the owner's finalizers: granted unless turned off,
/// in both modes.
#[test]
fn the_finalizers_grant_is_on_by_default_and_can_be_turned_off() {
    let finalizers = (
        "multiarch.dev".to_string(),
        "multiarchimages/finalizers".to_string(),
        "update".to_string(),
    );
    for (sets, kind) in [
        (vec![], "ClusterRole"),
        (vec!["--set", "watchNamespace=team-a"], "Role"),
    ] {
        let docs = documents(&render(&sets));
        let role = one(&docs, kind, "multiarch-operator");
        assert!(grants(role).contains(&finalizers), "{sets:?}");
        let mut off = sets.clone();
        off.extend(["--set", "rbac.ownerReferencesPermissionEnforcement=false"]);
        let docs = documents(&render(&off));
        let role = one(&docs, kind, "multiarch-operator");
        let mut expected = operator_grants();
        expected.remove(&finalizers);
        assert_eq!(grants(role), expected, "{off:?}");
    }
}

#[test]
fn leader_election_can_be_turned_off() {
    let docs = documents(&render(&["--set", "leaderElection.enabled=false"]));
    assert_eq!(flag(&args(&docs), "leader-elect"), "false");
    assert!(
        of_kind(&docs, "Role").is_empty(),
        "no Lease Role without leader election"
    );
}

#[test]
fn the_operator_pod_is_locked_down_and_probed() {
    let docs = documents(&render(&[]));
    let pod = &one(&docs, "Deployment", "multiarch-operator")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["serviceAccountName"], "multiarch-operator");
    let security = &container(&docs)["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(security.get("privileged").is_none_or(|p| p == false));

    let c = container(&docs);
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "metrics");
    }
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env(&docs, name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    assert_eq!(env(&docs, "RUST_LOG").unwrap()["value"], "info");
    assert_eq!(env(&docs, "LOG_JSON").unwrap()["value"], "false");
    assert_eq!(flag(&args(&docs), "leader-elect"), "true");

    let service = one(&docs, "Service", "multiarch-operator-metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
}

#[test]
fn values_reach_the_pod() {
    let docs = documents(&render(&[
        "--set",
        "logLevel=debug",
        "--set",
        "logJson=true",
        "--set",
        "image.tag=dev",
        "--set",
        "replicaCount=3",
        "--set",
        "metrics.port=9090",
    ]));
    assert_eq!(env(&docs, "RUST_LOG").unwrap()["value"], "debug");
    assert_eq!(env(&docs, "LOG_JSON").unwrap()["value"], "true");
    let image = "ghcr.io/multiarch-operator/multiarch-operator:dev";
    assert_eq!(container(&docs)["image"], image);
    // The merge image follows the operator image unless set.
    assert_eq!(flag(&args(&docs), "merge-image"), image);
    assert_eq!(flag(&args(&docs), "metrics-addr"), "0.0.0.0:9090");
    assert_eq!(container(&docs)["ports"][0]["containerPort"], 9090);
    assert_eq!(
        one(&docs, "Deployment", "multiarch-operator")["spec"]["replicas"],
        3
    );

    let docs = documents(&render(&[
        "--set",
        "mergeImage=registry.example.com/merge:1",
    ]));
    assert_eq!(
        flag(&args(&docs), "merge-image"),
        "registry.example.com/merge:1"
    );

    let docs = documents(&render(&[
        "--set",
        "registryMirrors={docker.io=https://mirror.internal,ghcr.io=http://10.0.0.1:5000/ghcr}",
    ]));
    let mirrors: Vec<String> = args(&docs)
        .into_iter()
        .filter_map(|a| a.strip_prefix("--registry-mirror=").map(String::from))
        .collect();
    assert_eq!(
        mirrors,
        [
            "docker.io=https://mirror.internal",
            "ghcr.io=http://10.0.0.1:5000/ghcr"
        ]
    );
    let mut with_help: Vec<String> = args(&docs);
    with_help.push("--help".into());
    let out = operator(&with_help.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out));
    let mut bad = args(&docs);
    bad.push("--registry-mirror=docker.io=https://mirror\".internal".into());
    let out = operator(&bad.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !out.status.success(),
        "a mirror that would break the builder configuration is refused"
    );
    assert!(text(&out).contains("--registry-mirror"), "{}", text(&out));
}

#[test]
fn the_binary_accepts_every_flag_and_env_var_the_chart_sets() {
    let docs = documents(&render(&["--set", "watchNamespace=team-a"]));
    let chart_args = args(&docs);
    // clap parses every flag and its value before acting on --help.
    let mut with_help: Vec<&str> = chart_args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let out = operator(&with_help);
    assert!(
        out.status.success(),
        "multiarch-operator refuses the chart's arguments {chart_args:?}:\n{}",
        text(&out)
    );
    let help = String::from_utf8(out.stdout).unwrap();
    for var in container(&docs)["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        // RUST_LOG is read by the logging library, not by a flag.
        if name != "RUST_LOG" {
            assert!(
                help.contains(&format!("[env: {name}=")),
                "the chart sets {name}, which no flag of `multiarch-operator controller` reads"
            );
        }
    }
}

#[test]
fn chart_defaults_match_the_binary() {
    let help = String::from_utf8(operator(&["controller", "--help"]).stdout).unwrap();
    let docs = documents(&render(&[]));
    let chart_args = args(&docs);
    for name in [
        "buildkit-image",
        "buildah-image",
        "git-image",
        "merge-image",
    ] {
        assert_eq!(
            flag(&chart_args, name),
            binary_default(&help, name),
            "the chart's default --{name} differs from the binary's"
        );
    }
    // The operator image is the merge image by default.
    assert_eq!(container(&docs)["image"], flag(&chart_args, "merge-image"));
    let chart: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo("charts/multiarch-operator/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion must follow Cargo.toml's version"
    );
}

#[test]
fn the_service_monitor_is_optional_and_scrapes_the_metrics_port() {
    let docs = documents(&render(&[]));
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    let docs = documents(&render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prometheus",
    ]));
    let monitor = one(&docs, "ServiceMonitor", "multiarch-operator");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    let service = one(&docs, "Service", "multiarch-operator-metrics");
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    for (key, value) in selector {
        assert_eq!(&service["metadata"]["labels"][key], value, "selector {key}");
    }
}

#[test]
fn every_example_renders_to_strictly_valid_jobs() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo("deploy/examples"))
        .expect("deploy/examples")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    for example in &examples {
        let name = example.file_name().unwrap().to_string_lossy().to_string();
        let out = operator(&["render", "-f", example.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let jobs = String::from_utf8(out.stdout).unwrap();
        strict_validate(&jobs, &format!("{name}-jobs"));
        // The example's other objects (a ConfigMap context) are valid too.
        let source = std::fs::read_to_string(example).unwrap();
        let others: Vec<&str> = source
            .split("\n---")
            .filter(|doc| !doc.contains("kind: MultiArchImage"))
            .collect();
        if !others.is_empty() {
            strict_validate(&others.join("\n---\n"), &format!("{name}-objects"));
        }
    }
    assert!(examples.iter().any(|p| p.ends_with("self-build.yaml")));
}

#[test]
fn the_kind_end_to_end_script_parses_and_says_it_is_not_run_here() {
    let script = repo("tests/e2e/kind.sh");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("run bash");
    assert!(out.status.success(), "tests/e2e/kind.sh: {}", text(&out));
    let source = std::fs::read_to_string(&script).unwrap();
    assert!(source.contains("set -euo pipefail") && source.contains("trap cleanup EXIT"));
    assert!(
        source.contains("NOT RUN BY THE PROJECT'S CI"),
        "the script's header must say it cannot run in our CI"
    );
}

#[test]
fn helm_lint_strict_finds_nothing_to_fix() {
    for sets in [
        vec![],
        vec![
            "watchNamespace=team-a",
            "metrics.serviceMonitor.enabled=true",
        ],
    ] {
        let mut args = vec!["--lint"];
        args.extend(sets.iter().flat_map(|s| ["--set", s]));
        let report: Value = serde_json::from_str(&render(&args)).expect("lint report");
        assert_eq!(report["errors"], serde_json::json!([]), "{report}");
        // Severity 1 is information ("icon is recommended"); 2 and up are
        // warnings and errors.
        for message in report["messages"].as_array().unwrap() {
            assert!(
                message["severity"].as_i64().unwrap() < 2,
                "helm lint {sets:?}: {message}"
            );
        }
    }
}

/// The tenant admission policy is on by default, matches creates and
/// updates of the resource (not its status), enforces, and can be turned
/// off or set to warn.
#[test]
fn the_tenant_admission_policy_is_on_by_default() {
    let docs = documents(&render(&[]));
    let name = "multiarch-operator-tenant-rights";
    let policy = one(&docs, "ValidatingAdmissionPolicy", name);
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let rules = policy["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0]["resources"],
        serde_json::json!(["multiarchimages"])
    );
    assert_eq!(
        rules[0]["operations"],
        serde_json::json!(["CREATE", "UPDATE"])
    );
    let binding = one(&docs, "ValidatingAdmissionPolicyBinding", name);
    assert_eq!(binding["spec"]["policyName"], name);
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    let warn = documents(&render(&[
        "--set",
        "admissionPolicy.validationActions={Warn,Audit}",
    ]));
    let binding = one(&warn, "ValidatingAdmissionPolicyBinding", name);
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_json::json!(["Warn", "Audit"])
    );
    assert!(binding["spec"].get("matchResources").is_none(), "{binding}");
    let scoped = documents(&render(&[
        "--set",
        "watchNamespace=team-a",
        "--set",
        "watchNamespaces={team-b}",
    ]));
    let binding = one(&scoped, "ValidatingAdmissionPolicyBinding", name);
    assert_eq!(
        binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"],
        serde_json::json!([{"key": "kubernetes.io/metadata.name", "operator": "In",
            "values": ["team-b", "team-a"]}])
    );
    let off = documents(&render(&["--set", "admissionPolicy.enabled=false"]));
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(of_kind(&off, kind)
            .iter()
            .all(|d| d["metadata"]["name"] != name));
    }
}

#[test]
fn the_operator_job_policy_binds_the_operators_account_and_can_be_turned_off() {
    let docs = documents(&render(&[]));
    let policy = one(
        &docs,
        "ValidatingAdmissionPolicy",
        "multiarch-operator-jobs",
    );
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == \"system:serviceaccount:multiarch-system:multiarch-operator\""
    );
    one(
        &docs,
        "ValidatingAdmissionPolicyBinding",
        "multiarch-operator-jobs",
    );
    // With allowlisted builder images, only those and the operator's run.
    let listed = documents(&render(&[
        "--set",
        "allowlists.builderImages={registry.internal/tools}",
    ]));
    let policy = one(
        &listed,
        "ValidatingAdmissionPolicy",
        "multiarch-operator-jobs",
    );
    let images = policy["spec"]["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "images")
        .unwrap()["expression"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(images.contains("registry.internal/tools"), "{images}");
    assert!(images.contains("quay.io/buildah/stable"), "{images}");
    assert_eq!(policy["spec"]["validations"].as_array().unwrap().len(), 6);
    let off = documents(&render(&["--set", "operatorJobPolicy.enabled=false"]));
    assert!(of_kind(&off, "ValidatingAdmissionPolicy")
        .iter()
        .all(|d| d["metadata"]["name"] != "multiarch-operator-jobs"));
}

/// The allowlists reach the operator's flags; control-plane placement is
/// refused unless allowed.
#[test]
fn allowlists_reach_the_operator() {
    let defaults = args(&documents(&render(&[])));
    assert_eq!(flag(&defaults, "allow-control-plane"), "false");
    assert_eq!(flag(&defaults, "allow-build-step-push"), "false");
    let architectures: Vec<_> = defaults
        .iter()
        .filter_map(|a| a.strip_prefix("--operator-image-architecture="))
        .collect();
    assert_eq!(architectures, ["amd64", "arm64"]);
    assert!(
        !defaults.iter().any(|a| a.starts_with("--allowed-")),
        "{defaults:?}"
    );
    let docs = documents(&render(&[
        "--set",
        "allowlists.builderImages={quay.io/buildah/,sha256:abc}",
        "--set",
        "allowlists.tolerationKeys={pool}",
        "--set",
        "allowlists.nodeSelectorKeys={example.com/pool}",
        "--set",
        "allowlists.allowControlPlane=true",
        "--set",
        "allowlists.allowBuildStepPush=true",
        "--set",
        "image.architectures={amd64,arm64,s390x}",
    ]));
    let args = args(&docs);
    for expected in [
        "--allowed-builder-image=quay.io/buildah/",
        "--allowed-builder-image=sha256:abc",
        "--allowed-toleration-key=pool",
        "--allowed-node-selector-key=example.com/pool",
        "--allow-control-plane=true",
        "--allow-build-step-push=true",
        "--operator-image-architecture=s390x",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "{expected} not in {args:?}"
        );
    }
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let out = operator(&with_help);
    assert!(out.status.success(), "{}", text(&out));
}
