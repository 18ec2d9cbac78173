//! The protobuf field table checked against prost's generated Kubernetes
//! types (k8s-pb): what prost encodes, the sim decodes to the JSON a real
//! server would show, and what the sim encodes, prost decodes.

use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use kube_sim::protobuf::{from_json, to_json};
use prost::Message;
use serde_json::json;

fn job() -> batch::Job {
    let container = core::Container {
        name: Some("build".into()),
        image: Some("busybox".into()),
        command: vec!["sh".into(), "-c".into()],
        ports: vec![core::ContainerPort {
            container_port: Some(8080),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: [(
                "cpu".to_string(),
                Quantity {
                    string: Some("500m".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("http".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    batch::Job {
        metadata: Some(meta::ObjectMeta {
            name: Some("j".into()),
            labels: [("app".to_string(), "x".to_string())].into(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_735_787_045),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(batch::JobSpec {
            backoff_limit: Some(0),
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![container],
                    volumes: vec![core::Volume {
                        name: Some("work".into()),
                        volume_source: Some(core::VolumeSource {
                            empty_dir: Some(core::EmptyDirVolumeSource {
                                size_limit: Some(Quantity {
                                    string: Some("1Gi".into()),
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    }],
                    tolerations: vec![core::Toleration {
                        key: Some("kubernetes.io/arch".into()),
                        operator: Some("Equal".into()),
                        value: Some("arm64".into()),
                        effect: Some("NoSchedule".into()),
                        toleration_seconds: None,
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn prost_encoded_job_decodes_to_kubernetes_json() {
    let j = to_json("api.batch.v1.Job", &job().encode_to_vec()).unwrap();
    assert_eq!(j["metadata"]["name"], "j");
    assert_eq!(j["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(j["metadata"]["creationTimestamp"], "2025-01-02T03:04:05Z");
    assert_eq!(j["spec"]["backoffLimit"], 0);
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["command"], json!(["sh", "-c"]));
    assert_eq!(c["ports"], json!([{"containerPort": 8080}]));
    assert_eq!(c["resources"]["limits"], json!({"cpu": "500m"}));
    assert_eq!(c["livenessProbe"], json!({"httpGet": {"port": "http"}}));
    // VolumeSource is embedded in Volume's JSON.
    assert_eq!(
        pod["volumes"],
        json!([{"name": "work", "emptyDir": {"sizeLimit": "1Gi"}}])
    );
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "kubernetes.io/arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}])
    );
}

#[test]
fn sim_encoded_json_decodes_with_prost() {
    let j = to_json("api.batch.v1.Job", &job().encode_to_vec()).unwrap();
    let back = batch::Job::decode(from_json("api.batch.v1.Job", &j).as_slice()).unwrap();
    assert_eq!(back, job());
    let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": kube_sim::api::b64(b"\x00\xffbytes")}});
    let s = core::Secret::decode(from_json("api.core.v1.Secret", &secret).as_slice()).unwrap();
    assert_eq!(
        s.data.get("k").map(Vec::as_slice),
        Some(&b"\x00\xffbytes"[..])
    );
    assert_eq!(s.r#type.as_deref(), Some("Opaque"));
}
