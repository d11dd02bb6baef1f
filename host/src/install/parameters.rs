//! Parameter values for one action: what the operator gave, what the last action used, the
//! bundle's defaults; every value checked against its definition before anything runs
//! (103 §Setting Parameter Values).
//!
//! A definition is a JSON Schema; ferry checks the keywords that constrain a single value (type,
//! enum, const, bounds, lengths, pattern, multipleOf) and lets the others through, since the
//! invocation image is the judge of anything deeper. Patterns are matched with Rust's regex
//! syntax, which covers ECMA-262 apart from look-around and back-references.

use crate::bundle::{BundleDoc, Parameter};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A value as the operator gave it.
#[derive(Clone, Debug, PartialEq)]
pub enum Given {
    /// `--param NAME=TEXT`: read as the definition's type says.
    Text(String),
    /// From a parameter file: already typed.
    Typed(Value),
}

/// One parameter that cannot be used, and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub name: String,
    pub rule: &'static str,
    pub message: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter {:?}: {} ({})", self.name, self.message, self.rule)
    }
}

/// Whether a parameter, credential or output declared with `applyTo` takes part in `action`.
pub fn applies(apply_to: Option<&[String]>, action: &str) -> bool {
    apply_to.is_none_or(|actions| actions.is_empty() || actions.iter().any(|a| a == action))
}

/// The values for `action`: each given value, else the last action's, else the definition's
/// default. Every problem is reported, not only the first.
pub fn resolve(
    bundle: &BundleDoc,
    action: &str,
    given: &BTreeMap<String, Given>,
    previous: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, Vec<Refused>> {
    let declared = bundle.parameters.clone().unwrap_or_default();
    let mut refused = Vec::new();
    for name in given.keys().filter(|n| !declared.contains_key(*n)) {
        let known: Vec<&str> = declared.keys().map(String::as_str).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        refused.push(Refused {
            name: name.clone(),
            rule: "unknown",
            message: format!("the bundle declares no such parameter (it declares: {known})"),
        });
    }
    let mut values = BTreeMap::new();
    for (name, parameter) in &declared {
        let schema = definition(bundle, parameter);
        let value = match given.get(name) {
            Some(Given::Text(text)) => Some(read_text(text, schema)),
            Some(Given::Typed(value)) => Some(value.clone()),
            None => previous.get(name).cloned().or_else(|| schema.and_then(|s| s.get("default")).cloned()),
        };
        let Some(value) = value else {
            if parameter.required == Some(true) && applies(parameter.apply_to.as_deref(), action) {
                refused.push(Refused {
                    name: name.clone(),
                    rule: "required",
                    message: format!("a value is required for {action} (give it with --param {name}=VALUE)"),
                });
            }
            continue;
        };
        let before = refused.len();
        if let Some(schema) = schema {
            check(name, &value, schema, &mut refused);
        }
        if refused.len() == before {
            values.insert(name.clone(), value);
        }
    }
    if refused.is_empty() { Ok(values) } else { Err(refused) }
}

/// The text form a value takes in an environment variable or a file: strings as they are,
/// anything else as JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn definition<'b>(bundle: &'b BundleDoc, parameter: &Parameter) -> Option<&'b Value> {
    bundle.definitions.as_ref()?.get(&parameter.definition)
}

