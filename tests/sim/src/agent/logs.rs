//! The kubelet's log endpoint, as the API server calls it for `pods/log`
//! (`GET https://<node>:<kubeletEndpoint.Port>/containerLogs/NS/POD/CONTAINER`
//! with `tailLines`, `follow`, `previous`; pkg/kubelet/server/server.go,
//! getContainerLogs). HTTPS with a self-signed certificate: the API server
//! verifies a kubelet's certificate only when given
//! `--kubelet-certificate-authority` (pkg/kubelet/client/kubelet_client.go,
//! transportConfig), and sends no credentials it needs checked here.

use super::remote::RemoteHost;
use crate::http::Body;
use crate::podlogs::{container_running, log_response, waiting_to_start};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

/// Serve until `stop` turns true.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    host: Arc<RemoteHost>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                let _ = stream.set_nodelay(true);
                let (host, acceptor) = (host.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let svc = hyper::service::service_fn(move |req| {
                        let host = host.clone();
                        async move { Ok::<_, Infallible>(handle(&host, req.uri())) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
            _ = stop.changed() => return,
        }
    }
}

fn text(code: u16, msg: impl Into<String>) -> http::Response<Body> {
    http::Response::builder()
        .status(code)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(http_body_util::Full::new(bytes::Bytes::from(msg.into())).boxed())
        .unwrap()
}

pub(crate) fn handle(host: &Arc<RemoteHost>, uri: &http::Uri) -> http::Response<Body> {
    let segs: Vec<String> = uri
        .path()
        .split('/')
        .skip(1)
        .map(|s| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        })
        .collect();
    if segs.len() == 1 && segs[0] == "healthz" {
        return text(200, "ok");
    }
    if segs.len() != 4 || segs[0] != "containerLogs" {
        return text(404, "404 page not found");
    }
    let (ns, name, container) = (segs[1].clone(), segs[2].clone(), segs[3].clone());
    let mut q: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    // The older `tail` parameter ("all": everything).
    if let Some(t) = q.remove("tail") {
        if t != "all" {
            q.insert("tailLines".into(), t);
        }
    }
    let Some(pod) = host.cached_pod(&ns, &name) else {
        return text(404, format!("pod {name:?} does not exist"));
    };
    let known = ["containers", "initContainers"].iter().any(|k| {
        pod["spec"][k]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == container.as_str())
    });
    if !known {
        return text(
            404,
            format!("container {container:?} not found in pod {name:?}"),
        );
    }
    let Some(path) = host.state.log_path(&ns, &name, &container) else {
        return text(400, waiting_to_start(&pod, &container));
    };
    let h = host.clone();
    let running = move || {
        h.cached_pod(&ns, &name)
            .is_some_and(|p| container_running(&p, &container))
    };
    log_response(path, &q, running)
}
