//! Server-side apply and managedFields bookkeeping, simplified: field sets are
//! computed from the objects (FieldsV1 format), appliers own what they apply,
//! updaters own what they change, and an apply that changes a field owned by
//! another manager fails with 409 unless forced.

use crate::error::ApiError;
use crate::patch::{schema_list_kind, ListKind};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

type Path = Vec<String>;
type Leaves = BTreeMap<Path, Value>;

/// The part of the object a write through `subresource` may own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// Main resource of a kind with a status subresource: everything but status.
    MainWithoutStatus,
    /// Main resource of a kind without one: everything.
    All,
    /// The status subresource: only status.
    Status,
}

fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    if let Some(p) = s.get("properties").and_then(|p| p.get(key)) {
        return Some(p);
    }
    s.get("additionalProperties").filter(|a| a.is_object())
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
    }
    format!("k:{}", Value::Object(m))
}

fn collect(v: &Value, schema: Option<&Value>, path: &mut Path, out: &mut Leaves) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let cs = child_schema(schema, k);
                path.push(format!("f:{k}"));
                match c {
                    Value::Object(cm) if !cm.is_empty() => collect(c, cs, path, out),
                    Value::Array(items) => collect_list(items, cs, k, path, out),
                    _ => {
                        out.insert(path.clone(), c.clone());
                    }
                }
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone(), v.clone());
        }
    }
}

fn collect_list(
    items: &[Value],
    schema: Option<&Value>,
    field: &str,
    path: &mut Path,
    out: &mut Leaves,
) {
    match schema_list_kind(schema, field) {
        ListKind::Atomic => {
            out.insert(path.clone(), Value::Array(items.to_vec()));
        }
        ListKind::Set => {
            for i in items {
                path.push(format!("v:{i}"));
                out.insert(path.clone(), i.clone());
                path.pop();
            }
        }
        ListKind::Map(keys) => {
            let is = schema.and_then(|s| s.get("items"));
            for i in items {
                path.push(item_key(i, &keys));
                path.push(".".into());
                out.insert(path.clone(), Value::Null);
                path.pop();
                collect(i, is, path, out);
                path.pop();
            }
        }
    }
}

/// Leaf paths (with values) of the part of `obj` that `scope` covers.
pub fn leaves(obj: &Value, schema: Option<&Value>, scope: Scope) -> Leaves {
    let mut out = Leaves::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    let mut path = vec![];
    for (k, v) in m {
        let include = match (k.as_str(), scope) {
            ("apiVersion" | "kind", _) => false,
            ("status", Scope::MainWithoutStatus) => false,
            ("status", _) => true,
            (_, Scope::Status) => false,
            _ => true,
        };
        if !include {
            continue;
        }
        if k == "metadata" {
            let mut md = Map::new();
            for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                if let Some(x) = v.get(f) {
                    md.insert(f.into(), x.clone());
                }
            }
            if md.is_empty() {
                continue;
            }
            path.push("f:metadata".into());
            collect(&Value::Object(md), None, &mut path, &mut out);
            path.pop();
            continue;
        }
        let cs = child_schema(schema, k);
        path.push(format!("f:{k}"));
        match v {
            Value::Array(items) => collect_list(items, cs, k, &mut path, &mut out),
            _ => collect(v, cs, &mut path, &mut out),
        }
        path.pop();
    }
    out
}

pub fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for t in p {
            cur = cur
                .entry(t.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap();
        }
    }
    Value::Object(root)
}

pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, c) in m {
                    path.push(k.clone());
                    walk(c, path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut vec![], &mut out);
    out
}

/// `.spec.template.spec.containers[name="c"].image`, as conflict messages print paths.
pub fn render_path(p: &[String]) -> String {
    let mut s = String::new();
    for t in p {
        if let Some(f) = t.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = t.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = t.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

fn value_at<'a>(obj: &'a Value, p: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for t in p {
        if t == "." {
            return Some(cur);
        }
        cur = step(cur, t)?;
    }
    Some(cur)
}

fn matches_token(item: &Value, t: &str) -> bool {
    if let Some(k) = t.strip_prefix("k:") {
        let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
        m.iter()
            .all(|(k, v)| item.get(k).unwrap_or(&Value::Null) == v)
    } else if let Some(v) = t.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).ok().as_ref() == Some(item)
    } else {
        false
    }
}

