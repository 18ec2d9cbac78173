//! Small helpers shared by every module: time, names, JSON paths, errors.

use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// The simulated cluster's clock offset (ms) for code running on this
    /// thread: every thread of a sim's runtime points at its sim's value.
    static CLOCK_OFFSET: std::cell::RefCell<Option<std::sync::Arc<std::sync::atomic::AtomicI64>>> =
        const { std::cell::RefCell::new(None) };
}

/// Make `now()` on this thread follow `offset` (milliseconds).
pub fn bind_clock(offset: std::sync::Arc<std::sync::atomic::AtomicI64>) {
    CLOCK_OFFSET.with(|c| *c.borrow_mut() = Some(offset));
}

/// Undo `bind_clock` on this thread.
pub fn unbind_clock() {
    CLOCK_OFFSET.with(|c| *c.borrow_mut() = None);
}

/// The cluster's clock: the host's plus the sim's clock offset, so the times
/// the API server and its controllers write can lag or lead the clients'.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let ms = CLOCK_OFFSET.with(|c| {
        c.borrow()
            .as_ref()
            .map(|o| o.load(Ordering::Relaxed))
            .unwrap_or(0)
    });
    chrono::Utc::now() + chrono::Duration::milliseconds(ms)
}

/// RFC 3339 timestamp with second precision, as metav1.Time serialises.
pub fn now_rfc3339() -> String {
    now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// metav1.MicroTime, as events.k8s.io uses for eventTime.
pub fn now_micro() -> String {
    now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// apimachinery's duration.HumanDuration, so ages print like a real cluster.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    let (m, h) = (secs / 60, secs / 3600);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        let hh = h % 24;
        if hh == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{hh}h", h / 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        let d = (h / 24) % 365;
        if d == 0 {
            format!("{}y", h / 24 / 365)
        } else {
            format!("{}y{d}d", h / 24 / 365)
        }
    } else {
        format!("{}y", h / 24 / 365)
    }
}

pub fn age_of(ts: Option<&str>) -> String {
    match ts.and_then(parse_time) {
        Some(t) => human_duration((now() - t).num_seconds()),
        None => "<unknown>".into(),
    }
}

/// Deterministic, seedable RNG (splitmix64): reproducible fault injection and names.
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(AtomicU64::new(seed))
    }
    pub fn reseed(&self, seed: u64) {
        self.0.store(seed, Ordering::Relaxed);
    }
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// k8s.io/apimachinery/pkg/util/rand.String: no vowels, no confusable digits.
    pub fn name_suffix(&self, n: usize) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..n)
            .map(|_| ALPHA[(self.next_u64() % ALPHA.len() as u64) as usize] as char)
            .collect()
    }
    pub fn uuid(&self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        let h = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }
}

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get_path(v, path).and_then(Value::as_str)
}

pub fn get_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    Some(cur)
}

/// Mutable access creating intermediate objects.
pub fn ensure_obj<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = v;
    for p in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(p.to_string())
            .or_insert_with(|| json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    cur.as_object_mut().unwrap()
}

pub fn meta(v: &Value) -> &Value {
    v.get("metadata").unwrap_or(&Value::Null)
}
pub fn name_of(v: &Value) -> &str {
    str_at(v, &["metadata", "name"]).unwrap_or("")
}
pub fn ns_of(v: &Value) -> &str {
    str_at(v, &["metadata", "namespace"]).unwrap_or("")
}
pub fn uid_of(v: &Value) -> &str {
    str_at(v, &["metadata", "uid"]).unwrap_or("")
}
pub fn rv_of(v: &Value) -> &str {
    str_at(v, &["metadata", "resourceVersion"]).unwrap_or("")
}

/// Upsert a condition by type; lastTransitionTime only moves when status changes.
pub fn set_condition(conds: &mut Vec<Value>, mut c: Value) -> bool {
    let ty = c["type"].as_str().unwrap_or("").to_string();
    let now = now_rfc3339();
    if let Some(old) = conds.iter_mut().find(|o| o["type"] == ty.as_str()) {
        let same = old["status"] == c["status"]
            && old["reason"] == c["reason"]
            && old["message"] == c["message"];
        if same {
            return false;
        }
        if old["status"] == c["status"] {
            c["lastTransitionTime"] = old["lastTransitionTime"].clone();
        } else {
            c["lastTransitionTime"] = json!(now);
        }
        if c.get("lastProbeTime").is_none() && old.get("lastProbeTime").is_some() {
            c["lastProbeTime"] = old["lastProbeTime"].clone();
        }
        *old = c;
        return true;
    }
    if c.get("lastTransitionTime").is_none() {
        c["lastTransitionTime"] = json!(now);
    }
    conds.push(c);
    true
}
