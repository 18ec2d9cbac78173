//! Every example in deploy/examples/ renders and names a source that
//! exists: a git URL whose Dockerfile path docs/examples.md states, or a
//! ConfigMap defined in the same file with that Dockerfile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use multiarch_operator::validate::parse_manifests;
use serde::Deserialize as _;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// This project's repository, as `self-build.yaml` names it: its Dockerfile
/// is checked in this checkout.
const THIS_PROJECT: &str = "https://github.com/multiarch-operator/multiarch-operator.git";

/// docs/examples.md's table: example file → (source, Dockerfile path).
fn documented() -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(repo("docs/examples.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            let first_code = |cell: &str| cell.split('`').nth(1).unwrap_or_default().to_string();
            (
                first_code(&cells[0]),
                (cells[1].clone(), first_code(&cells[2])),
            )
        })
        .collect()
}

fn normalised(context: &str, dockerfile: &str) -> String {
    let context = context.trim_start_matches("./").trim_end_matches('/');
    if context.is_empty() || context == "." {
        dockerfile.to_string()
    } else {
        format!("{context}/{dockerfile}")
    }
}

#[test]
fn every_example_renders_and_names_a_source_that_exists() {
    let table = documented();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 6, "{examples:?}");
    for example in &examples {
        let file = example.file_name().unwrap().to_string_lossy().to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_multiarch-operator"))
            .args(["render", "-f"])
            .arg(example)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(example).unwrap();
        assert!(
            !text.contains("Code-Hex/Neo-cowsay.git"),
            "{file}: Neo-cowsay has no Dockerfile"
        );
        for resource in parse_manifests(&text).unwrap() {
            let spec = &resource.spec;
            let dockerfile = normalised(&spec.context_dir, &spec.dockerfile);
            let (source, documented_path) = table
                .get(&file)
                .unwrap_or_else(|| panic!("{file} is not in docs/examples.md's table"));
            assert_eq!(&dockerfile, documented_path, "{file}: the Dockerfile path");
            if let Some(git) = &spec.source.git {
                assert!(
                    source.contains(&format!("`{}`", git.url)),
                    "{file}: docs/examples.md names {source}, the example {}",
                    git.url
                );
                if git.url == THIS_PROJECT {
                    assert!(
                        repo(&dockerfile).is_file(),
                        "{file}: {dockerfile} of this project"
                    );
                }
            } else {
                let config_map = &spec.source.config_map.as_ref().unwrap().name;
                assert!(
                    source.contains(&format!("`{config_map}`")),
                    "{file}: {source}"
                );
                let defined = serde_yaml_ng::Deserializer::from_str(&text)
                    .filter_map(|d| serde_json::Value::deserialize(d).ok())
                    .any(|doc| {
                        doc["kind"] == "ConfigMap"
                            && doc["metadata"]["name"] == config_map.as_str()
                            && doc["metadata"]["namespace"]
                                == resource.metadata.namespace.as_deref().unwrap_or("default")
                            && doc["data"].get(&dockerfile).is_some()
                    });
                assert!(
                    defined,
                    "{file}: ConfigMap {config_map} with key {dockerfile} beside it"
                );
            }
        }
    }
    for (file, _) in table {
        assert!(
            repo(&format!("deploy/examples/{file}")).is_file(),
            "docs/examples.md names {file}"
        );
    }
}

#[test]
fn the_first_build_and_the_kind_script_use_the_sample() {
    let text = std::fs::read_to_string(repo("deploy/examples/sample-buildkit.yaml")).unwrap();
    let resource = parse_manifests(&text).unwrap().remove(0);
    assert_eq!(resource.spec.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(
        resource.spec.builder.strategy,
        multiarch_operator::api::BuilderStrategy::Buildkit
    );
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    assert!(readme.contains("deploy/examples/sample-buildkit.yaml"));
    assert!(!readme.contains("Code-Hex/Neo-cowsay.git"));
    let kind = std::fs::read_to_string(repo("tests/e2e/kind.sh")).unwrap();
    assert!(kind.contains("deploy/examples/sample-buildkit.yaml"));
}
