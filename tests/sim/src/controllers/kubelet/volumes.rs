//! Pod volumes: emptyDir, hostPath, and Secret, ConfigMap, projected
//! (ServiceAccount token, ConfigMap, Secret, downward API) and downward API
//! volumes written like the kubelet's atomic writer.

use super::{Kind, PodCtx};
use crate::api::b64_decode;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub(super) struct Volume {
    pub name: String,
    pub dir: PathBuf,
    pub read_only: bool,
}

/// The payload of a projected volume: (relative path, data, mode).
type Payload = Vec<(String, Vec<u8>, u32)>;

/// Which keys land where: `items` (key, path, mode) or every key under its
/// own name with `defaultMode`. Follows pkg/volume/configmap/configmap.go
/// and pkg/volume/secret/secret.go (MakePayload): an item whose key is
/// missing fails the mount unless the source is optional.
fn payload(
    entries: &[(String, Vec<u8>)],
    items: Option<&Vec<Value>>,
    default_mode: u32,
    optional: bool,
    kind: &str,
) -> Result<Payload, String> {
    let Some(items) = items else {
        return Ok(entries
            .iter()
            .map(|(k, d)| (k.clone(), d.clone(), default_mode))
            .collect());
    };
    let mut out = vec![];
    for it in items {
        let k = it["key"].as_str().unwrap_or("");
        match entries.iter().find(|(ek, _)| ek == k) {
            Some((_, data)) => out.push((
                it["path"].as_str().unwrap_or(k).to_string(),
                data.clone(),
                it["mode"]
                    .as_u64()
                    .map(|m| m as u32)
                    .unwrap_or(default_mode),
            )),
            None if optional => {}
            None if kind == "secret" => {
                return Err(format!("references non-existent secret key: {k}"))
            }
            None => return Err(format!("configmap references non-existent config key: {k}")),
        }
    }
    Ok(out)
}

const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";

/// Project `files` into `dir` the way the kubelet's atomic writer does
/// (pkg/volume/util/atomic_writer.go, Write): the data lives in a fresh
/// `..<UTC timestamp>.<random>` directory (mode 0755), `..data` is a
/// symlink to it (swapped atomically by renaming `..data_tmp`), and every
/// top-level user-visible path is a symlink `name -> ..data/name`. Old
/// paths and the previous timestamped directory are removed; an unchanged
/// payload is left alone.
pub(crate) fn atomic_write(dir: &Path, files: &Payload) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    for (p, _, _) in files {
        let bad = p.is_empty()
            || p.starts_with('/')
            || p.split('/').any(|c| c == "..")
            || (p.starts_with("..") && p.len() > 2);
        if bad {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid path: {p}"),
            ));
        }
    }
    let data_link = dir.join(DATA_DIR);
    let old_ts = std::fs::read_link(&data_link).ok();
    if let Some(old) = &old_ts {
        let unchanged = files
            .iter()
            .all(|(p, data, _)| std::fs::read(dir.join(old).join(p)).is_ok_and(|d| d == *data));
        let old_top: std::collections::BTreeSet<String> = std::fs::read_dir(dir.join(old))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        if unchanged && old_top == top_level(files) {
            return Ok(());
        }
    }
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.")
        .to_string();
    let ts_dir = tempfile::Builder::new()
        .prefix(&stamp)
        .tempdir_in(dir)?
        .keep();
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    for (p, data, mode) in files {
        let full = ts_dir.join(p);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&full, data)?;
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode))?;
    }
    for name in top_level(files) {
        let visible = dir.join(&name);
        if std::fs::symlink_metadata(&visible).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(&name), &visible)?;
        }
    }
    let tmp_link = dir.join(NEW_DATA_DIR);
    let _ = std::fs::remove_file(&tmp_link);
    let ts_name = ts_dir.file_name().unwrap_or_default();
    std::os::unix::fs::symlink(ts_name, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    if let Some(old) = old_ts {
        let keep = top_level(files);
        for e in std::fs::read_dir(dir)?.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if !n.starts_with("..") && !keep.contains(&n) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn top_level(files: &Payload) -> std::collections::BTreeSet<String> {
    files
        .iter()
        .map(|(p, _, _)| p.split('/').next().unwrap_or("").to_string())
        .collect()
}

/// A volume made of an object's keys (a Secret or a ConfigMap): its source,
/// the field naming the object, the object's kind and how to read its keys.
type KeyVolume<'a> = (
    &'a Value,
    &'static str,
    Kind,
    fn(&Value) -> Vec<(String, Vec<u8>)>,
);

fn key_volume(volume: &Value) -> Option<KeyVolume<'_>> {
    if let Some(source) = volume.get("secret") {
        // A volume names it `secretName`, a projected source `name`.
        let field = if source.get("secretName").is_some() {
            "secretName"
        } else {
            "name"
        };
        return Some((source, field, Kind::Secret, secret_entries));
    }
    let source = volume.get("configMap")?;
    Some((source, "name", Kind::ConfigMap, configmap_entries))
}

