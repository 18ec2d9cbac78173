//! The local kubelet: runs the containers of pods bound to simulated nodes
//! as host processes (each in a bubblewrap sandbox), with env, volumes,
//! termination messages and logs, and reports pod and container status the
//! way a real kubelet does.

use crate::api::{b64_decode, DeleteOpts};
use crate::error::ApiError;
use crate::http::Body;
use crate::sandbox::{self, Mount, Plan};
use crate::util::{name_of, now_rfc3339, ns_of, set_condition, uid_of};
use crate::Shared;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

struct PodHandle {
    stop: watch::Sender<bool>,
    done: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct KubeletState {
    pods: Mutex<HashMap<String, PodHandle>>,
    logs: Mutex<HashMap<String, PathBuf>>,
    groups: Mutex<HashMap<u32, ()>>,
    ip_counter: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn reconcile(shared: &Arc<Shared>) {
    let c = &shared.cluster;
    let pods = c.lock().list("/pods", "");
    let pdef = c.def("", "pods");
    let st = &shared.kubelet;
    let mut handles = lock(&st.pods);
    let live: std::collections::HashSet<&str> = pods.iter().map(|p| uid_of(p)).collect();
    handles.retain(|uid, h| {
        if !live.contains(uid.as_str()) {
            h.stop.send_replace(true);
            return !h.done.load(Ordering::Relaxed);
        }
        true
    });
    for p in &pods {
        if p["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
            continue;
        }
        let uid = uid_of(p).to_string();
        let terminating = !p["metadata"]["deletionTimestamp"].is_null();
        match handles.get(&uid) {
            None => {
                let terminal = matches!(
                    p["status"]["phase"].as_str(),
                    Some("Succeeded") | Some("Failed")
                );
                if terminating {
                    let _ = c.delete(
                        &pdef,
                        ns_of(p),
                        name_of(p),
                        &DeleteOpts {
                            grace_seconds: Some(0),
                            ..Default::default()
                        },
                    );
                } else if !terminal {
                    let (tx, rx) = watch::channel(false);
                    let done = Arc::new(AtomicBool::new(false));
                    handles.insert(
                        uid,
                        PodHandle {
                            stop: tx,
                            done: done.clone(),
                        },
                    );
                    let sh = shared.clone();
                    let pod = (**p).clone();
                    tokio::spawn(async move {
                        run_pod(&sh, pod, rx).await;
                        done.store(true, Ordering::Relaxed);
                        // Wake the loop so a terminating pod gets removed promptly.
                        sh.cluster.changed.send_modify(|_| {});
                    });
                }
            }
            Some(h) => {
                if terminating {
                    h.stop.send_replace(true);
                    if h.done.load(Ordering::Relaxed) {
                        let _ = c.delete(
                            &pdef,
                            ns_of(p),
                            name_of(p),
                            &DeleteOpts {
                                grace_seconds: Some(0),
                                ..Default::default()
                            },
                        );
                        handles.remove(&uid);
                    }
                }
            }
        }
    }
}

/// Stop every pod process (SIGTERM, then SIGKILL after a second).
pub async fn shutdown(shared: &Arc<Shared>) {
    for h in lock(&shared.kubelet.pods).values() {
        h.stop.send_replace(true);
    }
    let groups: Vec<u32> = lock(&shared.kubelet.groups).keys().copied().collect();
    for g in &groups {
        signal_group(*g, libc::SIGTERM);
    }
    for _ in 0..20 {
        if lock(&shared.kubelet.groups).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for g in lock(&shared.kubelet.groups).keys() {
        signal_group(*g, libc::SIGKILL);
    }
}

fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created.
    unsafe {
        libc::kill(-(pgid as i32), sig);
    }
}

/// Image repository without tag or digest.
pub fn image_repo(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

fn normalize_repo(r: &str) -> String {
    let r = r
        .trim_start_matches("docker.io/")
        .trim_start_matches("library/");
    r.to_string()
}

/// Some(host bin dir or None) when the image is mapped; None when unknown.
fn image_mapping(shared: &Shared, image: &str) -> Option<Option<PathBuf>> {
    let repo = normalize_repo(image_repo(image));
    shared
        .config
        .images
        .iter()
        .find(|(r, _)| normalize_repo(image_repo(r)) == repo)
        .map(|(_, d)| d.clone())
}

struct PodCtx {
    shared: Arc<Shared>,
    ns: String,
    name: String,
    uid: String,
    dir: PathBuf,
    pod: Value,
    status: Mutex<PodStatus>,
}

#[derive(Default)]
struct PodStatus {
    init: Vec<Value>,
    main: Vec<Value>,
    phase: String,
    initialized: bool,
    host_ip: String,
    pod_ip: String,
    start: String,
}

fn waiting(name: &str, image: &str, reason: &str, message: Option<&str>, restarts: u32) -> Value {
    let mut w = json!({"reason": reason});
    if let Some(m) = message {
        w["message"] = json!(m);
    }
    json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": restarts, "started": false, "state": {"waiting": w}})
}

impl PodCtx {
    fn publish(&self) {
        let c = &self.shared.cluster;
        let pdef = c.def("", "pods");
        let s = lock(&self.status);
        let all_ready = !s.main.is_empty() && s.main.iter().all(|c| c["ready"] == true);
        let terminal = s.phase == "Succeeded" || s.phase == "Failed";
        let (init, main, phase, initialized) = (
            s.init.clone(),
            s.main.clone(),
            s.phase.clone(),
            s.initialized,
        );
        let (host_ip, pod_ip, start) = (s.host_ip.clone(), s.pod_ip.clone(), s.start.clone());
        drop(s);
        let _ = c.mutate(&pdef, &self.ns, &self.name, "status", "kubelet", |p| {
            let st = crate::util::ensure_obj(p, &["status"]);
            st.insert("phase".into(), json!(phase));
            st.insert("hostIP".into(), json!(host_ip));
            st.insert("hostIPs".into(), json!([{"ip": host_ip}]));
            st.insert("podIP".into(), json!(pod_ip));
            st.insert("podIPs".into(), json!([{"ip": pod_ip}]));
            st.insert("startTime".into(), json!(start));
            if !init.is_empty() {
                st.insert("initContainerStatuses".into(), json!(init));
            }
            st.insert("containerStatuses".into(), json!(main));
            let mut conds: Vec<Value> = st.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let cond = |t: &str, ok: bool, reason: Option<&str>| {
                let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
                if let Some(r) = reason {
                    c["reason"] = json!(r);
                }
                c
            };
            let done_reason = if terminal { Some("PodCompleted") } else if !initialized { Some("ContainersNotInitialized") } else { Some("ContainersNotReady") };
            set_condition(&mut conds, cond("PodReadyToStartContainers", !terminal, None));
            set_condition(&mut conds, cond("Initialized", initialized, if initialized { if terminal && !init.is_empty() { Some("PodCompleted") } else { None } } else { Some("ContainersNotInitialized") }));
            set_condition(&mut conds, cond("Ready", all_ready && !terminal, if all_ready && !terminal { None } else { done_reason }));
            set_condition(&mut conds, cond("ContainersReady", all_ready && !terminal, if all_ready && !terminal { None } else { done_reason }));
            st.insert("conditions".into(), json!(conds));
        });
    }

    fn event(&self, ty: &str, reason: &str, msg: &str) {
        let mut involved = self.pod.clone();
        involved["apiVersion"] = json!("v1");
        involved["kind"] = json!("Pod");
        self.shared
            .cluster
            .record_event(&involved, ty, reason, msg, "kubelet");
    }

    fn set_status(&self, init: bool, idx: usize, v: Value) {
        let mut s = lock(&self.status);
        let list = if init { &mut s.init } else { &mut s.main };
        if idx < list.len() {
            list[idx] = v;
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

async fn run_pod(shared: &Arc<Shared>, pod: Value, mut stop: watch::Receiver<bool>) {
    let (ns, name, uid) = (
        ns_of(&pod).to_string(),
        name_of(&pod).to_string(),
        uid_of(&pod).to_string(),
    );
    let dir = shared
        .workdir
        .join("pods")
        .join(format!("{ns}_{name}_{uid}"));
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    let node = shared.cluster.lock().get("/nodes", "", &node_name);
    let host_ip = node
        .as_ref()
        .and_then(|n| {
            n["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str().map(String::from))
        })
        .unwrap_or_else(|| "10.0.0.10".into());
    let subnet = node
        .as_ref()
        .and_then(|n| {
            n["spec"]["podCIDR"]
                .as_str()
                .map(|c| c.trim_end_matches(".0/24").to_string())
        })
        .unwrap_or_else(|| "10.244.0".into());
    let n = shared.kubelet.ip_counter.fetch_add(1, Ordering::Relaxed) % 250 + 2;
    let inits: Vec<Value> = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mains: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ctx = Arc::new(PodCtx {
        shared: shared.clone(),
        ns,
        name,
        uid,
        dir,
        status: Mutex::new(PodStatus {
            init: inits
                .iter()
                .map(|c| {
                    waiting(
                        c["name"].as_str().unwrap_or(""),
                        c["image"].as_str().unwrap_or(""),
                        "PodInitializing",
                        None,
                        0,
                    )
                })
                .collect(),
            main: mains
                .iter()
                .map(|c| {
                    waiting(
                        c["name"].as_str().unwrap_or(""),
                        c["image"].as_str().unwrap_or(""),
                        if inits.is_empty() {
                            "ContainerCreating"
                        } else {
                            "PodInitializing"
                        },
                        None,
                        0,
                    )
                })
                .collect(),
            phase: "Pending".into(),
            initialized: inits.is_empty(),
            host_ip,
            pod_ip: format!("{subnet}.{n}"),
            start: now_rfc3339(),
        }),
        pod,
    });
    ctx.publish();
    // Images.
    let all: Vec<(bool, usize, &Value)> = inits
        .iter()
        .enumerate()
        .map(|(i, c)| (true, i, c))
        .chain(mains.iter().enumerate().map(|(i, c)| (false, i, c)))
        .collect();
    let mut pull_failed = false;
    for (init, i, c) in &all {
        let image = c["image"].as_str().unwrap_or("");
        let cname = c["name"].as_str().unwrap_or("");
        if image_mapping(shared, image).is_none() {
            pull_failed = true;
            let repo = image_repo(image);
            let msg = format!("Failed to pull image \"{image}\": failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": pull access denied, repository does not exist or may require authorization: {repo}: not found (kube-sim: image not mapped to a host program)");
            ctx.set_status(
                *init,
                *i,
                waiting(cname, image, "ErrImagePull", Some(&msg), 0),
            );
            ctx.event("Normal", "Pulling", &format!("Pulling image \"{image}\""));
            ctx.event("Warning", "Failed", &msg);
            ctx.event("Warning", "Failed", "Error: ErrImagePull");
        }
    }
    if pull_failed {
        ctx.publish();
        if sleep_or_stop(Duration::from_secs(2), &mut stop).await {
            return;
        }
        for (init, i, c) in &all {
            let image = c["image"].as_str().unwrap_or("");
            if image_mapping(shared, image).is_none() {
                let msg = format!("Back-off pulling image \"{image}\"");
                ctx.set_status(
                    *init,
                    *i,
                    waiting(
                        c["name"].as_str().unwrap_or(""),
                        image,
                        "ImagePullBackOff",
                        Some(&msg),
                        0,
                    ),
                );
                ctx.event("Normal", "BackOff", &msg);
                ctx.event("Warning", "Failed", "Error: ImagePullBackOff");
            }
        }
        ctx.publish();
        let _ = async { stop.wait_for(|s| *s).await.is_ok() }.await;
        return;
    }
    // Volumes (retried until their sources exist, like a kubelet).
    let mut reported = String::new();
    let volumes = loop {
        match prepare_volumes(&ctx) {
            Ok(v) => break v,
            Err(msg) => {
                if msg != reported {
                    ctx.event("Warning", "FailedMount", &msg);
                    reported = msg;
                }
                if sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                    return;
                }
            }
        }
    };
    let restart_policy = ctx.pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();
    // Init containers, in order.
    for (i, c) in inits.iter().enumerate() {
        let mut restarts = 0u32;
        loop {
            match run_container(&ctx, c, true, i, restarts, &volumes, &mut stop).await {
                Outcome::Stopped => return finish(&ctx, "Failed"),
                Outcome::Exited(0) => break,
                Outcome::Exited(_) if restart_policy == "Never" => return finish(&ctx, "Failed"),
                Outcome::Exited(_) => {
                    restarts += 1;
                    if sleep_or_stop(Duration::from_secs(restarts.min(10) as u64), &mut stop).await
                    {
                        return finish(&ctx, "Failed");
                    }
                }
            }
        }
    }
    lock(&ctx.status).initialized = true;
    lock(&ctx.status).phase = "Running".into();
    ctx.publish();
    let futs = mains.iter().enumerate().map(|(i, c)| {
        let ctx = ctx.clone();
        let volumes = volumes.clone();
        let mut stop = stop.clone();
        let policy = restart_policy.clone();
        let c = c.clone();
        async move {
            let mut restarts = 0u32;
            loop {
                let out = run_container(&ctx, &c, false, i, restarts, &volumes, &mut stop).await;
                let restart = match out {
                    Outcome::Stopped => false,
                    Outcome::Exited(code) => {
                        policy == "Always" || (policy == "OnFailure" && code != 0)
                    }
                };
                let code = match out {
                    Outcome::Exited(c) => c,
                    Outcome::Stopped => 137,
                };
                if !restart {
                    return code;
                }
                restarts += 1;
                if sleep_or_stop(Duration::from_secs(restarts.min(10) as u64), &mut stop).await {
                    return code;
                }
            }
        }
    });
    let codes = futures::future::join_all(futs).await;
    finish(
        &ctx,
        if codes.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        },
    );
}

fn finish(ctx: &PodCtx, phase: &str) {
    lock(&ctx.status).phase = phase.into();
    ctx.publish();
}

enum Outcome {
    Exited(i32),
    Stopped,
}

#[derive(Clone)]
struct Volume {
    name: String,
    dir: PathBuf,
    read_only: bool,
}

fn write_keys(
    dir: &Path,
    entries: &[(String, Vec<u8>)],
    items: Option<&Vec<Value>>,
    default_mode: u32,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let files: Vec<(String, Vec<u8>, u32)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|it| {
                let k = it["key"].as_str()?;
                let data = entries.iter().find(|(ek, _)| ek == k)?.1.clone();
                Some((
                    it["path"].as_str().unwrap_or(k).to_string(),
                    data,
                    it["mode"]
                        .as_u64()
                        .map(|m| m as u32)
                        .unwrap_or(default_mode),
                ))
            })
            .collect(),
        None => entries
            .iter()
            .map(|(k, d)| (k.clone(), d.clone(), default_mode))
            .collect(),
    };
    for (path, data, mode) in files {
        let p = dir.join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, data)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// A volume made of an object's keys (a Secret or a ConfigMap): its source,
/// the field naming the object, the kind for messages, the store path and
/// how to read its keys.
type KeyVolume<'a> = (
    &'a Value,
    &'static str,
    &'static str,
    &'static str,
    fn(&Value) -> Vec<(String, Vec<u8>)>,
);

fn key_volume(volume: &Value) -> Option<KeyVolume<'_>> {
    if let Some(source) = volume.get("secret") {
        return Some((source, "secretName", "secret", "/secrets", secret_entries));
    }
    let source = volume.get("configMap")?;
    Some((
        source,
        "name",
        "configmap",
        "/configmaps",
        configmap_entries,
    ))
}

fn secret_entries(s: &Value) -> Vec<(String, Vec<u8>)> {
    s["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                b64_decode(v.as_str().unwrap_or("")).unwrap_or_default(),
            )
        })
        .collect()
}

fn configmap_entries(cm: &Value) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = cm["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec()))
        .collect();
    out.extend(
        cm["binaryData"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    b64_decode(v.as_str().unwrap_or("")).unwrap_or_default(),
                )
            }),
    );
    out
}

