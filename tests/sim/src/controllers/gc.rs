//! Garbage collection: ownerReference cascades (Background, Foreground,
//! Orphan). PodGC is in `podgc`.

use crate::api::DeleteOpts;
use crate::util::{name_of, ns_of, uid_of};
use crate::Shared;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

struct Owner {
    terminating: bool,
    foreground: bool,
    orphan: bool,
}

fn has_finalizer(o: &Value, f: &str) -> bool {
    o["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|fs| fs.iter().any(|x| x == f))
}

pub fn reconcile(shared: &Arc<Shared>) {
    let c = &shared.cluster;
    // One pass runs per burst of writes over every object: borrow rather
    // than copy (one resource name per kind, uids from the objects).
    let by_kind: Vec<(Arc<str>, Vec<Arc<Value>>)> = {
        let s = c.lock();
        s.objects
            .iter()
            .map(|(gr, m)| (Arc::from(gr.as_str()), m.values().cloned().collect()))
            .collect()
    };
    let all: Vec<(&Arc<str>, &Arc<Value>)> = by_kind
        .iter()
        .flat_map(|(gr, objs)| objs.iter().map(move |o| (gr, o)))
        .collect();
    let owners: HashMap<&str, Owner> = all
        .iter()
        .map(|(_, o)| {
            (
                uid_of(o),
                Owner {
                    terminating: !o["metadata"]["deletionTimestamp"].is_null(),
                    foreground: has_finalizer(o, "foregroundDeletion"),
                    orphan: has_finalizer(o, "orphan"),
                },
            )
        })
        .collect();
    let mut dependents: HashMap<&str, usize> = HashMap::new();
    for (gr, o) in &all {
        let Some(refs) = o["metadata"]["ownerReferences"]
            .as_array()
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        let Some(def) = c.registry().by_gr(gr) else {
            continue;
        };
        {
            for r in refs {
                *dependents
                    .entry(r["uid"].as_str().unwrap_or(""))
                    .or_default() += 1;
            }
            let live: Vec<&Owner> = refs
                .iter()
                .filter_map(|r| owners.get(r["uid"].as_str().unwrap_or("")))
                .collect();
            let terminating = !o["metadata"]["deletionTimestamp"].is_null();
            if live.is_empty() {
                if !terminating {
                    let _ = c.delete(
                        &def,
                        ns_of(o),
                        name_of(o),
                        &DeleteOpts {
                            propagation: Some("Background".into()),
                            ..Default::default()
                        },
                    );
                }
            } else if live.iter().any(|w| w.terminating && w.foreground) {
                if !terminating {
                    let _ = c.delete(
                        &def,
                        ns_of(o),
                        name_of(o),
                        &DeleteOpts {
                            propagation: Some("Foreground".into()),
                            ..Default::default()
                        },
                    );
                }
            } else if live.iter().any(|w| w.terminating && w.orphan) {
                let orphaning: Vec<String> = refs
                    .iter()
                    .filter(|r| {
                        owners
                            .get(r["uid"].as_str().unwrap_or(""))
                            .is_some_and(|w| w.orphan && w.terminating)
                    })
                    .map(|r| r["uid"].as_str().unwrap_or("").to_string())
                    .collect();
                let _ = c.mutate(&def, ns_of(o), name_of(o), "", "garbage-collector", |d| {
                    if let Some(rs) = d["metadata"]["ownerReferences"].as_array_mut() {
                        rs.retain(|r| !orphaning.iter().any(|u| r["uid"] == u.as_str()));
                    }
                    if d["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|a| a.is_empty())
                    {
                        d["metadata"]
                            .as_object_mut()
                            .unwrap()
                            .remove("ownerReferences");
                    }
                });
            }
        }
    }
    // Owners waiting on their dependents.
    for (gr, o) in &all {
        if o["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let Some(def) = c.registry().by_gr(gr) else {
            continue;
        };
        let waiting = dependents.get(uid_of(o)).copied().unwrap_or(0);
        for f in ["foregroundDeletion", "orphan"] {
            if has_finalizer(o, f) && waiting == 0 {
                let _ = c.mutate(&def, ns_of(o), name_of(o), "", "garbage-collector", |x| {
                    if let Some(fs) = x["metadata"]["finalizers"].as_array_mut() {
                        fs.retain(|y| y != f);
                    }
                });
            }
        }
    }
}
