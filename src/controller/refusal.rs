//! A Job the API server refused (400 Bad Request, 422 Invalid), in the
//! words of the spec: the server names fields of the Job it was sent
//! (`details.causes[].field`); the user wrote a MultiArchImage. Each path
//! is mapped back to the spec field it came from, so the resource fails
//! naming `spec.tolerations[0].value`, not `spec.template.spec.tolerations[1].value`.

use k8s_openapi::api::batch::v1::Job;
use kube::core::Status;
use kube::ResourceExt;

use super::{Decision, Progress};
use crate::validate::{FieldError, ValidationErrors};

/// Whether an answer to applying a Job says the Job itself is wrong: the
/// same Job would be refused again, so retrying cannot help.
pub fn is_refusal(status: &Status) -> bool {
    matches!(status.code, 400 | 422)
}

/// The spec fields the refusal of `job` names. `spec_tolerations` is the
/// number of `spec.tolerations`: the Job's own, automatic tolerations come
/// before them.
pub fn refusal_errors(job: &Job, status: &Status, spec_tolerations: usize) -> ValidationErrors {
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    let job_tolerations = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.tolerations.as_ref())
        .map_or(0, Vec::len);
    let automatic = job_tolerations.saturating_sub(spec_tolerations);
    let name = job.name_any();
    let mut errors: Vec<FieldError> = causes
        .iter()
        .map(|cause| {
            let message = if cause.message.is_empty() {
                cause.reason.clone()
            } else {
                cause.message.clone()
            };
            match spec_field(&cause.field, automatic) {
                Some(field) => FieldError {
                    field,
                    message: format!("refused by the API server: {message}"),
                },
                None => FieldError {
                    field: format!("Job {name} {}", cause.field),
                    message: format!("refused by the API server: {message}"),
                },
            }
        })
        .collect();
    if errors.is_empty() {
        errors.push(FieldError {
            field: "spec".into(),
            message: format!("the API server refused Job {name}: {}", status.message),
        });
    }
    ValidationErrors(errors)
}

/// The MultiArchImage field a Job field path comes from, if it comes from
/// the spec; `automatic` tolerations precede `spec.tolerations` in the Job.
pub fn spec_field(job_field: &str, automatic: usize) -> Option<String> {
    if let Some(rest) = job_field.strip_prefix("spec.template.spec.") {
        return pod_field(rest, automatic);
    }
    let rest = job_field.strip_prefix("spec.")?;
    ["backoffLimit", "activeDeadlineSeconds"]
        .iter()
        .find(|f| starts_field(rest, f))
        .map(|_| format!("spec.{rest}"))
}

fn pod_field(rest: &str, automatic: usize) -> Option<String> {
    if let Some(list) = rest.strip_prefix("tolerations[") {
        let (index, tail) = list.split_once(']')?;
        let index: usize = index.parse().ok()?;
        let own = index.checked_sub(automatic)?;
        return Some(format!("spec.tolerations[{own}]{tail}"));
    }
    for field in ["nodeSelector", "serviceAccountName"] {
        if starts_field(rest, field) {
            return Some(format!("spec.{rest}"));
        }
    }
    // spec.resources is the build container's: any container's resources
    // come from it (the others' are fixed and valid).
    let (_, after) = rest.split_once("].resources")?;
    (rest.starts_with("containers[") || rest.starts_with("initContainers["))
        .then(|| format!("spec.resources{after}"))
}

/// `path` is `field` or below it.
fn starts_field(path: &str, field: &str) -> bool {
    path.strip_prefix(field)
        .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']))
}

/// The decision once the API server refused a Job of it: the resource
/// fails as invalid, and the Jobs of this build `applied` just before the
/// refusal are deleted again (the decision's own deletions are done).
pub fn refused(decision: &Decision, errors: ValidationErrors, applied: &[String]) -> Decision {
    Decision {
        build_id: decision.build_id.clone(),
        create: Vec::new(),
        delete: applied.to_vec(),
        cleanup: Vec::new(),
        source: decision.source.clone(),
        platforms: Vec::new(),
        progress: Progress::Invalid(errors),
        merge_job: None,
        attempt: decision.attempt.clone(),
    }
}

#[cfg(test)]
#[path = "refusal_tests.rs"]
mod tests;
