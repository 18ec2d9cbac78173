//! Every rule of `validate()` and the strict parse, by example.

use super::*;

const BASE: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: app, namespace: ci}
spec:
  image: registry.example.com/team/app
  source: {git: {url: "https://example.com/app.git"}}
"#;

/// The base fixture with `spec` fields replaced by a YAML fragment.
fn with(fragment: &str) -> MultiArchImage {
    let mut value: serde_json::Value = serde_yaml_ng::from_str(BASE).unwrap();
    let patch: serde_json::Value = serde_yaml_ng::from_str(fragment).unwrap();
    for (k, v) in patch.as_object().unwrap() {
        if k == "metadata" {
            value["metadata"] = v.clone();
        } else {
            value["spec"][k] = v.clone();
        }
    }
    serde_json::from_value(value).unwrap()
}

#[test]
fn the_base_fixture_is_valid() {
    let valid = validate(&with("{}")).unwrap();
    assert_eq!(valid.platforms.len(), 2);
}

#[test]
fn every_invalid_spec_names_its_field() {
    let long = "x".repeat(300);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "{platforms: [linux/amd64, linux/amd65]}".into(),
            "spec.platforms[1]",
            "not a known architecture \"amd65\"",
        ),
        (
            "{platforms: [darwin/arm64]}".into(),
            "spec.platforms[0]",
            "operating system",
        ),
        (
            "{platforms: [linux]}".into(),
            "spec.platforms[0]",
            "os/arch",
        ),
        (
            "{platforms: [linux/arm64, linux/aarch64]}".into(),
            "spec.platforms[1]",
            "same platform as spec.platforms[0]",
        ),
        ("{platforms: []}".into(), "spec.platforms", "at least one"),
        (
            format!("{{platforms: [{}]}}", vec!["linux/amd64"; 17].join(",")),
            "spec.platforms",
            "at most 16",
        ),
        (
            "{image: \"registry.example.com/team/app:v1\"}".into(),
            "spec.image",
            "contains a tag",
        ),
        (
            "{image: \"registry.example.com/team/app@sha256:abc\"}".into(),
            "spec.image",
            "contains a digest",
        ),
        (
            "{image: \"Registry/Team/App\"}".into(),
            "spec.image",
            "not a valid repository",
        ),
        ("{image: \"\"}".into(), "spec.image", "must be set"),
        (
            format!("{{image: \"r.io/{long}\"}}"),
            "spec.image",
            "at most 255",
        ),
        ("{tags: []}".into(), "spec.tags", "at least one"),
        (
            "{tags: [\"-bad\"]}".into(),
            "spec.tags[0]",
            "not a valid tag",
        ),
        (
            "{tags: [\"a b\"]}".into(),
            "spec.tags[0]",
            "not a valid tag",
        ),
        ("{tags: [v1, v1]}".into(), "spec.tags[1]", "listed twice"),
        ("{source: {}}".into(), "spec.source", "exactly one"),
        (
            "{source: {git: {url: \"https://e.com/a.git\"}, configMap: {name: ctx}}}".into(),
            "spec.source",
            "exactly one",
        ),
        (
            "{source: {git: {url: \"ftp://e.com/a.git\"}}}".into(),
            "spec.source.git.url",
            "must be an https://",
        ),
        (
            "{source: {git: {url: \"https://user:hunter2@e.com/a.git\"}}}".into(),
            "spec.source.git.url",
            "embeds credentials",
        ),
        (
            "{source: {git: {url: \"https://e.com/a.git\", revision: \"--upload-pack=evil\"}}}"
                .into(),
            "spec.source.git.revision",
            "not a valid",
        ),
        (
            "{source: {configMap: {name: \"Bad_Name\"}}}".into(),
            "spec.source.configMap.name",
            "not a valid object name",
        ),
        (
            "{contextDir: \"../outside\"}".into(),
            "spec.contextDir",
            "inside the source",
        ),
        (
            "{contextDir: \"/etc\"}".into(),
            "spec.contextDir",
            "relative",
        ),
        (
            "{dockerfile: \"a/../../Dockerfile\"}".into(),
            "spec.dockerfile",
            "inside the source",
        ),
        (
            "{dockerfile: \"\"}".into(),
            "spec.dockerfile",
            "must not be empty",
        ),
        ("{target: \"-x\"}".into(), "spec.target", "stage name"),
        (
            "{buildArgs: {\"1BAD\": x}}".into(),
            "spec.buildArgs.1BAD",
            "build argument name",
        ),
        (
            "{buildArgs: {\"A;B\": x}}".into(),
            "spec.buildArgs.A;B",
            "build argument name",
        ),
        (
            "{pushSecret: {name: \"UPPER\"}}".into(),
            "spec.pushSecret.name",
            "object name",
        ),
        (
            "{serviceAccountName: \"a b\"}".into(),
            "spec.serviceAccountName",
            "object name",
        ),
        (
            "{nodeSelector: {kubernetes.io/arch: arm64}}".into(),
            "spec.nodeSelector[kubernetes.io/arch]",
            "set per platform",
        ),
        (
            "{nodeSelector: {\"bad key!\": x}}".into(),
            "spec.nodeSelector[bad key!]",
            "label key",
        ),
        (
            "{nodeSelector: {pool: \"bad value!\"}}".into(),
            "spec.nodeSelector[pool]",
            "label value",
        ),
        (
            "{tolerations: [{key: a, operator: Maybe}]}".into(),
            "spec.tolerations[0].operator",
            "supported values: \"Equal\", \"Exists\"",
        ),
        // The API server's pod rules (ValidateTolerations).
        (
            "{tolerations: [{key: a, operator: Exists, value: x}]}".into(),
            "spec.tolerations[0].value",
            "value must be empty when `operator` is 'Exists'",
        ),
        (
            "{tolerations: [{operator: Equal, value: x}]}".into(),
            "spec.tolerations[0].operator",
            "operator must be Exists when `key` is empty",
        ),
        (
            "{tolerations: [{value: x}]}".into(),
            "spec.tolerations[0].operator",
            "operator must be Exists when `key` is empty",
        ),
        (
            "{tolerations: [{key: a, operator: Exists, effect: NoSchedule, tolerationSeconds: 30}]}"
                .into(),
            "spec.tolerations[0].effect",
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ),
        (
            "{tolerations: [{key: a, operator: Exists, tolerationSeconds: 30}]}".into(),
            "spec.tolerations[0].effect",
            "NoExecute",
        ),
        (
            "{tolerations: [{key: \"bad key!\", operator: Exists}]}".into(),
            "spec.tolerations[0].key",
            "qualified name",
        ),
        (
            "{tolerations: [{key: \"a/b/c\", operator: Exists}]}".into(),
            "spec.tolerations[0].key",
            "qualified name",
        ),
        (
            "{tolerations: [{key: a, value: \"not a label value\"}]}".into(),
            "spec.tolerations[0].value",
            "label value",
        ),
        (
            "{tolerations: [{key: ok}, {key: a, operator: Exists, value: x}]}".into(),
            "spec.tolerations[1].value",
            "must be empty",
        ),
        // ValidateResourceRequirements and ParseQuantity.
        (
            "{resources: {limits: {cpu: garbage}}}".into(),
            "spec.resources.limits.cpu",
            "quantities must match the regular expression",
        ),
        (
            "{resources: {requests: {memory: 1KK}}}".into(),
            "spec.resources.requests.memory",
            "unable to parse quantity's suffix",
        ),
        (
            "{resources: {requests: {cpu: \"2\"}, limits: {cpu: 1500m}}}".into(),
            "spec.resources.requests.cpu",
            "must be less than or equal to cpu limit of 1500m",
        ),
        (
            "{resources: {requests: {memory: 2Gi}, limits: {memory: 2G}}}".into(),
            "spec.resources.requests.memory",
            "less than or equal to memory limit",
        ),
        (
            "{resources: {requests: {cpu: \"-1\"}}}".into(),
            "spec.resources.requests.cpu",
            "greater than or equal to 0",
        ),
        (
            "{resources: {limits: {gpu: \"1\"}}}".into(),
            "spec.resources.limits.gpu",
            "standard resource for containers",
        ),
        (
            "{resources: {limits: {\"bad name!\": \"1\"}}}".into(),
            "spec.resources.limits.bad name!",
            "not a valid resource name",
        ),
        (
            "{resources: {limits: {example.com/gpu: 500m}}}".into(),
            "spec.resources.limits.example.com/gpu",
            "must be an integer",
        ),
        (
            "{resources: {requests: {example.com/gpu: \"1\"}, limits: {example.com/gpu: \"2\"}}}"
                .into(),
            "spec.resources.requests.example.com/gpu",
            "must be equal to example.com/gpu limit of 2",
        ),
        (
            "{resources: {requests: {example.com/gpu: \"1\"}}}".into(),
            "spec.resources.limits",
            "Limit must be set for non overcommitable resources",
        ),
        (
            "{resources: {limits: {hugepages-2Mi: 3Mi, memory: 1Gi}}}".into(),
            "spec.resources.limits.hugepages-2Mi",
            "not positive integer multiple",
        ),
        (
            "{resources: {limits: {hugepages-2Mi: 4Mi}}}".into(),
            "spec.resources",
            "HugePages require cpu or memory",
        ),
        (
            "{resources: {claims: [{name: gpu}]}}".into(),
            "spec.resources.claims[0]",
            "pod.spec.resourceClaims",
        ),
        (
            "{tolerations: [{key: a, effect: Sometimes}]}".into(),
            "spec.tolerations[0].effect",
            "NoSchedule",
        ),
        (
            "{activeDeadlineSeconds: 0}".into(),
            "spec.activeDeadlineSeconds",
            "between 1 and 86400",
        ),
        (
            "{backoffLimit: 99}".into(),
            "spec.backoffLimit",
            "between 0 and 10",
        ),
        (
            "{builder: {strategy: buildah, image: \"bad image\"}}".into(),
            "spec.builder.image",
            "image reference",
        ),
        (
            "{source: {git: {url: \"https://e.com/a.git\", pollInterval: 5s}}}".into(),
            "spec.source.git.pollInterval",
            "between 10s and",
        ),
        (
            "{source: {git: {url: \"https://e.com/a.git\", pollInterval: 5 minutes}}}".into(),
            "spec.source.git.pollInterval",
            "not a duration",
        ),
        (
            "{builder: {strategy: buildah}, platforms: [linux/amd64, linux/arm/v7]}".into(),
            "spec.platforms[1]",
            "set spec.builder.image",
        ),
        (
            "{metadata: {name: \"Bad_Name\"}}".into(),
            "metadata.name",
            "object name",
        ),
    ];
    assert!(cases.len() >= 20);
    for (fragment, field, needle) in cases {
        let errors = validate(&with(&fragment)).expect_err(&fragment);
        let found = errors.0.iter().find(|e| e.field == field);
        let found = found.unwrap_or_else(|| panic!("{fragment}: expected {field}, got:\n{errors}"));
        assert!(found.message.contains(needle), "{fragment}: {found}");
    }
}

