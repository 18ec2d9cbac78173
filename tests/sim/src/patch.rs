//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! strategic merge patch for the built-in types, with the list merge keys and
//! `$patch` / `$setElementOrder` / `$retainKeys` / `$deleteFromPrimitiveList`
//! directives kubectl sends.

use crate::error::{ApiError, ApiResult};
use serde_json::{Map, Value};

/// How a list field merges. Built-ins follow their Go struct tags; custom
/// resources follow `x-kubernetes-list-type` / `x-kubernetes-list-map-keys`.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    Atomic,
    Map(Vec<String>),
    Set,
}

/// patchMergeKey tags of the built-in types the operator and kubectl patch.
pub fn builtin_list_kind(field: &str) -> ListKind {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "secrets" => ListKind::Map(vec!["name".into()]),
        "volumeMounts" => ListKind::Map(vec!["mountPath".into()]),
        "volumeDevices" => ListKind::Map(vec!["devicePath".into()]),
        "ports" => ListKind::Map(vec!["containerPort".into(), "protocol".into()]),
        "conditions" => ListKind::Map(vec!["type".into()]),
        "ownerReferences" => ListKind::Map(vec!["uid".into()]),
        "hostAliases" => ListKind::Map(vec!["ip".into()]),
        "topologySpreadConstraints" => {
            ListKind::Map(vec!["topologyKey".into(), "whenUnsatisfiable".into()])
        }
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The list kind declared by a structural schema node (of the list itself).
pub fn schema_list_kind(schema: Option<&Value>, field: &str) -> ListKind {
    match schema {
        Some(s) => match s["x-kubernetes-list-type"].as_str() {
            Some("map") => ListKind::Map(
                s["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect(),
            ),
            Some("set") => ListKind::Set,
            Some(_) => ListKind::Atomic,
            // metadata lists have their built-in semantics even in CRs.
            None if field == "ownerReferences" || field == "finalizers" => builtin_list_kind(field),
            None => ListKind::Atomic,
        },
        None => builtin_list_kind(field),
    }
}

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

pub fn json_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    let p: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &p).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

fn key_of(item: &Value, keys: &[String]) -> Option<Vec<Value>> {
    let o = item.as_object()?;
    Some(
        keys.iter()
            .map(|k| o.get(k).cloned().unwrap_or(Value::Null))
            .collect(),
    )
}

/// Strategic merge patch. Returns Ok(false) when the patch deletes the target.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> ApiResult<()> {
    if let (Some(_), Some(p)) = (target.as_object(), patch.as_object()) {
        if !smp_map(target, p, "")? {
            *target = Value::Object(Map::new());
        }
        Ok(())
    } else {
        *target = patch.clone();
        Ok(())
    }
}

/// Returns false when a `$patch: delete` removes the whole map.
fn smp_map(target: &mut Value, patch: &Map<String, Value>, _field: &str) -> ApiResult<bool> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(false),
        Some("replace") => {
            let mut p = patch.clone();
            p.remove("$patch");
            *target = Value::Object(p);
            return Ok(true);
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other} in map"
            )))
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        let t = target.as_object_mut().unwrap();
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(del)) =
                (t.get_mut(field).and_then(Value::as_array_mut), v.as_array())
            {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Object(pm) => {
                let slot = t.entry(k.clone()).or_insert(Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if !smp_map(slot, pm, k)? {
                    t.remove(k);
                }
            }
            Value::Array(items) => {
                let merged = smp_list(t.get(k), items, k)?;
                t.insert(k.clone(), merged);
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target
            .as_object_mut()
            .unwrap()
            .retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(true)
}

fn smp_list(live: Option<&Value>, items: &[Value], field: &str) -> ApiResult<Value> {
    let live_items = live.and_then(Value::as_array).cloned().unwrap_or_default();
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    match builtin_list_kind(field) {
        ListKind::Atomic => Ok(Value::Array(items.to_vec())),
        ListKind::Set => {
            let mut out = live_items;
            for i in items {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
            Ok(Value::Array(out))
        }
        ListKind::Map(keys) => {
            let mut out = live_items;
            for item in items {
                let Some(k) = key_of(item, &keys) else {
                    continue;
                };
                let pos = out
                    .iter()
                    .position(|o| key_of(o, &keys).as_ref() == Some(&k));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(p), true) => {
                        out.remove(p);
                    }
                    (None, true) => {}
                    (Some(p), false) => {
                        if !smp_map(&mut out[p], item.as_object().unwrap(), field)? {
                            out.remove(p);
                        }
                    }
                    (None, false) => {
                        let mut fresh = Value::Object(Map::new());
                        smp_map(&mut fresh, item.as_object().unwrap(), field)?;
                        out.push(fresh);
                    }
                }
            }
            Ok(Value::Array(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smp_merges_containers_by_name() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let p = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "z"}, {"name": "a", "$patch": "delete"}]}});
        strategic_merge(&mut t, &p).unwrap();
        assert_eq!(
            t,
            json!({"spec": {"containers": [{"name": "b", "image": "z"}]}})
        );
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let mut t = json!({"a": {"b": 1, "c": 2}});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": [1]}}));
        assert_eq!(t, json!({"a": {"c": 2, "d": [1]}}));
    }
}
