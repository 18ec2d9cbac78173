//! Words for a platform built on another platform's nodes (`spec.buildOn`).

use super::{bounded, Notice, PlatformChange};
use crate::api::{PlatformPhase, PlatformStatus};

/// ` (a linux/amd64 node, spec.buildOn)` for a platform built on another
/// platform's node; empty otherwise.
pub(super) fn elsewhere(platform: &PlatformStatus) -> String {
    match platform.built_on.as_deref() {
        Some(on) if on != platform.platform => format!(" (a {on} node, spec.buildOn)"),
        _ => String::new(),
    }
}

/// `BuiltOnOtherPlatform`, once a platform built on another platform's node
/// succeeded: what the image is and how it was made.
pub(super) fn built_elsewhere(
    change: &PlatformChange,
    platform: &PlatformStatus,
) -> Option<Notice> {
    let on = platform.built_on.as_deref()?;
    if change.entered != Some(PlatformPhase::Succeeded) || on == platform.platform {
        return None;
    }
    Some(Notice {
        warning: false,
        reason: "BuiltOnOtherPlatform",
        note: bounded(&format!(
            "{} was built on node {} of platform {on} (spec.buildOn): its $BUILDPLATFORM stages ran natively, any step running {} code ran emulated",
            platform.platform,
            platform.node.as_deref().unwrap_or("?"),
            platform.platform,
        )),
        job: Some(platform.job.clone()),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::super::report;
    use crate::api::PlatformPhase;
    use crate::controller::decide::{Decision, PlatformView, Progress};
    use crate::platform::Platform;
    use crate::validate::parse_manifests;

    fn view(platform: &str, phase: PlatformPhase, node: &str) -> PlatformView {
        PlatformView {
            platform: Platform::parse(platform).unwrap(),
            job: format!("app-1234abcd-{}", platform.replace('/', "-")),
            phase,
            node: Some(node.into()),
            digest: None,
            start_time: None,
            completion_time: None,
            cache: None,
            note: None,
        }
    }

    #[test]
    fn every_platform_says_where_it_builds_and_a_foreign_build_gets_an_event() {
        let resource = parse_manifests(
            r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: app, namespace: ci, uid: u-1, generation: 1}
spec:
  image: localhost:5000/team/app
  platforms: [linux/amd64, linux/aarch64, linux/arm/v7]
  source: {configMap: {name: ctx}}
  buildOn: {linux/aarch64: linux/amd64}
"#,
        )
        .unwrap()
        .remove(0);
        let decision = Decision {
            build_id: "1234abcd1234abcd".into(),
            create: Vec::new(),
            delete: Vec::new(),
            cleanup: Vec::new(),
            platforms: vec![
                view("linux/amd64", PlatformPhase::Succeeded, "amd-1"),
                view("linux/arm64", PlatformPhase::Succeeded, "amd-2"),
                view("linux/arm/v7", PlatformPhase::Building, "arm-1"),
            ],
            progress: Progress::Building,
            merge_job: None,
            attempt: None,
            source: None,
        };
        let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
        let report = report(&resource, &decision, &[], &now);
        let built_on: Vec<_> = report
            .status
            .platforms
            .iter()
            .map(|p| p.built_on.as_deref().unwrap())
            .collect();
        assert_eq!(built_on, ["linux/amd64", "linux/amd64", "linux/arm/v7"]);
        let foreign: Vec<_> = report
            .events
            .iter()
            .filter(|e| e.reason == "BuiltOnOtherPlatform")
            .collect();
        assert_eq!(foreign.len(), 1, "{:?}", report.events);
        assert_eq!(foreign[0].job.as_deref(), Some("app-1234abcd-linux-arm64"));
        assert!(
            foreign[0]
                .note
                .starts_with("linux/arm64 was built on node amd-2 of platform linux/amd64"),
            "{}",
            foreign[0].note
        );
        // A native build says nothing of the kind.
        let building = report
            .events
            .iter()
            .find(|e| e.reason == "PlatformBuilding")
            .unwrap();
        assert_eq!(building.note, "linux/arm/v7 building on node arm-1");
    }
}
