//! What the caches keep of a Job or Pod: the fields `observe` reads, and
//! nothing a tenant's spec can make large. A Job's pod template carries the
//! spec's tolerations, node selector and build args, and a Pod its whole
//! spec again; kept, three maximal resources would hold hundreds of MiB.
//! Of a MultiArchImage the cache drops what the operator never reads and
//! that repeats the spec: managedFields and kubectl's last-applied copy.

use crate::api::MultiArchImage;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Pod, PodSpec};

/// kubectl apply's copy of the whole last applied manifest.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Keeps a MultiArchImage but for managedFields and kubectl's last-applied
/// copy of it. The operator writes the status and Jobs by server-side
/// apply only, never the resource whole, so nothing trimmed is written back.
pub fn resource(resource: &mut MultiArchImage) {
    resource.metadata.managed_fields = None;
    if let Some(annotations) = resource.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Keeps a Job's metadata and status, and of its spec the limits the
/// reports quote.
pub fn job(job: &mut Job) {
    job.metadata.managed_fields = None;
    if let Some(spec) = job.spec.take() {
        job.spec = Some(JobSpec {
            backoff_limit: spec.backoff_limit,
            active_deadline_seconds: spec.active_deadline_seconds,
            ..JobSpec::default()
        });
    }
}

/// Keeps a Pod's metadata and status, and of its spec the node it runs on.
pub fn pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            node_name: spec.node_name,
            ..PodSpec::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::observe::{JobFacts, PodFacts};
    use crate::render::{build_id, plan, BuilderImages};
    use crate::validate::{parse_manifests, validate};

    #[test]
    fn a_trimmed_resource_keeps_the_operators_annotations_and_its_spec() {
        let yaml = format!("apiVersion: multiarch.dev/v1alpha1\nkind: MultiArchImage\nmetadata:\n  name: app\n  namespace: ci\n  annotations: {{multiarch.dev/retry: '2', {LAST_APPLIED}: '{{\"spec\": {{}}}}'}}\n  managedFields: [{{manager: kubectl, operation: Apply}}]\nspec:\n  image: registry.example.com/app\n  source: {{configMap: {{name: ctx}}}}\n");
        let mut resource: MultiArchImage = serde_yaml_ng::from_str(&yaml).unwrap();
        let spec = resource.spec.clone();
        super::resource(&mut resource);
        assert_eq!(resource.metadata.managed_fields, None);
        let annotations = resource.metadata.annotations.unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["multiarch.dev/retry"]
        );
        assert_eq!(resource.spec, spec);
    }

    fn rendered_job() -> Job {
        let yaml = "apiVersion: multiarch.dev/v1alpha1\nkind: MultiArchImage\nmetadata: {name: app, namespace: ci, uid: u1}\nspec:\n  image: registry.example.com/app\n  source: {configMap: {name: ctx}}\n  tolerations: [{key: a, operator: Exists}]\n  nodeSelector: {pool: builds}\n  buildArgs: {A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}\n";
        let resource: MultiArchImage = parse_manifests(yaml).unwrap().remove(0);
        let valid = validate(&resource).unwrap();
        let id = build_id(&resource.spec, &Default::default());
        let mut job = plan(&resource, &valid, id, &BuilderImages::default(), None)
            .build_jobs
            .remove(0);
        job.status = serde_json::from_value(json!({
            "startTime": "2027-01-15T08:00:00Z", "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "lastTransitionTime": "2027-01-15T08:05:00Z"}]}))
        .unwrap();
        job
    }

    #[test]
    fn a_trimmed_job_tells_observe_all_it_told_before_in_a_fraction_of_the_bytes() {
        let full = rendered_job();
        let mut trimmed = full.clone();
        job(&mut trimmed);
        assert_eq!(JobFacts::of(&trimmed), JobFacts::of(&full));
        let size = |j: &Job| serde_json::to_vec(j).unwrap().len();
        assert!(
            size(&trimmed) * 3 < size(&full),
            "{} of {}",
            size(&trimmed),
            size(&full)
        );
        assert!(!serde_json::to_string(&trimmed)
            .unwrap()
            .contains("aaaaaaaa"));
    }

    #[test]
    fn a_trimmed_pod_tells_observe_all_it_told_before() {
        let full: Pod = serde_json::from_value(json!({
            "metadata": {"name": "app-1-abcde", "namespace": "ci",
                "labels": {"batch.kubernetes.io/job-name": "app-1"},
                "annotations": {"multiarch.dev/resource": "app"}},
            "spec": {"nodeName": "arm-1", "containers": [{"name": "push", "image": "x",
                "args": ["--build-arg", "A=aaaaaaaa"]}],
                "tolerations": [{"key": "a", "operator": "Exists"}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "push", "image": "x",
                "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {
                "exitCode": 2, "reason": "Error", "message": "COPY failed"}}}]},
        }))
        .unwrap();
        let mut trimmed = full.clone();
        pod(&mut trimmed);
        assert_eq!(PodFacts::of(&trimmed), PodFacts::of(&full));
        assert!(!serde_json::to_string(&trimmed)
            .unwrap()
            .contains("aaaaaaaa"));
    }
}
