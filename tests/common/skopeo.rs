//! `skopeo`, the real client that checks what a registry serves: raw
//! manifests, and the image a given platform resolves to through an index.

use std::process::Command;

use super::tools::{permissive_policy, require_tool, run_checked};

/// `skopeo --policy <accept-all>`, ready for a subcommand.
pub fn command() -> Command {
    let mut command = Command::new(require_tool("skopeo", "skopeo"));
    command.arg("--policy").arg(permissive_policy());
    command
}

fn add_creds(command: &mut Command, creds: Option<&str>) {
    match creds {
        Some(creds) => command.args(["--creds", creds]),
        None => command.arg("--no-creds"),
    };
}

/// `skopeo inspect --raw docker://IMAGE` (plain HTTP): the exact bytes the
/// registry serves, or skopeo's error when it cannot (e.g. the tag is absent).
pub fn inspect_raw(image: &str, creds: Option<&str>) -> Result<Vec<u8>, String> {
    let mut command = command();
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    add_creds(&mut command, creds);
    let output = command
        .arg(format!("docker://{image}"))
        .output()
        .expect("run skopeo");
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// What a client on a given platform gets for an image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// skopeo's `Digest`: that of the manifest the reference names, i.e. the
    /// index itself when it names an index (not the chosen image).
    pub digest: String,
    /// The layer digests of the image chosen for the platform.
    pub layers: Vec<String>,
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

/// `skopeo inspect --override-os/--override-arch/--override-variant`: the
/// image a client on `platform` (`os/arch[/variant]`) picks from the index
/// (its config's platform, and its layers).
pub fn inspect_for_platform(image: &str, platform: &str, creds: Option<&str>) -> ResolvedImage {
    let parts: Vec<&str> = platform.split('/').collect();
    let inspect = |extra: &[&str]| -> serde_json::Value {
        let mut command = command();
        command.args(["--override-os", parts[0], "--override-arch", parts[1]]);
        if let Some(variant) = parts.get(2) {
            command.args(["--override-variant", variant]);
        }
        command.args(["inspect", "--tls-verify=false"]).args(extra);
        add_creds(&mut command, creds);
        let output = run_checked(command.arg(format!("docker://{image}")));
        serde_json::from_slice(&output.stdout).expect("skopeo inspect prints JSON")
    };
    let summary = inspect(&[]);
    // skopeo 1.9 leaves the variant out of its summary: read the config.
    let config = inspect(&["--config"]);
    let field =
        |json: &serde_json::Value, name: &str| json[name].as_str().unwrap_or_default().to_string();
    ResolvedImage {
        digest: field(&summary, "Digest"),
        layers: summary["Layers"]
            .as_array()
            .map(|layers| {
                layers
                    .iter()
                    .filter_map(|l| l.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        os: field(&config, "os"),
        architecture: field(&config, "architecture"),
        variant: field(&config, "variant"),
    }
}

/// The layer digests of an image manifest (by reference or digest).
pub fn manifest_layers(image: &str, creds: Option<&str>) -> Vec<String> {
    let raw = inspect_raw(image, creds).unwrap_or_else(|e| panic!("{image}: {e}"));
    let json: serde_json::Value = serde_json::from_slice(&raw).expect("a manifest is JSON");
    json["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{image} is not an image manifest"))
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect()
}
