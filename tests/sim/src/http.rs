//! HTTP: routing of Kubernetes API paths onto `api::Cluster`, content
//! negotiation (JSON, Table, aggregated discovery), fault injection and the
//! request log.

use crate::api::{DeleteOpts, ListOpts, PatchType, WriteOpts};
use crate::error::ApiError;
use crate::faults::{Faults, RequestRecord};
use crate::resources::ResDef;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::Shared;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("Content-Type", "application/json")
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap()
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.status_json())
}

fn stream_response(rx: tokio::sync::mpsc::Receiver<Bytes>, content_type: &str) -> Response<Body> {
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-cache, private")
        .body(StreamBody::new(s).boxed())
        .unwrap()
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                let _ = stream.set_nodelay(true);
                let sh = shared.clone();
                tokio::spawn(async move {
                    let acceptor = sh.tls.acceptor.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let sh = sh.clone();
                        async move { Ok::<_, Infallible>(handle(sh, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new();
                    let mut first = [0u8; 1];
                    if matches!(stream.peek(&mut first).await, Ok(1) if first[0] == crate::tls::HANDSHAKE_BYTE) {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = conn.serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await;
                        }
                    } else {
                        let _ = conn.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

struct Route {
    def: Arc<ResDef>,
    ns: String,
    name: String,
    sub: String,
    watch_path: bool,
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn route(shared: &Shared, segs: &[&str]) -> Result<Option<Route>, ApiError> {
    // segs: after /api or /apis, e.g. ["v1","namespaces","ns","pods","p","log"]
    let (group, version, mut rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest.to_vec()),
        ["apis", g, v, rest @ ..] => (*g, *v, rest.to_vec()),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let mut watch_path = false;
    if rest[0] == "watch" {
        watch_path = true;
        rest.remove(0);
    }
    let reg = shared.cluster.registry();
    let find = |p: &str| reg.find(group, version, p);
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    if rest.len() >= 3 && rest[0] == "namespaces" {
        if let Some(def) = find(rest[2]).filter(|d| d.namespaced) {
            return Ok(Some(Route {
                def,
                ns: rest[1].to_string(),
                name: rest.get(3).unwrap_or(&"").to_string(),
                sub: rest.get(4).unwrap_or(&"").to_string(),
                watch_path,
            }));
        }
    }
    let def = find(rest[0]).ok_or_else(not_found)?;
    Ok(Some(Route {
        def,
        ns: String::new(),
        name: rest.get(1).unwrap_or(&"").to_string(),
        sub: rest.get(2).unwrap_or(&"").to_string(),
        watch_path,
    }))
}

/// Media types the real server accepts for custom resources (no protobuf).
const CR_MEDIA_TYPES: &str = "application/json, application/yaml";

/// A create/update body in the request's Content-Type. Follows
/// apiserver's endpoints/handlers/negotiation (NegotiateInputSerializer):
/// protobuf is a built-in kinds' format only, so custom resources answer 415.
fn parse_typed_body(def: &ResDef, ctype: &str, b: &[u8]) -> Result<Value, ApiError> {
    let media = ctype.split(';').next().unwrap_or("").trim();
    if media != crate::protobuf::CONTENT_TYPE {
        return parse_body(b);
    }
    if def.is_crd {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {CR_MEDIA_TYPES}"),
        ));
    }
    crate::protobuf::decode(b)
        .map(|d| d.object)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The response format the Accept header asks for: the first listed media
/// type the server can produce for this kind (apiserver's
/// negotiation.NegotiateOutputMediaType); 406 when there is none.
fn wants_protobuf(def: &ResDef, accept: &str) -> Result<bool, ApiError> {
    if accept.trim().is_empty() {
        return Ok(false);
    }
    for part in accept.split(',') {
        let mut it = part.split(';').map(str::trim);
        let media = it.next().unwrap_or("");
        let params: Vec<&str> = it.filter(|p| !p.starts_with("q=")).collect();
        match media {
            "application/json" | "application/yaml" | "*/*" | "application/*" => return Ok(false),
            m if m == crate::protobuf::CONTENT_TYPE && params.is_empty() && !def.is_crd => {
                return Ok(true)
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        format!(
            "only the following media types are accepted: {}",
            if def.is_crd {
                CR_MEDIA_TYPES.to_string()
            } else {
                format!("{CR_MEDIA_TYPES}, {}", crate::protobuf::CONTENT_TYPE)
            }
        ),
    ))
}

/// An object (or list) in the negotiated format.
fn object_response(
    code: u16,
    v: &Value,
    def: &ResDef,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    if wants_protobuf(def, accept)? {
        if let Some(b) = crate::protobuf::encode(v) {
            return Ok(Response::builder()
                .status(code)
                .header("Content-Type", crate::protobuf::CONTENT_TYPE)
                .body(full(b))
                .unwrap());
        }
    }
    Ok(json_response(code, v))
}

fn parse_body(b: &[u8]) -> Result<Value, ApiError> {
    if b.iter().all(|c| c.is_ascii_whitespace()) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(b)
        .or_else(|_| serde_yaml_ng::from_slice::<Value>(b))
        .map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
}

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = parse_query(req.uri().query());
    let ua = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut rec = RequestRecord {
        verb: method.as_str().to_lowercase(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        user_agent: ua.clone(),
        code: 200,
        path: path.clone(),
        patch_type: String::new(),
        user: None,
    };
    match crate::auth::gate(&shared, &method, &path, &q, req.headers()) {
        Ok(u) => rec.user = Some(u),
        Err(e) => return finish(&shared, rec, error_response(&e)),
    }
    let resp = match segs.as_slice() {
        ["version"] => json_response(200, &crate::discovery::version()),
        ["healthz"] | ["livez"] | ["readyz"] => Response::builder()
            .status(200)
            .header("Content-Type", "text/plain")
            .body(full("ok"))
            .unwrap(),
        ["api"] | ["apis"] => {
            let core = segs[0] == "api";
            let reg = shared.cluster.registry();
            if accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2;") {
                let v = crate::discovery::aggregated(&reg, core);
                Response::builder()
                    .status(200)
                    .header("Content-Type", crate::discovery::AGGREGATED_CT)
                    .body(full(serde_json::to_vec(&v).unwrap()))
                    .unwrap()
            } else if core {
                json_response(
                    200,
                    &crate::discovery::api_versions(&format!("127.0.0.1:{}", shared.port())),
                )
            } else {
                json_response(200, &crate::discovery::group_list(&reg))
            }
        }
        ["openapi", "v3"] => json_response(200, &crate::openapi::root(&shared.cluster.registry())),
        ["openapi", "v3", "api", v] => openapi_gv(&shared, "", v),
        ["openapi", "v3", "apis", g, v] => openapi_gv(&shared, g, v),
        ["api", v] => discovery_gv(&shared, "", v),
        ["apis", g] => {
            let reg = shared.cluster.registry();
            match reg.groups().into_iter().find(|x| x.0 == *g) {
                Some((g, vs, pref)) => json_response(
                    200,
                    &json!({"kind": "APIGroup", "apiVersion": "v1", "name": g,
                    "versions": vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
                    "preferredVersion": {"groupVersion": format!("{g}/{pref}"), "version": pref}}),
                ),
                None => error_response(&ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )),
            }
        }
        ["apis", g, v] => discovery_gv(&shared, g, v),
        ["kube-sim", ..] => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::new(),
            };
            match crate::admin::handle(&shared, &method, &segs[1..], &body) {
                Ok(v) => json_response(200, &v),
                Err(e) => error_response(&e),
            }
        }
        _ => match route(&shared, &segs) {
            Ok(Some(r)) => {
                let body = match req.into_body().collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => Bytes::new(),
                };
                resource(&shared, r, method, &q, &accept, &ctype, &ua, body, &mut rec).await
            }
            Ok(None) => error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
            Err(e) => error_response(&e),
        },
    };
    finish(&shared, rec, resp)
}

fn finish(shared: &Shared, mut rec: RequestRecord, resp: Response<Body>) -> Response<Body> {
    rec.code = resp.status().as_u16();
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(rec);
    resp
}

fn openapi_gv(shared: &Shared, g: &str, v: &str) -> Response<Body> {
    match crate::openapi::group_version(&shared.cluster.registry(), g, v) {
        Some(d) => json_response(200, &d),
        None => error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

fn discovery_gv(shared: &Shared, g: &str, v: &str) -> Response<Body> {
    match crate::discovery::resource_list(&shared.cluster.registry(), g, v) {
        Some(l) => json_response(200, &l),
        None => error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

fn verb_of(method: &Method, r: &Route, q: &HashMap<String, String>) -> &'static str {
    let watch =
        r.watch_path || matches!(q.get("watch").map(String::as_str), Some("1") | Some("true"));
    match (method, r.name.is_empty()) {
        (&Method::GET, true) if watch => "watch",
        (&Method::GET, true) => "list",
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "deletecollection",
        (&Method::DELETE, false) => "delete",
        _ => "unknown",
    }
}

fn list_opts(q: &HashMap<String, String>) -> Result<ListOpts, ApiError> {
    Ok(ListOpts {
        labels: q
            .get("labelSelector")
            .filter(|s| !s.is_empty())
            .map(|s| LabelSelector::parse(s))
            .transpose()?,
        fields: q
            .get("fieldSelector")
            .filter(|s| !s.is_empty())
            .map(|s| FieldSelector::parse(s))
            .transpose()?,
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        continue_token: q.get("continue").filter(|s| !s.is_empty()).cloned(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    shared: &Arc<Shared>,
    r: Route,
    method: Method,
    q: &HashMap<String, String>,
    accept: &str,
    ctype: &str,
    ua: &str,
    body: Bytes,
    rec: &mut RequestRecord,
) -> Response<Body> {
    let verb = verb_of(&method, &r, q);
    rec.verb = verb.into();
    rec.group = r.def.group.clone();
    rec.version = r.def.version.clone();
    rec.resource = r.def.plural.clone();
    rec.subresource = r.sub.clone();
    rec.namespace = r.ns.clone();
    rec.name = r.name.clone();
    let mut faults = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !faults.applies_to(ua) {
        faults = Faults::default();
    }
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.error_rate > 0.0 && shared.fault_rng.unit() < faults.error_rate {
        let code = match faults.error_code {
            0 => {
                if shared.fault_rng.unit() < 0.5 {
                    500
                } else {
                    429
                }
            }
            c => c,
        };
        return if code == 429 {
            let e = ApiError::new(429, "TooManyRequests", "the server has received too many requests and has asked us to try again later (injected)")
                .with_details(json!({"retryAfterSeconds": faults.retry_after_seconds}));
            let mut resp = error_response(&e);
            resp.headers_mut().insert(
                "Retry-After",
                faults.retry_after_seconds.to_string().parse().unwrap(),
            );
            resp
        } else {
            error_response(&ApiError::new(
                code,
                "InternalError",
                "Internal error occurred: injected fault",
            ))
        };
    }
    if faults.conflict_rate > 0.0
        && matches!(verb, "update" | "patch")
        && (!faults.conflicts_status_only || r.sub == "status")
        && shared.fault_rng.unit() < faults.conflict_rate
    {
        return error_response(&ApiError::conflict(&r.def.group, &r.def.plural, &r.name));
    }
    match serve_resource(
        shared,
        &r,
        verb,
        q,
        accept,
        ctype,
        ua,
        body,
        faults.watch_cut_after,
        rec,
    )
    .await
    {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_resource(
    shared: &Arc<Shared>,
    r: &Route,
    verb: &str,
    q: &HashMap<String, String>,
    accept: &str,
    ctype: &str,
    ua: &str,
    body: Bytes,
    cut: Option<Duration>,
    rec: &mut RequestRecord,
) -> Result<Response<Body>, ApiError> {
    let c = &shared.cluster;
    let def = &r.def;
    let table = accept.contains("as=Table");
    let include = q
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    let wopts = WriteOpts {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
        field_manager: q.get("fieldManager").cloned(),
        force: q.get("force").is_some_and(|f| f == "true"),
        user_agent: ua.into(),
        strict: q.get("fieldValidation").is_some_and(|f| f == "Strict"),
        user: rec.user.clone(),
    };
    let user = rec.user.clone().unwrap_or_default();
    if let Some(o) = crate::auth::endpoints::serve(
        shared,
        def,
        &r.ns,
        &r.name,
        &r.sub,
        verb,
        || parse_typed_body(def, ctype, &body),
        &user,
    )? {
        return Ok(json_response(201, &o));
    }
    crate::auth::authorize_create_on_patch(shared, def, &r.ns, &r.name, &r.sub, verb, &user)?;
    let allowed_sub = |s: &str| {
        s.is_empty()
            || (s == "status" && def.status_sub)
            || (s == "log" && def.log_sub)
            || (s == "eviction" && def.plural == "pods" && def.group.is_empty())
    };
    if !allowed_sub(&r.sub) {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if def.namespaced && r.ns.is_empty() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    match verb {
        "get" if r.sub == "log" => crate::podlogs::logs(shared, &r.ns, &r.name, q).await,
        "get" => {
            let o = c.get(def, &r.ns, &r.name)?;
            if table {
                let rv = crate::util::rv_of(&o).parse().unwrap_or(0);
                return Ok(json_response(
                    200,
                    &crate::table::table(def, &[o], &include, rv, None),
                ));
            }
            object_response(200, &o, def, accept)
        }
        "list" => {
            let lo = list_opts(q)?;
            // A list at a resourceVersion older than the window is gone, as
            // with an etcd-compacted revision.
            if let Some(rv) = q.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()) {
                let exact = q.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
                let s = c.lock();
                if exact && rv > 0 && rv < s.oldest_watchable() {
                    return Err(ApiError::gone(
                        "The resourceVersion for the provided list is too old.",
                    ));
                }
            }
            let l = c.list(def, &r.ns, &lo)?;
            if table {
                return Ok(json_response(
                    200,
                    &crate::table::table(
                        def,
                        &l.items,
                        &include,
                        l.rv,
                        l.continue_token.as_deref(),
                    ),
                ));
            }
            let mut md = json!({"resourceVersion": l.rv.to_string()});
            if let Some(t) = &l.continue_token {
                md["continue"] = json!(t);
            }
            if let Some(n) = l.remaining {
                md["remainingItemCount"] = json!(n);
            }
            object_response(
                200,
                &json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": md, "items": l.items}),
                def,
                accept,
            )
        }
        "watch" => {
            let lo = list_opts(q)?;
            let mut fields = lo.fields;
            if !r.name.is_empty() {
                let f = FieldSelector::parse(&format!("metadata.name={}", r.name))?;
                fields = Some(f);
            }
            let timeout = q
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_secs(1800));
            let p = crate::watch::WatchParams {
                ns: r.ns.clone(),
                from_rv: q.get("resourceVersion").and_then(|v| v.parse().ok()),
                labels: lo.labels,
                fields,
                bookmarks: q.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
                send_initial_events: q.get("sendInitialEvents").is_some_and(|b| b == "true"),
                timeout,
                cut_after: cut,
                bookmark_interval: shared.bookmark_interval,
                table: if table { Some(include) } else { None },
            };
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            tokio::spawn(crate::watch::run(
                c.clone(),
                def.clone(),
                p,
                tx,
                shared.shutdown.subscribe(),
            ));
            Ok(stream_response(rx, "application/json"))
        }
        "create" if r.sub == "eviction" => {
            let status = crate::disruption::evict(shared, &r.ns, &r.name, &parse_body(&body)?)?;
            Ok(json_response(201, &status))
        }
        "create" => {
            let obj = parse_typed_body(def, ctype, &body)?;
            let created = c.create(def, &r.ns, obj, &wopts)?;
            object_response(201, &created, def, accept)
        }
        "update" => {
            let obj = parse_typed_body(def, ctype, &body)?;
            let o = c.update(def, &r.ns, &r.name, obj, &r.sub, &wopts)?;
            object_response(200, &o, def, accept)
        }
        "patch" => {
            let ct = ctype.split(';').next().unwrap_or("").trim();
            let ptype = match ct {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchType::Apply,
                other => {
                    return Err(ApiError::new(415, "UnsupportedMediaType", format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})")))
                }
            };
            rec.patch_type = format!("{ptype:?}").to_lowercase();
            let patch = parse_body(&body)?;
            let (o, created) = c.patch(def, &r.ns, &r.name, ptype, &patch, &r.sub, &wopts)?;
            object_response(if created { 201 } else { 200 }, &o, def, accept)
        }
        "delete" => {
            let o = c.delete(def, &r.ns, &r.name, &delete_opts(q, &body))?;
            object_response(200, &o, def, accept)
        }
        "deletecollection" => {
            let lo = list_opts(q)?;
            let l = c.list(
                def,
                &r.ns,
                &ListOpts {
                    limit: None,
                    continue_token: None,
                    ..lo
                },
            )?;
            let dopts = delete_opts(q, &body);
            let mut items = vec![];
            for o in &l.items {
                if let Ok(d) = c.delete(def, crate::util::ns_of(o), crate::util::name_of(o), &dopts)
                {
                    items.push(d);
                }
            }
            Ok(json_response(
                200,
                &json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": {"resourceVersion": c.current_rv().to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn delete_opts(q: &HashMap<String, String>, body: &[u8]) -> DeleteOpts {
    let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut propagation = b["propagationPolicy"]
        .as_str()
        .map(String::from)
        .or_else(|| q.get("propagationPolicy").cloned());
    let orphan = b["orphanDependents"]
        .as_bool()
        .or_else(|| q.get("orphanDependents").map(|o| o == "true"));
    if propagation.is_none() {
        propagation = orphan.map(|o| {
            if o {
                "Orphan".to_string()
            } else {
                "Background".to_string()
            }
        });
    }
    DeleteOpts {
        propagation,
        grace_seconds: b["gracePeriodSeconds"]
            .as_i64()
            .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok())),
        precondition_uid: b["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        dry_run: b["dryRun"].as_array().is_some_and(|d| !d.is_empty())
            || q.get("dryRun").is_some_and(|d| d == "All"),
    }
}
