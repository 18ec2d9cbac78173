//! `application/vnd.kubernetes.protobuf` bodies for the built-in kinds.
//!
//! The envelope follows apimachinery's
//! pkg/runtime/serializer/protobuf/protobuf.go: the 4-byte magic `k8s\0`
//! then a `runtime.Unknown` (typeMeta, raw, contentEncoding, contentType)
//! whose `raw` is the object's own message. The store keeps JSON, so
//! messages are converted to and from JSON by walking a field table
//! (`fields.txt`, generated from k8s-pb's prost types and k8s-openapi's JSON
//! names by `scripts/gen-proto-table.py`) instead of per-kind code. The JSON
//! specials are the ones apimachinery's types implement by hand: Quantity
//! and the Time types are strings, IntOrString is an int or a string,
//! RawExtension and FieldsV1 embed JSON, `bytes` fields are base64.

mod table;
mod wire;

use crate::api::{b64, b64_decode};
use serde_json::{json, Map, Value};
pub use table::{message_for, Field, Kind, Label};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// Prefix of every protobuf body (protobuf.go: protoEncodingPrefix).
const MAGIC: &[u8; 4] = b"k8s\0";

const QUANTITY: &str = "apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "apimachinery.pkg.util.intstr.IntOrString";
const TIME: &str = "apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "apimachinery.pkg.runtime.RawExtension";
const UNKNOWN: &str = "apimachinery.pkg.runtime.Unknown";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    NoMagic,
    #[error("{0}")]
    Wire(String),
    #[error("no kind \"{kind}\" is registered for version \"{api_version}\"")]
    UnknownKind { api_version: String, kind: String },
}

/// A decoded request body: its type and the object as JSON.
pub struct Decoded {
    pub api_version: String,
    pub kind: String,
    pub object: Value,
}

