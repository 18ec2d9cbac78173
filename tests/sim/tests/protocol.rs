//! The API protocol through kube-rs: CRUD, conflicts, watches (from a
//! version, bookmarks, 410 Gone, timeouts), selectors, status subresource and
//! generation, CRD schemas, garbage collection, server-side apply, Job
//! immutability, pagination, events, faults and the request log.

mod common;

use common::{eventually, start_sim, LONG};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sim::{Faults, Sim, SimConfig};
use serde_json::json;
use std::time::Duration;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn install_widget_crd(client: &kube::Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(
        &std::fs::read_to_string(common::fixture("widget-crd.yaml")).unwrap(),
    )
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    eventually("CRD Established", LONG, || {
        let crds = crds.clone();
        async move {
            let c = crds.get("widgets.sim.example.com").await.ok()?;
            c.status?
                .conditions?
                .iter()
                .find(|c| c.type_ == "Established" && c.status == "True")
                .map(|_| ())
        }
    })
    .await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sim.example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn widget(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "sim.example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})).unwrap()
}

#[tokio::test]
async fn crud_conflicts_and_errors() {
    let sim = start_sim();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let created = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let md = &created.metadata;
    assert!(md.uid.is_some() && md.creation_timestamp.is_some());
    assert_eq!(md.generation, Some(1));
    let rv: u64 = md.resource_version.as_ref().unwrap().parse().unwrap();
    assert!(rv > 0);

    let e = api_err(
        cms.create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"a\" already exists");

    let mut fresh = cms.get("a").await.unwrap();
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert!(
        updated
            .metadata
            .resource_version
            .as_ref()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv
    );
    // The stale copy now conflicts.
    let e = api_err(
        cms.replace("a", &PostParams::default(), &fresh)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("the object has been modified"),
        "{}",
        e.message
    );

    let gen: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = cms.create(&PostParams::default(), &gen).await.unwrap();
    let gname = g.metadata.name.unwrap();
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");

    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let e = api_err(cms.get("a").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "configmaps \"a\" not found");

    let other: Api<ConfigMap> = Api::namespaced(sim.client(), "nope");
    let e = api_err(
        other
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);

    // Every stored version is kept for inspection, including the deletion.
    let h = sim.history("v1", "ConfigMap", "default", "a");
    assert_eq!(h.len(), 3, "{h:#?}");
    assert_eq!(h[1]["data"]["k"], "2");
}

#[tokio::test]
async fn watch_from_version_bookmarks_and_timeout() {
    let sim = Sim::start(SimConfig {
        bookmark_interval: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let c = cms
        .create(&PostParams::default(), &cm("w", json!({})))
        .await
        .unwrap();
    let from = c.metadata.resource_version.unwrap();
    for i in 0..3 {
        let p = json!({"data": {"k": i.to_string()}});
        cms.patch("w", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap();
    }
    let wp = WatchParams::default().timeout(3);
    let mut s = cms.watch(&wp, &from).await.unwrap().boxed();
    let mut seen = vec![];
    let mut bookmark = false;
    while let Some(ev) = s.try_next().await.unwrap() {
        match ev {
            WatchEvent::Modified(o) => seen.push(o.data.unwrap()["k"].clone()),
            WatchEvent::Bookmark(b) => {
                assert!(!b.metadata.resource_version.is_empty());
                bookmark = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The stream ended by itself (timeoutSeconds) after replaying history.
    assert_eq!(seen, vec!["0", "1", "2"]);
    assert!(bookmark, "no BOOKMARK within the watch");
}

#[tokio::test]
async fn watch_too_old_is_gone() {
    let sim = Sim::start(SimConfig {
        history_window: 5,
        ..Default::default()
    })
    .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let c = cms
        .create(&PostParams::default(), &cm("g", json!({})))
        .await
        .unwrap();
    let from = c.metadata.resource_version.unwrap();
    for i in 0..10 {
        let p = json!({"data": {"k": i.to_string()}});
        cms.patch("g", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap();
    }
    let mut s = cms
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(
                e.message.starts_with("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected 410 ERROR event, got {other:?}"),
    }
    // kube-runtime's watcher recovers by re-listing.
    let stream = kube::runtime::watcher(cms.clone(), kube::runtime::watcher::Config::default());
    let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
    let first = tokio::time::timeout(LONG, stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("g"));
}

#[tokio::test]
async fn label_and_field_selectors() {
    let sim = start_sim();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    cms.create(
        &PostParams::default(),
        &cm("a", json!({"app": "x", "tier": "web"})),
    )
    .await
    .unwrap();
    cms.create(&PostParams::default(), &cm("b", json!({"app": "y"})))
        .await
        .unwrap();
    cms.create(
        &PostParams::default(),
        &cm("c", json!({"app": "z", "tier": "db"})),
    )
    .await
    .unwrap();
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    for (sel, want) in [
        ("app=x", vec!["a"]),
        ("app==y", vec!["b"]),
        ("app!=x", vec!["b", "c"]),
        ("app in (x,z)", vec!["a", "c"]),
        ("app notin (x,z)", vec!["b"]),
        ("tier", vec!["a", "c"]),
        ("!tier", vec!["b"]),
        ("tier,app!=z", vec!["a"]),
    ] {
        assert_eq!(
            names(cms.list(&ListParams::default().labels(sel)).await.unwrap()),
            want,
            "{sel}"
        );
    }
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        vec!["b"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name!=b,metadata.namespace=default"))
                .await
                .unwrap()
        ),
        vec!["a", "c"]
    );
}

#[tokio::test]
async fn pagination_honours_limit_and_continue() {
    let sim = start_sim();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "kube-public");
    for i in 0..25 {
        cms.create(
            &PostParams::default(),
            &cm(&format!("cm-{i:02}"), json!({})),
        )
        .await
        .unwrap();
    }
    let mut token: Option<String> = None;
    let mut pages = vec![];
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages.push(page.items.len());
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
        assert!(page.metadata.remaining_item_count.unwrap() > 0);
    }
    assert_eq!(pages, vec![10, 10, 5]);
}

#[tokio::test]
async fn crd_status_subresource_generation_and_schema() {
    let sim = start_sim();
    let widgets = install_widget_crd(&sim.client()).await;
    let mut w = widget("w", json!({"size": 2, "junk": true}));
    w.data["status"] = json!({"phase": "Set at create"});
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    // Defaulted, pruned, status dropped on create.
    assert_eq!(created.data["spec"], json!({"size": 2, "color": "blue"}));
    assert!(created.data.get("status").is_none());
    assert_eq!(created.metadata.generation, Some(1));

    let st = json!({"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True", "reason": "Done", "message": "ok"}]}});
    let after_status = widgets
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    assert_eq!(
        after_status.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    assert_eq!(after_status.data["status"]["phase"], "Ready");

    // Spec changes through the main resource bump generation; status there is ignored.
    let p = json!({"spec": {"size": 3}, "status": {"phase": "ignored"}});
    let after_spec = widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(after_spec.data["status"]["phase"], "Ready");
    // Spec in a status write is ignored.
    let p = json!({"spec": {"size": 9}, "status": {"phase": "Again"}});
    let s2 = widgets
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(
        (s2.data["spec"]["size"].as_i64(), s2.metadata.generation),
        (Some(3), Some(2))
    );
    // Server-side apply of status, as operators do.
    let applied = json!({"apiVersion": "sim.example.com/v1", "kind": "Widget", "status": {"phase": "Applied", "observedGeneration": 2}});
    let s3 = widgets
        .patch_status(
            "w",
            &PatchParams::apply("widget-operator").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(
        (s3.data["status"]["phase"].as_str(), s3.metadata.generation),
        (Some("Applied"), Some(2))
    );
    let mf = s3.metadata.managed_fields.unwrap();
    let op = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("widget-operator"))
        .unwrap();
    assert_eq!(
        (op.operation.as_deref(), op.subresource.as_deref()),
        (Some("Apply"), Some("status"))
    );
    // Metadata-only changes keep generation.
    let p = json!({"metadata": {"labels": {"x": "y"}}});
    assert_eq!(
        widgets
            .patch("w", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap()
            .metadata
            .generation,
        Some(2)
    );

    // Validation: 422 with field causes like the real server.
    let bad = widget(
        "bad",
        json!({"size": 11, "color": "pink", "name": "Bad_Name", "tags": ["a", "b", "c", "d"]}),
    );
    let e = api_err(
        widgets
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    for want in [
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
        "spec.color: Unsupported value: \"pink\": supported values: \"blue\", \"red\", \"green\"",
        "spec.name: Invalid value: \"Bad_Name\": spec.name in body should match '^[a-z]+$'",
        "spec.tags: Too many: 4: must have at most 3 items",
    ] {
        assert!(
            e.message.contains(want),
            "missing {want:?} in {}",
            e.message
        );
    }
    assert!(
        e.message
            .starts_with("Widget.sim.example.com \"bad\" is invalid: ["),
        "{}",
        e.message
    );
    let causes = e.details.unwrap().causes;
    assert!(causes.iter().any(|c| c.field == "spec.size"));
    let e = api_err(
        widgets
            .create(&PostParams::default(), &widget("nosize", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "Widget.sim.example.com \"nosize\" is invalid: spec.size: Required value"
    );
}

#[tokio::test]
async fn garbage_collection_policies_and_finalizers() {
    let sim = start_sim();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let owned = |name: &str, owner: &ConfigMap| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid, "blockOwnerDeletion": true}]}})).unwrap()
    };
    let gone = |name: &'static str| {
        let cms = cms.clone();
        async move {
            matches!(cms.get(name).await, Err(kube::Error::Api(s)) if s.code == 404).then_some(())
        }
    };
    // Background: the owner goes at once, dependents after.
    let o = cms
        .create(&PostParams::default(), &cm("bg", json!({})))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &owned("bg-dep", &o))
        .await
        .unwrap();
    cms.delete("bg", &DeleteParams::background()).await.unwrap();
    eventually("background dependent deleted", LONG, || gone("bg-dep")).await;

    // Foreground: the owner waits with the foregroundDeletion finalizer.
    let o = cms
        .create(&PostParams::default(), &cm("fg", json!({})))
        .await
        .unwrap();
    let mut dep = owned("fg-dep", &o);
    dep.metadata.finalizers = Some(vec!["test/hold".into()]);
    cms.create(&PostParams::default(), &dep).await.unwrap();
    cms.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let owner = cms.get("fg").await.unwrap();
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert!(owner
        .metadata
        .finalizers
        .unwrap()
        .contains(&"foregroundDeletion".to_string()));
    eventually("dependent terminating", LONG, || {
        let cms = cms.clone();
        async move {
            cms.get("fg-dep")
                .await
                .ok()?
                .metadata
                .deletion_timestamp
                .map(|_| ())
        }
    })
    .await;
    // Releasing the dependent's finalizer lets both go.
    cms.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("foreground dependent gone", LONG, || gone("fg-dep")).await;
    eventually("foreground owner gone", LONG, || gone("fg")).await;

    // Orphan: dependents stay, without the ownerReference.
    let o = cms
        .create(&PostParams::default(), &cm("or", json!({})))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &owned("or-dep", &o))
        .await
        .unwrap();
    cms.delete("or", &DeleteParams::orphan()).await.unwrap();
    eventually("orphan owner gone", LONG, || gone("or")).await;
    let d = cms.get("or-dep").await.unwrap();
    assert!(d.metadata.owner_references.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn server_side_apply_create_update_conflict_force() {
    let sim = start_sim();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "2"}});
    let created = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["a"], "1");
    let rv = created.metadata.resource_version.clone();
    // Re-applying the same config changes nothing.
    let again = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, rv);
    let bob = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "changed"}});
    let e = api_err(
        cms.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"alice\" using v1: .data.a"
    );
    let forced = cms
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "changed");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"alice".into()) && managers.contains(&"bob".into()),
        "{managers:?}"
    );
    // Alice drops `b` from her config: it is removed.
    let alice2 =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let after = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&alice2))
        .await
        .unwrap();
    assert_eq!(
        after.data.unwrap(),
        [("a".to_string(), "changed".to_string())].into()
    );
}