fn prepare_volumes(ctx: &PodCtx) -> Result<Vec<Volume>, String> {
    let c = &ctx.shared.cluster;
    let mut out = vec![];
    for v in ctx.pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("").to_string();
        let dir = ctx.dir.join("volumes").join(&name);
        let fail = |what: &str| format!("MountVolume.SetUp failed for volume \"{name}\" : {what}");
        if v.get("emptyDir").is_some() {
            std::fs::create_dir_all(&dir).map_err(|e| fail(&e.to_string()))?;
            out.push(Volume {
                name,
                dir,
                read_only: false,
            });
        } else if let Some((source, object_name, kind, path, entries)) = key_volume(v) {
            let oname = source[object_name].as_str().unwrap_or("");
            let mode = source["defaultMode"].as_u64().unwrap_or(420) as u32;
            match c.lock().get(path, &ctx.ns, oname) {
                Some(object) => {
                    write_keys(&dir, &entries(&object), source["items"].as_array(), mode)
                        .map_err(|e| fail(&e.to_string()))?
                }
                None if source["optional"] == true => {
                    std::fs::create_dir_all(&dir).map_err(|e| fail(&e.to_string()))?
                }
                None => return Err(fail(&format!("{kind} \"{oname}\" not found"))),
            }
            out.push(Volume {
                name,
                dir,
                read_only: true,
            });
        } else if let Some(h) = v.get("hostPath") {
            out.push(Volume {
                name,
                dir: PathBuf::from(h["path"].as_str().unwrap_or("/")),
                read_only: false,
            });
        } else {
            return Err(fail(
                "kube-sim supports emptyDir, secret, configMap and hostPath volumes only",
            ));
        }
    }
    Ok(out)
}

