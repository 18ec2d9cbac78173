//! Rendering of git sources (resolve and fetch steps), builder
//! configuration, and the merge Job's annotations and pod identity.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::*;
use crate::validate::parse_manifests;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

const GIT: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: sample, namespace: ci}
spec:
  image: registry.example.com:5000/tools/sample
  platforms: [linux/amd64, linux/arm64]
  source:
    git:
      url: "https://git.example.com/team/sample.git"
      revision: "release-1"
      pollInterval: 5m
      secretRef: {name: git-cred}
  pushSecret: {name: regcred}
"#;

fn resource(yaml: &str) -> MultiArchImage {
    parse_manifests(yaml).expect("fixture parses").remove(0)
}

fn with_spec(yaml: &str, patch: serde_json::Value) -> MultiArchImage {
    let mut value = serde_json::to_value(resource(yaml)).unwrap();
    for (k, v) in patch.as_object().unwrap() {
        value["spec"][k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn all_containers(job: &Job) -> Vec<Container> {
    let pod = pod(job);
    pod.init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .cloned()
        .collect()
}

fn container(job: &Job, name: &str) -> Container {
    all_containers(job)
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn env(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn build(r: &MultiArchImage, commit: Option<&str>) -> Job {
    let valid = crate::validate::validate(r).expect("valid");
    build_job(
        r,
        &build_id(&r.spec, &BuildInputs::default()),
        &valid.platforms[0],
        &BuilderImages::default(),
        commit,
    )
}

#[test]
fn resolve_job_runs_a_fixed_script_with_the_credentials_and_nothing_else() {
    let r = resource(GIT);
    let job = resolve_job(&r, "7", &BuilderImages::default()).expect("a git source");
    assert_eq!(job.metadata.name.as_deref(), Some("sample-7-resolve"));
    let c = container(&job, "resolve");
    assert_eq!(c.image.as_deref(), Some(DEFAULT_GIT_IMAGE));
    let command = c.command.clone().unwrap();
    assert_eq!(command[..2], ["sh", "-c"]);
    assert_eq!(
        command[3..],
        [
            "resolve",
            "https://git.example.com/team/sample.git",
            "release-1"
        ]
    );
    // The same script for every resource: nothing of the spec is in it.
    let other = with_spec(
        GIT,
        serde_json::json!({"source": {"git": {"url": "ssh://git@other.example/x.git", "revision": "v2"}}}),
    );
    let other_job = resolve_job(&other, "1", &BuilderImages::default()).unwrap();
    assert_eq!(
        container(&other_job, "resolve").command.unwrap()[2],
        command[2]
    );
    assert!(command[2].contains("/dev/termination-log"));
    let volumes = pod(&job).volumes.clone().unwrap();
    let names: Vec<_> = volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["git-home", "git-credentials"], "no push secret");
    assert_eq!(pod(&job).automount_service_account_token, Some(false));
    let security = c.security_context.unwrap();
    assert_eq!(security.run_as_user, Some(GIT_UID));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(RESOLVE_BACKOFF_LIMIT));
    assert_eq!(
        job.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL],
        "resolve"
    );
}

#[test]
fn no_resolve_job_for_a_config_map_source() {
    let r = with_spec(
        GIT,
        serde_json::json!({"source": {"configMap": {"name": "ctx"}}}),
    );
    assert!(resolve_job(&r, "1", &BuilderImages::default()).is_none());
}

#[test]
fn the_default_branch_is_an_empty_revision_argument() {
    let r = with_spec(
        GIT,
        serde_json::json!({"source": {"git": {"url": "https://git.example.com/a.git"}}}),
    );
    let job = resolve_job(&r, "1", &BuilderImages::default()).unwrap();
    let command = container(&job, "resolve").command.unwrap();
    assert_eq!(command.last().unwrap(), "");
}

#[test]
fn build_jobs_fetch_the_resolved_commit_as_uid_nobody() {
    let r = resource(GIT);
    for job in [build(&r, Some(COMMIT)), {
        let buildah = with_spec(GIT, serde_json::json!({"builder": {"strategy": "buildah"}}));
        build(&buildah, Some(COMMIT))
    }] {
        let fetch = container(&job, "fetch-source");
        let command = fetch.command.clone().unwrap();
        assert_eq!(command[5..], [COMMIT, "release-1"]);
        assert!(command[2].contains("fetch -q --depth 1 --no-tags origin \"$commit\""));
        assert!(command[2].contains("submodule --quiet update --init --recursive --depth 1"));
        let security = fetch.security_context.unwrap();
        assert_eq!(
            security.run_as_user,
            Some(GIT_UID),
            "a uid with a passwd entry"
        );
        assert_eq!(security.run_as_group, Some(GIT_UID));
        let build_step = container(&job, "build");
        assert!(
            build_step
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.name != "git-credentials" && m.name != "git-home"),
            "the build never sees git credentials"
        );
    }
}

#[test]
fn build_id_is_unchanged_by_unset_new_fields() {
    // Upgrading must not change an existing id: a spec without the new
    // optional field serialises as before.
    let r = resource(GIT);
    let mut without = r.spec.clone();
    without.source.git.as_mut().unwrap().poll_interval = None;
    let json = serde_json::to_string(&without).unwrap();
    assert!(!json.contains("pollInterval"));
}

#[test]
fn buildah_gets_a_registries_conf_without_a_shell() {
    let r = with_spec(
        GIT,
        serde_json::json!({"builder": {"strategy": "buildah"}, "insecureRegistry": true}),
    );
    let job = build(&r, Some(COMMIT));
    let writer = container(&job, "write-builder-config");
    let command = writer.command.clone().unwrap();
    assert_eq!(command[2], "printf '%s' \"$1\" > \"$2\"", "a fixed script");
    let conf = &command[4];
    assert!(conf.contains("unqualified-search-registries = [\"docker.io\"]"));
    assert!(conf.contains("short-name-mode = \"permissive\""));
    assert!(conf.contains("location = \"registry.example.com:5000\"\ninsecure = true"));
    assert_eq!(command[5], "/var/run/multiarch/builder/registries.conf");
    for step in ["build", "export-cache"] {
        let c = container(&job, step);
        let command = c.command.clone().unwrap();
        assert!(
            !command[2].contains("example.com") && command[..2] == ["sh", "-c"],
            "a fixed script, user values as arguments"
        );
        assert_eq!(
            env(&c, "CONTAINERS_REGISTRIES_CONF").as_deref(),
            Some("/var/run/multiarch/builder/registries.conf")
        );
    }
    let secure = with_spec(GIT, serde_json::json!({"builder": {"strategy": "buildah"}}));
    let conf = container(&build(&secure, Some(COMMIT)), "write-builder-config")
        .command
        .unwrap()[4]
        .clone();
    assert!(!conf.contains("insecure"));
}

#[test]
fn buildkit_retries_the_daemon_and_trusts_an_insecure_registry_for_pulls() {
    let r = resource(GIT);
    let job = build(&r, Some(COMMIT));
    let b = container(&job, "build");
    assert_eq!(
        env(&b, "BUILDCTL_CONNECT_RETRIES_MAX"),
        Some(BUILDKIT_CONNECT_RETRIES.to_string())
    );
    assert_eq!(
        env(&b, "BUILDKITD_FLAGS").as_deref(),
        Some("--oci-worker-no-process-sandbox")
    );
    let insecure = with_spec(GIT, serde_json::json!({"insecureRegistry": true}));
    let job = build(&insecure, Some(COMMIT));
    let b = container(&job, "build");
    assert_eq!(
        env(&b, "BUILDKITD_FLAGS").as_deref(),
        Some("--oci-worker-no-process-sandbox --config=/var/run/multiarch/builder/buildkitd.toml")
    );
    let conf = container(&job, "write-builder-config").command.unwrap()[4].clone();
    assert_eq!(
        conf,
        "[registry.\"registry.example.com:5000\"]\n  http = true\n  insecure = true\n"
    );
    let output = b.command.clone().unwrap();
    assert!(output
        .iter()
        .any(|a| a.ends_with(",registry.insecure=true")));
}

#[test]
fn merge_job_annotates_the_index_with_source_and_commit() {
    let r = resource(GIT);
    let valid = crate::validate::validate(&r).unwrap();
    let digests: Vec<_> = valid
        .platforms
        .iter()
        .map(|_| format!("sha256:{}", "a".repeat(64)))
        .collect();
    let images = BuilderImages {
        merge_service_account: Some("merge".into()),
        merge_image_pull_secrets: vec!["operator-pull".into()],
        ..BuilderImages::default()
    };
    let job = MergeTemplate::new(&r, &valid, "id", &images, Some(COMMIT)).job(&digests);
    let c = container(&job, "merge");
    let args = c.args.clone().unwrap();
    let annotations: Vec<_> = args
        .windows(2)
        .filter(|w| w[0] == "--annotation")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(
        annotations,
        [
            "org.opencontainers.image.source=https://git.example.com/team/sample.git",
            &format!("org.opencontainers.image.revision={COMMIT}"),
        ]
    );
    assert_eq!(pod(&job).service_account_name.as_deref(), Some("merge"));
    let secrets = pod(&job).image_pull_secrets.clone().unwrap();
    assert_eq!(secrets[0].name, "operator-pull");
    // Without flags, neither is set; a ConfigMap source has no annotations.
    let plain = with_spec(
        GIT,
        serde_json::json!({"source": {"configMap": {"name": "ctx"}}}),
    );
    let plain_valid = crate::validate::validate(&plain).unwrap();
    let job = MergeTemplate::new(&plain, &plain_valid, "id", &BuilderImages::default(), None)
        .job(&digests);
    assert!(pod(&job).service_account_name.is_none());
    assert!(pod(&job).image_pull_secrets.is_none());
    let args = container(&job, "merge").args.unwrap();
    assert!(!args.contains(&"--annotation".to_string()));
}

#[test]
fn resolved_commits_are_forty_lower_case_hex_digits() {
    assert_eq!(
        parse_resolved_commit(&format!("{COMMIT}\n")),
        Some(COMMIT.to_string())
    );
    assert_eq!(parse_resolved_commit(&COMMIT.to_uppercase()), None);
    assert_eq!(parse_resolved_commit("error: no branch"), None);
    assert_eq!(parse_resolved_commit(&COMMIT[..39]), None);
}