fn job(name: &str, cmd: &str) -> serde_json::Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", cmd]}]}}}})
}

#[tokio::test]
async fn job_defaults_and_immutability() {
    let sim = start_sim();
    let jobs: Api<Job> = Api::default_namespaced(sim.client());
    let pp = PatchParams::apply("op").force();
    let j = jobs
        .patch("imm", &pp, &Patch::Apply(job("imm", "true")))
        .await
        .unwrap();
    let spec = j.spec.as_ref().unwrap();
    assert_eq!(
        (
            spec.completions,
            spec.parallelism,
            spec.completion_mode.as_deref()
        ),
        (Some(1), Some(1), Some("NonIndexed"))
    );
    let uid = j.metadata.uid.clone().unwrap();
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(labels["job-name"], "imm");
    assert_eq!(
        spec.selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["batch.kubernetes.io/controller-uid"],
        uid
    );
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
    // The same apply again succeeds and changes nothing.
    let same = jobs
        .patch("imm", &pp, &Patch::Apply(job("imm", "true")))
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version, j.metadata.resource_version);
    // Changing the template is refused.
    let e = api_err(
        jobs.patch("imm", &pp, &Patch::Apply(job("imm", "false")))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.contains("spec.template: Invalid value")
            && e.message.contains("field is immutable"),
        "{}",
        e.message
    );
    let bad = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "rp"}, "spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}});
    let e = api_err(
        jobs.create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        e.message
            .contains("spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn recorder_events_visible_as_core_events() {
    let sim = start_sim();
    let client = sim.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let c = cms
        .create(&PostParams::default(), &cm("ev", json!({})))
        .await
        .unwrap();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "my-operator".into(),
            instance: None,
        },
    );
    let ev = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "Testing".into(),
        note: Some("hello from the recorder".into()),
        action: "Test".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&c, &());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap(); // a series: patched
    let core: Api<CoreEvent> = Api::default_namespaced(client.clone());
    let uid = c.metadata.uid.unwrap();
    let list = core
        .list(&ListParams::default().fields(&format!(
            "involvedObject.uid={uid},involvedObject.kind=ConfigMap"
        )))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "{:#?}", list.items);
    let e = &list.items[0];
    assert_eq!(e.message.as_deref(), Some("hello from the recorder"));
    assert_eq!(
        e.source.as_ref().unwrap().component.as_deref(),
        Some("my-operator")
    );
    assert_eq!(e.count, Some(2));
    assert_eq!(e.involved_object.name.as_deref(), Some("ev"));
}

