//! Rendering of the per-platform build cache and the admin's registry
//! mirrors, and the report scripts run on real builder output.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;

use super::mirrors::RegistryMirror;
use super::*;
use crate::validate::parse_manifests;

const SPEC: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: app, namespace: ci}
spec:
  image: registry.example.com/team/app
  platforms: [linux/amd64, linux/arm64, linux/arm/v7]
  source: {configMap: {name: app-context}}
  pushSecret: {name: regcred}
"#;

fn with(patch: serde_json::Value) -> MultiArchImage {
    let mut value = serde_json::to_value(parse_manifests(SPEC).unwrap().remove(0)).unwrap();
    for (k, v) in patch.as_object().unwrap() {
        value["spec"][k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn jobs_with(r: &MultiArchImage, images: &BuilderImages) -> Vec<Job> {
    let valid = validate::validate_allowing_build_step_push(r).expect("valid");
    plan(r, &valid, "0".repeat(16), images, None).build_jobs
}

fn jobs(r: &MultiArchImage) -> Vec<Job> {
    jobs_with(r, &BuilderImages::default())
}

fn pod_containers(job: &Job) -> Vec<Container> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .cloned()
        .collect()
}

fn container(job: &Job, name: &str) -> Container {
    pod_containers(job)
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn command(job: &Job, name: &str) -> Vec<String> {
    container(job, name).command.unwrap()
}

fn value_after<'a>(command: &'a [String], flag: &str) -> Option<&'a str> {
    command
        .windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].as_str())
}

#[test]
fn buildkit_imports_and_exports_one_cache_per_platform() {
    let r = with(serde_json::json!({}));
    let refs: Vec<_> = jobs(&r)
        .iter()
        .map(|job| {
            let c = command(job, "build");
            (
                value_after(&c, "--import-cache").unwrap().to_string(),
                value_after(&c, "--export-cache").unwrap().to_string(),
            )
        })
        .collect();
    // The build has no push credentials: the cache goes to a layout, and
    // the push step pushes it where the import reads.
    assert_eq!(
        refs[0],
        (
            "type=registry,ref=registry.example.com/team/app:buildcache-linux-amd64".into(),
            "type=local,dest=/workspace/cache,mode=max,oci-mediatypes=true,image-manifest=true,ignore-error=true".into()
        )
    );
    assert!(refs[1].0.ends_with(":buildcache-linux-arm64"));
    let jobs = jobs(&r);
    let push = container(&jobs[1], "push").args.unwrap();
    assert_eq!(
        value_after(&push, "--cache-layout"),
        Some("/workspace/cache")
    );
    assert_eq!(
        value_after(&push, "--cache-to"),
        Some("registry.example.com/team/app:buildcache-linux-arm64")
    );
    assert!(command(&jobs[0], "build").contains(&"--progress=plain".to_string()));
    // No operator image runs on linux/arm nodes: BuildKit pushes itself.
    assert!(refs[2]
        .1
        .contains(":buildcache-linux-arm-v7,mode=max,ignore-error=true"));
    assert_eq!(command(&jobs[2], "report-digest").last().unwrap(), "cache");
}

#[test]
fn a_cache_repository_and_an_insecure_registry_apply_to_the_cache() {
    let r = with(serde_json::json!({
        "cache": {"repository": "cache.example.com:5000/ci/app-cache"},
        "insecureRegistry": true,
    }));
    let job = &jobs(&r)[1];
    let c = command(job, "build");
    assert_eq!(
        value_after(&c, "--import-cache"),
        Some("type=registry,ref=cache.example.com:5000/ci/app-cache:buildcache-linux-arm64,registry.insecure=true")
    );
    let toml = &command(job, "write-builder-config")[4];
    assert!(toml.contains("[registry.\"cache.example.com:5000\"]\n  http = true"));
    assert!(toml.contains("[registry.\"registry.example.com\"]\n  http = true"));

    let buildah = with(serde_json::json!({
        "cache": {"repository": "cache.example.com:5000/ci/app-cache"},
        "insecureRegistry": true,
        "builder": {"strategy": "buildah"},
        "platforms": ["linux/amd64", "linux/arm64"],
    }));
    let job = &jobs(&buildah)[1];
    let conf = &command(job, "write-builder-config")[4];
    assert!(conf.contains("location = \"cache.example.com:5000\"\ninsecure = true"));
    let build = command(job, "build");
    assert_eq!(
        value_after(&build, "--cache-from"),
        Some("cache.example.com:5000/ci/app-cache-buildcache-linux-arm64")
    );
}