fn types(schema: Option<&Value>) -> Vec<&str> {
    match schema.and_then(|s| s.get("type")) {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A command-line value in the first of the definition's types it reads as; text that reads as
/// none stays a string, for `check` to refuse with the expected type named.
fn read_text(text: &str, schema: Option<&Value>) -> Value {
    for kind in types(schema) {
        let read = match kind {
            "integer" => text.parse::<i64>().ok().map(Value::from),
            "number" => text.parse::<f64>().ok().and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
            "boolean" => text.parse::<bool>().ok().map(Value::Bool),
            "null" => (text == "null").then_some(Value::Null),
            "object" | "array" => serde_json::from_str::<Value>(text)
                .ok()
                .filter(|v| if kind == "object" { v.is_object() } else { v.is_array() }),
            _ => None,
        };
        if let Some(value) = read {
            return value;
        }
    }
    Value::String(text.to_owned())
}

fn is_type(value: &Value, kind: &str) -> bool {
    match kind {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "number" => value.is_number(),
        // Draft-07: any number with no fractional part.
        "integer" => value.as_f64().is_some_and(|n| n.fract() == 0.0),
        _ => true,
    }
}

fn check(name: &str, value: &Value, schema: &Value, refused: &mut Vec<Refused>) {
    let mut fail = |rule: &'static str, message: String| {
        refused.push(Refused { name: name.to_owned(), rule, message });
    };
    let shown = crate::untrusted::clip(&value.to_string(), 80).into_owned();
    let kinds = types(Some(schema));
    if !kinds.is_empty() && !kinds.iter().any(|k| is_type(value, k)) {
        fail("type", format!("{shown} is not {}", kinds.join(" or ")));
        return;
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array)
        && !choices.contains(value)
    {
        let list: Vec<String> = choices.iter().map(Value::to_string).collect();
        fail("enum", format!("{shown} is not one of {}", list.join(", ")));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        fail("const", format!("{shown} is not {constant}"));
    }
    if let Some(n) = value.as_f64() {
        let bound = |keyword| schema.get(keyword).and_then(Value::as_f64);
        if let Some(min) = bound("minimum").filter(|min| n < *min) {
            fail("minimum", format!("{shown} is less than the minimum {min}"));
        }
        if let Some(max) = bound("maximum").filter(|max| n > *max) {
            fail("maximum", format!("{shown} is greater than the maximum {max}"));
        }
        if let Some(min) = bound("exclusiveMinimum").filter(|min| n <= *min) {
            fail("exclusiveMinimum", format!("{shown} is not greater than {min}"));
        }
        if let Some(max) = bound("exclusiveMaximum").filter(|max| n >= *max) {
            fail("exclusiveMaximum", format!("{shown} is not less than {max}"));
        }
        if let Some(step) = bound("multipleOf").filter(|step| *step > 0.0 && (n / step).fract() != 0.0) {
            fail("multipleOf", format!("{shown} is not a multiple of {step}"));
        }
    }
    if let Some(text) = value.as_str() {
        // JSON Schema counts characters, not bytes.
        let length = text.chars().count() as u64;
        let bound = |keyword| schema.get(keyword).and_then(Value::as_u64);
        if let Some(min) = bound("minLength").filter(|min| length < *min) {
            fail("minLength", format!("{shown} is shorter than {min} characters"));
        }
        if let Some(max) = bound("maxLength").filter(|max| length > *max) {
            fail("maxLength", format!("{shown} is longer than {max} characters"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(text) => fail("pattern", format!("{shown} does not match {pattern:?}")),
                Ok(_) => {}
                Err(_) => fail("pattern", format!("the definition's pattern {pattern:?} is not a regex ferry reads")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> BundleDoc {
        serde_json::from_value(json!({
            "schemaVersion": "v1.2.0", "name": "app", "version": "1.0.0",
            "invocationImages": [{ "image": "example.com/app:1" }],
            "definitions": {
                "port": { "type": "integer", "minimum": 1, "maximum": 65535, "default": 8080 },
                "mode": { "type": "string", "enum": ["fast", "safe"] },
                "name": { "type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$" },
                "ratio": { "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1 },
                "debug": { "type": "boolean" },
                "tags": { "type": "array" },
            },
            "parameters": {
                "port": { "definition": "port", "destination": { "env": "PORT" } },
                "mode": { "definition": "mode", "destination": { "env": "MODE" }, "required": true },
                "name": { "definition": "name", "destination": { "path": "/cnab/app/name" } },
                "ratio": { "definition": "ratio", "destination": { "env": "RATIO" } },
                "debug": { "definition": "debug", "destination": { "env": "DEBUG" }, "applyTo": ["upgrade"], "required": true },
                "tags": { "definition": "tags", "destination": { "env": "TAGS" } },
            },
        }))
        .unwrap()
    }

    fn text(pairs: &[(&str, &str)]) -> BTreeMap<String, Given> {
        pairs.iter().map(|(n, v)| (n.to_string(), Given::Text(v.to_string()))).collect()
    }

    fn rules(result: Result<BTreeMap<String, Value>, Vec<Refused>>) -> Vec<(String, &'static str)> {
        result.unwrap_err().into_iter().map(|r| (r.name, r.rule)).collect()
    }

    #[test]
    fn text_is_read_as_the_definition_type_and_defaults_fill_the_rest() {
        let given = text(&[("mode", "fast"), ("ratio", "0.5"), ("tags", "[\"a\"]"), ("name", "abc")]);
        let values = resolve(&bundle(), "install", &given, &BTreeMap::new()).unwrap();
        assert_eq!(values["port"], json!(8080));
        assert_eq!(values["ratio"], json!(0.5));
        assert_eq!(values["tags"], json!(["a"]));
        assert_eq!(as_text(&values["mode"]), "fast");
        assert_eq!(as_text(&values["tags"]), "[\"a\"]");
        assert!(!values.contains_key("debug"), "debug applies to upgrade only and has no default");
    }

    #[test]
    fn each_broken_rule_is_named_and_all_are_reported() {
        let given = text(&[("port", "0"), ("mode", "slow"), ("ratio", "1"), ("name", "A"), ("colour", "red")]);
        let mut found = rules(resolve(&bundle(), "install", &given, &BTreeMap::new()));
        found.sort();
        let expected = [
            ("colour", "unknown"),
            ("mode", "enum"),
            ("name", "minLength"),
            ("name", "pattern"),
            ("port", "minimum"),
            ("ratio", "exclusiveMaximum"),
        ];
        assert_eq!(found, expected.map(|(n, r)| (n.to_owned(), r)));
        let given = text(&[("port", "eighty"), ("mode", "fast"), ("name", "abcdef")]);
        let found = rules(resolve(&bundle(), "install", &given, &BTreeMap::new()));
        assert_eq!(found, [("name".to_owned(), "maxLength"), ("port".to_owned(), "type")]);
    }

    #[test]
    fn required_counts_only_for_the_actions_a_parameter_applies_to() {
        let found = rules(resolve(&bundle(), "upgrade", &BTreeMap::new(), &BTreeMap::new()));
        assert_eq!(found, [("debug".to_owned(), "required"), ("mode".to_owned(), "required")]);
        let previous = BTreeMap::from([("mode".to_owned(), json!("safe")), ("debug".to_owned(), json!(false))]);
        let values = resolve(&bundle(), "upgrade", &text(&[("port", "9000")]), &previous).unwrap();
        assert_eq!((values["mode"].clone(), values["port"].clone()), (json!("safe"), json!(9000)));
    }

    #[test]
    fn typed_values_from_a_file_are_not_reread() {
        let given = BTreeMap::from([
            ("mode".to_owned(), Given::Typed(json!("fast"))),
            ("port".to_owned(), Given::Typed(json!("8080"))),
        ]);
        assert_eq!(rules(resolve(&bundle(), "install", &given, &BTreeMap::new())), [("port".to_owned(), "type")]);
    }
}
