//! The cluster-wide allowlists, by example.

use super::*;

fn with(fragment: serde_json::Value) -> MultiArchImage {
    let mut value = serde_json::json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": "app", "namespace": "ci"},
        "spec": {"image": "registry.example.com/team/app",
            "source": {"git": {"url": "https://example.com/app.git"}}},
    });
    for (k, v) in fragment.as_object().unwrap() {
        value["spec"][k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn refusal(resource: &MultiArchImage, lists: &Allowlists) -> String {
    validate_with(resource, lists)
        .expect_err("refused by the allowlists")
        .to_string()
}

#[test]
fn image_prefixes_match_at_a_component_boundary_and_digests_pin() {
    let digest = format!("sha256:{}", "a".repeat(64));
    for (entry, image, allowed) in [
        ("quay.io/buildah", "quay.io/buildah/stable:v1", true),
        ("quay.io/buildah", "quay.io/buildah:v1", true),
        ("quay.io/buildah", "quay.io/buildah", true),
        ("quay.io/buildah", "quay.io/buildah-evil/stable:v1", false),
        ("quay.io/buildah/", "quay.io/buildah/stable", true),
        (
            "quay.io/buildah/stable:",
            "quay.io/buildah/stable:v1.38",
            true,
        ),
        (
            "quay.io/buildah/stable:v1",
            "quay.io/buildah/stable:v1.38",
            false,
        ),
        ("quay.io", "quay.io.evil.com/x", false),
        (digest.as_str(), &format!("anywhere.io/x@{digest}"), true),
        (digest.as_str(), "anywhere.io/x:latest", false),
    ] {
        assert_eq!(image_allowed(entry, image), allowed, "{entry} / {image}");
    }
}

#[test]
fn a_builder_image_outside_the_list_is_refused_naming_it() {
    let lists = Allowlists {
        builder_images: vec!["quay.io/buildah/".into()],
        ..Allowlists::default()
    };
    let inside = with(
        serde_json::json!({"builder": {"strategy": "buildah", "image": "quay.io/buildah/stable:v1"}}),
    );
    validate_with(&inside, &lists).unwrap();
    let outside = with(
        serde_json::json!({"builder": {"strategy": "buildah", "image": "evil.example.com/root:1"}}),
    );
    let message = refusal(&outside, &lists);
    assert!(
        message.contains("spec.builder.image: \"evil.example.com/root:1\" is not an allowed builder image (allowed: quay.io/buildah/)"),
        "{message}"
    );
    // Unset: any image.
    validate_with(&outside, &Allowlists::default()).unwrap();
}

#[test]
fn toleration_and_node_selector_keys_outside_the_lists_are_refused() {
    let lists = Allowlists {
        toleration_keys: vec!["pool".into()],
        node_selector_keys: vec!["example.com/pool".into()],
        ..Allowlists::default()
    };
    let fine = with(serde_json::json!({
        "tolerations": [{"key": "pool", "operator": "Exists"}],
        "nodeSelector": {"example.com/pool": "builds"}}));
    validate_with(&fine, &lists).unwrap();
    let outside = with(serde_json::json!({
        "tolerations": [{"key": "pool", "operator": "Exists"}, {"key": "gpu", "operator": "Exists"}],
        "nodeSelector": {"example.com/pool": "builds", "zone": "a"}}));
    let message = refusal(&outside, &lists);
    assert!(
        message.contains(
            "spec.tolerations[1].key: \"gpu\" is not an allowed toleration key (allowed: pool)"
        ),
        "{message}"
    );
    assert!(
        message.contains("spec.nodeSelector[zone]: \"zone\" is not an allowed node label key"),
        "{message}"
    );
    assert!(!message.contains("tolerations[0]"), "{message}");
}

#[test]
fn control_plane_placement_is_refused_unless_allowed() {
    let cases = [
        (
            serde_json::json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}),
            "spec.tolerations[0].key: \"node-role.kubernetes.io/control-plane\" places builds on control-plane nodes",
        ),
        (
            serde_json::json!({"tolerations": [{"key": "node-role.kubernetes.io/master", "operator": "Exists"}]}),
            "spec.tolerations[0].key: \"node-role.kubernetes.io/master\"",
        ),
        (
            serde_json::json!({"tolerations": [{"operator": "Exists"}]}),
            "spec.tolerations[0]: an empty key with operator Exists tolerates every taint",
        ),
        (
            serde_json::json!({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}),
            "spec.nodeSelector[node-role.kubernetes.io/control-plane]: \"node-role.kubernetes.io/control-plane\" places builds on control-plane nodes",
        ),
    ];
    let allowed = Allowlists {
        allow_control_plane: true,
        ..Allowlists::default()
    };
    for (fragment, wanted) in cases {
        let resource = with(fragment.clone());
        let message = refusal(&resource, &Allowlists::default());
        assert!(message.contains(wanted), "{fragment}: {message}");
        assert!(message.contains("--allow-control-plane"), "{message}");
        // validate() applies the default allowlists too.
        assert!(validate(&resource).is_err(), "{fragment}");
        validate_with(&resource, &allowed).unwrap();
    }
}

#[test]
fn buildkit_may_not_push_from_the_build_step_unless_the_admin_allows_it() {
    let platforms = serde_json::json!(["linux/amd64", "linux/arm64", "linux/arm/v7"]);
    let resource = with(serde_json::json!({"platforms": platforms}));
    let message = refusal(&resource, &Allowlists::default());
    assert!(message.contains("spec.platforms[2]"), "{message}");
    assert!(
        message.contains("linux/arm nodes")
            && message.contains("linux/amd64, linux/arm64")
            && message.contains("--allow-build-step-push")
            && message.contains("spec.buildOn")
            && message.contains("strategy buildah"),
        "{message}"
    );
    assert!(!message.contains("spec.platforms[0]") && !message.contains("spec.platforms[1]"));
    // The admin allows it, or publishes the operator image for arm.
    let allowed = Allowlists {
        allow_build_step_push: true,
        ..Allowlists::default()
    };
    validate_with(&resource, &allowed).unwrap();
    let images = crate::render::BuilderImages {
        operator_architectures: vec!["amd64".into(), "arm64".into(), "arm".into()],
        ..Default::default()
    };
    validate_with(
        &resource,
        &Allowlists::default().with_operator_image(&images),
    )
    .unwrap();
    // Built on arm64 nodes, the platform pushes with the operator image.
    let elsewhere = with(serde_json::json!({
        "platforms": platforms,
        "buildOn": {"linux/arm/v7": "linux/arm64"},
    }));
    validate_with(&elsewhere, &Allowlists::default()).unwrap();
    // buildah's push step runs none of the Dockerfile's steps.
    let buildah = with(serde_json::json!({
        "platforms": ["linux/amd64", "linux/s390x"],
        "builder": {"strategy": "buildah"},
    }));
    validate_with(&buildah, &Allowlists::default()).unwrap();
    let buildkit = with(serde_json::json!({"platforms": ["linux/s390x"]}));
    assert!(refusal(&buildkit, &Allowlists::default()).contains("linux/s390x nodes"));
}
