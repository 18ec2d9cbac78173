//! `meta.k8s.io/v1 Table` responses for `kubectl get`: the printer columns
//! of the built-in kinds and CRDs' additionalPrinterColumns.

use crate::resources::ResDef;
use crate::util::{age_of, human_duration, parse_time, str_at};
use serde_json::{json, Value};

struct Col {
    name: &'static str,
    ty: &'static str,
    priority: i64,
}

fn col(name: &'static str, ty: &'static str, priority: i64) -> Col {
    Col { name, ty, priority }
}

fn age(o: &Value) -> Value {
    json!(age_of(str_at(o, &["metadata", "creationTimestamp"])))
}

/// kubectl's printPod STATUS reasoning.
pub fn pod_status(p: &Value) -> String {
    let st = &p["status"];
    let mut reason = st["reason"]
        .as_str()
        .or(st["phase"].as_str())
        .unwrap_or("Pending")
        .to_string();
    let inits = st["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let n_init = p["spec"]["initContainers"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        let s = &c["state"];
        if s["terminated"]["exitCode"] == 0 && s["terminated"].is_object() {
            continue;
        }
        initializing = true;
        if s["terminated"].is_object() {
            reason = format!(
                "Init:{}",
                s["terminated"]["reason"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("ExitCode:{}", s["terminated"]["exitCode"]))
            );
        } else if let Some(r) = s["waiting"]["reason"]
            .as_str()
            .filter(|r| *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{n_init}");
        }
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in st["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .rev()
        {
            let s = &c["state"];
            if let Some(r) = s["waiting"]["reason"].as_str() {
                reason = r.into();
            } else if let Some(r) = s["terminated"]["reason"].as_str() {
                reason = r.into();
            } else if s["terminated"].is_object() {
                reason = format!("ExitCode:{}", s["terminated"]["exitCode"]);
            } else if c["ready"] == true && s["running"].is_object() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if !p["metadata"]["deletionTimestamp"].is_null() {
        reason = "Terminating".into();
    }
    reason
}

fn cond_true(o: &Value, ty: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn job_status(j: &Value) -> &'static str {
    if !j["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if cond_true(j, "Complete") {
        "Complete"
    } else if cond_true(j, "Failed") {
        "Failed"
    } else if cond_true(j, "FailureTarget") {
        "FailureTarget"
    } else if cond_true(j, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if cond_true(j, "Suspended") {
        "Suspended"
    } else {
        "Running"
    }
}

fn names(list: &Value, key: &str) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c[key].as_str())
        .collect::<Vec<_>>()
        .join(",")
}

type RowFn = fn(&Value) -> Vec<Value>;

fn int_at(o: &Value, f: &str) -> i64 {
    o["status"][f].as_i64().unwrap_or(0)
}

/// The wide columns of workload kinds: containers, images, selector.
fn workload_tail(o: &Value) -> [Value; 3] {
    let cs = &o["spec"]["template"]["spec"]["containers"];
    let sel = o["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    [
        json!(names(cs, "name")),
        json!(names(cs, "image")),
        json!(sel),
    ]
}

/// printers.go deploymentColumnDefinitions / replicaSetColumnDefinitions.
fn apps_columns(deployment: bool) -> (Vec<Col>, RowFn) {
    let extra = [
        col("Containers", "string", 1),
        col("Images", "string", 1),
        col("Selector", "string", 1),
    ];
    if deployment {
        let mut cols = vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Up-to-date", "string", 0),
            col("Available", "string", 0),
            col("Age", "string", 0),
        ];
        cols.extend(extra);
        (cols, |d| {
            let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let mut row = vec![
                json!(d["metadata"]["name"]),
                json!(format!("{}/{want}", int_at(d, "readyReplicas"))),
                json!(int_at(d, "updatedReplicas")),
                json!(int_at(d, "availableReplicas")),
                age(d),
            ];
            row.extend(workload_tail(d));
            row
        })
    } else {
        let mut cols = vec![
            col("Name", "string", 0),
            col("Desired", "integer", 0),
            col("Current", "integer", 0),
            col("Ready", "integer", 0),
            col("Age", "string", 0),
        ];
        cols.extend(extra);
        (cols, |r| {
            let mut row = vec![
                json!(r["metadata"]["name"]),
                json!(r["spec"]["replicas"].as_i64().unwrap_or(1)),
                json!(int_at(r, "replicas")),
                json!(int_at(r, "readyReplicas")),
                age(r),
            ];
            row.extend(workload_tail(r));
            row
        })
    }
}

fn builtin_columns(def: &ResDef) -> (Vec<Col>, RowFn) {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "pods") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                col("Age", "string", 0),
                col("IP", "string", 1),
                col("Node", "string", 1),
                col("Nominated Node", "string", 1),
                col("Readiness Gates", "string", 1),
            ],
            |p| {
                let cs = p["status"]["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let total = p["spec"]["containers"]
                    .as_array()
                    .map(|a| a.len())
                    .unwrap_or(0);
                let ready = cs.iter().filter(|c| c["ready"] == true).count();
                let restarts: i64 = cs
                    .iter()
                    .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                    .sum();
                vec![
                    json!(p["metadata"]["name"]),
                    json!(format!("{ready}/{total}")),
                    json!(pod_status(p)),
                    json!(restarts.to_string()),
                    age(p),
                    json!(p["status"]["podIP"].as_str().unwrap_or("<none>")),
                    json!(p["spec"]["nodeName"].as_str().unwrap_or("<none>")),
                    json!("<none>"),
                    json!("<none>"),
                ]
            },
        ),
        ("batch", "jobs") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Completions", "string", 0),
                col("Duration", "string", 0),
                col("Age", "string", 0),
                col("Containers", "string", 1),
                col("Images", "string", 1),
                col("Selector", "string", 1),
            ],
            |j| {
                let comp = j["spec"]["completions"]
                    .as_i64()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "1".into());
                let succ = j["status"]["succeeded"].as_i64().unwrap_or(0);
                let start = str_at(j, &["status", "startTime"]).and_then(parse_time);
                let end = str_at(j, &["status", "completionTime"])
                    .and_then(parse_time)
                    .unwrap_or_else(chrono::Utc::now);
                let dur = start
                    .map(|s| human_duration((end - s).num_seconds()))
                    .unwrap_or_default();
                let sel = j["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let cs = &j["spec"]["template"]["spec"]["containers"];
                vec![
                    json!(j["metadata"]["name"]),
                    json!(job_status(j)),
                    json!(format!("{succ}/{comp}")),
                    json!(dur),
                    age(j),
                    json!(names(cs, "name")),
                    json!(names(cs, "image")),
                    json!(sel),
                ]
            },
        ),
        ("", "nodes") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Roles", "string", 0),
                col("Age", "string", 0),
                col("Version", "string", 0),
                col("Internal-IP", "string", 1),
                col("External-IP", "string", 1),
                col("OS-Image", "string", 1),
                col("Kernel-Version", "string", 1),
                col("Container-Runtime", "string", 1),
            ],
            |n| {
                let mut status = if cond_true(n, "Ready") {
                    "Ready".to_string()
                } else {
                    "NotReady".to_string()
                };
                if n["spec"]["unschedulable"] == true {
                    status.push_str(",SchedulingDisabled");
                }
                let ip = n["status"]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"] == "InternalIP")
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or("<none>");
                let ni = &n["status"]["nodeInfo"];
                vec![
                    json!(n["metadata"]["name"]),
                    json!(status),
                    json!("<none>"),
                    age(n),
                    json!(ni["kubeletVersion"]),
                    json!(ip),
                    json!("<none>"),
                    json!(ni["osImage"]),
                    json!(ni["kernelVersion"]),
                    json!(ni["containerRuntimeVersion"]),
                ]
            },
        ),
        (_, "events") => (
            vec![
                col("Last Seen", "string", 0),
                col("Type", "string", 0),
                col("Reason", "string", 0),
                col("Object", "string", 0),
                col("Subobject", "string", 1),
                col("Source", "string", 1),
                col("Message", "string", 0),
                col("First Seen", "string", 1),
                col("Count", "string", 1),
                col("Name", "string", 1),
            ],
            |e| {
                // Rows are computed on the core shape (see `rows`).
                let io = &e["involvedObject"];
                let obj = format!(
                    "{}/{}",
                    io["kind"].as_str().unwrap_or("").to_lowercase(),
                    io["name"].as_str().unwrap_or("")
                );
                let last = str_at(e, &["lastTimestamp"]).or(str_at(e, &["eventTime"]));
                let first = str_at(e, &["firstTimestamp"]).or(str_at(e, &["eventTime"]));
                let src = e["source"]["component"]
                    .as_str()
                    .or(e["reportingComponent"].as_str())
                    .unwrap_or("");
                vec![
                    json!(age_of(last)),
                    json!(e["type"]),
                    json!(e["reason"]),
                    json!(obj),
                    json!(io["fieldPath"].as_str().unwrap_or("")),
                    json!(src),
                    json!(e["message"]),
                    json!(age_of(first)),
                    json!(e["count"].as_i64().unwrap_or(1).to_string()),
                    json!(e["metadata"]["name"]),
                ]
            },
        ),
        ("", "namespaces") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0),
            ],
            |n| {
                vec![
                    json!(n["metadata"]["name"]),
                    json!(n["status"]["phase"].as_str().unwrap_or("Active")),
                    age(n),
                ]
            },
        ),
        ("", "secrets") => (
            vec![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Data", "integer", 0),
                col("Age", "string", 0),
            ],
            |s| {
                vec![
                    json!(s["metadata"]["name"]),
                    json!(s["type"]),
                    json!(s["data"].as_object().map(|m| m.len()).unwrap_or(0)),
                    age(s),
                ]
            },
        ),
        ("", "configmaps") => (
            vec![
                col("Name", "string", 0),
                col("Data", "integer", 0),
                col("Age", "string", 0),
            ],
            |c| {
                let n = c["data"].as_object().map(|m| m.len()).unwrap_or(0)
                    + c["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
                vec![json!(c["metadata"]["name"]), json!(n), age(c)]
            },
        ),
        ("", "serviceaccounts") => (
            vec![
                col("Name", "string", 0),
                col("Secrets", "integer", 0),
                col("Age", "string", 0),
            ],
            |s| {
                vec![
                    json!(s["metadata"]["name"]),
                    json!(s["secrets"].as_array().map(|a| a.len()).unwrap_or(0)),
                    age(s),
                ]
            },
        ),
        ("apps", "deployments" | "replicasets") => apps_columns(def.plural == "deployments"),
        ("coordination.k8s.io", "leases") => (
            vec![
                col("Name", "string", 0),
                col("Holder", "string", 0),
                col("Age", "string", 0),
            ],
            |l| {
                vec![
                    json!(l["metadata"]["name"]),
                    json!(l["spec"]["holderIdentity"].as_str().unwrap_or("")),
                    age(l),
                ]
            },
        ),
        // pkg/printers/internalversion/printers.go (roleColumnDefinitions,
        // roleBindingsColumnDefinitions).
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => (
            vec![
                col("Name", "string", 0),
                col("Role", "string", 0),
                col("Age", "string", 0),
            ],
            |b| {
                vec![
                    json!(b["metadata"]["name"]),
                    json!(format!(
                        "{}/{}",
                        b["roleRef"]["kind"].as_str().unwrap_or(""),
                        b["roleRef"]["name"].as_str().unwrap_or("")
                    )),
                    age(b),
                ]
            },
        ),
        ("", "services") => (
            vec![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Cluster-IP", "string", 0),
                col("External-IP", "string", 0),
                col("Port(s)", "string", 0),
                col("Age", "string", 0),
            ],
            |s| {
                let ports: Vec<String> = s["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                    .collect();
                vec![
                    json!(s["metadata"]["name"]),
                    json!(s["spec"]["type"].as_str().unwrap_or("ClusterIP")),
                    json!(s["spec"]["clusterIP"].as_str().unwrap_or("")),
                    json!("<none>"),
                    json!(ports.join(",")),
                    age(s),
                ]
            },
        ),
        ("", "endpoints") => (
            vec![
                col("Name", "string", 0),
                col("Endpoints", "string", 0),
                col("Age", "string", 0),
            ],
            |e| {
                let mut eps = vec![];
                for sub in e["subsets"].as_array().into_iter().flatten() {
                    for a in sub["addresses"].as_array().into_iter().flatten() {
                        for p in sub["ports"].as_array().into_iter().flatten() {
                            eps.push(format!("{}:{}", a["ip"].as_str().unwrap_or(""), p["port"]));
                        }
                    }
                }
                vec![
                    json!(e["metadata"]["name"]),
                    json!(if eps.is_empty() {
                        "<none>".to_string()
                    } else {
                        eps.join(",")
                    }),
                    age(e),
                ]
            },
        ),
        ("apiextensions.k8s.io" | "rbac.authorization.k8s.io", _) => (
            vec![col("Name", "string", 0), col("Created At", "date", 0)],
            |c| {
                vec![
                    json!(c["metadata"]["name"]),
                    json!(c["metadata"]["creationTimestamp"]),
                ]
            },
        ),
        _ => (vec![col("Name", "string", 0), col("Age", "date", 0)], |o| {
            vec![json!(o["metadata"]["name"]), age(o)]
        }),
    }
}

