//! Container environment: `env` (value, secretKeyRef, configMapKeyRef,
//! fieldRef), `envFrom`, and `$(VAR)` expansion.

use super::volumes::{configmap_entries, secret_entries};
use super::{lock, Kind, PodCtx};
use serde_json::Value;
use std::path::Path;

/// Kubernetes' $(VAR) expansion in command, args and env values.
pub(super) fn expand(s: &str, env: &[(String, String)]) -> String {
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

pub(super) fn resolve_env(
    ctx: &PodCtx,
    c: &Value,
    bin_dir: Option<&Path>,
) -> Result<Vec<(String, String)>, String> {
    let host = &ctx.host;
    let mut path = String::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if let Some(d) = bin_dir {
        path = format!("{}:{path}", d.display());
    }
    let (api_host, port) = host.api_server();
    let port = port.to_string();
    // The `kubernetes` Service's variables (pkg/kubelet/kubelet_pods.go
    // makeEnvironmentVariables): here the API server's own address, as
    // nothing routes the ClusterIP.
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("HOSTNAME".into(), ctx.name.clone()),
        ("HOME".into(), "/root".into()),
        ("KUBERNETES_SERVICE_HOST".into(), api_host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), port.clone()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.clone()),
        ("KUBERNETES_PORT".into(), format!("tcp://{api_host}:{port}")),
    ];
    let get_secret = |name: &str| host.get(Kind::Secret, &ctx.ns, name);
    let get_cm = |name: &str| host.get(Kind::ConfigMap, &ctx.ns, name);
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

/// Where a pod's ServiceAccount credentials are mounted
/// (plugin/pkg/admission/serviceaccount: DefaultAPITokenMountPath).
pub(super) const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The pod's ServiceAccount token, the cluster CA and the namespace, as the
/// `kube-api-access-*` projected volume gives them; None when
/// `automountServiceAccountToken` is false on the pod or its account, or the
/// account is missing.
pub(super) fn service_account_dir(ctx: &PodCtx) -> Option<std::path::PathBuf> {
    if !ctx.host.mounts_service_account() {
        return None;
    }
    let pod = &ctx.pod;
    let sa_name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let sa = ctx.host.get(Kind::ServiceAccount, &ctx.ns, sa_name)?;
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or(sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return None;
    }
    let dir = ctx.dir.join("serviceaccount");
    if !dir.join("token").exists() {
        std::fs::create_dir_all(&dir).ok()?;
        let token = ctx
            .host
            .service_account_token(pod, sa_name, None, None)
            .ok()?;
        std::fs::write(dir.join("token"), token).ok()?;
        std::fs::write(dir.join("ca.crt"), ctx.host.ca_pem()).ok()?;
        std::fs::write(dir.join("namespace"), &ctx.ns).ok()?;
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn expansion() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(super::expand("$(A)-$(B)-$$(A)", &env), "1-$(B)-$(A)");
    }
}