#[test]
fn buildah_keeps_layers_and_exports_after_the_push() {
    let builder = serde_json::json!({"strategy": "buildah", "image": "example.com/buildah:armv7"});
    let r = with(serde_json::json!({"builder": builder}));
    let all = jobs(&r);
    let repositories: Vec<_> = all
        .iter()
        .map(|job| {
            let build = command(job, "build");
            assert_eq!(build[4..7], ["buildah", "bud", "--layers"]);
            value_after(&build, "--cache-from").unwrap().to_string()
        })
        .collect();
    assert_eq!(
        repositories,
        [
            "registry.example.com/team/app-buildcache-linux-amd64",
            "registry.example.com/team/app-buildcache-linux-arm64",
            "registry.example.com/team/app-buildcache-linux-arm-v7",
        ],
        "a repository per platform: buildah's cache keys do not name the platform"
    );
    let export = command(&all[0], "export-cache");
    assert_eq!(
        export[4], repositories[0],
        "the export goes where the import reads"
    );
    assert!(export[2].contains(&format!(
        "buildah bud {} --cache-to \"$cache\"",
        super::cache::EXPORT_ONLY
    )));
    assert!(
        super::cache::EXPORT_ONLY.contains("--runtime=/bin/false")
            && super::cache::EXPORT_ONLY.contains("--pull=never"),
        "the export, credentials mounted, runs no step and pulls nothing"
    );
    let mounts = container(&all[0], "export-cache").volume_mounts.unwrap();
    assert!(
        mounts.iter().any(|m| m.mount_path == SOURCE_DIR),
        "the export reads the context again"
    );
    let push = container(&all[0], "push").args.unwrap();
    assert!(push
        .windows(2)
        .any(|w| w == ["--buildah-cache", repositories[0].as_str()]));
    // Where the operator's image cannot run, buildah's push step exports.
    let push = command(&all[2], "push");
    assert_eq!(push[6], repositories[2]);
    assert!(push[2].contains(&format!(
        "buildah bud {} --cache-to \"$cache\"",
        super::cache::EXPORT_ONLY
    )));
}

#[test]
fn a_disabled_cache_renders_no_cache_flags() {
    let off = serde_json::json!({"enabled": false, "repository": "ignored.example.com/x"});
    let buildkit = with(serde_json::json!({"cache": off}));
    let job = &jobs(&buildkit)[0];
    let build = command(job, "build");
    assert!(!build.iter().any(|a| a.contains("cache")), "{build:?}");
    let push = container(job, "push").args.unwrap();
    assert!(!push.iter().any(|a| a.contains("cache")), "{push:?}");
    let arm = &jobs(&buildkit)[2];
    assert_eq!(command(arm, "report-digest").last().unwrap(), "no-cache");
    let buildah = with(serde_json::json!({
        "cache": off,
        "builder": {"strategy": "buildah"},
        "platforms": ["linux/amd64"],
    }));
    let job = &jobs(&buildah)[0];
    let build = command(job, "build");
    assert_eq!(build[4..6], ["buildah", "bud"]);
    assert!(!build.contains(&"--layers".to_string()));
    assert!(
        !container(job, "push")
            .args
            .unwrap()
            .iter()
            .any(|a| a.contains("cache")),
        "no cache report"
    );
    assert!(
        !pod_containers(job).iter().any(|c| c.name == "export-cache"),
        "no cache export"
    );
}

#[test]
fn cache_settings_do_not_change_the_build_id_nor_reach_the_index() {
    let id = |r: &MultiArchImage| build_id(&r.spec, &BuildInputs::default());
    let base = with(serde_json::json!({}));
    for cache in [
        serde_json::json!({"enabled": false}),
        serde_json::json!({"repository": "elsewhere.example.com/cache"}),
    ] {
        assert_eq!(id(&base), id(&with(serde_json::json!({"cache": cache}))));
    }
    let valid = validate::validate_allowing_build_step_push(&base).unwrap();
    let plan = plan(&base, &valid, id(&base), &BuilderImages::default(), None);
    let digests = vec![format!("sha256:{}", "a".repeat(64)); 3];
    let merge = serde_json::to_string(&plan.merge.job(&digests)).unwrap();
    assert!(!merge.contains("buildcache"), "{merge}");
}

