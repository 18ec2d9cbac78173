//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding
//! (admissionregistration.k8s.io/v1), evaluated with CEL (`crate::k8scel`).
//! Follows staging/src/k8s.io/apiserver/pkg/admission/plugin/policy/validating
//! (dispatcher.go: binding → policy → params, matchConditions, validations,
//! failurePolicy, validationActions, the refusal text and reason) and
//! .../policy/matching (matchConstraints, matchResources, namespace and
//! object selectors).

use super::Request;
use crate::auth::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::k8scel::{self, Authz};
use crate::selectors::LabelSelector;
use crate::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;

const GROUP: &str = "admissionregistration.k8s.io";

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn any_or(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// One NamedRuleWithOperations against the request (matching/matching.go, rules.go).
fn rule_matches(rule: &Value, req: &Request) -> bool {
    let d = req.def;
    let resources = strs(&rule["resources"]);
    let resource_ok = resources.iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        let res_ok = res == "*" || res == d.plural;
        let sub_ok = if r.contains('/') {
            sub == "*" || sub == req.sub
        } else {
            req.sub.is_empty()
        };
        res_ok && sub_ok
    });
    let scope = rule["scope"].as_str().unwrap_or("*");
    let scope_ok = match scope {
        "Cluster" => !d.namespaced,
        "Namespaced" => d.namespaced,
        _ => true,
    };
    let names = strs(&rule["resourceNames"]);
    any_or(&strs(&rule["apiGroups"]), &d.group)
        && any_or(&strs(&rule["apiVersions"]), &d.version)
        && any_or(&strs(&rule["operations"]), req.op.as_str())
        && resource_ok
        && scope_ok
        && (names.is_empty() || names.contains(&req.name()))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector.is_null() || LabelSelector::from_object(selector).matches_labels(labels)
}

/// MatchResources: resourceRules minus excludeResourceRules, then the
/// selectors. No resourceRules match every request (matching.go Matches:
/// a binding's matchResources may only select namespaces or objects).
fn resources_match(m: &Value, req: &Request, namespace: Option<&Value>) -> bool {
    let rules = m["resourceRules"].as_array().cloned().unwrap_or_default();
    if !rules.is_empty() && !rules.iter().any(|r| rule_matches(r, req)) {
        return false;
    }
    if m["excludeResourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| rule_matches(r, req))
    {
        return false;
    }
    let ns_labels = if req.is("", "namespaces") {
        req.object["metadata"]["labels"].clone()
    } else {
        namespace
            .map(|n| n["metadata"]["labels"].clone())
            .unwrap_or(Value::Null)
    };
    if (req.def.namespaced || req.is("", "namespaces"))
        && !labels_match(&m["namespaceSelector"], &ns_labels)
    {
        return false;
    }
    let obj_labels = &req.object["metadata"]["labels"];
    let old_labels = req
        .old
        .map(|o| o["metadata"]["labels"].clone())
        .unwrap_or(Value::Null);
    labels_match(&m["objectSelector"], obj_labels)
        || labels_match(&m["objectSelector"], &old_labels)
}

/// The Status of a refusal (dispatcher.go: admission.NewForbidden, then
/// the validation's reason, Invalid by default, and its code).
fn refusal(req: &Request, policy: &str, binding: &str, message: &str, reason: &str) -> ApiError {
    let text = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
    );
    let mut e = crate::rbac::forbidden_status(&req.def.group, &req.def.plural, req.name(), &text);
    let (code, reason) = match reason {
        "Forbidden" => (403, "Forbidden"),
        "Unauthorized" => (401, "Unauthorized"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    };
    e.code = code;
    e.reason = reason;
    if let Some(d) = e.details.as_mut() {
        d["causes"] = json!([{"message": text}]);
    }
    e
}

fn request_json(req: &Request, user: &UserInfo) -> Value {
    let d = req.def;
    let kind = json!({"group": d.group, "version": d.version, "kind": d.kind});
    let resource = json!({"group": d.group, "version": d.version, "resource": d.plural});
    json!({
        "kind": kind, "resource": resource, "subResource": req.sub,
        "requestKind": kind, "requestResource": resource, "requestSubResource": req.sub,
        "name": req.name(), "namespace": req.namespace(), "operation": req.op.as_str(),
        "userInfo": user.to_json(), "dryRun": req.dry_run,
    })
}

/// The params a binding selects (dispatcher.go collectParams); None: the
/// policy takes no params.
fn params_for(
    s: &Store,
    req: &Request,
    policy: &Value,
    binding: &Value,
) -> Result<Option<Vec<Value>>, String> {
    let kind = &policy["spec"]["paramKind"];
    if kind.is_null() {
        return Ok(None);
    }
    let pref = &binding["spec"]["paramRef"];
    let Some(def) = req.registry.by_kind(
        kind["apiVersion"].as_str().unwrap_or(""),
        kind["kind"].as_str().unwrap_or(""),
    ) else {
        return Err(format!(
            "failed to find resource referenced by paramKind: '{}'",
            kind
        ));
    };
    let ns = match pref["namespace"].as_str().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None if def.namespaced => req.namespace().to_string(),
        None => String::new(),
    };
    let found: Vec<Value> = if let Some(name) = pref["name"].as_str().filter(|n| !n.is_empty()) {
        s.get(&def.gr(), &ns, name)
            .map(|o| vec![(*o).clone()])
            .unwrap_or_default()
    } else {
        s.list(&def.gr(), &ns)
            .into_iter()
            .filter(|o| labels_match(&pref["selector"], &o["metadata"]["labels"]))
            .map(|o| (*o).clone())
            .collect()
    };
    if found.is_empty() && pref["parameterNotFoundAction"].as_str() == Some("Deny") {
        return Err("failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".into());
    }
    Ok(Some(found))
}

