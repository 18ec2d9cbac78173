//! One reconciliation: validate → plan (pure) → observe → decide (pure) →
//! apply (server-side apply, forced, one field manager) → update status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::state::{self, Decision, Observed};
use super::Context;
use crate::api::{MultiArchImage, MultiArchImageStatus, Phase, PlatformPhase};
use crate::error::{Error, Result};
use crate::render::{self, BUILD_ID_LABEL, NAME_LABEL};
use crate::telemetry::PhaseLabels;

/// The field manager of everything the controller applies.
pub const FIELD_MANAGER: &str = "multiarch-operator";
/// While a build runs, look again at least this often, even without events.
const BUILDING_RESYNC: Duration = Duration::from_secs(60);

pub async fn reconcile(resource: Arc<MultiArchImage>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let namespace = resource
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(resource.name_any()))?;
    if resource.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the Jobs.
        return Ok(Action::await_change());
    }
    let build_id = render::build_id(&resource.spec);
    if is_settled(&resource, &build_id) {
        return Ok(Action::await_change());
    }

    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let caches = &ctx.caches;
    caches
        .ready
        .clone()
        .wait_for(|ready| *ready)
        .await
        .map_err(|_| Error::CacheClosed)?;
    let name_label = render::name_label_value(&resource.name_any());
    let ours = |labels: &std::collections::BTreeMap<String, String>, ns: Option<String>| {
        ns.as_deref() == Some(namespace.as_str()) && labels.get(NAME_LABEL) == Some(&name_label)
    };
    let jobs: Vec<Job> = caches
        .jobs
        .state_filter(|j| ours(j.labels(), j.namespace()))
        .iter()
        .map(|j| Job::clone(j))
        .collect();
    let now = Time(Timestamp::now());
    let decision = match render::plan(&resource, &ctx.images) {
        Err(errors) => state::invalid(&resource, &build_id, &errors.to_string(), &jobs, &now),
        Ok(plan) => {
            let pods: Vec<Pod> = caches
                .pods
                .state_filter(|p| {
                    ours(p.labels(), p.namespace())
                        && p.labels().get(BUILD_ID_LABEL) == Some(&plan.build_id)
                })
                .iter()
                .map(|p| Pod::clone(p))
                .collect();
            let observed = Observed {
                jobs: &jobs,
                pods: &pods,
                now,
            };
            state::decide(&resource, &plan, &observed, &ctx.images)
        }
    };
    apply(&resource, &jobs_api, &decision, &ctx).await?;
    let done = matches!(
        decision.status.phase,
        Some(Phase::Succeeded | Phase::Failed)
    );
    Ok(if done {
        Action::await_change()
    } else {
        Action::requeue(BUILDING_RESYNC)
    })
}

/// A finished build of the current spec needs nothing more.
fn is_settled(resource: &MultiArchImage, build_id: &str) -> bool {
    resource.status.as_ref().is_some_and(|s| {
        s.build_id.as_deref() == Some(build_id)
            && s.observed_generation == resource.metadata.generation
            && matches!(s.phase, Some(Phase::Succeeded | Phase::Failed))
    })
}

async fn apply(
    resource: &MultiArchImage,
    jobs_api: &Api<Job>,
    decision: &Decision,
    ctx: &Context,
) -> Result<()> {
    let delete = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for name in &decision.delete {
        match jobs_api.delete(name, &delete).await {
            Ok(_) => tracing::info!(job = %name, "deleted a superseded Job"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for job in &decision.create {
        let name = job.name_any();
        jobs_api.patch(&name, &params, &Patch::Apply(job)).await?;
        tracing::info!(job = %name, "applied Job");
    }
    let old = resource.status.clone().unwrap_or_default();
    if old != decision.status {
        let api: Api<MultiArchImage> = Api::namespaced(
            ctx.client.clone(),
            &resource.namespace().unwrap_or_default(),
        );
        let body = json!({
            "apiVersion": MultiArchImage::api_version(&()),
            "kind": MultiArchImage::kind(&()),
            "status": decision.status,
        });
        api.patch_status(&resource.name_any(), &params, &Patch::Apply(&body))
            .await?;
        record_metrics(ctx, &old, &decision.status);
    }
    let reference = resource.object_ref(&());
    for notice in &decision.notices {
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.to_string(),
            note: Some(notice.note.clone()),
            action: "Reconcile".to_string(),
            secondary: notice.job.as_ref().map(|name| ObjectReference {
                api_version: Some("batch/v1".into()),
                kind: Some("Job".into()),
                name: Some(name.clone()),
                namespace: resource.namespace(),
                ..ObjectReference::default()
            }),
        };
        // An event lost is not worth failing the reconcile for.
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = notice.reason, "publishing an event failed");
        }
    }
    Ok(())
}

fn record_metrics(ctx: &Context, old: &MultiArchImageStatus, new: &MultiArchImageStatus) {
    let same_build = old.build_id == new.build_id;
    if let Some(phase) = new.phase {
        if !same_build || old.phase != Some(phase) {
            ctx.metrics
                .builds
                .get_or_create(&PhaseLabels {
                    phase: format!("{phase:?}"),
                })
                .inc();
        }
    }
    for platform in &new.platforms {
        let was_done = same_build
            && old
                .platforms
                .iter()
                .any(|p| p.platform == platform.platform && p.phase == PlatformPhase::Succeeded);
        if platform.phase == PlatformPhase::Succeeded && !was_done {
            if let (Some(start), Some(end)) = (&platform.start_time, &platform.completion_time) {
                ctx.metrics
                    .build_duration
                    .observe(end.0.duration_since(start.0).as_secs_f64().max(0.0));
            }
        }
    }
    if new.phase == Some(Phase::Succeeded) && (old.phase != Some(Phase::Succeeded) || !same_build) {
        let last_built = new
            .platforms
            .iter()
            .filter_map(|p| p.completion_time.as_ref())
            .map(|t| t.0)
            .max();
        if let Some(last) = last_built {
            ctx.metrics
                .merge_duration
                .observe(Timestamp::now().duration_since(last).as_secs_f64().max(0.0));
        }
    }
}

/// Failed reconciles are retried soon; the error is counted by kind.
pub fn error_policy(resource: Arc<MultiArchImage>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %resource.name_any(), namespace = ?resource.namespace(), error = %error, "reconcile failed");
    ctx.metrics
        .errors
        .get_or_create(&crate::telemetry::ErrorLabels {
            kind: error.kind().to_string(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}
