//! A refused Job, mapped back to the spec fields it came from.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::core::Status;
use serde_json::json;

use super::super::{decide, Progress};
use super::*;
use crate::controller::observe::Observation;
use crate::controller::report::report;
use crate::render::{build_id, plan, BuilderImages};
use crate::validate::{parse_manifests, validate};

const RESOURCE: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: app, namespace: ci, uid: u-1, generation: 2}
spec:
  image: localhost:5000/team/app
  source: {configMap: {name: ctx}}
  builder: {strategy: buildah}
  tolerations: [{key: a, operator: Exists}]
  resources: {limits: {cpu: "1"}}
"#;

// A valid spec (validate() may refuse more than the API server's rules):
// the answers below are the API server's, as it words them.

/// The API server's 422 for a Job, with these (field, message) causes.
fn invalid(causes: &[(&str, &str)]) -> Status {
    serde_json::from_value(json!({
        "status": "Failure", "code": 422, "reason": "Invalid",
        "message": "Job.batch \"app\" is invalid",
        "details": {"kind": "Job", "group": "batch", "causes": causes.iter()
            .map(|(f, m)| json!({"reason": "FieldValueInvalid", "field": f, "message": m}))
            .collect::<Vec<_>>()},
    }))
    .unwrap()
}

#[test]
fn job_fields_map_back_to_the_spec() {
    let cases = [
        (
            "spec.template.spec.tolerations[1].operator",
            Some("spec.tolerations[0].operator"),
        ),
        (
            "spec.template.spec.tolerations[3]",
            Some("spec.tolerations[2]"),
        ),
        // The automatic arch toleration is the operator's own.
        ("spec.template.spec.tolerations[0].value", None),
        (
            "spec.template.spec.initContainers[2].resources.limits[cpu]",
            Some("spec.resources.limits[cpu]"),
        ),
        (
            "spec.template.spec.containers[0].resources.requests",
            Some("spec.resources.requests"),
        ),
        ("spec.template.spec.nodeSelector", Some("spec.nodeSelector")),
        (
            "spec.template.spec.serviceAccountName",
            Some("spec.serviceAccountName"),
        ),
        ("spec.backoffLimit", Some("spec.backoffLimit")),
        (
            "spec.activeDeadlineSeconds",
            Some("spec.activeDeadlineSeconds"),
        ),
        ("spec.template.spec.volumes[0].name", None),
        ("spec.backoffLimitPerIndex", None),
        ("metadata.name", None),
    ];
    for (job, spec) in cases {
        assert_eq!(spec_field(job, 1).as_deref(), spec, "{job}");
    }
    // The merge Job tolerates one taint per architecture it can run on.
    assert_eq!(
        spec_field("spec.template.spec.tolerations[4].value", 3).as_deref(),
        Some("spec.tolerations[1].value")
    );
}

#[test]
fn a_refused_job_fails_the_resource_naming_the_spec_field_once() {
    let resource = parse_manifests(RESOURCE).unwrap().remove(0);
    let valid = validate(&resource).unwrap();
    let plan = plan(
        &resource,
        &valid,
        build_id(&resource.spec, &Default::default()),
        &BuilderImages::default(),
        None,
    );
    let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
    let observed = Observation::of(&[], &[], now.clone());
    let decision = decide(&plan, &observed, None, None);
    let job: &Job = &decision.create[0];
    let status = invalid(&[
        (
            "spec.template.spec.tolerations[1].operator",
            "Invalid value: \"x\": value must be empty when `operator` is 'Exists'",
        ),
        (
            "spec.template.spec.initContainers[1].resources.limits[cpu]",
            "Invalid value: \"garbage\": must be a valid quantity",
        ),
    ]);
    assert!(is_refusal(&status));
    let errors = refusal_errors(job, &status, resource.spec.tolerations.len());
    let refused = refused(&decision, errors, &["app-x-linux-amd64".to_string()]);
    assert!(refused.create.is_empty(), "nothing more is applied");
    assert_eq!(refused.delete, ["app-x-linux-amd64"], "nor left running");
    assert!(matches!(refused.progress, Progress::Invalid(_)));
    assert!(refused.progress.is_done(), "not retried");

    let first = report(&resource, &refused, &[], &now);
    let ready = first
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    for field in ["spec.tolerations[0].operator", "spec.resources.limits[cpu]"] {
        assert!(ready.message.contains(field), "{field}: {}", ready.message);
    }
    assert!(!ready.message.contains("template"), "{}", ready.message);
    assert_eq!(first.events.len(), 1);
    assert!(first.events[0].warning && first.events[0].reason == "InvalidSpec");

    // Seen again: the same words, no second Event.
    let mut again = resource.clone();
    again.status = Some(first.status.clone());
    assert!(report(&again, &refused, &[], &now).events.is_empty());
}

#[test]
fn a_refusal_without_causes_names_the_job_and_5xx_is_no_refusal() {
    let resource = parse_manifests(RESOURCE).unwrap().remove(0);
    let job: Job =
        serde_json::from_value(json!({"metadata": {"name": "app-1-linux-amd64"}})).unwrap();
    let status: Status = serde_json::from_value(
        json!({"code": 400, "reason": "BadRequest", "message": "the body is not a Job"}),
    )
    .unwrap();
    let errors = refusal_errors(&job, &status, resource.spec.tolerations.len());
    let text = errors.to_string();
    assert!(
        text.contains("app-1-linux-amd64") && text.contains("the body is not a Job"),
        "{text}"
    );
    for code in [500, 503, 429, 409, 404, 403] {
        let status = Status {
            code,
            ..Status::default()
        };
        assert!(!is_refusal(&status), "{code} is retried");
    }
}