/// A small JSONPath: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`.
pub fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let p = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut cur = vec![obj.clone()];
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            let inner = &r[..end];
            rest = &r[end + 1..];
            let mut next = vec![];
            for v in &cur {
                let Some(arr) = v.as_array() else { continue };
                if inner == "*" {
                    next.extend(arr.iter().cloned());
                } else if let Ok(i) = inner.parse::<i64>() {
                    let idx = if i < 0 { arr.len() as i64 + i } else { i };
                    if let Some(x) = arr.get(idx as usize) {
                        next.push(x.clone());
                    }
                } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
                {
                    let (k, want) = match f.split_once("==") {
                        Some((k, w)) => (
                            k.trim(),
                            Some(w.trim().trim_matches(|c| c == '"' || c == '\'').to_string()),
                        ),
                        None => (f.trim(), None),
                    };
                    for it in arr {
                        let got = it.get(k);
                        let ok = match (&want, got) {
                            (Some(w), Some(g)) => {
                                g.as_str()
                                    .map(String::from)
                                    .unwrap_or_else(|| g.to_string())
                                    == *w
                            }
                            (None, Some(_)) => true,
                            _ => false,
                        };
                        if ok {
                            next.push(it.clone());
                        }
                    }
                }
            }
            cur = next;
        } else {
            break;
        }
    }
    cur
}