#[test]
fn the_cache_repository_is_validated_naming_its_field() {
    for (repository, why) in [
        ("Registry.example.com/UPPER", "not a valid repository"),
        ("registry.example.com/app:tag", "contains a tag"),
        ("https://registry.example.com/app", "no scheme"),
    ] {
        let r = with(serde_json::json!({"cache": {"repository": repository}}));
        let errors = validate::validate(&r).unwrap_err();
        let error = errors.0.iter().find(|e| e.field == "spec.cache.repository");
        assert!(error.is_some_and(|e| e.message.contains(why)), "{errors}");
    }
    let long = format!("registry.example.com/{}", "a".repeat(230));
    let errors = validate::validate(&with(serde_json::json!({"image": long}))).unwrap_err();
    assert!(errors.names("spec.image"), "{errors}");
    assert!(
        errors.to_string().contains("cache of linux/amd64"),
        "{errors}"
    );
    let off = with(serde_json::json!({"image": long, "cache": {"enabled": false}}));
    assert!(
        validate::validate_allowing_build_step_push(&off).is_ok(),
        "no cache, no cache name"
    );
}

#[test]
fn mirrors_reach_both_builders() {
    let images = BuilderImages {
        mirrors: vec![
            "docker.io=https://mirror.internal"
                .parse::<RegistryMirror>()
                .unwrap(),
            "docker.io=http://127.0.0.1:5000".parse().unwrap(),
        ],
        ..BuilderImages::default()
    };
    let buildkit = with(serde_json::json!({}));
    let job = &jobs_with(&buildkit, &images)[0];
    let toml = &command(job, "write-builder-config")[4];
    assert!(toml.contains(
        "[registry.\"docker.io\"]\n  mirrors = [\"mirror.internal\", \"127.0.0.1:5000\"]"
    ));
    let flags = container(job, "build").env.unwrap();
    assert!(flags.iter().any(|e| e.name == "BUILDKITD_FLAGS"
        && e.value
            .as_deref()
            .unwrap()
            .ends_with("--config=/var/run/multiarch/builder/buildkitd.toml")));
    // No mirror, no insecure registry: no configuration step at all.
    let plain = &jobs(&buildkit)[0];
    let pod = plain.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert!(pod
        .init_containers
        .iter()
        .flatten()
        .all(|c| c.name != "write-builder-config"));

    let buildah = with(serde_json::json!({
        "builder": {"strategy": "buildah"},
        "platforms": ["linux/amd64"],
    }));
    let conf = &command(&jobs_with(&buildah, &images)[0], "write-builder-config")[4];
    assert!(conf.contains(
        "prefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"mirror.internal\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n"
    ), "{conf}");
}

/// BuildKit's plain progress, as util/progress/progressui/printer.go
/// prints it: the report's awk program finds the steps taken from the
/// cache and the errors of the cache vertices only.
#[test]
fn the_buildkit_report_reads_plain_progress() {
    let run = |log: &str| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), log).unwrap();
        let out = std::process::Command::new("awk")
            .arg(cache::buildkit_awk())
            .arg(file.path())
            .output()
            .expect("awk runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = "#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\n\
        #2 importing cache manifest from registry:5000/app:buildcache-linux-amd64\n\
        #2 ERROR: registry:5000/app:buildcache-linux-amd64: not found\n\
        #3 [2/3] RUN sleep 10\n#3 0.101 ERROR: a step's own output\n#3 DONE 10.1s\n\
        #4 exporting cache to registry\n#4 writing layer sha256:abc\n#4 DONE 0.2s\n";
    assert_eq!(
        run(first),
        "cache-hits=0\ncache-import-error=registry:5000/app:buildcache-linux-amd64: not found\n"
    );
    let again = "#2 importing cache manifest from r/app:buildcache-linux-amd64\n#2 DONE 0.1s\n\
        #3 [2/3] RUN sleep 10\n#3 CACHED\n#4 [3/3] COPY a /a\n#4 CACHED\n\
        #5 exporting cache to registry\n#5 ERROR: failed to push r/app: connection refused\n";
    let report = run(again);
    assert_eq!(
        report,
        "cache-hits=2\ncache-export-error=failed to push r/app: connection refused\n"
    );
    let parsed = crate::termination::parse(&format!("digest=sha256:{}\n{report}", "b".repeat(64)));
    assert_eq!(
        parsed.cache.unwrap().state,
        crate::api::CacheState::Unavailable
    );
}