#[tokio::test]
async fn faults_and_request_log() {
    let sim = start_sim();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    cms.create(&PostParams::default(), &cm("f", json!({})))
        .await
        .unwrap();
    sim.set_faults(Faults {
        error_rate: 1.0,
        error_code: 500,
        ..Default::default()
    });
    let e = api_err(cms.get("f").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    sim.set_faults(Faults {
        conflict_rate: 1.0,
        conflicts_status_only: true,
        ..Default::default()
    });
    // Non-status writes pass; status writes conflict.
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    sim.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Default::default()
    });
    let t = std::time::Instant::now();
    cms.get("f").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150));
    sim.set_faults(Faults {
        error_rate: 1.0,
        error_code: 429,
        retry_after_seconds: 1,
        ..Default::default()
    });
    let resp = reqwest_get(
        &format!("{}/api/v1/namespaces/default/configmaps/f", sim.url()),
        sim.admin_token(),
    );
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("retry-after: 1"),
        "{resp}"
    );
    sim.set_faults(Faults::default());
    let reqs = sim.requests();
    let get = reqs
        .iter()
        .find(|r| r.verb == "get" && r.resource == "configmaps" && r.code == 500)
        .expect("500 recorded");
    assert_eq!(
        (get.namespace.as_str(), get.name.as_str()),
        ("default", "f")
    );
    assert!(reqs
        .iter()
        .any(|r| r.verb == "patch" && r.patch_type == "merge" && r.code == 200));
    assert!(reqs.iter().any(|r| r.verb == "create" && r.code == 201));
}

