//! `${VAR}` and `${VAR:-default}` expansion over the parsed YAML tree, so an expanded
//! value can never change the document's structure (a secret containing `: #` stays a string).

use serde_yaml::Value;

use super::ConfigError;

/// Expands every string scalar in place. `lookup` is the environment (a closure so tests
/// need not touch the process environment). Errors carry the YAML path of the string.
pub fn expand_tree(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    walk(value, &mut String::new(), lookup, errors);
}

fn walk(
    value: &mut Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return;
            }
            match expand_str(s, lookup) {
                Ok(expanded) => {
                    // A value that was exactly one reference keeps a scalar type, so
                    // `threads: ${THREADS:-2}` works for numeric and boolean fields.
                    let whole =
                        s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                    *value = if whole {
                        typed_scalar(expanded)
                    } else {
                        Value::String(expanded)
                    };
                }
                Err(msg) => errors.push(ConfigError::at(path.clone(), msg)),
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, lookup, errors);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match k {
                    Value::String(k) => path.push_str(k),
                    other => path.push_str(serde_yaml::to_string(other).unwrap_or_default().trim()),
                }
                walk(v, path, lookup, errors);
                path.truncate(len);
            }
        }
        Value::Tagged(t) => walk(&mut t.value, path, lookup, errors),
        _ => {}
    }
}

fn typed_scalar(s: String) -> Value {
    // Only where the number reads back as the same text: `0042` or a 64-digit hash
    // stays a string (secret fields accept both forms).
    if let Ok(u) = s.parse::<u64>() {
        if u.to_string() == s {
            return Value::Number(u.into());
        }
    }
    if let Ok(i) = s.parse::<i64>() {
        if i.to_string() == s {
            return Value::Number(i.into());
        }
    }
    match s.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(s),
    }
}

/// Expands one string. `$$` is a literal `$`.
pub fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body_and_rest) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_and_rest.find('}') else {
            return Err(format!("unclosed \"${{\" in {s:?}"));
        };
        let body = &body_and_rest[..end];
        let (name, default) = match body.find(":-") {
            Some(i) => (&body[..i], Some(&body[i + 2..])),
            None => (body, None),
        };
        if !is_var_name(name) {
            return Err(format!(
                "invalid environment variable name {name:?} in \"${{{body}}}\""
            ));
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                ))
            }
        }
        rest = &body_and_rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            "N" => Some("42".into()),
            "Z" => Some("0042".into()),
            "HASH" => Some("1".repeat(64)),
            _ => None,
        }
    }

    #[test]
    fn expands_references_defaults_and_escapes() {
        assert_eq!(expand_str("x-${A}-y", &env).unwrap(), "x-alpha-y");
        assert_eq!(expand_str("${MISSING:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand_str("${EMPTY:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand_str("cost $$5 ${A}", &env).unwrap(), "cost $5 alpha");
        assert_eq!(expand_str("plain $ sign", &env).unwrap(), "plain $ sign");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = expand_str("${NOPE}", &env).unwrap_err();
        assert!(err.contains("NOPE"), "{err}");
        assert!(expand_str("${A", &env).unwrap_err().contains("unclosed"));
        assert!(expand_str("${1X}", &env).unwrap_err().contains("invalid"));
    }

    #[test]
    fn tree_expansion_keeps_types_and_paths() {
        let mut v: Value = serde_yaml::from_str("a: ${N}\nb: [\"${A}\", \"${NOPE}\"]\n").unwrap();
        let mut errors = vec![];
        expand_tree(&mut v, &env, &mut errors);
        assert_eq!(v["a"], Value::Number(42.into()));
        assert_eq!(v["b"][0], Value::String("alpha".into()));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "b[1]");
    }

    #[test]
    fn numbers_that_would_change_stay_strings() {
        let mut v: Value = serde_yaml::from_str(
            "z: ${Z}
h: ${HASH}
",
        )
        .unwrap();
        expand_tree(&mut v, &env, &mut vec![]);
        assert_eq!(v["z"], Value::String("0042".into()));
        assert_eq!(v["h"], Value::String("1".repeat(64)));
    }
}