fn printer_cell(o: &Value, c: &Value) -> Value {
    let vals = jsonpath(o, c["jsonPath"].as_str().unwrap_or(""));
    let Some(v) = vals.first() else {
        return Value::Null;
    };
    match c["type"].as_str().unwrap_or("string") {
        "date" => json!(age_of(v.as_str())),
        "integer" | "number" | "boolean" => v.clone(),
        _ => match v {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
    }
}

/// Build the Table for `objs` (already in the client's shape).
pub fn table(
    def: &ResDef,
    objs: &[Value],
    include_object: &str,
    rv: u64,
    cont: Option<&str>,
) -> Value {
    let (defs, rows): (Vec<Value>, Vec<Vec<Value>>) = if def.is_crd {
        let mut cds = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
        ];
        let cols = def.printer_columns.clone();
        if cols.is_empty() {
            cds.push(json!({"name": "Age", "type": "date", "format": "", "description": "Creation timestamp", "priority": 0}));
        }
        for c in &cols {
            cds.push(json!({"name": c["name"], "type": c["type"], "format": c["format"].as_str().unwrap_or(""),
                "description": c["description"].as_str().unwrap_or(""), "priority": c["priority"].as_i64().unwrap_or(0)}));
        }
        let rows = objs
            .iter()
            .map(|o| {
                let mut cells = vec![o["metadata"]["name"].clone()];
                if cols.is_empty() {
                    cells.push(age(o));
                }
                cells.extend(cols.iter().map(|c| printer_cell(o, c)));
                cells
            })
            .collect();
        (cds, rows)
    } else {
        let (cols, f) = builtin_columns(def);
        let cds = cols.iter().map(|c| json!({"name": c.name, "type": c.ty,
            "format": if c.name == "Name" { "name" } else { "" }, "description": "", "priority": c.priority})).collect();
        let rows = objs
            .iter()
            .map(|o| {
                if def.is_events_k8s_io() {
                    f(&crate::builtin::event_from_events_api(o.clone()))
                } else {
                    f(o)
                }
            })
            .collect();
        (cds, rows)
    };
    let rows: Vec<Value> = rows.into_iter().zip(objs).map(|(cells, o)| {
        let mut r = json!({"cells": cells});
        match include_object {
            "None" => {}
            "Object" => r["object"] = o.clone(),
            _ => r["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
        }
        r
    }).collect();
    let mut md = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        md["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}], "phase": "Running"}});
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(jsonpath(&o, ".status.phase"), vec![json!("Running")]);
        assert_eq!(jsonpath(&o, ".status.conditions[0].type"), vec![json!("A")]);
    }
}