pub(super) fn secret_entries(s: &Value) -> Vec<(String, Vec<u8>)> {
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

pub(super) fn configmap_entries(cm: &Value) -> Vec<(String, Vec<u8>)> {
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

/// How often a running pod's Secret and ConfigMap volumes are re-projected
/// (the kubelet's sync period is 1 min plus its cache's TTL; shorter here).
pub(super) const RESYNC: std::time::Duration = std::time::Duration::from_secs(2);

/// Re-project the Secret, ConfigMap, projected and downward API volumes
/// whose sources exist (the atomic writer leaves unchanged payloads alone).
pub(super) fn refresh(ctx: &PodCtx) {
    let volumes = ctx.pod["spec"]["volumes"].as_array();
    // The downward API follows the pod's labels and annotations as they change.
    let follows_pod = volumes
        .into_iter()
        .flatten()
        .any(|v| v.get("projected").is_some() || v.get("downwardAPI").is_some());
    let current = follows_pod
        .then(|| ctx.host.get(Kind::Pod, &ctx.ns, &ctx.name))
        .flatten()
        .filter(|p| crate::util::uid_of(p) == ctx.uid);
    let pod = current.as_deref().unwrap_or(&ctx.pod);
    for v in volumes.into_iter().flatten() {
        let dir = ctx
            .dir
            .join("volumes")
            .join(v["name"].as_str().unwrap_or(""));
        if let Some(p) = v.get("projected") {
            if let Ok(files) = projected_payload(ctx, pod, v, p) {
                let _ = atomic_write(&dir, &files);
            }
            continue;
        }
        if let Some(d) = v.get("downwardAPI") {
            if let Ok(files) = downward_payload(pod, d, default_mode(d)) {
                let _ = atomic_write(&dir, &files);
            }
            continue;
        }
        let Some((source, object_name, kind, entries)) = key_volume(v) else {
            continue;
        };
        let oname = source[object_name].as_str().unwrap_or("");
        let Some(object) = ctx.host.get(kind, &ctx.ns, oname) else {
            continue;
        };
        let optional = source["optional"] == true;
        if let Ok(files) = payload(
            &entries(&object),
            source["items"].as_array(),
            default_mode(source),
            optional,
            kind_word(kind),
        ) {
            let _ = atomic_write(&dir, &files);
        }
    }
}

/// A volume source's `defaultMode` (0644 when unset, as defaulted).
fn default_mode(source: &Value) -> u32 {
    source["defaultMode"].as_u64().unwrap_or(0o644) as u32
}

fn kind_word(kind: Kind) -> &'static str {
    if kind == Kind::Secret {
        "secret"
    } else {
        "configmap"
    }
}

/// Tokens of projected `serviceAccountToken` sources: (volume, path) →
/// (token, when fetched, lifetime).
pub(super) type TokenCache =
    std::collections::HashMap<(String, String), (String, std::time::Instant, std::time::Duration)>;

/// The token a projected source carries, fetched again once 80% of its
/// lifetime passed or after 24 h (pkg/kubelet/token/token_manager.go,
/// requiresRefresh).
fn projected_token(ctx: &PodCtx, pod: &Value, volume: &str, t: &Value) -> Result<String, String> {
    use std::time::{Duration, Instant};
    let path = t["path"].as_str().unwrap_or("token").to_string();
    let key = (volume.to_string(), path);
    if let Some((token, at, ttl)) = super::lock(&ctx.tokens).get(&key) {
        let age = at.elapsed();
        if age < ttl.mul_f64(0.8) && age < Duration::from_secs(24 * 3600) {
            return Ok(token.clone());
        }
    }
    let expiration = t["expirationSeconds"].as_i64();
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let token = ctx.host.service_account_token(
        pod,
        sa,
        t["audience"].as_str().filter(|a| !a.is_empty()),
        expiration,
    )?;
    let ttl = Duration::from_secs(expiration.unwrap_or(3600).max(600) as u64);
    super::lock(&ctx.tokens).insert(key, (token.clone(), Instant::now(), ttl));
    Ok(token)
}

/// A `projected` volume's payload: its sources' files together, each with
/// the volume's `defaultMode` unless an item sets a mode
/// (pkg/volume/projected/projected.go, collectData).
fn projected_payload(
    ctx: &PodCtx,
    pod: &Value,
    volume: &Value,
    projected: &Value,
) -> Result<Payload, String> {
    let mode = default_mode(projected);
    let vname = volume["name"].as_str().unwrap_or("");
    let mut out: Payload = vec![];
    for source in projected["sources"].as_array().into_iter().flatten() {
        let files = if let Some(t) = source.get("serviceAccountToken") {
            let token = projected_token(ctx, pod, vname, t)?;
            let path = t["path"].as_str().unwrap_or("token").to_string();
            vec![(path, token.into_bytes(), mode)]
        } else if let Some(d) = source.get("downwardAPI") {
            downward_payload(pod, d, mode)?
        } else if let Some((src, object_name, kind, entries)) = key_volume(source) {
            let oname = src[object_name].as_str().unwrap_or("");
            let optional = src["optional"] == true;
            match ctx.host.get(kind, &ctx.ns, oname) {
                Some(object) => payload(
                    &entries(&object),
                    src["items"].as_array(),
                    mode,
                    optional,
                    kind_word(kind),
                )?,
                None if optional => vec![],
                None => return Err(format!("{} \"{oname}\" not found", kind_word(kind))),
            }
        } else {
            return Err("kube-sim projects serviceAccountToken, configMap, secret and downwardAPI sources only".into());
        };
        for f in files {
            out.retain(|(p, _, _)| *p != f.0);
            out.push(f);
        }
    }
    Ok(out)
}

/// A `downwardAPI` volume (or projected source): `fieldRef` items of the
/// pod's metadata, labels and annotations as `key="value"` lines
/// (pkg/volume/downwardapi/downwardapi.go CollectData,
/// pkg/fieldpath/fieldpath.go ExtractFieldPathAsString and FormatMap).
fn downward_payload(pod: &Value, source: &Value, mode: u32) -> Result<Payload, String> {
    let mut out = vec![];
    for it in source["items"].as_array().into_iter().flatten() {
        let path = it["path"].as_str().unwrap_or("").to_string();
        let mode = it["mode"].as_u64().map(|m| m as u32).unwrap_or(mode);
        let Some(fp) = it["fieldRef"]["fieldPath"].as_str() else {
            return Err(format!(
                "kube-sim's downward API projects fieldRef items only (item \"{path}\")"
            ));
        };
        let data = metadata_field(pod, fp).ok_or_else(|| format!("unsupported fieldPath: {fp}"))?;
        out.push((path, data.into_bytes(), mode));
    }
    Ok(out)
}

/// A metadata field as the downward API renders it.
pub(super) fn metadata_field(pod: &Value, fp: &str) -> Option<String> {
    let md = &pod["metadata"];
    let format_map = |m: &Value| {
        let mut kv: Vec<(&String, &str)> = m
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, v.as_str().unwrap_or("")))
            .collect();
        kv.sort();
        kv.iter()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for which in ["labels", "annotations"] {
        let base = format!("metadata.{which}");
        if fp == base {
            return Some(format_map(&md[which]));
        }
        if let Some(key) = fp
            .strip_prefix(&format!("{base}['"))
            .and_then(|k| k.strip_suffix("']"))
        {
            return Some(md[which][key].as_str().unwrap_or("").to_string());
        }
    }
    let field = match fp {
        "metadata.name" => "name",
        "metadata.namespace" => "namespace",
        "metadata.uid" => "uid",
        _ => return None,
    };
    Some(md[field].as_str().unwrap_or("").to_string())
}