/// Decode a `k8s\0` + runtime.Unknown body into JSON.
pub fn decode(body: &[u8]) -> Result<Decoded, Error> {
    let raw = body.strip_prefix(MAGIC).ok_or(Error::NoMagic)?;
    let unknown = to_json(UNKNOWN, raw)?;
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let msg = message_for(&api_version, &kind).ok_or_else(|| Error::UnknownKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let inner = b64_decode(unknown["raw"].as_str().unwrap_or("")).unwrap_or_default();
    let mut object = to_json(msg, &inner)?;
    if let Some(m) = object.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(Decoded {
        api_version,
        kind,
        object,
    })
}

/// Encode a JSON object (its `apiVersion` and `kind` choose the message) as
/// a `k8s\0` + runtime.Unknown body. None when the kind has no message.
pub fn encode(obj: &Value) -> Option<Vec<u8>> {
    let api_version = obj["apiVersion"].as_str()?;
    let kind = obj["kind"].as_str()?;
    let msg = message_for(api_version, kind)?;
    let raw = from_json(msg, obj);
    let unknown = json!({
        "typeMeta": {"apiVersion": api_version, "kind": kind},
        "raw": b64(&raw),
        "contentEncoding": "",
        "contentType": "",
    });
    let mut out = MAGIC.to_vec();
    out.extend(from_json(UNKNOWN, &unknown));
    Some(out)
}

/// Whether objects of this apiVersion/kind can be served as protobuf.
pub fn supports(api_version: &str, kind: &str) -> bool {
    message_for(api_version, kind).is_some()
}

/// Decode one message into JSON.
pub fn to_json(msg: &str, data: &[u8]) -> Result<Value, Error> {
    match msg {
        QUANTITY => {
            let m = decode_plain(msg, data)?;
            return Ok(m.get("string").cloned().unwrap_or(json!("0")));
        }
        INT_OR_STRING => {
            let m = decode_plain(msg, data)?;
            return Ok(if m.get("type").and_then(Value::as_i64) == Some(1) {
                m.get("strVal").cloned().unwrap_or(json!(""))
            } else {
                m.get("intVal").cloned().unwrap_or(json!(0))
            });
        }
        TIME | MICRO_TIME => {
            let m = decode_plain(msg, data)?;
            let secs = m.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            let nanos = m.get("nanos").and_then(Value::as_i64).unwrap_or(0);
            if secs == 0 && nanos == 0 {
                return Ok(Value::Null);
            }
            let t = chrono::DateTime::from_timestamp(secs, nanos as u32).unwrap_or_default();
            let fmt = if msg == TIME {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            };
            return Ok(json!(t.format(fmt).to_string()));
        }
        DURATION => {
            let m = decode_plain(msg, data)?;
            let ns = m.get("duration").and_then(Value::as_i64).unwrap_or(0);
            return Ok(json!(go_duration(ns)));
        }
        FIELDS_V1 | RAW_EXTENSION => {
            let m = decode_plain(msg, data)?;
            let raw = b64_decode(
                m.get("Raw")
                    .or(m.get("raw"))
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )
            .unwrap_or_default();
            return Ok(serde_json::from_slice(&raw).unwrap_or(Value::Null));
        }
        _ => {}
    }
    Ok(Value::Object(decode_plain(msg, data)?))
}

fn decode_plain(msg: &str, data: &[u8]) -> Result<Map<String, Value>, Error> {
    let fields = table::fields(msg);
    let mut out = Map::new();
    let mut r = wire::Reader::new(data);
    while let Some((tag, value)) = r.next_field().map_err(Error::Wire)? {
        let Some(f) = fields.iter().find(|f| f.tag == tag) else {
            continue; // Unknown fields are dropped, as gogo-protobuf does.
        };
        let v = match (&f.kind, &value) {
            (Kind::Map(vk), wire::Value::Bytes(b)) => {
                let (k, v) = decode_map_entry(vk, f.message.as_deref(), b)?;
                let m = out
                    .entry(f.json.clone())
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("map field");
                m.insert(k, v);
                continue;
            }
            (Kind::Message, wire::Value::Bytes(b)) if f.label == Label::Inline => {
                if let Value::Object(inner) = to_json(f.message.as_deref().unwrap_or(""), b)? {
                    out.extend(inner);
                }
                continue;
            }
            _ => scalar(f, &value)?,
        };
        // A zero-valued string is how Go writes an unset non-pointer field:
        // its JSON form omits it, so the object reads the same either way.
        if v == json!("") && f.label == Label::Optional {
            continue;
        }
        if f.label == Label::Repeated {
            match out.entry(f.json.clone()).or_insert_with(|| json!([])) {
                Value::Array(a) => a.push(v),
                other => *other = json!([v]),
            }
        } else if !v.is_null() {
            out.insert(f.json.clone(), v);
        }
    }
    Ok(out)
}

fn scalar(f: &Field, v: &wire::Value) -> Result<Value, Error> {
    let bad = || Error::Wire(format!("field {} has the wrong wire type", f.json));
    Ok(match (&f.kind, v) {
        (Kind::String, wire::Value::Bytes(b)) => json!(String::from_utf8_lossy(b)),
        (Kind::Bytes, wire::Value::Bytes(b)) => json!(b64(b)),
        (Kind::Bool, wire::Value::Varint(n)) => json!(*n != 0),
        (Kind::Int32, wire::Value::Varint(n)) => json!(*n as i64 as i32),
        (Kind::Int64, wire::Value::Varint(n)) => json!(*n as i64),
        (Kind::Double, wire::Value::Fixed64(n)) => json!(f64::from_bits(*n)),
        (Kind::Message, wire::Value::Bytes(b)) => to_json(f.message.as_deref().unwrap_or(""), b)?,
        // Packed repeated scalars arrive as one length-delimited field.
        (Kind::Int32 | Kind::Int64, wire::Value::Bytes(b)) => {
            let mut r = wire::Reader::new(b);
            let mut out = vec![];
            while let Some(n) = r.varint_opt().map_err(Error::Wire)? {
                out.push(json!(n as i64));
            }
            return Ok(json!(out));
        }
        _ => return Err(bad()),
    })
}

fn decode_map_entry(vk: &Kind, msg: Option<&str>, b: &[u8]) -> Result<(String, Value), Error> {
    let mut r = wire::Reader::new(b);
    let (mut k, mut v) = (String::new(), Value::Null);
    while let Some((tag, value)) = r.next_field().map_err(Error::Wire)? {
        match (tag, value) {
            (1, wire::Value::Bytes(b)) => k = String::from_utf8_lossy(b).into_owned(),
            (2, value) => {
                let f = Field {
                    tag: 2,
                    json: k.clone(),
                    kind: vk.clone(),
                    label: Label::Optional,
                    message: msg.map(String::from),
                };
                v = scalar(&f, &value)?;
            }
            _ => {}
        }
    }
    if v.is_null() {
        v = match vk {
            Kind::String => json!(""),
            Kind::Bytes => json!(""),
            _ => Value::Null,
        };
    }
    Ok((k, v))
}

/// Encode JSON as one message. Fields the message does not have are dropped.
pub fn from_json(msg: &str, v: &Value) -> Vec<u8> {
    let mut w = wire::Writer::default();
    match msg {
        QUANTITY => {
            w.bytes(1, quantity_string(v).as_bytes());
            return w.finish();
        }
        INT_OR_STRING => {
            match v {
                Value::String(s) => {
                    w.varint(1, 1);
                    w.varint(2, 0);
                    w.bytes(3, s.as_bytes());
                }
                other => {
                    w.varint(1, 0);
                    w.varint(2, other.as_i64().unwrap_or(0) as i32 as i64 as u64);
                    w.bytes(3, b"");
                }
            }
            return w.finish();
        }
        TIME | MICRO_TIME => {
            if let Some(t) = v
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            {
                w.varint(1, t.timestamp() as u64);
                w.varint(2, t.timestamp_subsec_nanos() as u64);
            }
            return w.finish();
        }
        DURATION => {
            w.varint(1, parse_go_duration(v.as_str().unwrap_or("")) as u64);
            return w.finish();
        }
        FIELDS_V1 | RAW_EXTENSION => {
            if !v.is_null() {
                w.bytes(1, &serde_json::to_vec(v).unwrap_or_default());
            }
            return w.finish();
        }
        _ => {}
    }
    let Some(obj) = v.as_object() else {
        return w.finish();
    };
    for f in table::fields(msg) {
        if f.label == Label::Inline {
            w.bytes(f.tag, &from_json(f.message.as_deref().unwrap_or(""), v));
            continue;
        }
        let Some(fv) = obj.get(&f.json) else { continue };
        if fv.is_null() {
            continue;
        }
        match (&f.kind, f.label) {
            (Kind::Map(vk), _) => {
                for (k, val) in fv.as_object().into_iter().flatten() {
                    let mut e = wire::Writer::default();
                    e.bytes(1, k.as_bytes());
                    encode_scalar(&mut e, 2, vk, f.message.as_deref(), val);
                    w.bytes(f.tag, &e.finish());
                }
            }
            (_, Label::Repeated) => {
                for item in fv.as_array().into_iter().flatten() {
                    encode_scalar(&mut w, f.tag, &f.kind, f.message.as_deref(), item);
                }
            }
            _ => encode_scalar(&mut w, f.tag, &f.kind, f.message.as_deref(), fv),
        }
    }
    w.finish()
}

fn encode_scalar(w: &mut wire::Writer, tag: u32, kind: &Kind, msg: Option<&str>, v: &Value) {
    match kind {
        Kind::String => w.bytes(tag, v.as_str().unwrap_or("").as_bytes()),
        Kind::Bytes => w.bytes(
            tag,
            &b64_decode(v.as_str().unwrap_or("")).unwrap_or_default(),
        ),
        Kind::Bool => w.varint(tag, v.as_bool().unwrap_or(false) as u64),
        Kind::Int32 | Kind::Int64 => w.varint(tag, v.as_i64().unwrap_or(0) as u64),
        Kind::Double => w.fixed64(tag, v.as_f64().unwrap_or(0.0).to_bits()),
        Kind::Message => w.bytes(tag, &from_json(msg.unwrap_or(""), v)),
        Kind::Map(_) => {}
    }
}

fn quantity_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Go's time.Duration.String(), which metav1.Duration marshals to.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let (h, rem) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let secs = rem as f64 / 1e9;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if h > 0 {
        s += &format!("{h}h");
    }
    if h > 0 || m > 0 {
        s += &format!("{m}m");
    }
    s += &format!("{secs}s");
    s
}

