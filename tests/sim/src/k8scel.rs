//! Kubernetes CEL on the `cel` crate (cel-rust): JSON values in and out,
//! and the `authorizer` library of
//! staging/src/k8s.io/apiserver/pkg/cel/library/authz.go
//! (`authorizer.group(g).resource(r).subresource(s).namespace(n).name(x).check(verb)`,
//! `authorizer.path(p).check(verb)`, `authorizer.serviceAccount(ns, name)`,
//! `authorizer.requestResource`, and on a decision `allowed()`, `reason()`,
//! `errored()`, `error()`), answered by RBAC.
//!
//! The builder values are CEL maps tagged with `__authz` (the real library
//! uses opaque types; expressions cannot tell the difference unless they
//! index them).

use crate::auth::UserInfo;
use crate::rbac::{Attributes, Snapshot};
use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Value};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The standard library plus cel-go's strings extension (Kubernetes'
/// environment has it: staging/src/k8s.io/apiserver/pkg/cel/environment/base.go).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    cel::extensions::strings(&mut env).expect("the strings extension registers");
    Arc::new(env)
});

thread_local! {
    /// A context holding the Kubernetes libraries, built once per thread:
    /// evaluations run in child scopes of it, so a write pays no
    /// registration.
    static LIBRARIES: Context<'static, 'static> = {
        let mut ctx = Context::with_env(ENV.clone());
        crate::k8scel_lib::install(&mut ctx);
        ctx
    };
}

const TAG: &str = "__authz";

pub type Program = cel::Program;

/// Compiled expressions by source: parsing is far slower than evaluating,
/// and the same rules run on every write (the real server compiles them
/// once, when the CRD or policy is stored).
static PROGRAMS: LazyLock<Mutex<HashMap<String, Arc<Program>>>> = LazyLock::new(Default::default);
/// Cached programs kept at most; the cache is emptied when full.
const MAX_CACHED_PROGRAMS: usize = 4096;

pub fn compile(expr: &str) -> Result<Arc<Program>, String> {
    if let Some(p) = PROGRAMS.lock().unwrap_or_else(|e| e.into_inner()).get(expr) {
        return Ok(p.clone());
    }
    let p = Arc::new(ENV.compile(expr).map_err(|e| e.to_string())?);
    let mut cache = PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= MAX_CACHED_PROGRAMS {
        cache.clear();
    }
    cache.insert(expr.to_string(), p.clone());
    Ok(p)
}

pub fn to_cel(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Json::Object(m) => {
            let map: HashMap<Key, Value> = m
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

pub fn to_json(v: &Value) -> Json {
    v.json().unwrap_or(Json::Null)
}

/// Who `authorizer` checks for, and against which RBAC state.
#[derive(Clone)]
pub struct Authz {
    pub rbac: Arc<Snapshot>,
    pub user: Arc<UserInfo>,
    /// The request's own resource, for `authorizer.requestResource`.
    pub request: Json,
}

fn user_json(u: &UserInfo) -> Json {
    json!({"username": u.username, "groups": u.groups})
}

fn tagged(this: &Value, want: &[&str], f: &str) -> Result<Json, ExecutionError> {
    let j = to_json(this);
    match j[TAG].as_str() {
        Some(t) if want.contains(&t) => Ok(j),
        _ => Err(ExecutionError::function_error(f, "no such overload")),
    }
}

fn setter(
    name: &'static str,
    from: &'static [&'static str],
    to: &'static str,
) -> impl Fn(This<Value>, Arc<String>) -> Result<Value, ExecutionError> + Send + Sync + 'static {
    move |This(this): This<Value>, arg: Arc<String>| {
        let mut j = tagged(&this, from, name)?;
        j[TAG] = json!(to);
        j[name] = json!(arg.as_str());
        Ok(to_cel(&j))
    }
}

