//! Base images of two architectures made from Debian's `busybox-static`
//! packages (no image is pulled from anywhere), and QEMU user emulation from
//! Debian's `qemu-user-static`, registered through `binfmt_misc`.
//!
//! The `.deb` files are downloaded by `scripts/test.sh` (as root:
//! `dpkg --add-architecture arm64`, `apt-get update`, `apt-get download`)
//! into `.cache/debs/` of the repository; the tests only read them, so they
//! reach no network.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::images::Buildah;
use super::registry::Registry;
use super::tools::{permissive_policy, require_tool, run_checked};

/// Where `scripts/test.sh` leaves the downloaded packages.
pub fn debs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/debs")
}

/// The `.deb` of `package` for Debian architecture `arch`; fails naming how
/// to get it.
pub fn deb(package: &str, arch: &str) -> PathBuf {
    let dir = debs_dir();
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{package}_")) && n.ends_with(&format!("_{arch}.deb"))
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no {package} package for {arch} in {}: run scripts/test.sh as root (it runs \
                 `dpkg --add-architecture {arch}`, `apt-get update` and \
                 `apt-get download {package}:{arch}` there)",
                dir.display()
            )
        })
}

/// A root file system with Debian's static busybox for `arch` (`amd64`,
/// `arm64`) and a link for each applet, `/bin/sh` among them.
pub fn busybox_rootfs(arch: &str, into: &Path) {
    let dpkg_deb = require_tool("dpkg-deb", "dpkg");
    run_checked(
        Command::new(dpkg_deb)
            .arg("-x")
            .arg(deb("busybox-static", arch))
            .arg(into),
    );
    // The applets of this busybox: the list the native build of the same
    // version prints (a foreign one cannot run here).
    let native = tempfile::tempdir().unwrap();
    run_checked(
        Command::new(require_tool("dpkg-deb", "dpkg"))
            .arg("-x")
            .arg(deb("busybox-static", "amd64"))
            .arg(native.path()),
    );
    let list = run_checked(Command::new(native.path().join("bin/busybox")).arg("--list"));
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        let link = into.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
}

/// Pushes a busybox image index (linux/amd64 and linux/arm64) to
/// `registry` as `repository:TAG` for each of `tags`.
pub fn push_busybox_index(registry: &Registry, repository: &str, tags: &[&str]) {
    let buildah = Buildah::new();
    let list = "localhost/busybox-index:latest";
    run_checked(buildah.command().args(["manifest", "create", list]));
    for arch in ["amd64", "arm64"] {
        let context = tempfile::tempdir().unwrap();
        busybox_rootfs(arch, &context.path().join("rootfs"));
        std::fs::write(
            context.path().join("Containerfile"),
            "FROM scratch\nCOPY rootfs/ /\n",
        )
        .unwrap();
        let image = format!("localhost/busybox-{arch}:latest");
        buildah.build(
            &format!("linux/{arch}"),
            &context.path().join("Containerfile"),
            context.path(),
            &image,
        );
        run_checked(buildah.command().args(["manifest", "add", list, &image]));
    }
    for tag in tags {
        run_checked(
            buildah
                .command()
                .args(["manifest", "push", "--all", "--tls-verify=false"])
                .arg("--signature-policy")
                .arg(permissive_policy())
                .arg(list)
                .arg(format!("docker://{}:{tag}", registry.repo(repository))),
        );
    }
}

/// The content of `path` in the image `reference` (plain HTTP), from its
/// topmost layer holding it.
pub fn file_in_image(reference: &str, path: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    run_checked(
        super::skopeo::command()
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--src-no-creds",
            ])
            .arg(format!("docker://{reference}"))
            .arg(format!("dir:{}", dir.path().display())),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().expect("an image manifest");
    for layer in layers.iter().rev() {
        let digest = layer["digest"].as_str().unwrap();
        let blob = dir.path().join(digest.trim_start_matches("sha256:"));
        let output = Command::new(require_tool("tar", "tar"))
            .arg("-xOf")
            .arg(&blob)
            .arg(path.trim_start_matches('/'))
            .output()
            .expect("run tar");
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
    }
    panic!("{path} is in no layer of {reference}")
}

