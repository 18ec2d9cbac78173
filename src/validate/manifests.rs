//! Reading MultiArchImages from YAML or JSON files, for `render -f`.

use serde::Deserialize;

use crate::api::MultiArchImage;

/// The largest input `render` reads: the API server's request body limit
/// (apiserver's MaxRequestBodyBytes, 3 MiB), since nothing larger could
/// be applied.
pub const MAX_MANIFEST_BYTES: usize = 3 * 1024 * 1024;
/// The deepest nesting of a document: a MultiArchImage is at most 6 deep
/// (spec.resources.limits.cpu); a deeper document is garbage.
pub const MAX_MANIFEST_DEPTH: usize = 32;
/// A value a type error quotes is at most this long; longer ones are only
/// measured.
const MAX_QUOTED_VALUE: usize = 64;

/// Parses the MultiArchImage documents of a YAML (or JSON) stream; other
/// kinds in the stream (a ConfigMap beside it, say) are passed over.
pub fn parse_manifests(text: &str) -> Result<Vec<MultiArchImage>, String> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "the input is {} bytes; at most {MAX_MANIFEST_BYTES}",
            text.len()
        ));
    }
    let mut found = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(document)
            .map_err(|e| format!("document {}: not valid YAML: {e}", index + 1))?;
        if value.is_null() {
            continue;
        }
        if depth(&value) > MAX_MANIFEST_DEPTH {
            return Err(format!(
                "document {}: nested deeper than {MAX_MANIFEST_DEPTH} levels",
                index + 1
            ));
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
            None => format!("{path}: {}", plain_type_error(&inner)),
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

/// How deeply `value` nests (a scalar is 1), without recursion.
fn depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// serde's `invalid type: string "two", expected i32` in the words of the
/// field: `expected an integer, got "two"`. Other messages pass unchanged.
fn plain_type_error(message: &str) -> String {
    let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "))
    else {
        return message.to_string();
    };
    let expected = match expected {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            "an integer"
        }
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a map" => "an object",
        e if e.starts_with("struct ") => "an object",
        e => e,
    };
    let got = if let Some(text) = got.strip_prefix("string ") {
        let chars = text.trim_matches('"').chars().count();
        if chars > MAX_QUOTED_VALUE {
            format!("a string of {chars} characters")
        } else {
            text.to_string()
        }
    } else if let Some((_, literal)) = got.split_once(" `") {
        literal.trim_end_matches('`').to_string()
    } else {
        match got {
            "sequence" => "a list".to_string(),
            "map" => "an object".to_string(),
            "unit value" => "null".to_string(),
            other => other.to_string(),
        }
    };
    format!("expected {expected}, got {got}")
}
