//! Apply: the decision and its report, written to the cluster. Jobs by
//! server-side apply (forced, one field manager), superseded Jobs deleted,
//! the status applied to `/status`, the Events published, and the metrics
//! counted from the same transitions the Events come from.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::context::Context;
use super::decide::{is_refusal, refusal_errors, refused, Decision};
use super::report::{self, Report};
use crate::api::{MultiArchImage, Phase, PlatformPhase};
use crate::error::Result;
use crate::telemetry::{CacheLabels, PhaseLabels};

/// The field manager of everything the controller applies.
pub const FIELD_MANAGER: &str = "multiarch-operator";

/// What was written, for the caller to know the build's state.
pub struct Applied {
    pub done: bool,
}

pub async fn apply(
    resource: &MultiArchImage,
    decision: &Decision,
    report: &Report,
    ctx: &Context,
) -> Result<Applied> {
    let Some(refusal) = apply_jobs(resource, decision, ctx).await? else {
        return write_status(resource, decision, report, ctx).await;
    };
    // The API server refused a Job as invalid: the same Job would be refused
    // again, so the resource fails naming the spec field, once, instead of
    // being retried for ever.
    let (job, status, applied) = refusal;
    let errors = refusal_errors(&job, &status, resource.spec.tolerations.len());
    tracing::warn!(job = %job.name_any(), errors = %errors, "the API server refused a Job");
    let refused = refused(decision, errors, &applied);
    let now = Time(Timestamp::now());
    let report = report::report(resource, &refused, &[], &now);
    apply_jobs(resource, &refused, ctx).await?;
    write_status(resource, &refused, &report, ctx).await
}

/// A Job the API server refused, its answer, and the Jobs applied before it.
type Refusal = (Job, Box<kube::core::Status>, Vec<String>);

/// Deletes and applies the decision's Jobs; stops at a Job the API server
/// refuses as invalid.
async fn apply_jobs(
    resource: &MultiArchImage,
    decision: &Decision,
    ctx: &Context,
) -> Result<Option<Refusal>> {
    let namespace = resource.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let delete = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for name in decision.delete.iter().chain(&decision.cleanup) {
        match jobs.delete(name, &delete).await {
            Ok(_) => tracing::info!(job = %name, "deleted a superseded Job"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::new();
    for job in &decision.create {
        let name = job.name_any();
        match jobs.patch(&name, &params, &Patch::Apply(job)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if is_refusal(&status) => {
                return Ok(Some((job.clone(), status, applied)));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(job = %name, "applied Job");
        applied.push(name);
    }
    Ok(None)
}

/// Writes the status when it changed, and publishes the Events.
async fn write_status(
    resource: &MultiArchImage,
    decision: &Decision,
    report: &Report,
    ctx: &Context,
) -> Result<Applied> {
    let namespace = resource.namespace().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if resource.status.clone().unwrap_or_default() != report.status {
        let api: Api<MultiArchImage> = Api::namespaced(ctx.client.clone(), &namespace);
        let body = json!({
            "apiVersion": MultiArchImage::api_version(&()),
            "kind": MultiArchImage::kind(&()),
            "status": report.status,
        });
        api.patch_status(&resource.name_any(), &params, &Patch::Apply(&body))
            .await?;
        record_metrics(ctx, report);
    }
    let reference = resource.object_ref(&());
    for notice in &report.events {
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
                namespace: Some(namespace.clone()),
                ..ObjectReference::default()
            }),
        };
        // An event lost is not worth failing the reconcile for.
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = notice.reason, "publishing an event failed");
        }
    }
    Ok(Applied {
        done: decision.progress.is_done(),
    })
}

fn record_metrics(ctx: &Context, report: &Report) {
    let changes = &report.transitions;
    let status = &report.status;
    if let Some(phase) = changes.entered {
        ctx.metrics
            .builds
            .get_or_create(&PhaseLabels {
                phase: format!("{phase:?}"),
            })
            .inc();
    }
    for change in &changes.platforms {
        let platform = &status.platforms[change.index];
        if change.entered != Some(PlatformPhase::Succeeded) {
            continue;
        }
        if let (Some(start), Some(end)) = (&platform.start_time, &platform.completion_time) {
            ctx.metrics
                .build_duration
                .get_or_create(&CacheLabels::of(platform.cache))
                .observe(end.0.duration_since(start.0).as_secs_f64().max(0.0));
        }
    }
    if changes.entered == Some(Phase::Succeeded) {
        let last_built = status
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