fn install(ctx: &mut Context, authz: &Authz) {
    let _ = ctx.add_function("group", setter("group", &["authorizer"], "group"));
    let _ = ctx.add_function("resource", setter("resource", &["group"], "resource"));
    let _ = ctx.add_function(
        "subresource",
        setter("subresource", &["resource"], "resource"),
    );
    let _ = ctx.add_function("namespace", setter("namespace", &["resource"], "resource"));
    let _ = ctx.add_function("name", setter("name", &["resource"], "resource"));
    let _ = ctx.add_function("path", setter("path", &["authorizer"], "path"));
    let _ = ctx.add_function(
        "serviceAccount",
        |This(this): This<Value>, ns: Arc<String>, name: Arc<String>| {
            let mut j = tagged(&this, &["authorizer"], "serviceAccount")?;
            j["user"] = user_json(&UserInfo::service_account(&ns, &name, ""));
            Ok::<Value, ExecutionError>(to_cel(&j))
        },
    );
    let rbac = authz.rbac.clone();
    let _ = ctx.add_function(
        "check",
        move |This(this): This<Value>, verb: Arc<String>| {
            let j = tagged(&this, &["resource", "path"], "check")?;
            let s = |k: &str| j[k].as_str().unwrap_or("").to_string();
            let user = UserInfo {
                username: j["user"]["username"].as_str().unwrap_or("").into(),
                groups: j["user"]["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(String::from))
                    .collect(),
                ..Default::default()
            };
            let a = Attributes {
                user: Arc::new(user),
                verb: verb.to_string(),
                resource_request: j[TAG] == "resource",
                api_group: s("group"),
                resource: s("resource"),
                subresource: s("subresource"),
                namespace: s("namespace"),
                name: s("name"),
                path: s("path"),
                ..Default::default()
            };
            let (allowed, reason) = crate::rbac::authorize_in(rbac.as_ref(), &a);
            Ok::<Value, ExecutionError>(to_cel(
                &json!({TAG: "decision", "allowed": allowed, "reason": reason}),
            ))
        },
    );
    let _ = ctx.add_function("allowed", |This(this): This<Value>| {
        Ok::<Value, ExecutionError>(Value::Bool(
            tagged(&this, &["decision"], "allowed")?["allowed"] == true,
        ))
    });
    let _ = ctx.add_function("reason", |This(this): This<Value>| {
        let j = tagged(&this, &["decision"], "reason")?;
        Ok::<Value, ExecutionError>(Value::String(Arc::new(
            j["reason"].as_str().unwrap_or("").into(),
        )))
    });
    let _ = ctx.add_function("errored", |This(this): This<Value>| {
        tagged(&this, &["decision"], "errored")?;
        Ok::<Value, ExecutionError>(Value::Bool(false))
    });
    let _ = ctx.add_function("error", |This(this): This<Value>| {
        tagged(&this, &["decision"], "error")?;
        Ok::<Value, ExecutionError>(Value::String(Arc::new(String::new())))
    });
    let user = user_json(&authz.user);
    let mut rr = authz.request.clone();
    rr[TAG] = json!("resource");
    rr["user"] = user.clone();
    ctx.add_variable_from_value(
        "authorizer",
        to_cel(&json!({TAG: "authorizer", "user": user, "requestResource": rr})),
    );
}

/// Evaluates a compiled expression with JSON variables.
pub fn eval(
    program: &Program,
    vars: &[(&str, &Json)],
    authz: Option<&Authz>,
) -> Result<Json, String> {
    let run = |ctx: &mut Context| {
        for (name, v) in vars {
            ctx.add_variable_from_value(*name, to_cel(v));
        }
        program
            .execute(ctx)
            .map(|v| to_json(&v))
            .map_err(|e| e.to_string())
    };
    match authz {
        // Functions bound to this request need a root context of their own.
        Some(a) => {
            let mut ctx = Context::with_env(ENV.clone());
            crate::k8scel_lib::install(&mut ctx);
            install(&mut ctx, a);
            run(&mut ctx)
        }
        None => LIBRARIES.with(|root| run(&mut root.new_inner_scope())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expr: &str, vars: &[(&str, &Json)]) -> Json {
        eval(&compile(expr).unwrap(), vars, None).unwrap()
    }

    /// Kubernetes' libraries: strings (cel-go ext strings), lists
    /// (library/lists.go), quantity (library/quantity.go).
    #[test]
    fn kubernetes_libraries() {
        let obj = json!({"tags": ["b", "a"], "n": [3, 1, 2], "cpu": "1500m", "mem": "1Gi"});
        let v = [("o", &obj)];
        assert_eq!(run("o.tags.join(',')", &v), json!("b,a"));
        assert_eq!(run("'a/b/c'.split('/')", &v), json!(["a", "b", "c"]));
        assert_eq!(run("'LiNuX'.lowerAscii() == 'linux'", &v), json!(true));
        assert_eq!(run("'  x '.trim() + 'abc'.substring(1)", &v), json!("xbc"));
        assert_eq!(run("o.tags.isSorted()", &v), json!(false));
        assert_eq!(
            run("['a', 'b'].isSorted() && [1, 2, 2].isSorted()", &v),
            json!(true)
        );
        assert_eq!(run("o.n.sum()", &v), json!(6));
        assert_eq!(run("[1.5, 2.0].sum()", &v), json!(3.5));
        assert_eq!(run("o.n.min() == 1 && o.n.max() == 3", &v), json!(true));
        assert!(eval(&compile("[].min()").unwrap(), &v, None).is_err());
        assert_eq!(
            run("quantity(o.cpu).isGreaterThan(quantity('1'))", &v),
            json!(true)
        );
        assert_eq!(run("quantity(o.mem).asInteger()", &v), json!(1073741824));
        assert_eq!(
            run("quantity('500m').add(quantity('1500m')).asInteger()", &v),
            json!(2)
        );
        assert_eq!(
            run("quantity('1').compareTo(quantity('1000m'))", &v),
            json!(0)
        );
        assert_eq!(
            run("isQuantity('1Gi') && !isQuantity('1 Gi')", &v),
            json!(true)
        );
        assert_eq!(run("quantity('-2').sign()", &v), json!(-1));
        assert!(eval(&compile("quantity('garbage')").unwrap(), &v, None).is_err());
    }

    #[test]
    fn expressions_over_json() {
        let obj = json!({"spec": {"replicas": 3, "git": {"url": "x"}, "tags": ["a", "b"]}});
        assert_eq!(
            run("object.spec.replicas > 2", &[("object", &obj)]),
            json!(true)
        );
        assert_eq!(
            run(
                "has(object.spec.git) != has(object.spec.configMap)",
                &[("object", &obj)]
            ),
            json!(true)
        );
        assert_eq!(
            run(
                "object.spec.tags.all(t, t.matches('^[a-z]$'))",
                &[("object", &obj)]
            ),
            json!(true)
        );
        assert_eq!(run("'/a'.startsWith('/')", &[]), json!(true));
        assert_eq!(
            run(
                "size(object.spec.tags) == 2 && 'a' in object.spec.tags",
                &[("object", &obj)]
            ),
            json!(true)
        );
    }
}
