//! `cargo bench --bench merge`: wall time of our `merge` against buildah's
//! `manifest create` / `manifest add` / `manifest push --all` doing the same
//! job on a local registry, for 2 and 8 platforms.
//!
//! The scenario is the operator's: every platform image was pushed by digest
//! to the target repository, and the index is pushed under a new tag. Each
//! tool's run is timed end to end, process start included (that is what a
//! merge Job pays). Target: ours at most half of buildah's time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_checked, Buildah, ManifestFormat, PushedImage, Registry};

const RUNS: usize = 7;
const EIGHT_PLATFORMS: [&str; 8] = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    // Not linux/arm/v6: buildah 1.28 writes variant v7 into a FROM scratch
    // image built for it, which `merge` rightly refuses as the wrong platform.
    "linux/mips64le",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
];

fn main() {
    let registry = Registry::start_plain();
    let buildah = Buildah::new();
    let repository = "bench/app";
    let sources: Vec<PushedImage> = EIGHT_PLATFORMS
        .iter()
        .map(|platform| {
            let image =
                buildah.build_scratch_image(platform, &format!("bench image for {platform}\n"));
            let tag = format!(
                "{}:{}",
                registry.repo(repository),
                platform.replace('/', "-")
            );
            let digest = buildah.push(&image, &tag, ManifestFormat::Oci, None);
            PushedImage {
                platform: platform.to_string(),
                reference: format!("{}@{digest}", registry.repo(repository)),
                digest,
            }
        })
        .collect();

    println!("merge benchmark: median of {RUNS} runs, local docker-registry, sources in the target repository");
    println!(
        "{:>9}  {:>12}  {:>12}  {:>8}",
        "platforms", "ours", "buildah", "ratio"
    );
    for count in [2, 8] {
        let sources = &sources[..count];
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for run in 0..RUNS {
            // Alternate, so neither tool always runs on a warmer machine.
            ours.push(time_ours(
                &registry,
                repository,
                sources,
                &format!("ours-{count}-{run}"),
            ));
            theirs.push(time_buildah(
                &buildah,
                &registry,
                repository,
                sources,
                &format!("buildah-{count}-{run}"),
            ));
        }
        let (ours, theirs) = (median(ours), median(theirs));
        println!(
            "{count:>9}  {:>10.1}ms  {:>10.1}ms  {:>8.2}",
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3,
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
}

fn time_ours(
    registry: &Registry,
    repository: &str,
    sources: &[PushedImage],
    tag: &str,
) -> Duration {
    let mut command = Command::new(env!("CARGO_BIN_EXE_multiarch-operator"));
    command.arg("merge");
    for source in sources {
        command.args(["--platform-image", &source.platform_image_arg()]);
    }
    command
        .args(["--target", &format!("{}:{tag}", registry.repo(repository))])
        .args(["--insecure-registry", registry.host()]);
    let start = Instant::now();
    run_checked(&mut command);
    start.elapsed()
}

fn time_buildah(
    buildah: &Buildah,
    registry: &Registry,
    repository: &str,
    sources: &[PushedImage],
    list: &str,
) -> Duration {
    let start = Instant::now();
    run_checked(buildah.command().args(["manifest", "create", list]));
    for source in sources {
        run_checked(buildah.command().args([
            "manifest",
            "add",
            "--tls-verify=false",
            list,
            &format!("docker://{}", source.reference),
        ]));
    }
    run_checked(buildah.command().args([
        "manifest",
        "push",
        "--quiet",
        "--all",
        "--tls-verify=false",
        list,
        &format!("docker://{}:{list}", registry.repo(repository)),
    ]));
    let elapsed = start.elapsed();
    run_checked(buildah.command().args(["manifest", "rm", list]));
    elapsed
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
