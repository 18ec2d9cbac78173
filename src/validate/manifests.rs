//! Reading MultiArchImages from YAML or JSON files, for `render -f`.

use serde::Deserialize;

use crate::api::MultiArchImage;

/// Parses the MultiArchImage documents of a YAML (or JSON) stream; other
/// kinds in the stream (a ConfigMap beside it, say) are passed over.
pub fn parse_manifests(text: &str) -> Result<Vec<MultiArchImage>, String> {
    let mut found = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(document)
            .map_err(|e| format!("document {}: not valid YAML: {e}", index + 1))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|v| v.as_str());
        if kind != Some("MultiArchImage") {
            continue;
        }
        let api_version = value.get("apiVersion").and_then(|v| v.as_str());
        if api_version != Some("multiarch.dev/v1alpha1") {
            return Err(format!(
                "document {}: apiVersion: expected multiarch.dev/v1alpha1, found {}",
                index + 1,
                api_version.unwrap_or("<none>")
            ));
        }
        let resource = typed(value).map_err(|e| format!("document {}: {e}", index + 1))?;
        found.push(resource);
    }
    if found.is_empty() {
        return Err("no MultiArchImage (apiVersion multiarch.dev/v1alpha1) found".into());
    }
    Ok(found)
}

/// The typed resource of a document, as strictly as `kubectl apply` sends
/// it (server-side field validation `Strict`): a wrong type or a missing
/// field is named by its path, and an unknown field is refused.
fn typed(value: serde_json::Value) -> Result<MultiArchImage, String> {
    let mut unknown = Vec::new();
    // The type meta was checked above; the derived type reads it apart.
    let mut note_unknown = |path: serde_ignored::Path| {
        let path = path.to_string();
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    };
    let deserializer = serde_ignored::Deserializer::new(value, &mut note_unknown);
    let resource: MultiArchImage = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field in its message, at the path of the
        // object that lacks it: say the field's own path, as the API does.
        match inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, _)) if path == "." => format!("{field}: Required value"),
            Some((field, _)) => format!("{path}.{field}: Required value"),
            None => format!("{path}: {inner}"),
        }
    })?;
    match unknown.first() {
        None => Ok(resource),
        Some(_) => Err(unknown
            .iter()
            .map(|path| format!("{path}: unknown field"))
            .collect::<Vec<_>>()
            .join("; ")),
    }
}
