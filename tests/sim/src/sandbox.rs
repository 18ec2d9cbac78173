//! The container sandbox: a bubblewrap (`bwrap`) invocation giving each
//! container a private mount namespace over the host's root, with its own
//! /tmp, /run, /var/tmp and /dev, the pod's volumes at their mount paths and
//! a per-container termination-message file. Mount points that do not exist
//! on the host are created inside tmpfs overlays of their parent directory,
//! so nothing is ever created on the host outside the sim's work dir.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub const PACKAGE_HINT: &str =
    "bwrap not found: install the Debian package `bubblewrap` (apt-get install bubblewrap)";

/// Default capability set of a container runtime (containerd/CRI-O), for root containers.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub fn bwrap_path() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

#[derive(Debug, Clone)]
pub struct Mount {
    pub src: PathBuf,
    pub dst: String,
    pub read_only: bool,
}

/// Directories replaced by fresh tmpfs in every container.
const TMPFS: &[&str] = &["/tmp", "/run", "/var/tmp"];

fn exists(p: &str) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn is_under(p: &str, dir: &str) -> bool {
    p == dir || p.starts_with(&format!("{}/", dir.trim_end_matches('/')))
}

/// The nearest host directory that must be shadowed (replaced by a tmpfs
/// holding binds of its children) so `target` can be created without
/// touching the host; None when no shadow is needed.
fn shadow_for(target: &str, covered: &[String]) -> Option<String> {
    let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
    let mut cur = String::new();
    for c in comps {
        let parent = if cur.is_empty() {
            "/".to_string()
        } else {
            cur.clone()
        };
        cur = format!("{cur}/{c}");
        if covered.iter().any(|d| is_under(&cur, d)) {
            return None;
        }
        if !exists(&cur) {
            return if parent == "/" { None } else { Some(parent) };
        }
    }
    None
}

pub struct Plan<'a> {
    /// The host program the container runs (its image's entrypoint).
    pub program: &'a Path,
    pub mounts: &'a [Mount],
    pub term_file: &'a Path,
    pub term_path: &'a str,
    pub workdir: Option<&'a str>,
    pub hostname: &'a str,
    pub privileged: bool,
    pub add_caps: Vec<String>,
    /// (host dir, fresh dir under the sim work dir) pairs.
    pub private_dirs: Vec<(String, PathBuf)>,
}

/// `p` with every host symlink among its existing prefixes followed
/// (`/var/run/x` → `/run/x` where `/var/run -> /run`): a mount point must
/// name the real directory, or bwrap would shadow (or create through) the
/// symlink.
fn resolve_host_symlinks(p: &str) -> String {
    let mut resolved = PathBuf::from("/");
    let mut hops = 0;
    let mut rest: Vec<String> = p
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .rev()
        .collect();
    while let Some(c) = rest.pop() {
        let next = resolved.join(&c);
        match std::fs::read_link(&next) {
            Ok(target) if hops < 40 => {
                hops += 1;
                let target = resolved.join(target);
                for t in target
                    .to_string_lossy()
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .rev()
                {
                    rest.push(t.to_string());
                }
                resolved = PathBuf::from("/");
            }
            _ if c == ".." => {
                resolved.pop();
            }
            _ if c == "." => {}
            _ => resolved = next,
        }
    }
    resolved.to_string_lossy().to_string()
}