#[tokio::test]
async fn faults_can_be_scoped_to_one_user_agent() {
    let sim = Sim::start(SimConfig::default()).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    cms.create(&PostParams::default(), &cm("s", json!({})))
        .await
        .unwrap();
    sim.set_faults(Faults {
        error_rate: 1.0,
        error_code: 500,
        user_agent_prefix: Some("faulty/".into()),
        ..Default::default()
    });
    // Another client goes through untouched...
    cms.get("s").await.unwrap();
    let url = format!("{}/api/v1/namespaces/default/configmaps/s", sim.url());
    let plain = raw_get_as(&url, sim.admin_token(), "curious/1.0");
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    // ...while the named one gets every fault.
    let faulted = raw_get_as(&url, sim.admin_token(), "faulty/1.0");
    assert!(faulted.starts_with("HTTP/1.1 500"), "{faulted}");
    let codes: Vec<(String, u16)> = sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == "configmaps" && r.verb == "get")
        .map(|r| (r.user_agent, r.code))
        .collect();
    assert!(codes.contains(&("faulty/1.0".into(), 500)), "{codes:?}");
    assert!(codes.contains(&("curious/1.0".into(), 200)), "{codes:?}");
}

fn raw_get_as(url: &str, token: &str, user_agent: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("https://");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A raw HTTP GET (status line and headers), to see headers kube-rs hides;
/// plain HTTP on the API port, as the admin.
fn reqwest_get(url: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("https://");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn watcher_survives_cut_streams_and_errors() {
    let sim = Sim::start(SimConfig {
        faults: Faults {
            watch_cut_after: Some(Duration::from_millis(700)),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let stream = kube::runtime::watcher(cms.clone(), kube::runtime::watcher::Config::default());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let s2 = seen.clone();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
        while let Some(Ok(o)) = s.next().await {
            s2.lock().unwrap().insert(o.metadata.name.unwrap());
        }
    });
    for i in 0..8 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually("watcher saw all objects across cuts", LONG, || {
        let seen = seen.clone();
        async move { (seen.lock().unwrap().len() == 8).then_some(()) }
    })
    .await;
    task.abort();
    let watches = sim.requests().iter().filter(|r| r.verb == "watch").count();
    assert!(
        watches >= 2,
        "expected re-watches after cuts, got {watches}"
    );
}
