//! `/openapi/v3`: one document per group-version with the schemas of its
//! kinds, as kube-apiserver publishes them (staging/src/k8s.io/apiserver/
//! pkg/server/routes/openapi.go, kube-openapi's spec3 handler). Built-in
//! schemas come from k8s-openapi (its `schemars` impls carry the upstream
//! descriptions); custom resources get their CRD version's
//! `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` added, as
//! apiextensions-apiserver's builder does (pkg/controller/openapi/builder).
//! `kubectl explain` reads these; the PATCH/PUT operations with their
//! `fieldValidation` parameter make kubectl use server-side field validation.

use crate::resources::{Registry, ResDef};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};

type SchemaFn = fn(&mut SchemaGenerator) -> schemars::Schema;

fn sub<T: schemars::JsonSchema>(g: &mut SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// The k8s-openapi type of a served built-in kind.
fn builtin_schema(group: &str, version: &str, kind: &str) -> Option<SchemaFn> {
    use k8s_openapi::api::{
        admissionregistration, apps, authorization, batch, coordination, core, discovery, events,
        rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    Some(match (group, version, kind) {
        ("", "v1", "Namespace") => sub::<core::v1::Namespace>,
        ("", "v1", "Node") => sub::<core::v1::Node>,
        ("", "v1", "Pod") => sub::<core::v1::Pod>,
        ("", "v1", "Secret") => sub::<core::v1::Secret>,
        ("", "v1", "ConfigMap") => sub::<core::v1::ConfigMap>,
        ("", "v1", "ServiceAccount") => sub::<core::v1::ServiceAccount>,
        ("", "v1", "Event") => sub::<core::v1::Event>,
        ("", "v1", "Service") => sub::<core::v1::Service>,
        ("", "v1", "Endpoints") => sub::<core::v1::Endpoints>,
        ("batch", "v1", "Job") => sub::<batch::v1::Job>,
        ("apps", "v1", "Deployment") => sub::<apps::v1::Deployment>,
        ("apps", "v1", "ReplicaSet") => sub::<apps::v1::ReplicaSet>,
        ("coordination.k8s.io", "v1", "Lease") => sub::<coordination::v1::Lease>,
        ("events.k8s.io", "v1", "Event") => sub::<events::v1::Event>,
        ("rbac.authorization.k8s.io", "v1", "Role") => sub::<rbac::v1::Role>,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => sub::<rbac::v1::RoleBinding>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => sub::<rbac::v1::ClusterRole>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            sub::<rbac::v1::ClusterRoleBinding>
        }
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => {
            sub::<authorization::v1::SelfSubjectAccessReview>
        }
        ("authorization.k8s.io", "v1", "SubjectAccessReview") => {
            sub::<authorization::v1::SubjectAccessReview>
        }
        ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => {
            sub::<authorization::v1::LocalSubjectAccessReview>
        }
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy") => {
            sub::<admissionregistration::v1::ValidatingAdmissionPolicy>
        }
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding") => {
            sub::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>
        }
        ("discovery.k8s.io", "v1", "EndpointSlice") => sub::<discovery::v1::EndpointSlice>,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            sub::<apiextensions::v1::CustomResourceDefinition>
        }
        _ => return None,
    })
}

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for d in &reg.defs {
        let key = gv_key(&d.group, &d.version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=kube-sim")}),
        );
    }
    json!({"paths": paths})
}

/// The definition name of a custom resource: the reversed group, then
/// version and kind (`dev.multiarch.v1alpha1.MultiArchImage`).
fn cr_schema_name(d: &ResDef) -> String {
    let mut parts: Vec<&str> = d.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), d.version, d.kind)
}

/// `{"$ref": r, ...siblings}` → `{"allOf": [{"$ref": r}], ...siblings}`, the
/// OpenAPI 3.0 form kube-openapi emits (a `$ref` may not have siblings).
fn wrap_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // A string `$ref` is a reference; JSONSchemaProps' `properties`
            // also has a property named `$ref` (a schema object).
            if m.len() > 1 && m.get("$ref").is_some_and(Value::is_string) {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{"$ref": r}]));
                }
            }
            m.values_mut().for_each(wrap_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}

pub fn group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResDef> = reg
        .defs
        .iter()
        .filter(|d| d.group == group && d.version == version)
        .map(|d| d.as_ref())
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
    let mut kinds: Vec<(String, &ResDef)> = vec![];
    let mut custom: Vec<(String, Value)> = vec![];
    let meta = gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
    for d in &defs {
        if d.is_crd {
            let name = cr_schema_name(d);
            let mut s = d
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object"}));
            let props = crate::util::ensure_obj(&mut s, &["properties"]);
            props.insert("apiVersion".into(), json!({"type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
            props.insert("kind".into(), json!({"type": "string",
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
            let mut m = serde_json::to_value(&meta).unwrap_or_default();
            m["description"] = json!("Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata");
            props.insert("metadata".into(), m);
            custom.push((name.clone(), s));
            kinds.push((name, d));
        } else if let Some(f) = builtin_schema(&d.group, &d.version, &d.kind) {
            let r = f(&mut gen);
            let name = r
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .unwrap_or("")
                .to_string();
            kinds.push((name, d));
        }
    }
    let mut schemas = gen.take_definitions(true);
    for (name, s) in custom {
        schemas.insert(name, s);
    }
    for (name, d) in &kinds {
        if let Some(s) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            s.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": d.group, "version": d.version, "kind": d.kind}]),
            );
        }
    }
    let mut schemas = Value::Object(schemas);
    wrap_refs(&mut schemas);
    let mut paths = Map::new();
    for (name, d) in &kinds {
        let prefix = format!("/{}", gv_key(group, version));
        let path = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("{prefix}/{}/{{name}}", d.plural)
        };
        let op = |verb: &str, op_id: &str| {
            json!({
                "operationId": format!("{op_id}{}", d.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": {"group": d.group, "version": d.version, "kind": d.kind},
                "parameters": [
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                ],
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}}},
            })
        };
        let get = json!({
            "operationId": format!("read{}", d.kind),
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": {"group": d.group, "version": d.version, "kind": d.kind},
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}}},
        });
        paths.insert(
            path,
            json!({"get": get, "patch": op("patch", "patch"), "put": op("put", "replace")}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0-sim"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