fn parse_go_duration(s: &str) -> i64 {
    let re = regex::Regex::new(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)").expect("duration regex");
    let mut total = 0f64;
    for c in re.captures_iter(s) {
        let n: f64 = c[1].parse().unwrap_or(0.0);
        total += n * match &c[2] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            _ => 3600e9,
        };
    }
    if s.starts_with('-') {
        -total as i64
    } else {
        total as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_the_json_specials() {
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "ci", "labels": {"a": "b"},
                "creationTimestamp": "2025-01-02T03:04:05Z",
                "managedFields": [{"manager": "m", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox",
                    "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                    "ports": [{"containerPort": 80}],
                    "livenessProbe": {"httpGet": {"port": "http", "path": "/"}}}],
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]}}},
        });
        let body = encode(&job).unwrap();
        assert!(body.starts_with(b"k8s\0"));
        let back = decode(&body).unwrap();
        assert_eq!(back.kind, "Job");
        let o = back.object;
        assert_eq!(o["metadata"]["labels"]["a"], "b");
        assert_eq!(o["metadata"]["creationTimestamp"], "2025-01-02T03:04:05Z");
        assert_eq!(
            o["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:spec": {}})
        );
        assert_eq!(o["spec"]["backoffLimit"], 0);
        let c = &o["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
        assert_eq!(c["ports"][0]["containerPort"], 80);
        assert_eq!(
            o["spec"]["template"]["spec"]["tolerations"][0]["tolerationSeconds"],
            5
        );
    }

    #[test]
    fn secret_bytes_are_base64_in_json() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(b"{}")}});
        let o = decode(&encode(&s).unwrap()).unwrap().object;
        assert_eq!(o["data"][".dockerconfigjson"], b64(b"{}"));
        assert_eq!(o["type"], "kubernetes.io/dockerconfigjson");
    }

    #[test]
    fn refuses_a_body_without_the_magic() {
        assert!(matches!(decode(b"{}"), Err(Error::NoMagic)));
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(parse_go_duration("1h2m3s"), 3_723_000_000_000);
    }
}
