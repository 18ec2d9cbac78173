//! Watch streams: replay from a resourceVersion out of the bounded change
//! log, 410 Expired when it is older than the window, periodic BOOKMARKs,
//! selector transitions (ADDED/DELETED when an object starts/stops matching),
//! timeoutSeconds, and injected cuts.

use crate::api::{present, Cluster};
use crate::resources::ResDef;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::EventType;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub struct WatchParams {
    pub ns: String,
    pub from_rv: Option<u64>,
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Duration,
    pub cut_after: Option<Duration>,
    pub bookmark_interval: Duration,
    /// Some(includeObject) when the client asked for Table rows.
    pub table: Option<String>,
}

fn expired(requested: u64, oldest: u64) -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {requested} ({oldest})"), "reason": "Expired", "code": 410}})
}

fn matches(p: &WatchParams, def: &ResDef, obj: &Value) -> bool {
    if !p.ns.is_empty() && crate::util::ns_of(obj) != p.ns {
        return false;
    }
    let shaped;
    let o = if def.is_events_k8s_io() {
        shaped = present(def, obj);
        &shaped
    } else {
        obj
    };
    p.labels.as_ref().is_none_or(|l| l.matches(o)) && p.fields.as_ref().is_none_or(|f| f.matches(o))
}

fn frame(v: &Value) -> Bytes {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

fn event(def: &ResDef, p: &WatchParams, ty: &str, obj: &Value, rv: u64) -> Bytes {
    let o = present(def, obj);
    let object = match &p.table {
        Some(inc) => crate::table::table(def, &[o], inc, rv, None),
        None => o,
    };
    frame(&json!({"type": ty, "object": object}))
}

/// Stream events to `tx` until timeout, cut, shutdown, or the client leaves.
pub async fn run(
    cluster: Arc<Cluster>,
    def: Arc<ResDef>,
    p: WatchParams,
    tx: mpsc::Sender<Bytes>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let gr = def.gr();
    let mut changed = cluster.changed.subscribe();
    let mut cursor;
    {
        let initial: Vec<Bytes>;
        {
            let s = cluster.lock();
            match p.from_rv {
                Some(rv) if rv > 0 && !p.send_initial_events => {
                    let oldest = s.oldest_watchable();
                    if rv < oldest {
                        let _ = tx.try_send(frame(&expired(rv, oldest)));
                        return;
                    }
                    cursor = rv;
                    initial = vec![];
                }
                _ => {
                    cursor = s.rv;
                    initial = s
                        .list(&gr, &p.ns)
                        .iter()
                        .filter(|o| matches(&p, &def, o))
                        .map(|o| event(&def, &p, "ADDED", o, cursor))
                        .collect();
                }
            }
        }
        for b in initial {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        if p.send_initial_events && p.bookmarks {
            let b = json!({"type": "BOOKMARK", "object": {"kind": def.kind, "apiVersion": def.api_version(),
                "metadata": {"resourceVersion": cursor.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
            if tx.send(frame(&b)).await.is_err() {
                return;
            }
        }
    }
    let deadline =
        tokio::time::Instant::now() + p.cut_after.map_or(p.timeout, |c| c.min(p.timeout));
    let mut bookmark = tokio::time::interval_at(
        tokio::time::Instant::now() + p.bookmark_interval,
        p.bookmark_interval,
    );
    loop {
        // Drain everything after the cursor.
        let (frames, expired_at) = {
            let s = cluster.lock();
            let oldest = s.oldest_watchable();
            if cursor < oldest {
                (vec![], Some(oldest))
            } else {
                let mut out = vec![];
                for e in s.since(cursor) {
                    cursor = e.rv;
                    if e.gr != gr {
                        continue;
                    }
                    let now_m = e.etype != EventType::Deleted && matches(&p, &def, &e.obj);
                    let was_m = e.prev.as_ref().is_some_and(|o| matches(&p, &def, o));
                    let ty = match (e.etype, was_m, now_m) {
                        (EventType::Deleted, true, _) => "DELETED",
                        (EventType::Deleted, false, _) => continue,
                        (_, true, true) => "MODIFIED",
                        (_, false, true) => "ADDED",
                        (_, true, false) => "DELETED",
                        (_, false, false) => continue,
                    };
                    out.push(event(&def, &p, ty, &e.obj, e.rv));
                }
                cursor = cursor.max(s.rv);
                (out, None)
            }
        };
        if let Some(oldest) = expired_at {
            let _ = tx.send(frame(&expired(cursor, oldest))).await;
            return;
        }
        for f in frames {
            if tx.send(f).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = changed.changed() => { if r.is_err() { return; } }
            _ = bookmark.tick() => {
                if p.bookmarks {
                    let b = json!({"type": "BOOKMARK", "object": {"kind": def.kind, "apiVersion": def.api_version(),
                        "metadata": {"resourceVersion": cursor.to_string()}}});
                    if tx.send(frame(&b)).await.is_err() { return; }
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
            _ = shutdown.changed() => return,
        }
    }
}
