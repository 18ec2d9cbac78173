//! `spec.buildOn`: which platforms build on another platform's nodes.

use std::collections::BTreeMap;

use super::{Report, PLATFORM};
use crate::api::{self, MultiArchImageSpec};
use crate::platform::Platform;

/// Checks `spec.buildOn` against the validated `platforms` (in the order of
/// `spec.platforms`) and returns, for each platform that has an entry, the
/// platform of the nodes it is built on.
pub(super) fn check_build_on(
    spec: &MultiArchImageSpec,
    platforms: &[Platform],
    report: &mut Report,
) -> BTreeMap<Platform, Platform> {
    let mut build_on = BTreeMap::new();
    if spec.build_on.len() > api::MAX_BUILD_ON {
        report(
            "spec.buildOn",
            format!(
                "has {} entries; at most {}",
                spec.build_on.len(),
                api::MAX_BUILD_ON
            ),
        );
    }
    for (key, value) in &spec.build_on {
        let field = format!("spec.buildOn[{key}]");
        // The CRD's CEL rule compares spellings: so does this, so that
        // admission and the operator agree.
        let Some(index) = spec.platforms.iter().position(|p| p == key) else {
            report(
                &field,
                format!("{key:?} is not one of spec.platforms; a key must be a platform listed there, spelled the same"),
            );
            continue;
        };
        let Some(target) = Platform::parse(key).ok().filter(|p| platforms.contains(p)) else {
            continue; // spec.platforms[index] reports it.
        };
        let node = if value.len() > api::MAX_PLATFORM_LENGTH {
            Err(format!(
                "is {} characters long; at most {}",
                value.len(),
                api::MAX_PLATFORM_LENGTH
            ))
        } else if !PLATFORM.is_match(value) {
            Err(format!(
                "{value:?} is not of the form os/arch[/variant] in lower case (for example linux/amd64)"
            ))
        } else {
            Platform::parse(value).map_err(|e| e.to_string())
        };
        match node {
            Err(message) => report(&field, message),
            // A container runs on a node of its own operating system: only
            // the architecture can differ.
            Ok(node) if node.os != target.os => report(
                &field,
                format!(
                    "{value:?}: spec.platforms[{index}] ({target}) can only be built on {} nodes",
                    target.os
                ),
            ),
            Ok(node) => {
                build_on.insert(target, node);
            }
        }
    }
    build_on
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::FieldError;

    fn check(platforms: &[&str], entries: &[(&str, &str)]) -> (Vec<FieldError>, Vec<String>) {
        let spec = MultiArchImageSpec {
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            build_on: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..serde_json::from_value(serde_json::json!({
                "image": "r.example/x", "source": {"configMap": {"name": "c"}}
            }))
            .unwrap()
        };
        let parsed: Vec<Platform> = platforms.iter().map(|p| p.parse().unwrap()).collect();
        let mut errors = Vec::new();
        let mut report = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                message,
            })
        };
        let found = check_build_on(&spec, &parsed, &mut report);
        let found = found.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (errors, found)
    }

    #[test]
    fn maps_a_platform_to_the_nodes_it_builds_on() {
        let (errors, found) = check(
            &["linux/amd64", "linux/arm64", "linux/arm/v7"],
            &[
                ("linux/arm64", "linux/amd64"),
                ("linux/arm/v7", "linux/x86_64"),
            ],
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            found,
            ["linux/arm/v7=linux/amd64", "linux/arm64=linux/amd64"]
        );
    }

    #[test]
    fn refuses_entries_naming_the_field_and_value() {
        for (entry, needle) in [
            (
                ("linux/s390x", "linux/amd64"),
                "\"linux/s390x\" is not one of spec.platforms",
            ),
            (("linux/arm64", "linux/amd65"), "\"linux/amd65\""),
            (
                ("linux/arm64", "Linux/AMD64"),
                "\"Linux/AMD64\" is not of the form",
            ),
            (
                ("linux/arm64", "windows/amd64"),
                "can only be built on linux nodes",
            ),
        ] {
            let (errors, found) = check(&["linux/amd64", "linux/arm64"], &[entry]);
            assert!(found.is_empty(), "{entry:?}: {found:?}");
            assert_eq!(errors.len(), 1, "{entry:?}: {errors:?}");
            assert_eq!(errors[0].field, format!("spec.buildOn[{}]", entry.0));
            assert!(errors[0].message.contains(needle), "{entry:?}: {errors:?}");
        }
    }

    #[test]
    fn a_key_is_spelled_as_in_spec_platforms() {
        // The CRD's CEL rule compares strings; an alias of a listed
        // platform is refused alike.
        let (errors, _) = check(&["linux/aarch64"], &[("linux/arm64", "linux/amd64")]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let (errors, found) = check(&["linux/aarch64"], &[("linux/aarch64", "linux/amd64")]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found, ["linux/arm64=linux/amd64"]);
    }

    #[test]
    fn the_default_buildah_image_must_run_on_the_nodes_a_platform_builds_on() {
        let resource = |build_on: &str| {
            crate::validate::parse_manifests(&format!(
                "apiVersion: multiarch.dev/v1alpha1\nkind: MultiArchImage\nmetadata: {{name: r}}\nspec:\n  image: r.example/x\n  platforms: [linux/riscv64]\n  source: {{configMap: {{name: c}}}}\n  builder: {{strategy: buildah}}\n  buildOn: {build_on}\n"
            ))
            .unwrap()
            .remove(0)
        };
        let native = crate::validate::validate(&resource("{}")).unwrap_err();
        assert!(native.names("spec.platforms[0]"), "{native}");
        assert!(native.to_string().contains("spec.buildOn"), "{native}");
        let moved = crate::validate::validate(&resource("{linux/riscv64: linux/amd64}"));
        assert!(moved.is_ok(), "{moved:?}");
    }
}
