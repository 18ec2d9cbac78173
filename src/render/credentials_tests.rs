//! Each registry Secret reaches only the step that needs it: the pull
//! secret the build (where the Dockerfile's steps run), the push secret
//! the step that pushes (which runs none of them).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;

use super::*;
use crate::validate::parse_manifests;

fn jobs(strategy: &str, platforms: &str, pull: bool) -> Vec<Job> {
    jobs_with(strategy, platforms, pull, &BuilderImages::default(), false).build_jobs
}

/// The plan, with the operator's images and whether the admin allows a
/// build step to push.
fn jobs_with(
    strategy: &str,
    platforms: &str,
    pull: bool,
    images: &BuilderImages,
    allow_build_step_push: bool,
) -> Plan {
    let pull = if pull {
        "\n  pullSecret: {name: basecred}"
    } else {
        ""
    };
    let text = format!(
        "apiVersion: multiarch.dev/v1alpha1\nkind: MultiArchImage\nmetadata: {{name: app, namespace: ci}}\nspec:\n  image: registry.example.com/team/app\n  platforms: {platforms}\n  source: {{git: {{url: 'https://git.example.com/app.git', secretRef: {{name: git-cred}}}}}}\n  pushSecret: {{name: regcred}}{pull}\n  builder: {{strategy: {strategy}}}\n"
    );
    let r = parse_manifests(&text).unwrap().remove(0);
    let lists = validate::Allowlists {
        allow_build_step_push,
        ..Default::default()
    }
    .with_operator_image(images);
    let valid = validate::validate_with(&r, &lists).expect("valid");
    plan(&r, &valid, "0".repeat(16), images, None)
}

fn containers(job: &Job) -> Vec<Container> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .cloned()
        .collect()
}

/// The names of the Secret volumes a container mounts.
fn secrets(container: &Container) -> Vec<String> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .filter(|n| {
            [
                PUSH_SECRET_VOLUME,
                PULL_SECRET_VOLUME,
                GIT_CREDENTIALS_VOLUME,
            ]
            .contains(&n.as_str())
        })
        .collect()
}

fn env(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn mounts_of(job: &Job) -> Vec<(String, Vec<String>)> {
    containers(job)
        .iter()
        .map(|c| (c.name.clone(), secrets(c)))
        .collect()
}

#[test]
fn buildah_builds_with_the_pull_secret_and_pushes_with_the_push_secret() {
    let all = jobs("buildah", "[linux/amd64, linux/s390x]", true);
    let fetch = (
        "fetch-source".to_string(),
        vec![GIT_CREDENTIALS_VOLUME.to_string()],
    );
    let step = |name: &str, secret: Option<&str>| {
        (
            name.to_string(),
            secret.into_iter().map(String::from).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        mounts_of(&all[0]),
        [
            fetch.clone(),
            step("write-builder-config", None),
            step("build", Some(PULL_SECRET_VOLUME)),
            step("export-cache", Some(PUSH_SECRET_VOLUME)),
            step("push", Some(PUSH_SECRET_VOLUME)),
        ]
    );
    // Where the operator's image cannot run, buildah's push step exports
    // the cache too.
    assert_eq!(
        mounts_of(&all[1]),
        [
            fetch,
            step("write-builder-config", None),
            step("build", Some(PULL_SECRET_VOLUME)),
            step("push", Some(PUSH_SECRET_VOLUME)),
        ]
    );
    for job in &all {
        let all = containers(job);
        let auth = |name: &str| {
            env(
                all.iter().find(|c| c.name == name).unwrap(),
                "REGISTRY_AUTH_FILE",
            )
        };
        assert_eq!(
            auth("build").as_deref(),
            Some("/var/run/multiarch/pull/config.json")
        );
        let pusher = if all.iter().any(|c| c.name == "export-cache") {
            "export-cache"
        } else {
            "push"
        };
        assert_eq!(
            auth(pusher).as_deref(),
            Some("/var/run/multiarch/docker/config.json")
        );
    }
    let push = containers(&all[0])
        .into_iter()
        .find(|c| c.name == "push")
        .unwrap();
    assert!(push
        .args
        .unwrap()
        .windows(2)
        .any(|w| w == ["--registry-config", "/var/run/multiarch/docker/config.json"]));
}

#[test]
fn without_a_pull_secret_the_build_has_no_registry_credential() {
    for strategy in ["buildah", "buildkit"] {
        let job = &jobs(strategy, "[linux/amd64]", false)[0];
        let build = containers(job)
            .into_iter()
            .find(|c| c.name == "build")
            .unwrap();
        assert_eq!(secrets(&build), Vec::<String>::new(), "{strategy}");
        assert_eq!(env(&build, "REGISTRY_AUTH_FILE"), None, "{strategy}");
        assert_eq!(env(&build, "DOCKER_CONFIG"), None, "{strategy}");
    }
}

#[test]
fn buildkit_pushes_from_a_step_of_its_own_where_the_operator_image_runs() {
    let platforms = "[linux/amd64, linux/arm64, linux/arm/v7]";
    let all = jobs_with("buildkit", platforms, true, &BuilderImages::default(), true).build_jobs;
    for job in &all[..2] {
        assert_eq!(
            mounts_of(job),
            [
                (
                    "fetch-source".to_string(),
                    vec![GIT_CREDENTIALS_VOLUME.to_string()]
                ),
                ("build".to_string(), vec![PULL_SECRET_VOLUME.to_string()]),
                ("push".to_string(), vec![PUSH_SECRET_VOLUME.to_string()]),
            ]
        );
        let all = containers(job);
        let build = all.iter().find(|c| c.name == "build").unwrap();
        assert_eq!(
            env(build, "DOCKER_CONFIG").as_deref(),
            Some(PULL_CONFIG_DIR)
        );
        let push = all.iter().find(|c| c.name == "push").unwrap();
        let args = push.args.clone().unwrap();
        assert!(args
            .windows(2)
            .any(|w| w == ["--registry-config", "/var/run/multiarch/docker/config.json"]));
        let workspace = push
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == WORKSPACE_VOLUME)
            .unwrap();
        assert_eq!(
            workspace.read_only,
            Some(true),
            "what the build wrote is input"
        );
    }
    // linux/arm nodes run no operator image: where the admin allows it,
    // BuildKit pushes itself, with the push secret (docs/security.md).
    assert_eq!(
        mounts_of(&all[2]),
        [
            (
                "fetch-source".to_string(),
                vec![GIT_CREDENTIALS_VOLUME.to_string()]
            ),
            ("build".to_string(), vec![PUSH_SECRET_VOLUME.to_string()]),
            ("report-digest".to_string(), vec![]),
        ]
    );
    // An operator image published for arm too: every build pushes with
    // it, and merges may run on arm nodes.
    let images = BuilderImages {
        operator_architectures: vec!["amd64".into(), "arm64".into(), "arm".into()],
        ..Default::default()
    };
    let plan = jobs_with("buildkit", platforms, true, &images, false);
    for job in &plan.build_jobs {
        assert!(
            mounts_of(job).contains(&("push".to_string(), vec![PUSH_SECRET_VOLUME.to_string()])),
            "{:?}",
            mounts_of(job)
        );
    }
    let merge = serde_json::to_value(plan.merge.job(&[])).unwrap();
    let terms = &merge["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(
        terms[0]["matchExpressions"][0]["values"],
        serde_json::json!(["amd64", "arm64", "arm"])
    );
}