/// What the API server accepts passes too.
#[test]
fn valid_tolerations_and_resources_pass() {
    for fragment in [
        "{tolerations: [{operator: Exists}]}",
        "{tolerations: [{key: a, operator: Exists, effect: NoExecute, tolerationSeconds: 30}]}",
        "{tolerations: [{key: example.com/pool, value: builds, effect: PreferNoSchedule}]}",
        "{tolerations: [{key: a, operator: Equal, value: \"\"}]}",
        "{resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: \"1\", memory: 1Gi}}}",
        "{resources: {requests: {cpu: \"1\"}, limits: {cpu: 1000m}}}",
        "{resources: {requests: {ephemeral-storage: 10Gi}}}",
        "{resources: {requests: {example.com/gpu: \"2\"}, limits: {example.com/gpu: \"2\"}}}",
        "{resources: {limits: {hugepages-2Mi: 4Mi, memory: 1Gi}}}",
    ] {
        // The API server's rules only: a toleration of every taint is the
        // operator's own refusal (control-plane placement).
        let pod_rules_only = Allowlists {
            allow_control_plane: true,
            ..Allowlists::default()
        };
        validate_with(&with(fragment), &pod_rules_only)
            .unwrap_or_else(|e| panic!("{fragment}: {e}"));
    }
}

