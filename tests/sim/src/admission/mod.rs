//! Validating admission, after defaulting and validation, in the order of
//! pkg/kubeapiserver/options/plugins.go (AllOrderedPlugins): ServiceAccount,
//! PodSecurity, OwnerReferencesPermissionEnforcement, ValidatingAdmissionPolicy.
//! Writes by the simulator's own controllers (no user) go through the
//! ServiceAccount and PodSecurity plugins too, as the real controllers'
//! writes do.

pub mod owner_refs;
pub mod psa;
pub mod service_account;
pub mod vap;

use crate::api::WriteOpts;
use crate::auth::UserInfo;
use crate::error::ApiResult;
use crate::resources::{Registry, ResDef};
use crate::store::Store;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
        }
    }
}

/// admission.Attributes.
pub struct Request<'a> {
    pub op: Operation,
    pub def: &'a ResDef,
    pub sub: &'a str,
    pub object: &'a Value,
    pub old: Option<&'a Value>,
    pub user: Option<&'a UserInfo>,
    pub dry_run: bool,
    pub registry: &'a Registry,
}

impl Request<'_> {
    pub fn namespace(&self) -> &str {
        crate::util::ns_of(self.object)
    }
    pub fn name(&self) -> &str {
        crate::util::name_of(self.object)
    }
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.def.group == group && self.def.plural == plural
    }
}

/// Admission settings that are flags on a real API server.
#[derive(Debug, Default)]
pub struct Config {
    /// `--enable-admission-plugins=OwnerReferencesPermissionEnforcement`
    /// (off by default upstream, on in OpenShift).
    pub owner_references_permission_enforcement: AtomicBool,
}

/// Runs the validating plugins; the first refusal wins.
#[allow(clippy::too_many_arguments)]
pub fn validate(
    s: &Store,
    registry: &Registry,
    config: &Config,
    def: &ResDef,
    object: &Value,
    old: Option<&Value>,
    sub: &str,
    opts: &WriteOpts,
) -> ApiResult<()> {
    let req = Request {
        op: if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        },
        def,
        sub,
        object,
        old,
        user: opts.user.as_deref(),
        dry_run: opts.dry_run,
        registry,
    };
    service_account::validate(s, &req)?;
    psa::validate(s, &req)?;
    if config
        .owner_references_permission_enforcement
        .load(Ordering::Relaxed)
    {
        owner_refs::validate(s, &req)?;
    }
    vap::validate(s, &req)
}