/// Kubernetes' $(VAR) expansion in command, args and env values.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let var = &body[..end];
                    match env.iter().rev().find(|(k, _)| k == var) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&format!("$({var})")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn resolve_env(
    ctx: &PodCtx,
    c: &Value,
    bin_dir: Option<&Path>,
) -> Result<Vec<(String, String)>, String> {
    let cl = &ctx.shared.cluster;
    let mut path = String::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if let Some(d) = bin_dir {
        path = format!("{}:{path}", d.display());
    }
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("HOSTNAME".into(), ctx.name.clone()),
        ("HOME".into(), "/root".into()),
    ];
    let get_secret = |name: &str| cl.lock().get("/secrets", &ctx.ns, name);
    let get_cm = |name: &str| cl.lock().get("/configmaps", &ctx.ns, name);
    for ef in c["envFrom"].as_array().into_iter().flatten() {
        let prefix = ef["prefix"].as_str().unwrap_or("");
        if let Some(r) = ef.get("secretRef") {
            let n = r["name"].as_str().unwrap_or("");
            match get_secret(n) {
                Some(s) => env.extend(secret_entries(&s).into_iter().map(|(k, v)| {
                    (
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).to_string(),
                    )
                })),
                None if r["optional"] == true => {}
                None => return Err(format!("secret \"{n}\" not found")),
            }
        }
        if let Some(r) = ef.get("configMapRef") {
            let n = r["name"].as_str().unwrap_or("");
            match get_cm(n) {
                Some(s) => env.extend(configmap_entries(&s).into_iter().map(|(k, v)| {
                    (
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).to_string(),
                    )
                })),
                None if r["optional"] == true => {}
                None => return Err(format!("configmap \"{n}\" not found")),
            }
        }
    }
    let pod = &ctx.pod;
    for e in c["env"].as_array().into_iter().flatten() {
        let k = e["name"].as_str().unwrap_or("").to_string();
        let val = if let Some(v) = e.get("value") {
            expand(v.as_str().unwrap_or(""), &env)
        } else if let Some(vf) = e.get("valueFrom") {
            if let Some(r) = vf.get("secretKeyRef") {
                let (n, key) = (
                    r["name"].as_str().unwrap_or(""),
                    r["key"].as_str().unwrap_or(""),
                );
                match get_secret(n) {
                    Some(s) => match secret_entries(&s).into_iter().find(|(kk, _)| kk == key) {
                        Some((_, v)) => String::from_utf8_lossy(&v).to_string(),
                        None if r["optional"] == true => continue,
                        None => {
                            return Err(format!("couldn't find key {key} in Secret {}/{n}", ctx.ns))
                        }
                    },
                    None if r["optional"] == true => continue,
                    None => return Err(format!("secret \"{n}\" not found")),
                }
            } else if let Some(r) = vf.get("configMapKeyRef") {
                let (n, key) = (
                    r["name"].as_str().unwrap_or(""),
                    r["key"].as_str().unwrap_or(""),
                );
                match get_cm(n) {
                    Some(s) => match configmap_entries(&s).into_iter().find(|(kk, _)| kk == key) {
                        Some((_, v)) => String::from_utf8_lossy(&v).to_string(),
                        None if r["optional"] == true => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {key} in ConfigMap {}/{n}",
                                ctx.ns
                            ))
                        }
                    },
                    None if r["optional"] == true => continue,
                    None => return Err(format!("configmap \"{n}\" not found")),
                }
            } else if let Some(r) = vf.get("fieldRef") {
                let fp = r["fieldPath"].as_str().unwrap_or("");
                let st = lock(&ctx.status);
                match fp {
                    "metadata.name" => ctx.name.clone(),
                    "metadata.namespace" => ctx.ns.clone(),
                    "metadata.uid" => ctx.uid.clone(),
                    "spec.nodeName" => pod["spec"]["nodeName"].as_str().unwrap_or("").into(),
                    "spec.serviceAccountName" => pod["spec"]["serviceAccountName"]
                        .as_str()
                        .unwrap_or("")
                        .into(),
                    "status.hostIP" => st.host_ip.clone(),
                    "status.podIP" => st.pod_ip.clone(),
                    other => {
                        let label = other
                            .strip_prefix("metadata.labels['")
                            .or_else(|| other.strip_prefix("metadata.annotations['"));
                        let which = if other.starts_with("metadata.labels") {
                            "labels"
                        } else {
                            "annotations"
                        };
                        match label.and_then(|l| l.strip_suffix("']")) {
                            Some(l) => pod["metadata"][which][l].as_str().unwrap_or("").into(),
                            None => String::new(),
                        }
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.retain(|(ek, _)| *ek != k);
        env.push((k, val));
    }
    Ok(env)
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

fn tail_lines(data: &str, n: usize) -> String {
    let lines: Vec<&str> = data.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut s = lines[start..].join("\n");
    if data.ends_with('\n') && !s.is_empty() {
        s.push('\n');
    }
    s
}

#[allow(clippy::too_many_arguments)]
async fn run_container(
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
    let bin_dir = image_mapping(&ctx.shared, &image).flatten();
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
    if c["command"].as_array().is_none_or(|a| a.is_empty()) {
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
    lock(&ctx.shared.kubelet.logs)
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
    for (i, d) in ctx.shared.config.private_dirs.iter().enumerate() {
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
    ctx.event(
        "Normal",
        "Pulled",
        &format!("Container image \"{image}\" already present on machine"),
    );
    let mut child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => return start_err(ctx, format!("cannot start sandbox: {e}")),
    };
    let pgid = child.id().unwrap_or(0);
    lock(&ctx.shared.kubelet.groups).insert(pgid, ());
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
            let grace = ctx.shared.cluster.lock().get("/pods", &ctx.ns, &ctx.name)
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
    lock(&ctx.shared.kubelet.groups).remove(&pgid);
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

/// GET pods/log: the container's captured stdout+stderr.
pub async fn logs(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<http::Response<Body>, ApiError> {
    use http_body_util::BodyExt;
    let pod = shared
        .cluster
        .lock()
        .get("/pods", ns, name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match q.get("container") {
        Some(c) => c.clone(),
        None if pod["spec"]["containers"]
            .as_array()
            .is_some_and(|a| a.len() == 1) =>
        {
            names[0].clone()
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["name"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )))
        }
    };
    if !names.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let path = lock(&shared.kubelet.logs)
        .get(&format!("{ns}/{name}/{container}"))
        .cloned();
    let Some(mut path) = path else {
        let reason = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                pod["status"]["initContainerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            )
            .find(|c| c["name"] == container.as_str())
            .and_then(|c| c["state"]["waiting"]["reason"].as_str())
            .unwrap_or("ContainerCreating")
            .to_string();
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    };
    if q.get("previous").is_some_and(|p| p == "true") {
        path = path.with_file_name(format!("{container}.previous.log"));
    }
    let data = std::fs::read_to_string(&path).unwrap_or_default();
    let data = match q.get("tailLines").and_then(|t| t.parse::<usize>().ok()) {
        Some(n) => tail_lines(&data, n),
        None => data,
    };
    let follow = q.get("follow").is_some_and(|f| f == "true");
    if !follow {
        return Ok(http::Response::builder()
            .status(200)
            .header("Content-Type", "text/plain")
            .body(http_body_util::Full::new(bytes::Bytes::from(data)).boxed())
            .unwrap());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let sh = shared.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    let already = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    tokio::spawn(async move {
        if tx.send(bytes::Bytes::from(data)).await.is_err() {
            return;
        }
        let mut pos = already;
        loop {
            let running = sh.cluster.lock().get("/pods", &ns, &name).is_some_and(|p| {
                p["status"]["containerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(
                        p["status"]["initContainerStatuses"]
                            .as_array()
                            .into_iter()
                            .flatten(),
                    )
                    .any(|c| c["name"] == container.as_str() && c["state"]["terminated"].is_null())
            });
            if let Ok(b) = std::fs::read(&path) {
                if (b.len() as u64) > pos {
                    let chunk = bytes::Bytes::copy_from_slice(&b[pos as usize..]);
                    pos = b.len() as u64;
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
            }
            if !running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| {
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)),
                rx,
            )
        })
    });
    Ok(http::Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .body(http_body_util::StreamBody::new(s).boxed())
        .unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_and_expansion() {
        assert_eq!(
            image_repo("quay.io/buildah/stable:v1.35"),
            "quay.io/buildah/stable"
        );
        assert_eq!(
            image_repo("localhost:5000/x/y@sha256:abc"),
            "localhost:5000/x/y"
        );
        assert_eq!(image_repo("localhost:5000/x"), "localhost:5000/x");
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)", &env), "1-$(B)-$(A)");
    }
}
