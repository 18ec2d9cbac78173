//! One container run: image, env, mounts, the bubblewrap sandbox, the
//! termination message and the log.

use super::env::{expand, resolve_env};
use super::pull::{ensure_image, image_mapping, image_repo};
use super::volumes::Volume;
use super::{lock, signal_group, sleep_or_stop, Kind, PodCtx};
use crate::sandbox::{self, Mount, Plan};
use crate::util::now_rfc3339;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The niceness of every container process (see where it is set).
const CONTAINER_NICENESS: libc::c_int = 10;

pub(super) enum Outcome {
    Exited(i32),
    Stopped,
}

fn find_exe(cmd: &str, bin_dir: Option<&Path>, path_env: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    bin_dir
        .into_iter()
        .map(Path::to_path_buf)
        .chain(std::env::split_paths(path_env))
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

pub(crate) fn tail_lines(data: &str, n: usize) -> String {
    let lines: Vec<&str> = data.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut s = lines[start..].join("\n");
    if data.ends_with('\n') && !s.is_empty() {
        s.push('\n');
    }
    s
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_container(
    ctx: &Arc<PodCtx>,
    c: &Value,
    init: bool,
    idx: usize,
    restarts: u32,
    volumes: &[Volume],
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let cname = c["name"].as_str().unwrap_or("").to_string();
    let image = c["image"].as_str().unwrap_or("").to_string();
    let bin_dir = image_mapping(ctx.host.config(), &image).flatten();
    let base = |state: Value, ready: bool, last: Value| {
        json!({"name": cname, "image": image, "imageID": format!("kube-sim://{}", image_repo(&image)),
            "containerID": format!("sim://{}-{cname}-{restarts}", ctx.uid), "ready": ready, "restartCount": restarts,
            "started": state.get("running").is_some(), "state": state, "lastState": last})
    };
    let last_state = {
        let s = lock(&ctx.status);
        let list = if init { &s.init } else { &s.main };
        list.get(idx)
            .and_then(|v| {
                v["state"]
                    .get("terminated")
                    .map(|t| json!({"terminated": t}))
            })
            .unwrap_or(json!({}))
    };
    if !ensure_image(ctx, c, init, idx, restarts, stop).await {
        return Outcome::Stopped;
    }
    // Env and volume refs: a missing source keeps the container waiting.
    let mut reported = String::new();
    let env = loop {
        match resolve_env(ctx, c, bin_dir.as_deref()) {
            Ok(e) => break e,
            Err(msg) => {
                if msg != reported {
                    let mut st = base(
                        json!({"waiting": {"reason": "CreateContainerConfigError", "message": msg}}),
                        false,
                        last_state.clone(),
                    );
                    st["started"] = json!(false);
                    ctx.set_status(init, idx, st);
                    ctx.publish();
                    ctx.event("Warning", "Failed", &format!("Error: {msg}"));
                    reported = msg;
                }
                if sleep_or_stop(Duration::from_secs(1), stop).await {
                    return Outcome::Stopped;
                }
            }
        }
    };
    let path_env = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut argv: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .map(|s| expand(s, &env))
        .collect();
    // No `command`: the image's ENTRYPOINT, as the container runtime does.
    let entrypoint = argv
        .is_empty()
        .then(|| super::pull::image_entrypoint(ctx.host.config(), &image))
        .flatten();
    if let Some(e) = &entrypoint {
        argv = e.clone();
    }
    argv.extend(
        c["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .map(|s| expand(s, &env)),
    );
    let start_err = |ctx: &PodCtx, msg: String| {
        let now = now_rfc3339();
        ctx.set_status(init, idx, base(json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": msg,
            "startedAt": "1970-01-01T00:00:00Z", "finishedAt": now, "containerID": format!("sim://{}-{cname}-{restarts}", ctx.uid)}}), false, last_state.clone()));
        ctx.publish();
        ctx.event("Warning", "Failed", &format!("Error: {msg}"));
        Outcome::Exited(128)
    };
    if argv.is_empty()
        || (c["command"].as_array().is_none_or(|a| a.is_empty()) && entrypoint.is_none())
    {
        return start_err(ctx, format!("kube-sim runs containers as host programs and image \"{image}\" has no entrypoint here: set `command` on container \"{cname}\""));
    }
    let Some(exe) = find_exe(&argv[0], bin_dir.as_deref(), &path_env) else {
        return start_err(ctx, format!("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"{}\": executable file not found in $PATH: unknown", argv[0]));
    };
    let Some(bwrap) = sandbox::bwrap_path() else {
        return start_err(ctx, sandbox::PACKAGE_HINT.to_string());
    };
    // Files: log, termination message, private dirs.
    let log_path = ctx.dir.join("logs").join(format!("{cname}.log"));
    if log_path.exists() {
        let _ = std::fs::rename(
            &log_path,
            ctx.dir.join("logs").join(format!("{cname}.previous.log")),
        );
    }
    let Ok(log) = std::fs::File::create(&log_path) else {
        return start_err(ctx, "cannot create log file".into());
    };
    lock(&ctx.host.state().logs)
        .insert(format!("{}/{}/{cname}", ctx.ns, ctx.name), log_path.clone());
    let term_dir = ctx.dir.join("term");
    let _ = std::fs::create_dir_all(&term_dir);
    let term_file = term_dir.join(format!("{cname}-{restarts}"));
    let _ = std::fs::write(&term_file, b"");
    let term_path = c["terminationMessagePath"]
        .as_str()
        .unwrap_or("/dev/termination-log")
        .to_string();
    let mut private_dirs = vec![];
    for (i, d) in ctx.host.config().private_dirs.iter().enumerate() {
        if d.is_dir() {
            let fresh = ctx
                .dir
                .join("private")
                .join(format!("{cname}-{restarts}-{i}"));
            let _ = std::fs::create_dir_all(&fresh);
            private_dirs.push((d.to_string_lossy().to_string(), fresh));
        }
    }
    let mut mounts = vec![];
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vname = m["name"].as_str().unwrap_or("");
        let Some(v) = volumes.iter().find(|v| v.name == vname) else {
            return start_err(ctx, format!("volumeMount \"{vname}\" refers to no volume"));
        };
        let mut src = v.dir.clone();
        if let Some(sp) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
            src = src.join(sp);
            if !src.exists() {
                let _ = std::fs::create_dir_all(&src);
            }
        }
        mounts.push(Mount {
            src,
            dst: m["mountPath"].as_str().unwrap_or("/").to_string(),
            read_only: v.read_only || m["readOnly"] == true,
        });
    }
    if let Some(dir) = super::env::service_account_dir(ctx) {
        // Only where the API server added no `kube-api-access-*` volume.
        mounts.push(Mount {
            src: dir,
            dst: super::env::SERVICE_ACCOUNT_MOUNT.into(),
            read_only: true,
        });
    }
    let sc = &c["securityContext"];
    let add_caps: Vec<String> = sc["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    let plan = Plan {
        program: &exe,
        mounts: &mounts,
        term_file: &term_file,
        term_path: &term_path,
        workdir: c["workingDir"].as_str().filter(|w| !w.is_empty()),
        hostname: &ctx.name,
        privileged: sc["privileged"] == true,
        add_caps,
        private_dirs,
    };
    let mut args = sandbox::bwrap_args(&plan);
    args.push("--".into());
    args.push(exe.to_string_lossy().to_string());
    args.extend(argv[1..].iter().cloned());
    let mut cmd = tokio::process::Command::new(bwrap);
    cmd.args(&args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.clone(), v.clone())))
        .stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .map(std::process::Stdio::from)
                .unwrap_or(std::process::Stdio::null()),
        )
        .stderr(std::process::Stdio::from(log))
        .process_group(0);
    // On a real cluster the control plane runs on its own machines, and on
    // a node the kubelet keeps `kube-reserved`/`system-reserved` CPU out of
    // the pods' cgroups (pkg/kubelet/cm/node_container_manager_linux.go).
    // Here containers share the host with the simulated API server and the
    // operator: they run at a lower CPU priority, so forty builds at once
    // cannot starve the control plane of its answers.
    // SAFETY: setpriority is async-signal-safe and touches no Rust state.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, CONTAINER_NICENESS);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => return start_err(ctx, format!("cannot start sandbox: {e}")),
    };
    let pgid = child.id().unwrap_or(0);
    lock(&ctx.host.state().groups).insert(pgid, ());
    let started = now_rfc3339();
    ctx.event("Normal", "Created", &format!("Created container: {cname}"));
    ctx.event("Normal", "Started", &format!("Started container {cname}"));
    ctx.set_status(
        init,
        idx,
        base(
            json!({"running": {"startedAt": started}}),
            !init,
            last_state.clone(),
        ),
    );
    ctx.publish();
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            ctx.event("Normal", "Killing", &format!("Stopping container {cname}"));
            signal_group(pgid, libc::SIGTERM);
            let grace = ctx.host.get(Kind::Pod, &ctx.ns, &ctx.name)
                .and_then(|p| p["metadata"]["deletionGracePeriodSeconds"].as_u64()).unwrap_or(30).min(30);
            match tokio::time::timeout(Duration::from_secs(grace.max(1)), child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    signal_group(pgid, libc::SIGKILL);
                    child.wait().await.ok()
                }
            }
        }
    };
    // Reap stragglers of the group (daemons a container left behind).
    signal_group(pgid, libc::SIGKILL);
    lock(&ctx.host.state().groups).remove(&pgid);
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)))
        .unwrap_or(137);
    let mut message = std::fs::read(&term_file)
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).to_string())
        .unwrap_or_default();
    if message.is_empty() && code != 0 && c["terminationMessagePolicy"] == "FallbackToLogsOnError" {
        let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
        let mut t = tail_lines(&logs, 80);
        if t.len() > 2048 {
            let cut = t.len() - 2048;
            let cut = (cut..t.len())
                .find(|i| t.is_char_boundary(*i))
                .unwrap_or(t.len());
            t = t[cut..].to_string();
        }
        message = t;
    }
    let mut term = json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
        "startedAt": started, "finishedAt": now_rfc3339(), "containerID": format!("sim://{}-{cname}-{restarts}", ctx.uid)});
    if !message.is_empty() {
        term["message"] = json!(message);
    }
    ctx.set_status(
        init,
        idx,
        base(json!({"terminated": term}), false, last_state),
    );
    ctx.publish();
    if *stop.borrow() {
        Outcome::Stopped
    } else {
        Outcome::Exited(code)
    }
}
