//! `GET pods/{name}/log`: a container's captured stdout+stderr as the
//! kubelet serves it (`container`, `tailLines`, `follow`, `previous`). The
//! HTTP side lives here so the kubelet does not depend on the HTTP layer.

use crate::controllers::kubelet::tail_lines;
use crate::error::ApiError;
use crate::http::Body;
use crate::Shared;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// GET pods/log: the container's captured stdout+stderr.
pub async fn logs(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<http::Response<Body>, ApiError> {
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
    let path = shared.kubelet.log_path(ns, name, &container);
    let Some(path) = path else {
        return Err(ApiError::bad_request(waiting_to_start(&pod, &container)));
    };
    let sh = shared.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    let running = move || {
        sh.cluster
            .lock()
            .get("/pods", &ns, &name)
            .is_some_and(|p| container_running(&p, &container))
    };
    Ok(log_response(path, q, running))
}

/// The kubelet's answer for a container that has no log yet
/// (pkg/kubelet/kubelet_pods.go, validateContainerLogStatus).
pub(crate) fn waiting_to_start(pod: &serde_json::Value, container: &str) -> String {
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
        .find(|c| c["name"] == container)
        .and_then(|c| c["state"]["waiting"]["reason"].as_str())
        .unwrap_or("ContainerCreating");
    let name = crate::util::name_of(pod);
    format!("container \"{container}\" in pod \"{name}\" is waiting to start: {reason}")
}

/// Whether a pod's status shows the container not terminated.
pub(crate) fn container_running(pod: &serde_json::Value, container: &str) -> bool {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["status"]["initContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .any(|c| c["name"] == container && c["state"]["terminated"].is_null())
}

/// A container's log file as the kubelet serves it (pkg/kubelet/server,
/// getContainerLogs): `previous`, `tailLines`, and `follow`, which streams
/// what the container writes while `running()` holds.
pub(crate) fn log_response(
    mut path: std::path::PathBuf,
    q: &HashMap<String, String>,
    running: impl Fn() -> bool + Send + 'static,
) -> http::Response<Body> {
    use http_body_util::BodyExt;
    if q.get("previous").is_some_and(|p| p == "true") {
        let container = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        path = path.with_file_name(format!("{container}.previous.log"));
    }
    let data = std::fs::read_to_string(&path).unwrap_or_default();
    let data = match q.get("tailLines").and_then(|t| t.parse::<usize>().ok()) {
        Some(n) => tail_lines(&data, n),
        None => data,
    };
    let follow = q.get("follow").is_some_and(|f| f == "true");
    if !follow {
        return http::Response::builder()
            .status(200)
            .header("Content-Type", "text/plain")
            .body(http_body_util::Full::new(bytes::Bytes::from(data)).boxed())
            .unwrap();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let already = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    tokio::spawn(async move {
        if tx.send(bytes::Bytes::from(data)).await.is_err() {
            return;
        }
        let mut pos = already;
        loop {
            let running = running();
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
    http::Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .body(http_body_util::StreamBody::new(s).boxed())
        .unwrap()
}