fn step<'a>(cur: &'a Value, t: &str) -> Option<&'a Value> {
    if let Some(f) = t.strip_prefix("f:") {
        cur.get(f)
    } else {
        cur.as_array()?.iter().find(|i| matches_token(i, t))
    }
}

fn remove_at(obj: &mut Value, p: &[String]) {
    let (last, parent) = match p.split_last() {
        Some((l, rest)) if l == "." => match rest.split_last() {
            Some((item, parent)) => (item, parent),
            None => return,
        },
        Some((l, rest)) => (l, rest),
        None => return,
    };
    let mut cur = obj;
    for t in parent {
        let next = if let Some(f) = t.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| matches_token(i, t)))
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(a) = cur.as_array_mut() {
        a.retain(|i| !matches_token(i, last));
    }
}

/// Merge an applied configuration into the live object.
pub fn merge_applied(live: &mut Value, cfg: &Value, schema: Option<&Value>) {
    let (Some(_), Some(c)) = (live.as_object(), cfg.as_object()) else {
        *live = cfg.clone();
        return;
    };
    for (k, v) in c {
        if v.is_null() {
            continue;
        }
        let cs = child_schema(schema, k);
        let slot = live
            .as_object_mut()
            .unwrap()
            .entry(k.clone())
            .or_insert(Value::Null);
        match v {
            Value::Object(_) if slot.is_object() => merge_applied(slot, v, cs),
            Value::Array(items) => {
                let merged = match schema_list_kind(cs, k) {
                    ListKind::Atomic => items.clone(),
                    ListKind::Set => {
                        let mut out = slot.as_array().cloned().unwrap_or_default();
                        for i in items {
                            if !out.contains(i) {
                                out.push(i.clone());
                            }
                        }
                        out
                    }
                    ListKind::Map(keys) => {
                        let is = cs.and_then(|s| s.get("items"));
                        let mut out = slot.as_array().cloned().unwrap_or_default();
                        for i in items {
                            let t = item_key(i, &keys);
                            match out.iter_mut().find(|o| matches_token(o, &t)) {
                                Some(o) => merge_applied(o, i, is),
                                None => out.push(i.clone()),
                            }
                        }
                        out
                    }
                };
                *slot = Value::Array(merged);
            }
            _ => *slot = v.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: String,
    fields: BTreeSet<Path>,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or("").into(),
            operation: e["operation"].as_str().unwrap_or("").into(),
            api_version: e["apiVersion"].as_str().unwrap_or("").into(),
            subresource: e["subresource"].as_str().unwrap_or("").into(),
            time: e["time"].as_str().unwrap_or("").into(),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn store_entries(obj: &mut Value, es: Vec<Entry>) {
    let arr: Vec<Value> = es
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if arr.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(arr);
    }
}

pub struct ApplyCtx<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub scope: Scope,
    pub schema: Option<&'a Value>,
    pub force: bool,
}

/// Server-side apply of `cfg` onto `live` (a skeleton when creating).
/// Returns the new object with managedFields updated.
pub fn apply(live: &Value, cfg: &Value, ctx: &ApplyCtx) -> Result<Value, ApiError> {
    let new_leaves = leaves(cfg, ctx.schema, ctx.scope);
    let new_set: BTreeSet<Path> = new_leaves.keys().cloned().collect();
    let mut es = entries(live);
    // Conflicts: a field this apply sets to a different value than the live
    // one, owned by another manager.
    let mut conflicts: Vec<(String, String, Path)> = vec![];
    for e in &es {
        if e.manager == ctx.manager {
            continue;
        }
        for p in e.fields.intersection(&new_set) {
            if p.last().map(String::as_str) == Some(".") {
                continue;
            }
            if value_at(live, p) != new_leaves.get(p) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !ctx.force {
            let n = conflicts.len();
            let mut msg = format!(
                "Apply failed with {n} conflict{}: ",
                if n == 1 { "" } else { "s" }
            );
            let parts: Vec<String> = conflicts
                .iter()
                .map(|(m, av, p)| format!("conflict with \"{m}\" using {av}: {}", render_path(p)))
                .collect();
            msg.push_str(&parts.join("\n"));
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|(m, av, p)| json!({"reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\" using {av}"), "field": render_path(p)}))
                .collect();
            return Err(ApiError::new(409, "Conflict", msg).with_details(json!({"causes": causes})));
        }
        for e in es.iter_mut() {
            if e.manager != ctx.manager {
                for (_, _, p) in &conflicts {
                    e.fields.remove(p);
                }
            }
        }
    }
    let mut out = live.clone();
    // Fields this manager applied before but no longer does, and nobody else owns.
    let prev: BTreeSet<Path> = es
        .iter()
        .filter(|e| {
            e.manager == ctx.manager && e.operation == "Apply" && e.subresource == ctx.subresource
        })
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for p in prev.difference(&new_set) {
        let owned_elsewhere = es
            .iter()
            .any(|e| !(e.manager == ctx.manager && e.operation == "Apply") && e.fields.contains(p));
        if !owned_elsewhere {
            remove_at(&mut out, p);
        }
    }
    let mut cfg_part = cfg.clone();
    if let Some(m) = cfg_part.as_object_mut() {
        match ctx.scope {
            Scope::MainWithoutStatus => {
                m.remove("status");
            }
            Scope::Status => m.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind"),
            Scope::All => {}
        }
        if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            md.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences"
                )
            });
        }
    }
    merge_applied(&mut out, &cfg_part, ctx.schema);
    let now = crate::util::now_rfc3339();
    es.retain(|e| {
        !(e.manager == ctx.manager && e.operation == "Apply" && e.subresource == ctx.subresource)
    });
    es.push(Entry {
        manager: ctx.manager.into(),
        operation: "Apply".into(),
        api_version: ctx.api_version.into(),
        subresource: ctx.subresource.into(),
        time: now,
        fields: new_set,
    });
    store_entries(&mut out, es);
    Ok(out)
}