#[test]
fn reports_every_problem_at_once() {
    let errors = validate(&with(
        "{platforms: [linux/amd65], tags: [\"-x\"], contextDir: /abs}",
    ))
    .unwrap_err();
    assert!(errors.names("spec.platforms[0]"));
    assert!(errors.names("spec.tags[0]"));
    assert!(errors.names("spec.contextDir"));
    assert_eq!(errors.to_string().lines().count(), 3);
}

#[test]
fn credentials_in_urls_are_not_echoed() {
    let errors = validate(&with(
        "{source: {git: {url: \"https://u:s3cret@e.com/a.git\"}}}",
    ))
    .unwrap_err();
    assert!(!errors.to_string().contains("s3cret"));
}

#[test]
fn manifests_skip_other_kinds_and_check_api_version() {
    let stream = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{BASE}");
    assert_eq!(parse_manifests(&stream).unwrap().len(), 1);
    let wrong = BASE.replace("v1alpha1", "v9");
    assert!(parse_manifests(&wrong).unwrap_err().contains("apiVersion"));
    assert!(parse_manifests("kind: Pod")
        .unwrap_err()
        .contains("no MultiArchImage"));
}

#[test]
fn poll_intervals_parse_in_whole_units() {
    let seconds = |text: &str| parse_poll_interval(text).map(|d| d.as_secs());
    assert_eq!(seconds("10s"), Ok(10));
    assert_eq!(seconds("5m"), Ok(300));
    assert_eq!(seconds("1h30m"), Ok(5400));
    assert_eq!(seconds("168h"), Ok(api::MAX_POLL_INTERVAL_SECONDS));
    assert!(seconds("9s").is_err());
    assert!(seconds("169h").is_err());
    assert!(seconds("1.5h").is_err());
    assert!(seconds("").is_err());
}

#[test]
fn a_buildah_image_of_ones_own_allows_any_platform() {
    let resource = with(
        "{builder: {strategy: buildah, image: registry.example.com/buildah:arm}, platforms: [linux/arm/v7]}",
    );
    assert!(validate(&resource).is_ok());
}

#[test]
fn a_dockerfile_path_must_name_a_file() {
    for ok in [
        "Dockerfile",
        "./Dockerfile",
        "docker/build.Dockerfile",
        ".dockerfile",
    ] {
        validate(&with(&format!("{{dockerfile: {ok:?}}}"))).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [".", "docker/", "docker/.", "./"] {
        let errors = validate(&with(&format!("{{dockerfile: {bad:?}}}"))).expect_err(bad);
        assert!(
            errors.to_string().contains("spec.dockerfile"),
            "{bad}: {errors}"
        );
    }
}
