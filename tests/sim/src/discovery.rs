//! Discovery documents: the legacy per-group-version lists and the aggregated
//! (apidiscovery.k8s.io/v2) form kubectl 1.32 asks for first.

use crate::resources::{Registry, ResDef};
use serde_json::{json, Value};

pub const AGGREGATED_CT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "34", "gitVersion": "v1.34.0-sim", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
        "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "34",
    })
}

pub fn api_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .into_iter()
        .map(|(g, vs, pref)| {
            let versions: Vec<Value> = vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
            json!({"name": g, "versions": versions, "preferredVersion": {"groupVersion": format!("{g}/{pref}"), "version": pref}})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn defs_of<'a>(reg: &'a Registry, group: &str, version: &str) -> Vec<&'a ResDef> {
    reg.defs
        .iter()
        .filter(|d| d.group == group && d.version == version)
        .map(|d| d.as_ref())
        .collect()
}

pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs = defs_of(reg, group, version);
    if defs.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut res = vec![];
    for d in defs {
        let mut r = json!({"name": d.plural, "singularName": d.singular, "namespaced": d.namespaced,
            "kind": d.kind, "verbs": d.verbs()});
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        res.push(r);
        if d.status_sub {
            res.push(json!({"name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced,
                "kind": d.kind, "verbs": ["get", "patch", "update"]}));
        }
        if d.log_sub {
            res.push(json!({"name": format!("{}/log", d.plural), "singularName": "", "namespaced": d.namespaced,
                "kind": d.kind, "verbs": ["get"]}));
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res}),
    )
}

fn aggregated_version(reg: &Registry, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = defs_of(reg, group, version)
        .into_iter()
        .map(|d| {
            let rk = json!({"group": d.group, "version": d.version, "kind": d.kind});
            let mut subs = vec![];
            if d.status_sub {
                subs.push(json!({"subresource": "status", "responseKind": rk, "verbs": ["get", "patch", "update"]}));
            }
            if d.log_sub {
                subs.push(json!({"subresource": "log", "responseKind": {"group": "", "version": "", "kind": "Pod"}, "verbs": ["get"]}));
            }
            let mut r = json!({"resource": d.plural, "responseKind": rk,
                "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": d.singular, "verbs": d.verbs()});
            if !d.short_names.is_empty() {
                r["shortNames"] = json!(d.short_names);
            }
            if !d.categories.is_empty() {
                r["categories"] = json!(d.categories);
            }
            if !subs.is_empty() {
                r["subresources"] = json!(subs);
            }
            r
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// `/api` (core = true) or `/apis` in the aggregated form.
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![
            json!({"metadata": {"name": "", "creationTimestamp": null}, "versions": [aggregated_version(reg, "", "v1")]}),
        ]
    } else {
        reg.groups()
            .into_iter()
            .map(|(g, mut vs, pref)| {
                vs.sort_by_key(|v| v != &pref);
                let versions: Vec<Value> =
                    vs.iter().map(|v| aggregated_version(reg, &g, v)).collect();
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
            })
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