/// Ownership after a non-apply write: the updater owns what it changed,
/// others lose it; removed fields leave every set.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    scope: Scope,
    schema: Option<&Value>,
) {
    let before = old.map(|o| leaves(o, schema, scope)).unwrap_or_default();
    let after = leaves(new, schema, scope);
    let changed: BTreeSet<Path> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(*v))
        .map(|(p, _)| p.clone())
        .collect();
    let removed: BTreeSet<Path> = before
        .keys()
        .filter(|p| !after.contains_key(*p))
        .cloned()
        .collect();
    // Clients may send managedFields back unchanged (kubectl replace, PUT of a
    // fetched object): ownership is tracked from the stored version.
    let mut es = old.map(entries).unwrap_or_default();
    if changed.is_empty() && removed.is_empty() {
        store_entries(new, es);
        return;
    }
    for e in es.iter_mut() {
        e.fields
            .retain(|p| !(removed.contains(p) || changed.contains(p) && e.manager != manager));
    }
    let now = crate::util::now_rfc3339();
    match es
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
    {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now;
            e.api_version = api_version.into();
        }
        None => es.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            subresource: subresource.into(),
            time: now,
            fields: changed,
        }),
    }
    store_entries(new, es);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(m: &'a str, force: bool) -> ApplyCtx<'a> {
        ApplyCtx {
            manager: m,
            api_version: "v1",
            subresource: "",
            scope: Scope::All,
            schema: None,
            force,
        }
    }

    #[test]
    fn apply_conflicts_and_force() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        let a = apply(&live, &json!({"data": {"k": "1"}}), &ctx("a", false)).unwrap();
        // Same value from another manager: shared, no conflict.
        let b = apply(&a, &json!({"data": {"k": "1"}}), &ctx("b", false)).unwrap();
        let err = apply(&b, &json!({"data": {"k": "2"}}), &ctx("b", false)).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"a\""),
            "{}",
            err.message
        );
        let c = apply(&b, &json!({"data": {"k": "2"}}), &ctx("b", true)).unwrap();
        assert_eq!(c["data"]["k"], "2");
        // Dropping a field from the applied config removes it when unshared.
        let d = apply(&c, &json!({"data": {"j": "3"}}), &ctx("b", false)).unwrap();
        assert_eq!(d["data"], json!({"j": "3"}));
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}, "metadata": {"labels": {"a": "b"}}});
        let l = leaves(&obj, None, Scope::All);
        let set: BTreeSet<Path> = l.keys().cloned().collect();
        let fv = to_fields_v1(&set);
        assert_eq!(
            fv["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:image"],
            json!({})
        );
        assert_eq!(from_fields_v1(&fv), set);
    }
}