/// An expression's value, or its error text as the dispatcher words it.
fn eval(expr: &str, vars: &[(&str, &Value)], authz: Option<&Authz>) -> Result<Value, String> {
    let p = k8scel::compile(expr).map_err(|e| format!("compilation failed: {e}"))?;
    k8scel::eval(&p, vars, authz).map_err(|e| format!("expression '{expr}' resulted in error: {e}"))
}

/// The composited variables, each seeing the ones before it; one that
/// fails to evaluate is left out (an expression reading it then fails).
fn composite(
    spec: &Value,
    vars: &[(&str, Value)],
    authz: Option<&Authz>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut variables = serde_json::Map::new();
    for v in spec["variables"].as_array().into_iter().flatten() {
        let mut refs: Vec<(&str, &Value)> = vars.iter().map(|(k, v)| (*k, v)).collect();
        let vv = Value::Object(variables.clone());
        refs.push(("variables", &vv));
        match eval(v["expression"].as_str().unwrap_or(""), &refs, authz) {
            Ok(value) => {
                variables.insert(v["name"].as_str().unwrap_or("").to_string(), value);
            }
            Err(e) if authz.is_some() => return Err(e),
            Err(_) => {}
        }
    }
    Ok(variables)
}

/// Evaluates one binding with one param (or none): Some(message, reason) on refusal.
fn evaluate(
    policy: &Value,
    vars: &mut Vec<(&str, Value)>,
    authz: &Authz,
) -> Result<Option<(String, String)>, String> {
    let spec = &policy["spec"];
    // A messageExpression has no `authorizer`, nor has a variable it reads
    // (k8s.io/apiserver pkg/admission/plugin/policy/validating/plugin.go:
    // messages compile with `HasAuthorizer: false`, and composited
    // variables are evaluated in the reading expression's activation).
    let message_variables = composite(spec, vars, None)?;
    let mut message_vars: Vec<(&str, Value)> = vars.clone();
    message_vars.push(("variables", Value::Object(message_variables)));
    let message_refs: Vec<(&str, &Value)> = message_vars.iter().map(|(k, v)| (*k, v)).collect();
    let variables = composite(spec, vars, Some(authz))?;
    vars.push(("variables", Value::Object(variables)));
    let refs: Vec<(&str, &Value)> = vars.iter().map(|(k, v)| (*k, v)).collect();
    for c in spec["matchConditions"].as_array().into_iter().flatten() {
        match eval(c["expression"].as_str().unwrap_or(""), &refs, Some(authz))? {
            Value::Bool(true) => {}
            Value::Bool(false) => return Ok(None),
            other => {
                return Err(format!(
                    "matchCondition '{}' must evaluate to bool, got {other}",
                    c["name"].as_str().unwrap_or("")
                ))
            }
        }
    }
    for v in spec["validations"].as_array().into_iter().flatten() {
        let expr = v["expression"].as_str().unwrap_or("");
        match eval(expr, &refs, Some(authz))? {
            Value::Bool(true) => continue,
            Value::Bool(false) => {}
            other => {
                return Err(format!(
                    "expression '{expr}' resulted in error: must evaluate to bool, got {other}"
                ))
            }
        }
        let from_expr = v["messageExpression"]
            .as_str()
            .and_then(|m| eval(m, &message_refs, None).ok())
            .and_then(|m| m.as_str().map(|s| s.trim().to_string()))
            .filter(|m| !m.is_empty() && !m.contains('\n'));
        let message = from_expr
            .or_else(|| {
                v["message"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .map(String::from)
            })
            .unwrap_or_else(|| format!("failed expression: {expr}"));
        return Ok(Some((
            message,
            v["reason"].as_str().unwrap_or("Invalid").to_string(),
        )));
    }
    Ok(None)
}

pub fn validate(s: &Store, req: &Request) -> ApiResult<()> {
    let bindings = s.list(&format!("{GROUP}/validatingadmissionpolicybindings"), "");
    // Policies do not apply to the admission configuration itself.
    if bindings.is_empty() || req.def.group == GROUP {
        return Ok(());
    }
    let namespace = if req.def.namespaced {
        s.get("/namespaces", "", req.namespace())
    } else {
        None
    };
    let internal = UserInfo::new(
        "system:kube-controller-manager",
        &[crate::auth::AUTHENTICATED],
    );
    let user = req.user.cloned().unwrap_or(internal);
    let authz = Authz {
        rbac: Arc::new(crate::rbac::Snapshot::take(s)),
        user: Arc::new(user.clone()),
        request: json!({"group": req.def.group, "resource": req.def.plural, "subresource": req.sub,
            "namespace": req.namespace(), "name": req.name()}),
    };
    for b in bindings {
        let bname = crate::util::name_of(&b);
        let Some(policy) = s.get(
            &format!("{GROUP}/validatingadmissionpolicies"),
            "",
            b["spec"]["policyName"].as_str().unwrap_or(""),
        ) else {
            continue;
        };
        let pname = crate::util::name_of(&policy);
        if !resources_match(
            &policy["spec"]["matchConstraints"],
            req,
            namespace.as_deref(),
        ) {
            continue;
        }
        if b["spec"]["matchResources"].is_object()
            && !resources_match(&b["spec"]["matchResources"], req, namespace.as_deref())
        {
            continue;
        }
        let deny = strs(&b["spec"]["validationActions"]).contains(&"Deny");
        let fail = policy["spec"]["failurePolicy"].as_str().unwrap_or("Fail") == "Fail";
        let base: Vec<(&str, Value)> = vec![
            ("object", req.object.clone()),
            ("oldObject", req.old.cloned().unwrap_or(Value::Null)),
            ("request", request_json(req, &user)),
            (
                "namespaceObject",
                namespace.as_deref().cloned().unwrap_or(Value::Null),
            ),
        ];
        let params = match params_for(s, req, &policy, &b) {
            Ok(p) => p,
            Err(e) if fail && deny => return Err(refusal(req, pname, bname, &e, "Invalid")),
            Err(_) => continue,
        };
        let params: Vec<Value> = params.unwrap_or_else(|| vec![Value::Null]);
        for p in params {
            let mut vars = base.clone();
            vars.push(("params", p));
            match evaluate(&policy, &mut vars, &authz) {
                Ok(Some((message, reason))) if deny => {
                    return Err(refusal(req, pname, bname, &message, &reason))
                }
                Err(e) if fail && deny => return Err(refusal(req, pname, bname, &e, "Invalid")),
                _ => {}
            }
        }
    }
    Ok(())
}