/// Go's strconv.Quote for the characters labels and annotations hold.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn prepare_volumes(ctx: &PodCtx) -> Result<Vec<Volume>, String> {
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
        } else if let Some((source, object_name, kind, entries)) = key_volume(v) {
            let oname = source[object_name].as_str().unwrap_or("");
            let optional = source["optional"] == true;
            match ctx.host.get(kind, &ctx.ns, oname) {
                Some(object) => {
                    let files = payload(
                        &entries(&object),
                        source["items"].as_array(),
                        default_mode(source),
                        optional,
                        kind_word(kind),
                    )
                    .map_err(|e| fail(&e))?;
                    atomic_write(&dir, &files).map_err(|e| fail(&e.to_string()))?
                }
                // An optional source that does not exist projects nothing.
                None if optional => {
                    atomic_write(&dir, &vec![]).map_err(|e| fail(&e.to_string()))?
                }
                None => return Err(fail(&format!("{} \"{oname}\" not found", kind_word(kind)))),
            }
            out.push(Volume {
                name,
                dir,
                read_only: true,
            });
        } else if let Some(p) = v.get("projected") {
            let files = projected_payload(ctx, &ctx.pod, v, p).map_err(|e| fail(&e))?;
            atomic_write(&dir, &files).map_err(|e| fail(&e.to_string()))?;
            out.push(Volume {
                name,
                dir,
                read_only: true,
            });
        } else if let Some(d) = v.get("downwardAPI") {
            let files = downward_payload(&ctx.pod, d, default_mode(d)).map_err(|e| fail(&e))?;
            atomic_write(&dir, &files).map_err(|e| fail(&e.to_string()))?;
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
                "kube-sim supports emptyDir, secret, configMap, projected, downwardAPI and hostPath volumes only",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downward_api_renders_metadata_like_the_kubelet() {
        let pod = serde_json::json!({"metadata": {"name": "p", "namespace": "ci", "uid": "u",
            "labels": {"b": "2", "a": "say \"hi\"\n"}, "annotations": {"note": "x"}}});
        assert_eq!(
            metadata_field(&pod, "metadata.labels").unwrap(),
            "a=\"say \\\"hi\\\"\\n\"\nb=\"2\""
        );
        assert_eq!(metadata_field(&pod, "metadata.labels['b']").unwrap(), "2");
        assert_eq!(
            metadata_field(&pod, "metadata.annotations['note']").unwrap(),
            "x"
        );
        assert_eq!(metadata_field(&pod, "metadata.namespace").unwrap(), "ci");
        assert_eq!(metadata_field(&pod, "metadata.labels['none']").unwrap(), "");
        assert!(metadata_field(&pod, "status.podIP").is_none());
        let items = serde_json::json!({"items": [
            {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
            {"path": "name", "mode": 0o600, "fieldRef": {"fieldPath": "metadata.name"}},
        ]});
        let files = downward_payload(&pod, &items, 0o644).unwrap();
        assert_eq!(files[0], ("ns".to_string(), b"ci".to_vec(), 0o644));
        assert_eq!(files[1].2, 0o600);
        let cpu = serde_json::json!({"items": [{"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}]});
        assert!(downward_payload(&pod, &cpu, 0o644).is_err());
    }

    fn link(p: &Path) -> String {
        std::fs::read_link(p)
            .map(|l| l.to_string_lossy().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn atomic_writer_layout_and_updates() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let f = |p: &str, data: &str, mode: u32| (p.to_string(), data.as_bytes().to_vec(), mode);
        atomic_write(dir, &vec![f("a", "1", 0o600), f("sub/b", "2", 0o644)]).unwrap();
        let first = link(&dir.join("..data"));
        assert!(first.starts_with(".."), "{first}");
        assert_eq!(link(&dir.join("a")), "..data/a");
        assert_eq!(link(&dir.join("sub")), "..data/sub");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        let mode = std::fs::metadata(dir.join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // Unchanged: nothing rewritten.
        atomic_write(dir, &vec![f("a", "1", 0o600), f("sub/b", "2", 0o644)]).unwrap();
        assert_eq!(link(&dir.join("..data")), first);
        // Changed: a new timestamped dir, old paths and the old dir removed.
        atomic_write(dir, &vec![f("a", "3", 0o600)]).unwrap();
        let second = link(&dir.join("..data"));
        assert_ne!(second, first);
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        assert!(!dir.join("..data_tmp").exists());
        assert!(atomic_write(dir, &vec![f("../x", "", 0o644)]).is_err());
    }
}
