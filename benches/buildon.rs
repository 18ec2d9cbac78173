//! What `spec.buildOn` costs (not a timed test: prints figures). One
//! Dockerfile with a CPU-bound `RUN` step (a shell loop and hashing, the
//! kind of work a compile does), built on this amd64 machine:
//!
//! (a) for linux/amd64, natively;
//! (b) for linux/arm64, the step emulated by QEMU (Debian's
//!     qemu-user-static, registered through binfmt_misc for the run);
//! (c) for linux/arm64, the step in a `FROM --platform=$BUILDPLATFORM`
//!     stage (cross-building: it runs natively), the arm64 stage copying.
//!
//! Each is the build step of a build Job as the operator renders it for
//! buildah (`bud --platform`, chroot isolation, vfs, `BUILDPLATFORM` given
//! when building elsewhere), run directly, once, from empty storage; base
//! images come from Debian's busybox-static packages (`common::debian`).
//! (a) and (c) run with no aarch64 emulator registered, so they cannot
//! have emulated anything.
//!
//! Run: `cargo bench --bench buildon --profile dev` (as root, for
//! binfmt_misc). The time measured is buildah's, so the bench needs no
//! optimised build; figures in docs/building-on-other-platforms.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::debian::{push_busybox_index, Aarch64Emulation};

/// The loop count and the megabytes hashed by the `RUN` step: about 3 s
/// natively on the development machine.
const LOOPS: u32 = 300_000;
const HASHED_MB: u32 = 128;

fn dockerfile(base: &str, work_stage_platform: &str) -> String {
    format!(
        "FROM {work_stage_platform} {base}:build AS work\n\
         RUN i=0; while [ $i -lt {LOOPS} ]; do i=$((i+1)); done; \
         dd if=/dev/zero bs=1M count={HASHED_MB} 2>/dev/null | sha256sum > /result; uname -m >> /result\n\
         FROM {base}:1\n\
         COPY --from=work /result /result\n"
    )
}

/// Seconds `buildah bud` takes for `platform`, from empty storage.
fn build(label: &str, dockerfile: &str, platform: &str, build_platform: Option<&str>) -> f64 {
    let buildah = common::Buildah::new();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    let mut command = buildah.command();
    command
        .env("BUILDAH_ISOLATION", "chroot")
        .args([
            "bud",
            "--quiet",
            "--tls-verify=false",
            "--platform",
            platform,
        ])
        .args(["--format", "oci", "-t", "localhost/bench:latest"])
        .arg("--signature-policy")
        .arg(common::tools::permissive_policy());
    if let Some(build_platform) = build_platform {
        command.args(["--build-arg", &format!("BUILDPLATFORM={build_platform}")]);
    }
    command.arg("-f").arg(context.path().join("Dockerfile"));
    command.arg(context.path());
    let started = Instant::now();
    common::run_checked(&mut command);
    let seconds = started.elapsed().as_secs_f64();
    println!("{label}: {seconds:.1} s");
    seconds
}

fn main() {
    let registry = common::Registry::start_plain();
    push_busybox_index(&registry, "base/busybox", &["1", "build"]);
    let base = registry.repo("base/busybox");
    let (native, cross) = {
        let _none = Aarch64Emulation::unavailable();
        let native = build(
            "(a) linux/amd64, native",
            &dockerfile(&base, ""),
            "linux/amd64",
            None,
        );
        let cross = build(
            "(c) linux/arm64, the step in a $BUILDPLATFORM stage",
            &dockerfile(&base, "--platform=$BUILDPLATFORM"),
            "linux/arm64",
            Some("linux/amd64"),
        );
        (native, cross)
    };
    let emulated = {
        let _qemu = Aarch64Emulation::qemu();
        build(
            "(b) linux/arm64, the step under QEMU",
            &dockerfile(&base, ""),
            "linux/arm64",
            Some("linux/amd64"),
        )
    };
    println!(
        "ratios: b/a = {:.1}x (emulated vs native), c/a = {:.2}x (cross-built vs native)",
        emulated / native,
        cross / native
    );
}
