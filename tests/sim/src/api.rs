//! The API server's storage semantics: create/get/list/update/patch/apply/
//! delete with defaulting, validation, status-subresource and generation
//! rules, resourceVersion preconditions, finalizers and managedFields. The
//! HTTP layer and the in-process controllers both go through here.

use crate::apply::{self, ApplyCtx, Scope};
use crate::builtin;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::resources::{Registry, ResDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::Store;
use crate::util::{self, name_of, ns_of, Rng};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub struct Cluster {
    pub store: Mutex<Store>,
    pub registry: RwLock<Registry>,
    /// Latest resourceVersion; watches and controllers wake on change.
    pub changed: tokio::sync::watch::Sender<u64>,
    pub rng: Rng,
    pub admission: crate::admission::Config,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub force: bool,
    pub user_agent: String,
    /// fieldValidation=Strict: unknown fields of custom resources are errors.
    pub strict: bool,
    /// Who writes (admission sees it); None for the simulator's own controllers.
    pub user: Option<Arc<crate::auth::UserInfo>>,
}

impl WriteOpts {
    pub fn manager(&self) -> String {
        self.field_manager.clone().unwrap_or_else(|| {
            let ua = self.user_agent.split('/').next().unwrap_or("").trim();
            if ua.is_empty() {
                "unknown".into()
            } else {
                ua.into()
            }
        })
    }
    pub fn internal(manager: &str) -> Self {
        WriteOpts {
            field_manager: Some(manager.into()),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

#[derive(Debug, Clone, Default)]
pub struct ListOpts {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

pub struct ListResult {
    pub items: Vec<Value>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub grace_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// Shape a stored object for the version a client asked for.
pub fn present(def: &ResDef, obj: &Value) -> Value {
    let mut o = obj.clone();
    if def.is_events_k8s_io() {
        o = builtin::event_to_events_api(o);
    }
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(def.api_version()));
        m.insert("kind".into(), json!(def.kind));
    }
    o
}

fn strip_for_compare(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        if let Some(mf) = m.get_mut("managedFields").and_then(|x| x.as_array_mut()) {
            for e in mf {
                if let Some(em) = e.as_object_mut() {
                    em.remove("time");
                }
            }
        }
    }
    v
}

fn spec_part(v: &Value, status_sub: bool) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_sub {
            m.remove("status");
        }
    }
    v
}

fn dns_subdomain_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Kinds whose create resets status (their status is owned by controllers).
fn status_reset_on_create(def: &ResDef) -> bool {
    def.is_crd
        || matches!(
            def.plural.as_str(),
            "pods" | "jobs" | "customresourcedefinitions"
        )
}

impl Cluster {
    pub fn new(log_cap: usize, seed: u64) -> Arc<Self> {
        let (tx, _) = tokio::sync::watch::channel(1);
        let c = Arc::new(Cluster {
            store: Mutex::new(Store::new(log_cap, true)),
            registry: RwLock::new(Registry::new()),
            changed: tx,
            rng: Rng::new(seed),
            admission: Default::default(),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = c.create(
                &c.def("", "namespaces"),
                "",
                json!({"metadata": {"name": ns}}),
                &WriteOpts::internal("kube-apiserver"),
            );
        }
        c
    }

    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The storage-shaped definition of a built-in (or CRD) resource.
    pub fn def(&self, storage_group: &str, plural: &str) -> Arc<ResDef> {
        self.registry()
            .by_gr(&format!("{storage_group}/{plural}"))
            .unwrap_or_else(|| panic!("unknown resource {storage_group}/{plural}"))
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    fn notify(&self, rv: u64) {
        self.changed.send_replace(rv);
    }

    pub fn get(&self, def: &ResDef, ns: &str, name: &str) -> ApiResult<Value> {
        let s = self.lock();
        s.get(&def.gr(), ns, name)
            .map(|o| present(def, &o))
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))
    }

    pub fn list(&self, def: &ResDef, ns: &str, opts: &ListOpts) -> ApiResult<ListResult> {
        let (all, rv) = {
            let s = self.lock();
            (s.list(&def.gr(), ns), s.rv)
        };
        let (start, list_rv) = match &opts.continue_token {
            Some(t) => decode_continue(t)?,
            None => (String::new(), rv),
        };
        let mut items = vec![];
        let mut remaining = 0usize;
        let mut next = None;
        for o in all {
            let key = format!("{}/{}", ns_of(&o), name_of(&o));
            if !start.is_empty() && key <= start {
                continue;
            }
            let shaped = present(def, &o);
            if opts.labels.as_ref().is_some_and(|l| !l.matches(&shaped)) {
                continue;
            }
            if opts.fields.as_ref().is_some_and(|f| !f.matches(&shaped)) {
                continue;
            }
            if next.is_some() {
                remaining += 1;
                continue;
            }
            items.push(shaped);
            if opts.limit.is_some_and(|l| l > 0 && items.len() >= l) {
                next = Some(key);
            }
        }
        let continue_token = match next {
            Some(k) if remaining > 0 => Some(encode_continue(&k, list_rv)),
            _ => None,
        };
        Ok(ListResult {
            items,
            rv: list_rv,
            remaining: continue_token.as_ref().map(|_| remaining),
            continue_token,
        })
    }

    fn check_namespace(&self, s: &Store, def: &ResDef, ns: &str) -> ApiResult<()> {
        if def.namespaced && s.get("/namespaces", "", ns).is_none() {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
        Ok(())
    }

    /// Defaulting and validation shared by create and update.
    fn admit(
        &self,
        def: &ResDef,
        obj: &mut Value,
        old: Option<&Value>,
        strict: bool,
    ) -> ApiResult<()> {
        let name = name_of(obj).to_string();
        let mut errs: Vec<FieldError> = vec![];
        // RBAC object names are path segments (`system:discovery`):
        // pkg/apis/rbac/validation/validation.go ValidateRBACName.
        let path_segment_name = def.group == "rbac.authorization.k8s.io";
        if !dns_subdomain_ok(&name) && def.plural != "events" && !path_segment_name {
            errs.push(FieldError::invalid("metadata.name", &json!(name),
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"));
        }
        match (def.group.as_str(), def.plural.as_str()) {
            ("", "pods") => {
                builtin::default_pod(obj);
                errs.extend(builtin::validate_pod_spec(&obj["spec"], "spec"));
            }
            ("batch", "jobs") => {
                builtin::default_job(obj);
                errs.extend(builtin::validate_job(obj));
                if let Some(o) = old {
                    errs.extend(builtin::job_immutable(o, obj));
                }
            }
            ("apiextensions.k8s.io", _) => {
                builtin::default_crd(obj);
                errs.extend(builtin::validate_crd(obj));
            }
            ("", "namespaces") => {
                let st = util::ensure_obj(obj, &["status"]);
                st.entry("phase").or_insert(json!("Active"));
                let sp = util::ensure_obj(obj, &["spec"]);
                sp.entry("finalizers").or_insert(json!(["kubernetes"]));
            }
            ("", "secrets") => {
                if obj.get("type").is_none() {
                    obj["type"] = json!("Opaque");
                }
                // stringData is write-only: folded into data, base64-encoded.
                if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                    let data = util::ensure_obj(obj, &["data"]);
                    for (k, v) in sd.as_object().into_iter().flatten() {
                        data.insert(k.clone(), json!(b64(v.as_str().unwrap_or("").as_bytes())));
                    }
                }
            }
            _ => {}
        }
        if let Some(schema) = def.schema.as_ref() {
            let pruned = crate::schema::default_and_prune(obj, schema);
            if strict && !pruned.is_empty() {
                let list: Vec<String> = pruned
                    .iter()
                    .map(|p| format!("unknown field \"{p}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    def.kind,
                    def.version,
                    def.kind,
                    list.join(", ")
                )));
            }
            errs.extend(crate::schema::validate(obj, schema));
            errs.extend(crate::cel::validate(obj, old, schema));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&def.kind, &def.group, &name, errs));
        }
        Ok(())
    }

    pub fn create(
        &self,
        def: &ResDef,
        ns: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        if def.is_events_k8s_io() {
            obj = builtin::event_from_events_api(obj);
        }
        let md = util::ensure_obj(&mut obj, &["metadata"]);
        if def.namespaced {
            match md.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    md.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            md.remove("namespace");
        }
        if md
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            match md.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => {
                    let n = format!("{g}{}", self.rng.name_suffix(5));
                    md.insert("name".into(), json!(n));
                }
                _ => {
                    return Err(ApiError::invalid(
                        &def.kind,
                        &def.group,
                        "",
                        vec![FieldError::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ))
                }
            }
        }
        if md
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        md.insert("uid".into(), json!(self.rng.uuid()));
        md.insert("creationTimestamp".into(), json!(util::now_rfc3339()));
        md.insert("generation".into(), json!(1));
        md.remove("deletionTimestamp");
        md.remove("managedFields");
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        if def.is_events_k8s_io() {
            obj["apiVersion"] = json!("v1");
        }
        if def.plural == "events" {
            builtin::event_core_compat(&mut obj);
        }
        if def.status_sub && status_reset_on_create(def) {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        self.admit(def, &mut obj, None, opts.strict)?;
        crate::admission::validate(&self.lock(), &self.registry(), &self.admission, def, &obj, None, "", opts)?;
        if def.plural == "customresourcedefinitions" {
            builtin::crd_status(&mut obj);
        }
        let scope = if def.status_sub {
            Scope::MainWithoutStatus
        } else {
            Scope::All
        };
        apply::record_update(
            None,
            &mut obj,
            &opts.manager(),
            &def.api_version(),
            "",
            scope,
            def.schema.as_ref(),
        );
        let name = name_of(&obj).to_string();
        let stored = {
            let mut s = self.lock();
            self.check_namespace(&s, def, ns)?;
            if s.get(&def.gr(), ns, &name).is_some() {
                return Err(ApiError::already_exists(&def.group, &def.plural, &name));
            }
            if opts.dry_run {
                return Ok(present(def, &obj));
            }
            let stored = s.put(&def.gr(), obj);
            self.notify(s.rv);
            stored
        };
        self.after_write(def, &stored);
        Ok(present(def, &stored))
    }

    /// Side effects of stored objects on the API surface itself.
    fn after_write(&self, def: &ResDef, obj: &Value) {
        if def.plural == "customresourcedefinitions" && def.group == "apiextensions.k8s.io" {
            let defs = crate::resources::from_crd(obj);
            let g = obj["spec"]["group"].as_str().unwrap_or("").to_string();
            let p = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.registry
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set_crd(&g, &p, defs);
        }
        if def.plural == "namespaces" && def.group.is_empty() {
            let ns = name_of(obj).to_string();
            let sa = self.def("", "serviceaccounts");
            let exists = self
                .lock()
                .get("/serviceaccounts", &ns, "default")
                .is_some();
            if !exists && obj["metadata"]["deletionTimestamp"].is_null() {
                let _ = self.create(
                    &sa,
                    &ns,
                    json!({"metadata": {"name": "default"}}),
                    &WriteOpts::internal("kube-controller-manager"),
                );
            }
        }
    }

    fn after_remove(&self, def: &ResDef, obj: &Value) {
        if def.plural == "customresourcedefinitions" && def.group == "apiextensions.k8s.io" {
            let g = obj["spec"]["group"].as_str().unwrap_or("").to_string();
            let p = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.registry
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set_crd(&g, &p, vec![]);
            let gr = format!("{g}/{p}");
            let mut s = self.lock();
            for o in s.list(&gr, "") {
                s.remove(&gr, ns_of(&o), name_of(&o));
            }
            self.notify(s.rv);
        }
        if def.plural == "namespaces" && def.group.is_empty() {
            let ns = name_of(obj).to_string();
            let grs: Vec<String> = self
                .registry()
                .defs
                .iter()
                .filter(|d| d.namespaced && d.group == d.storage_group)
                .map(|d| d.gr())
                .collect();
            let mut s = self.lock();
            for gr in grs {
                for o in s.list(&gr, &ns) {
                    s.remove(&gr, &ns, name_of(&o));
                }
            }
            self.notify(s.rv);
        }
    }

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
        if def.plural == "events" {
            builtin::event_core_compat(&mut new);
        }
        // Deleting objects may only drop finalizers (the real server forbids adding).
        if sub != "status" {
            self.admit(def, &mut new, Some(old), opts.strict)?;
        }
        crate::admission::validate(s, &self.registry(), &self.admission, def, &new, Some(old), sub, opts)?;
        if def.plural == "customresourcedefinitions" {
            builtin::crd_status(&mut new);
        }
        if spec_part(old, def.status_sub) != spec_part(&new, def.status_sub) {
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
        if strip_for_compare(&new) == strip_for_compare(old) {
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

    pub fn delete(
        &self,
        def: &ResDef,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Value> {
        let (out, removed) = {
            let mut s = self.lock();
            let Some(old) = s.get(&def.gr(), ns, name) else {
                return Err(ApiError::not_found(&def.group, &def.plural, name));
            };
            if opts
                .precondition_uid
                .as_deref()
                .is_some_and(|u| u != util::uid_of(&old))
            {
                return Err(ApiError::new(409, "Conflict", format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    def.plural, opts.precondition_uid.as_deref().unwrap_or(""), util::uid_of(&old))));
            }
            if opts
                .precondition_rv
                .as_deref()
                .is_some_and(|r| r != util::rv_of(&old))
            {
                return Err(ApiError::conflict(&def.group, &def.plural, name));
            }
            let uid = util::uid_of(&old).to_string();
            let has_dependents = || {
                s.objects.values().flat_map(|m| m.values()).any(|o| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["uid"] == uid.as_str()))
                })
            };
            let default_policy = if def.group == "batch" && def.plural == "jobs" {
                "Orphan"
            } else {
                "Background"
            };
            let policy = opts
                .propagation
                .clone()
                .unwrap_or_else(|| default_policy.into());
            let mut new = (*old).clone();
            let mut fins: Vec<Value> = new["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let extra = match policy.as_str() {
                "Foreground" if has_dependents() => Some("foregroundDeletion"),
                "Orphan" if has_dependents() => Some("orphan"),
                _ => None,
            };
            if let Some(f) = extra {
                if !fins.contains(&json!(f)) {
                    fins.push(json!(f));
                }
            }
            // Pods on a node terminate gracefully; the kubelet removes them.
            let graceful_pod = def.plural == "pods"
                && def.group.is_empty()
                && !old["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
                && !matches!(
                    old["status"]["phase"].as_str(),
                    Some("Succeeded") | Some("Failed")
                )
                && opts.grace_seconds != Some(0);
            if opts.dry_run {
                return Ok(present(def, &old));
            }
            if fins.is_empty() && !graceful_pod {
                let gone = s.remove(&def.gr(), ns, name).unwrap();
                self.notify(s.rv);
                (gone, true)
            } else if !old["metadata"]["deletionTimestamp"].is_null() {
                if opts.grace_seconds == Some(0) && graceful_pod && fins.is_empty() {
                    let gone = s.remove(&def.gr(), ns, name).unwrap();
                    self.notify(s.rv);
                    (gone, true)
                } else {
                    (old.clone(), false)
                }
            } else {
                let grace = if graceful_pod {
                    opts.grace_seconds
                        .or(old["spec"]["terminationGracePeriodSeconds"].as_i64())
                        .unwrap_or(30)
                } else {
                    0
                };
                let ts = chrono::Utc::now() + chrono::Duration::seconds(grace);
                new["metadata"]["deletionTimestamp"] =
                    json!(ts.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                new["metadata"]["finalizers"] = json!(fins);
                if fins.is_empty() {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove("finalizers");
                    }
                }
                let st = s.put(&def.gr(), new);
                self.notify(s.rv);
                (st, false)
            }
        };
        if removed {
            self.after_remove(def, &out);
        }
        Ok(present(def, &out))
    }

    /// Every stored version of one object, oldest first.
    pub fn history(&self, gr: &str, ns: &str, name: &str) -> Vec<Value> {
        self.lock()
            .history
            .get(&(gr.to_string(), ns.to_string(), name.to_string()))
            .map(|v| v.iter().map(|o| (**o).clone()).collect())
            .unwrap_or_default()
    }

    /// Record an Event (core/v1 shape), as controllers do through the API.
    pub fn record_event(
        &self,
        involved: &Value,
        etype: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let ns = match ns_of(involved) {
            "" => "default",
            n => n,
        }
        .to_string();
        let now = util::now_rfc3339();
        let api_version = involved["apiVersion"].as_str().unwrap_or("v1");
        let ev_def = self.def("", "events");
        // Repeats of the same event bump count like the client-go correlator.
        let existing = self.lock().list("/events", &ns).into_iter().find(|e| {
            e["involvedObject"]["uid"] == involved["metadata"]["uid"]
                && e["reason"] == reason
                && e["message"] == message
        });
        if let Some(e) = existing {
            let _ = self.mutate(&ev_def, &ns, name_of(&e), "", component, |e| {
                e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
                e["lastTimestamp"] = json!(now);
            });
            return;
        }
        // client-go names events <object>.<unix nanos in hex>, so names sort by time.
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let name = format!("{}.{:x}", name_of(involved), nanos);
        let ev = json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": api_version, "kind": involved["kind"], "name": name_of(involved),
                "namespace": involved["metadata"]["namespace"], "uid": involved["metadata"]["uid"],
                "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason, "message": message, "type": etype,
            "source": {"component": component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "eventTime": null, "reportingComponent": component, "reportingInstance": component,
        });
        let _ = self.create(&ev_def, &ns, ev, &WriteOpts::internal(component));
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

pub fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= ch.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = vec![];
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn encode_continue(key: &str, rv: u64) -> String {
    b64(json!({"start": key, "rv": rv}).to_string().as_bytes())
}

fn decode_continue(t: &str) -> ApiResult<(String, u64)> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = b64_decode(t).ok_or_else(bad)?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["start"].as_str().ok_or_else(bad)?.to_string(),
        v["rv"].as_u64().ok_or_else(bad)?,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "hello world"] {
            assert_eq!(
                super::b64_decode(&super::b64(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(super::b64(b"hi"), "aGk=");
    }
}
