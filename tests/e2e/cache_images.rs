//! Images for the cache tests and benchmark: a base image with a shell
//! (busybox) for `RUN` steps, and a Dockerfile with a slow first step.

// The tests and the benchmark each use a different part of it.
#![allow(dead_code)]

use std::path::Path;

use crate::common::{run_checked, Buildah, Registry};

/// A statically linked busybox, so a `RUN` step has something to run in an
/// image of its own.
pub fn busybox() -> &'static Path {
    let path = Path::new("/bin/busybox");
    let ldd = std::process::Command::new("ldd").arg(path).output();
    let is_static = ldd.is_ok_and(|out| {
        !out.status.success() || String::from_utf8_lossy(&out.stdout).contains("not a dynamic")
    });
    assert!(
        path.exists() && is_static,
        "a static /bin/busybox is needed: install the Debian package busybox-static"
    );
    path
}

/// Pushes `REGISTRY/base:1`, an index of linux/amd64 and linux/arm64 images
/// holding busybox (this host's, for both: the simulated nodes are this
/// host) and a file naming the platform, so the two differ.
pub fn push_base_image(registry: &Registry) -> String {
    push_base_image_as(registry, None)
}

/// `push_base_image`, with `user:password` for a registry that wants them.
pub fn push_base_image_as(registry: &Registry, creds: Option<&str>) -> String {
    let buildah = Buildah::new();
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(busybox(), context.path().join("busybox")).unwrap();
    std::fs::write(
        context.path().join("Containerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY platform.txt /platform.txt\n",
    )
    .unwrap();
    let list = "localhost/cache-base:1";
    run_checked(buildah.command().args(["manifest", "create", list]));
    for platform in ["linux/amd64", "linux/arm64"] {
        std::fs::write(context.path().join("platform.txt"), platform).unwrap();
        let name = format!("localhost/cache-base-{}", platform.replace('/', "-"));
        buildah.build(
            platform,
            &context.path().join("Containerfile"),
            context.path(),
            &name,
        );
        run_checked(buildah.command().args(["manifest", "add", list, &name]));
    }
    let reference = registry.repo("base:1");
    run_checked(
        buildah
            .command()
            .args(["manifest", "push", "--all", "--quiet", "--tls-verify=false"])
            .args(creds.map(|c| format!("--creds={c}")))
            .arg("--signature-policy")
            .arg(crate::common::tools::permissive_policy())
            .arg(list)
            .arg(format!("docker://{reference}")),
    );
    reference
}

/// A Dockerfile whose first step takes `seconds` and whose last one copies
/// `last.txt`.
pub fn slow_context(from: &str, seconds: i64, last: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "Dockerfile",
            format!(
                "FROM {from}\nRUN [\"/bin/busybox\", \"sleep\", \"{seconds}\"]\nCOPY last.txt /last.txt\n"
            ),
        ),
        ("last.txt", last.to_string()),
    ]
}