pub fn bwrap_args(plan: &Plan) -> Vec<String> {
    let resolved_mounts: Vec<Mount> = plan
        .mounts
        .iter()
        .map(|m| Mount {
            dst: resolve_host_symlinks(&m.dst),
            ..m.clone()
        })
        .collect();
    let plan = &Plan {
        mounts: &resolved_mounts,
        add_caps: plan.add_caps.clone(),
        private_dirs: plan.private_dirs.clone(),
        ..*plan
    };
    let mut a: Vec<String> = vec![];
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    // The root: the host's top-level entries, bound one by one onto bwrap's tmpfs root.
    let mut entries: Vec<(String, Option<String>)> = vec![];
    if let Ok(rd) = std::fs::read_dir("/") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if matches!(name.as_str(), "proc" | "dev" | "tmp" | "run") {
                continue;
            }
            let p = format!("/{name}");
            let link = std::fs::read_link(&p)
                .ok()
                .map(|t| t.to_string_lossy().to_string());
            entries.push((p, link));
        }
    }
    entries.sort();
    for (p, link) in &entries {
        match link {
            Some(t) => push(&["--symlink", t, p]),
            None => push(&["--bind", p, p]),
        }
    }
    push(&["--proc", "/proc", "--dev", "/dev"]);
    let mut covered: Vec<String> = vec!["/dev".into(), "/proc".into()];
    for t in TMPFS {
        if *t == "/tmp" || *t == "/run" || exists(t) {
            push(&["--tmpfs", t]);
            covered.push(t.to_string());
        }
    }
    for (d, _) in &plan.private_dirs {
        covered.push(d.clone());
    }
    for m in plan.mounts {
        covered.push(m.dst.clone());
    }
    // Shadows for mount points missing on the host.
    let mut targets: Vec<String> = plan.mounts.iter().map(|m| m.dst.clone()).collect();
    targets.push(plan.term_path.to_string());
    if let Some(w) = plan.workdir {
        targets.push(w.to_string());
    }
    let mut shadows: BTreeSet<String> = BTreeSet::new();
    for t in &targets {
        let others: Vec<String> = covered.iter().filter(|c| *c != t).cloned().collect();
        if let Some(s) = shadow_for(t, &others) {
            shadows.insert(s);
        }
    }
    let mut shadows: Vec<String> = shadows.into_iter().collect();
    shadows.sort_by_key(|s| s.matches('/').count());
    for s in &shadows {
        push(&["--tmpfs", s]);
        if let Ok(rd) = std::fs::read_dir(s) {
            for e in rd.flatten() {
                let child = e.path().to_string_lossy().to_string();
                match std::fs::read_link(&child) {
                    Ok(t) => push(&["--symlink", &t.to_string_lossy(), &child]),
                    Err(_) => push(&["--bind-try", &child, &child]),
                }
            }
        }
    }
    for (d, fresh) in &plan.private_dirs {
        push(&["--bind", &fresh.to_string_lossy(), d]);
    }
    let mut mounts: Vec<&Mount> = plan.mounts.iter().collect();
    mounts.sort_by_key(|m| m.dst.matches('/').count());
    for m in mounts {
        let flag = if m.read_only { "--ro-bind" } else { "--bind" };
        push(&[flag, &m.src.to_string_lossy(), &m.dst]);
    }
    push(&["--bind", &plan.term_file.to_string_lossy(), plan.term_path]);
    // The program is the container's image: it must be there even when it
    // lives under a directory every container gets a fresh tmpfs of (a
    // checkout under /tmp, say).
    let program = plan.program.to_string_lossy().to_string();
    if TMPFS.iter().any(|t| is_under(&program, t)) {
        push(&["--ro-bind", &program, &program]);
    }
    if let Some(w) = plan.workdir {
        if !exists(w) {
            push(&["--dir", w]);
        }
        push(&["--chdir", w]);
    }
    // Each container has a PID namespace of its own, as the kubelet asks of
    // the runtime unless the pod sets shareProcessNamespace
    // (pkg/kubelet/kuberuntime/util/util.go `PidNamespaceForPod`:
    // NamespaceMode_CONTAINER): a process sees only its container's
    // processes in /proc, never another container's (nor the host's).
    push(&[
        "--unshare-pid",
        "--unshare-uts",
        "--hostname",
        plan.hostname,
        "--die-with-parent",
    ]);
    if plan.privileged {
        push(&["--cap-add", "ALL"]);
    } else {
        for c in DEFAULT_CAPS {
            push(&["--cap-add", c]);
        }
        for c in &plan.add_caps {
            let c = if c.starts_with("CAP_") {
                c.clone()
            } else {
                format!("CAP_{c}")
            };
            push(&["--cap-add", &c]);
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_follow_host_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("rel")).unwrap();
        let base = dir.path().to_string_lossy().to_string();
        for link in ["link", "rel"] {
            assert_eq!(
                resolve_host_symlinks(&format!("{base}/{link}/multiarch/docker")),
                format!("{}/multiarch/docker", real.display())
            );
        }
        assert_eq!(resolve_host_symlinks("/no/such/dir"), "/no/such/dir");
    }

    #[test]
    fn shadows_only_host_dirs() {
        assert_eq!(shadow_for("/workspace-kube-sim-test", &[]), None);
        assert_eq!(
            shadow_for("/usr/kube-sim-missing/x", &[]),
            Some("/usr".into())
        );
        assert_eq!(shadow_for("/tmp/x/y", &["/tmp".into()]), None);
        assert_eq!(shadow_for("/usr/bin", &[]), None);
    }

    #[test]
    fn a_program_under_a_fresh_tmpfs_stays_visible() {
        let args_for = |program: &str| {
            let term = Path::new("/nonexistent-term");
            bwrap_args(&Plan {
                program: Path::new(program),
                mounts: &[],
                term_file: term,
                term_path: "/dev/termination-log",
                workdir: None,
                hostname: "pod",
                privileged: false,
                add_caps: vec![],
                private_dirs: vec![],
            })
            .join(" ")
        };
        let under_tmp = "/tmp/checkout/target/debug/tool";
        assert!(args_for(under_tmp).contains(&format!("--ro-bind {under_tmp} {under_tmp}")));
        assert!(!args_for("/usr/bin/buildah").contains("--ro-bind /usr/bin/buildah"));
    }
}
