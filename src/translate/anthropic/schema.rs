//! JSON Schema as Anthropic's structured output (`output_config.format`) accepts it: a
//! subset of JSON Schema in which every object is closed (`additionalProperties: false`),
//! unions are `anyOf`, strings keep only the formats it knows, and `minItems` is 0 or 1.
//! Constraints outside the subset are not dropped silently: they go into the node's
//! `description`, where the model can still follow them (the official SDKs do the same
//! before they send a schema). A schema the subset cannot express at all (a node with
//! neither a type, a union nor literals) gives `None`, and the caller emulates instead.

use serde_json::{Map, Value};

const STRING_FORMATS: [&str; 10] = [
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "uri",
    "ipv4",
    "ipv6",
    "uuid",
];
const TYPES: [&str; 7] = [
    "object", "array", "string", "integer", "number", "boolean", "null",
];
/// Deep enough for any real schema; a deeper one is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

pub fn to_output_schema(schema: &Value) -> Option<Value> {
    node(schema, 0)
}

fn node(schema: &Value, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut rest = schema.as_object()?.clone();
    let mut out = Map::new();
    if let Some(defs) = rest.remove("$defs") {
        let mut strict = Map::new();
        for (name, d) in defs.as_object()? {
            strict.insert(name.clone(), node(d, depth + 1)?);
        }
        out.insert("$defs".into(), Value::Object(strict));
    }
    if let Some(r) = rest.remove("$ref") {
        out.insert("$ref".into(), r);
        return Some(Value::Object(out));
    }
    let mut ty = rest.remove("type");
    let union = ["anyOf", "oneOf"]
        .iter()
        .find_map(|k| rest.remove(*k))
        .map(|u| ("anyOf", u))
        .or_else(|| rest.remove("allOf").map(|u| ("allOf", u)));
    let primitive = |v: &Value| !v.is_object() && !v.is_array();
    if rest
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty() && e.iter().all(primitive))
    {
        out.insert("enum".into(), rest.remove("enum")?);
    }
    if rest.get("const").is_some_and(primitive) {
        out.insert("const".into(), rest.remove("const")?);
    }
    let literals = out.contains_key("enum") || out.contains_key("const");
    if literals {
        ty = None;
    }
    let ty = match ty {
        // `["string", "null"]` is a union of types.
        Some(Value::Array(types)) if union.is_none() && !literals => {
            let variants = types
                .iter()
                .map(|t| {
                    let mut v = rest.clone();
                    v.insert("type".into(), t.clone());
                    node(&Value::Object(v), depth + 1)
                })
                .collect::<Option<Vec<_>>>()?;
            return Some(Value::Object(Map::from_iter([(
                "anyOf".to_string(),
                Value::Array(variants),
            )])));
        }
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => Some(t),
        Some(_) => return None,
        None => None,
    };
    if let Some((key, variants)) = union {
        let variants = variants
            .as_array()?
            .iter()
            .map(|v| node(v, depth + 1))
            .collect::<Option<Vec<_>>>()?;
        out.insert(key.into(), Value::Array(variants));
    } else if !literals {
        out.insert("type".into(), Value::String(ty.clone()?));
    }
    for k in ["description", "title"] {
        if let Some(v) = rest.remove(k) {
            out.insert(k.into(), v);
        }
    }
    match ty.as_deref() {
        Some("object") => {
            let mut props = Map::new();
            if let Some(p) = rest.remove("properties") {
                for (name, s) in p.as_object()? {
                    props.insert(name.clone(), node(s, depth + 1)?);
                }
            }
            out.insert("properties".into(), Value::Object(props));
            rest.remove("additionalProperties");
            out.insert("additionalProperties".into(), Value::Bool(false));
            if let Some(r) = rest.remove("required") {
                out.insert("required".into(), r);
            }
        }
        Some("string")
            if rest
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| STRING_FORMATS.contains(&f)) =>
        {
            out.insert("format".into(), rest.remove("format")?);
        }
        Some("array") => {
            if let Some(items) = rest.remove("items") {
                out.insert("items".into(), node(&items, depth + 1)?);
            }
            if rest
                .get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|n| n <= 1)
            {
                out.insert("minItems".into(), rest.remove("minItems")?);
            }
        }
        _ => {}
    }
    if !rest.is_empty() {
        let extra = rest
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = match out.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d}\n\n{{{extra}}}"),
            None => format!("{{{extra}}}"),
        };
        out.insert("description".into(), Value::String(text));
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_closed_and_other_constraints_described() {
        let s = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 2},
                "when": {"type": "string", "format": "date"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3},
                "kind": {"enum": ["a", "b"], "type": "string"},
                "maybe": {"type": ["integer", "null"]},
                "either": {"oneOf": [{"type": "integer"}, {"type": "object", "properties": {}}]},
            },
            "required": ["name"],
            "additionalProperties": true,
        });
        let out = to_output_schema(&s).unwrap();
        assert_eq!(out["additionalProperties"], false);
        assert_eq!(out["required"], json!(["name"]));
        let p = &out["properties"];
        assert_eq!(
            p["name"],
            json!({"type": "string", "description": "{minLength: 2}"})
        );
        assert_eq!(p["when"], json!({"type": "string", "format": "date"}));
        assert_eq!(p["tags"]["items"], json!({"type": "string"}));
        assert_eq!(p["tags"]["description"], "{minItems: 3}");
        assert_eq!(p["kind"], json!({"enum": ["a", "b"]}));
        assert_eq!(
            p["maybe"],
            json!({"anyOf": [{"type": "integer"}, {"type": "null"}]})
        );
        assert_eq!(
            p["either"]["anyOf"][1],
            json!({"type": "object", "properties": {}, "additionalProperties": false})
        );
    }

    #[test]
    fn definitions_and_references_are_kept() {
        let s = json!({
            "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "type": "object",
            "properties": {"item": {"$ref": "#/$defs/Item"}},
        });
        let out = to_output_schema(&s).unwrap();
        assert_eq!(out["$defs"]["Item"]["additionalProperties"], false);
        assert_eq!(out["properties"]["item"], json!({"$ref": "#/$defs/Item"}));
    }

    #[test]
    fn what_the_subset_cannot_say_is_refused() {
        assert!(to_output_schema(&json!({"properties": {}})).is_none());
        assert!(to_output_schema(&json!({"type": "tuple"})).is_none());
        assert!(to_output_schema(&json!("string")).is_none());
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "array", "items": deep});
        }
        assert!(to_output_schema(&deep).is_none());
    }
}