const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";
/// The name our registration takes: never one a distribution uses, so that
/// removing it removes nothing of the machine's.
const OUR_ENTRY: &str = "multiarch-operator-tests-aarch64";

/// `binfmt_misc` for aarch64 binaries, changed for the life of this value
/// and put back exactly as it was on drop. The registry is machine-wide:
/// keep one at a time (the tests using it take a lock), and only in a test
/// binary of its own.
pub struct Aarch64Emulation {
    mounted_here: bool,
    /// Entries of the machine that handled aarch64 and were disabled.
    disabled: Vec<PathBuf>,
    registered: bool,
}

impl Aarch64Emulation {
    /// No enabled handler for aarch64 binaries: running one fails with
    /// `exec format error`.
    pub fn unavailable() -> Aarch64Emulation {
        let mut state = Self::mount();
        remove_stale_entry();
        for entry in aarch64_entries() {
            if std::fs::read_to_string(&entry).is_ok_and(|s| s.starts_with("enabled")) {
                std::fs::write(&entry, "0").expect("disable a binfmt_misc entry");
                state.disabled.push(entry);
            }
        }
        state
    }

    /// Debian's `qemu-user-static` registration for aarch64 (its
    /// `/usr/lib/binfmt.d/qemu-aarch64.conf`, with the `F` flag that opens
    /// the interpreter now, so it works inside the build's chroot), under a
    /// name of our own.
    pub fn qemu() -> Aarch64Emulation {
        let conf = Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf");
        let line = std::fs::read_to_string(conf).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: install the Debian package qemu-user-static \
                 (apt-get install -y --no-install-recommends qemu-user-static, or run scripts/test.sh as root)",
                conf.display()
            )
        });
        let rule = line
            .lines()
            .find(|l| l.starts_with(':'))
            .expect("a binfmt_misc rule");
        // `:name:type:offset:magic:mask:interpreter:flags`
        let fields: Vec<&str> = rule.trim_end().splitn(8, ':').collect();
        assert_eq!(fields.len(), 8, "{rule}");
        assert!(
            fields[7].contains('F'),
            "the rule opens its interpreter at registration: {rule}"
        );
        let mut state = Self::mount();
        remove_stale_entry();
        let ours = format!(":{OUR_ENTRY}:{}", fields[2..].join(":"));
        std::fs::write(Path::new(BINFMT_MISC).join("register"), ours)
            .expect("register QEMU for aarch64 with binfmt_misc (needs root)");
        state.registered = true;
        state
    }

    fn mount() -> Aarch64Emulation {
        let mounted = Path::new(BINFMT_MISC).join("register").exists();
        if !mounted {
            run_checked(Command::new(require_tool("mount", "mount")).args([
                "-t",
                "binfmt_misc",
                "binfmt_misc",
                BINFMT_MISC,
            ]));
        }
        Aarch64Emulation {
            mounted_here: !mounted,
            disabled: Vec::new(),
            registered: false,
        }
    }
}

impl Drop for Aarch64Emulation {
    fn drop(&mut self) {
        if self.registered {
            let _ = std::fs::write(Path::new(BINFMT_MISC).join(OUR_ENTRY), "-1");
        }
        for entry in &self.disabled {
            let _ = std::fs::write(entry, "1");
        }
        if self.mounted_here {
            let _ = Command::new("umount").arg(BINFMT_MISC).status();
        }
    }
}

/// Our entry, left by a test process that was killed before its drop: ours
/// to remove.
fn remove_stale_entry() {
    let entry = Path::new(BINFMT_MISC).join(OUR_ENTRY);
    if entry.exists() {
        std::fs::write(entry, "-1").expect("remove a stale binfmt_misc entry");
    }
}

/// The registered entries whose magic is that of an aarch64 ELF binary.
fn aarch64_entries() -> Vec<PathBuf> {
    // e_ident for 64-bit little-endian ELF, then e_machine 0xb7 (EM_AARCH64).
    const AARCH64_MACHINE: &str = "b700";
    std::fs::read_dir(BINFMT_MISC)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|text| {
                text.lines().any(|l| {
                    l.strip_prefix("magic 7f454c460201")
                        .is_some_and(|rest| rest.ends_with(AARCH64_MACHINE))
                })
            })
        })
        .collect()
}
