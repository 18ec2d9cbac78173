//! The API server's storage semantics: create/get/list/update/patch/apply/
//! delete with defaulting, validation, status-subresource and generation
//! rules, resourceVersion preconditions, finalizers and managedFields. The
//! HTTP layer and the in-process controllers both go through here.

mod delete;
mod encoding;
mod events;
mod kinds;
mod update;

pub use encoding::{b64, b64_decode};

use crate::apply::{self, Scope};
use crate::builtin;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::resources::{Registry, ResDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::Store;
use crate::util::{self, name_of, ns_of, Rng};
use encoding::{decode_continue, encode_continue};
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

    pub(super) fn notify(&self, rv: u64) {
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

    pub(super) fn check_namespace(&self, s: &Store, def: &ResDef, ns: &str) -> ApiResult<()> {
        if def.namespaced && s.get("/namespaces", "", ns).is_none() {
            return Err(ApiError::not_found("", "namespaces", ns));
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
            // Validated as sent, before the core/v1 compatibility fields exist.
            let errs = crate::validation::event::validate_create(&obj, def.is_events_k8s_io());
            if !errs.is_empty() {
                return Err(ApiError::invalid(
                    &def.kind,
                    &def.group,
                    name_of(&obj),
                    errs,
                ));
            }
            builtin::event_core_compat(&mut obj);
        }
        if def.status_sub && kinds::status_reset_on_create(def) {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        self.admit(def, &mut obj, None, opts.strict)?;
        crate::admission::validate(
            &self.lock(),
            &self.registry(),
            &self.admission,
            def,
            &obj,
            None,
            "",
            opts,
        )?;
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

    /// Every stored version of one object, oldest first.
    pub fn history(&self, gr: &str, ns: &str, name: &str) -> Vec<Value> {
        self.lock()
            .history
            .get(&(gr.to_string(), ns.to_string(), name.to_string()))
            .map(|v| v.iter().map(|o| (**o).clone()).collect())
            .unwrap_or_default()
    }
}
