//! Update, patch (merge, JSON, strategic, apply) and the controllers'
//! read-modify-write, sharing one commit path.

use super::{present, Cluster, PatchType, WriteOpts};
use crate::apply::{self, ApplyCtx, Scope};
use crate::builtin;
use crate::error::{ApiError, ApiResult};
use crate::resources::ResDef;
use crate::store::Store;
use crate::util::{self, name_of, ns_of};
use serde_json::{json, Value};
use std::sync::{Arc, MutexGuard};

/// Whether two maps agree on every key `skip` keeps, comparing values with
/// `eq` (compared in place: writes do this on every update, and copying
/// whole objects to compare them dominated the write path).
fn maps_equal(
    a: &Value,
    b: &Value,
    skip: impl Fn(&str) -> bool,
    eq: impl Fn(&str, &Value, &Value) -> bool,
) -> bool {
    let (Some(am), Some(bm)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept = |m: &'_ serde_json::Map<String, Value>| m.keys().filter(|k| !skip(k)).count();
    kept(am) == kept(bm)
        && am
            .iter()
            .filter(|(k, _)| !skip(k))
            .all(|(k, v)| bm.get(k).is_some_and(|w| eq(k, v, w)))
}

/// Equal but for resourceVersion and the managedFields entries' times: a
/// write that changes nothing else is a no-op.
fn same_but_rv_and_times(a: &Value, b: &Value) -> bool {
    maps_equal(
        a,
        b,
        |_| false,
        |k, x, y| {
            if k != "metadata" {
                return x == y;
            }
            maps_equal(
                x,
                y,
                |k| k == "resourceVersion",
                |k, x, y| {
                    if k != "managedFields" {
                        return x == y;
                    }
                    match (x.as_array(), y.as_array()) {
                        (Some(xs), Some(ys)) => {
                            xs.len() == ys.len()
                                && xs.iter().zip(ys).all(|(e, f)| {
                                    maps_equal(e, f, |k| k == "time", |_, v, w| v == w)
                                })
                        }
                        _ => x == y,
                    }
                },
            )
        },
    )
}

/// Whether the parts of two objects that bump metadata.generation agree
/// (everything but metadata, apiVersion, kind, and status when it is a
/// subresource).
fn same_spec(a: &Value, b: &Value, status_sub: bool) -> bool {
    maps_equal(
        a,
        b,
        |k| matches!(k, "metadata" | "apiVersion" | "kind") || (status_sub && k == "status"),
        |_, v, w| v == w,
    )
}

impl Cluster {
    /// The common tail of update, patch and apply: carry over what clients
    /// cannot change, enforce the status-subresource split, bump generation,
    /// admit, check the resourceVersion precondition, and store.
    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &self,
        s: &mut MutexGuard<'_, Store>,
        def: &ResDef,
        old: &Value,
        mut new: Value,
        sub: &str,
        opts: &WriteOpts,
        managed_by_apply: bool,
    ) -> ApiResult<(Arc<Value>, bool)> {
        if def.is_events_k8s_io() {
            new = builtin::event_from_events_api(new);
        }
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        let name = name_of(old).to_string();
        if let Some(n) = new["metadata"]["name"].as_str() {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        let want_rv = new["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !want_rv.is_empty() && want_rv != util::rv_of(old) {
            return Err(ApiError::conflict(&def.group, &def.plural, &name));
        }
        if sub == "status" {
            // Only status changes through /status.
            let st = new.get("status").cloned();
            let mf = new["metadata"].get("managedFields").cloned();
            new = old.clone();
            match st {
                Some(st) => new["status"] = st,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if managed_by_apply {
                if let Some(mf) = mf {
                    new["metadata"]["managedFields"] = mf;
                }
            }
        } else if def.status_sub {
            match old.get("status") {
                Some(st) => new["status"] = st.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // Metadata the server owns.
        {
            let om = old["metadata"].as_object().cloned().unwrap_or_default();
            let nm = util::ensure_obj(&mut new, &["metadata"]);
            for k in [
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "generateName",
            ] {
                match om.get(k) {
                    Some(v) => nm.insert(k.into(), v.clone()),
                    None => nm.remove(k),
                };
            }
            if !managed_by_apply {
                match om.get("managedFields") {
                    Some(v) => nm.insert("managedFields".into(), v.clone()),
                    None => nm.remove("managedFields"),
                };
            }
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = old["kind"].clone();
        if def.plural == "events" && sub.is_empty() {
            let errs = crate::validation::event::validate_update(&new, def.is_events_k8s_io());
            if !errs.is_empty() {
                return Err(ApiError::invalid(&def.kind, &def.group, &name, errs));
            }
        }
        if def.plural == "events" {
            builtin::event_core_compat(&mut new);
        }
        // Deleting objects may only drop finalizers (the real server forbids adding).
        if sub != "status" {
            self.admit(def, &mut new, Some(old), opts.strict)?;
        }
        crate::admission::validate(
            s,
            &self.registry(),
            &self.admission,
            def,
            &new,
            Some(old),
            sub,
            opts,
        )?;
        if def.plural == "customresourcedefinitions" {
            builtin::crd_status(&mut new);
        }
        if !same_spec(old, &new, def.status_sub) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if !managed_by_apply {
            let scope = match (sub, def.status_sub) {
                ("status", _) => Scope::Status,
                (_, true) => Scope::MainWithoutStatus,
                _ => Scope::All,
            };
            apply::record_update(
                Some(old),
                &mut new,
                &opts.manager(),
                &def.api_version(),
                sub,
                scope,
                def.schema.as_ref(),
            );
        }
        let terminating = !old["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        if opts.dry_run {
            return Ok((Arc::new(new), false));
        }
        if terminating && no_finalizers {
            let gone = s.remove(&def.gr(), ns_of(old), &name).unwrap();
            self.notify(s.rv);
            return Ok((gone, true));
        }
        if same_but_rv_and_times(&new, old) {
            return Ok((Arc::new(old.clone()), false));
        }
        let stored = s.put(&def.gr(), new);
        self.notify(s.rv);
        Ok((stored, false))
    }

    pub fn update(
        &self,
        def: &ResDef,
        ns: &str,
        name: &str,
        obj: Value,
        sub: &str,
        opts: &WriteOpts,
    ) -> ApiResult<Value> {
        let (stored, removed) = {
            let mut s = self.lock();
            let Some(old) = s.get(&def.gr(), ns, name) else {
                return Err(ApiError::not_found(&def.group, &def.plural, name));
            };
            self.commit_update(&mut s, def, &old, obj, sub, opts, false)?
        };
        self.finish(def, &stored, removed);
        Ok(present(def, &stored))
    }

    fn finish(&self, def: &ResDef, stored: &Value, removed: bool) {
        if removed {
            self.after_remove(def, stored);
        } else {
            self.after_write(def, stored);
        }
    }

    /// PATCH in any of the four content types. Returns (object, created).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        def: &ResDef,
        ns: &str,
        name: &str,
        ptype: PatchType,
        body: &Value,
        sub: &str,
        opts: &WriteOpts,
    ) -> ApiResult<(Value, bool)> {
        if ptype == PatchType::Strategic && def.is_crd {
            return Err(ApiError::new(415, "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"));
        }
        if ptype == PatchType::Apply && opts.field_manager.as_deref().unwrap_or("").is_empty() {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            ));
        }
        let existing = self.lock().get(&def.gr(), ns, name);
        let Some(old) = existing else {
            if ptype != PatchType::Apply {
                return Err(ApiError::not_found(&def.group, &def.plural, name));
            }
            if sub == "status" {
                return Err(ApiError::not_found(&def.group, &def.plural, name));
            }
            // Apply creates: the applied config becomes the object.
            let mut cfg = body.clone();
            if def.is_events_k8s_io() {
                cfg = builtin::event_from_events_api(cfg);
            }
            let md = util::ensure_obj(&mut cfg, &["metadata"]);
            md.insert("name".into(), json!(name));
            let ctx = ApplyCtx {
                manager: opts.field_manager.as_deref().unwrap_or(""),
                api_version: &def.api_version(),
                subresource: "",
                scope: if def.status_sub {
                    Scope::MainWithoutStatus
                } else {
                    Scope::All
                },
                schema: def.schema.as_ref(),
                force: opts.force,
            };
            let skeleton = json!({"metadata": {"name": name}});
            let mut new = apply::apply(&skeleton, &cfg, &ctx)?;
            new["metadata"]["name"] = json!(name);
            if let Some(n) = cfg["metadata"]["namespace"].as_str() {
                new["metadata"]["namespace"] = json!(n);
            }
            let mf = new["metadata"]["managedFields"].clone();
            let mut opts2 = opts.clone();
            opts2.field_manager = Some("__apply_create__".into());
            let mut created = self.create(
                def,
                ns,
                if def.is_events_k8s_io() {
                    builtin::event_to_events_api(new)
                } else {
                    new
                },
                &opts2,
            )?;
            // Ownership is the applier's, not an Update entry.
            let mut s = self.lock();
            if let Some(cur) = s.get(&def.gr(), ns, name) {
                let mut c = (*cur).clone();
                c["metadata"]["managedFields"] = mf;
                if !opts.dry_run {
                    let st = s.put(&def.gr(), c);
                    self.notify(s.rv);
                    created = present(def, &st);
                }
            }
            return Ok((created, true));
        };
        let base = present(def, &old);
        let mut s = self.lock();
        // Re-read under the lock so the patch applies to the latest version.
        let old = s
            .get(&def.gr(), ns, name)
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))?;
        let base = if util::rv_of(&old) == util::rv_of(&base) {
            base
        } else {
            present(def, &old)
        };
        let mut new = base.clone();
        let by_apply = ptype == PatchType::Apply;
        match ptype {
            PatchType::Merge => crate::patch::merge_patch(&mut new, body),
            PatchType::Json => crate::patch::json_patch(&mut new, body)?,
            PatchType::Strategic => crate::patch::strategic_merge(&mut new, body)?,
            PatchType::Apply => {
                let scope = match (sub, def.status_sub) {
                    ("status", _) => Scope::Status,
                    (_, true) => Scope::MainWithoutStatus,
                    _ => Scope::All,
                };
                let ctx = ApplyCtx {
                    manager: opts.field_manager.as_deref().unwrap_or(""),
                    api_version: &def.api_version(),
                    subresource: sub,
                    scope,
                    schema: def.schema.as_ref(),
                    force: opts.force,
                };
                let mut cfg = body.clone();
                if let Some(m) = cfg["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                new = apply::apply(&base, &cfg, &ctx)?;
                if let Some(rv) = body["metadata"]["resourceVersion"].as_str() {
                    new["metadata"]["resourceVersion"] = json!(rv);
                }
            }
        }
        // A patch only preconditions on resourceVersion when it sets one.
        let patch_rv = match ptype {
            PatchType::Json => None,
            _ => body["metadata"]["resourceVersion"]
                .as_str()
                .map(String::from),
        };
        match patch_rv {
            Some(rv) => new["metadata"]["resourceVersion"] = json!(rv),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
            }
        }
        let (stored, removed) = self.commit_update(&mut s, def, &old, new, sub, opts, by_apply)?;
        drop(s);
        self.finish(def, &stored, removed);
        Ok((present(def, &stored), false))
    }

    /// Read-modify-write under the store lock, for controllers (never conflicts).
    pub fn mutate(
        &self,
        def: &ResDef,
        ns: &str,
        name: &str,
        sub: &str,
        manager: &str,
        f: impl FnOnce(&mut Value),
    ) -> ApiResult<Value> {
        let (stored, removed) = {
            let mut s = self.lock();
            let Some(old) = s.get(&def.gr(), ns, name) else {
                return Err(ApiError::not_found(&def.group, &def.plural, name));
            };
            let mut new = (*old).clone();
            f(&mut new);
            // Controllers re-assert state on every pass: an unchanged object
            // is the no-op write commit_update would find, without its
            // admission and managedFields work (the cost of a pass over
            // thousands of objects). A terminating object without
            // finalizers still goes through, as its removal is due.
            let terminating = !old["metadata"]["deletionTimestamp"].is_null();
            if new == *old
                && !(terminating
                    && old["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty()))
            {
                drop(s);
                self.finish(def, &old, false);
                return Ok(present(def, &old));
            }
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            // Internal writers may change metadata the API forbids (e.g. finalizers on terminating objects).
            let md_fin = new["metadata"].get("finalizers").cloned();
            let md_owner = new["metadata"].get("ownerReferences").cloned();
            let mut r = self.commit_update(
                &mut s,
                def,
                &old,
                new,
                sub,
                &WriteOpts::internal(manager),
                false,
            )?;
            if !r.1
                && sub == "status"
                && (md_fin != old["metadata"].get("finalizers").cloned()
                    || md_owner != old["metadata"].get("ownerReferences").cloned())
            {
                let mut again = (*r.0).clone();
                set_or_remove(&mut again["metadata"], "finalizers", md_fin);
                set_or_remove(&mut again["metadata"], "ownerReferences", md_owner);
                if let Some(m) = again["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                let cur = r.0.clone();
                r = self.commit_update(
                    &mut s,
                    def,
                    &cur,
                    again,
                    "",
                    &WriteOpts::internal(manager),
                    false,
                )?;
            }
            r
        };
        self.finish(def, &stored, removed);
        Ok(present(def, &stored))
    }
}

fn set_or_remove(m: &mut Value, k: &str, v: Option<Value>) {
    match v {
        Some(v) => m[k] = v,
        None => {
            if let Some(o) = m.as_object_mut() {
                o.remove(k);
            }
        }
    }
}
