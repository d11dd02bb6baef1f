//! An entry of `definitions` is a JSON Schema, draft-07 (101 §Definitions). This checks that
//! each keyword the spec lists holds the kind of value draft-07 gives it, all the way down
//! nested schemas. Keywords the spec does not list are let through, as draft-07 lets them through;
//! `format` values such as a `pattern`'s regex syntax are not checked, since draft-07 leaves
//! format assertions optional and ferry does not run the definitions.

use super::structure::{describe, expect, fail, is_integer, object};
use super::validate::{Problem, Rule, key};
use serde_json::Value;

const TYPES: [&str; 7] = ["null", "boolean", "object", "array", "number", "integer", "string"];

/// Every keyword of draft-07 (validation and annotations) that the spec's definitions use.
const KEYWORDS: &[&str] = &[
    "$id",
    "$schema",
    "$ref",
    "$comment",
    "title",
    "description",
    "format",
    "pattern",
    "contentMediaType",
    "contentEncoding",
    "readOnly",
    "writeOnly",
    "uniqueItems",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "multipleOf",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "examples",
    "enum",
    "required",
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "not",
    "items",
    "allOf",
    "anyOf",
    "oneOf",
    "definitions",
    "properties",
    "patternProperties",
    "dependencies",
    "type",
    "default",
    "const",
];

/// Warns about the keywords of a definition that look like misspelt draft-07 keywords
/// (`minLenght`). Other unknown keywords are annotations, which draft-07 allows, and pass.
pub(super) fn misspelt_keywords(schema: &Value, path: &str, warnings: &mut Vec<Problem>) {
    for name in schema.as_object().into_iter().flat_map(|keywords| keywords.keys()) {
        if KEYWORDS.contains(&name.as_str()) {
            continue;
        }
        if let Some(meant) = super::suggest::closest(name, KEYWORDS) {
            warnings.push(Problem {
                path: format!("{path}{}", key(name)),
                rule: Rule::UnknownField,
                message: format!("{name:?} is not a JSON Schema keyword; did you mean {meant:?}?"),
            });
        }
    }
}

/// Every problem with `schema` as the definition at `path`.
pub(super) fn check(schema: &Value, path: &str, problems: &mut Vec<Problem>) {
    let keywords = match schema {
        Value::Bool(_) => return,
        Value::Object(keywords) => keywords,
        other => {
            fail(problems, path, format!("a JSON Schema is an object or a boolean, not {}", describe(other)));
            return;
        }
    };
    for (keyword, value) in keywords {
        let at = format!("{path}{}", key(keyword));
        match keyword.as_str() {
            "$id" | "$schema" | "$ref" | "$comment" | "title" | "description" | "format" | "pattern"
            | "contentMediaType" | "contentEncoding" => {
                expect(problems, &at, value, value.is_string(), "a string");
            }
            "readOnly" | "writeOnly" | "uniqueItems" => {
                expect(problems, &at, value, value.is_boolean(), "true or false");
            }
            // Draft-04's boolean `exclusiveMinimum` is refused here: in draft-07 it is the bound.
            "maximum" | "exclusiveMaximum" | "minimum" | "exclusiveMinimum" => {
                expect(problems, &at, value, value.is_number(), "a number");
            }
            "multipleOf" => {
                let positive = value.as_f64().is_some_and(|n| n > 0.0);
                expect(problems, &at, value, positive, "a number greater than 0");
            }
            "maxLength" | "minLength" | "maxItems" | "minItems" | "maxProperties" | "minProperties" => {
                let count = is_integer(value) && value.as_f64().is_some_and(|n| n >= 0.0);
                expect(problems, &at, value, count, "a non-negative integer");
            }
            "examples" | "enum" => {
                expect(problems, &at, value, value.is_array(), "an array");
            }
            "required" => unique_strings(value, &at, problems),
            "additionalItems"
            | "additionalProperties"
            | "contains"
            | "propertyNames"
            | "if"
            | "then"
            | "else"
            | "not" => check(value, &at, problems),
            "items" => match value {
                Value::Array(_) => schemas(value, &at, problems),
                _ => check(value, &at, problems),
            },
            "allOf" | "anyOf" | "oneOf" => schemas(value, &at, problems),
            "definitions" | "properties" | "patternProperties" => {
                for (name, schema) in object(value, &at, problems).into_iter().flatten() {
                    check(schema, &format!("{at}{}", key(name)), problems);
                }
            }
            "dependencies" => {
                for (name, dependency) in object(value, &at, problems).into_iter().flatten() {
                    let at = format!("{at}{}", key(name));
                    match dependency {
                        Value::Array(_) => unique_strings(dependency, &at, problems),
                        _ => check(dependency, &at, problems),
                    }
                }
            }
            "type" => type_names(value, &at, problems),
            // `default`, `const`, and keywords draft-07 does not define: any value.
            _ => {}
        }
    }
}

/// `allOf`, `anyOf`, `oneOf` and the tuple form of `items`: at least one schema.
fn schemas(value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let list = value.as_array().filter(|l| !l.is_empty());
    if expect(problems, path, value, list.is_some(), "a non-empty array of schemas") {
        for (i, schema) in list.into_iter().flatten().enumerate() {
            check(schema, &format!("{path}[{i}]"), problems);
        }
    }
}

fn unique_strings(value: &Value, path: &str, problems: &mut Vec<Problem>) {
    if !expect(problems, path, value, value.is_array(), "an array of distinct strings") {
        return;
    }
    let items = value.as_array().into_iter().flatten();
    for (i, item) in items.clone().enumerate() {
        let at = format!("{path}[{i}]");
        if expect(problems, &at, item, item.is_string(), "a string") && items.clone().take(i).any(|e| e == item) {
            fail(problems, &at, format!("{item} is listed twice"));
        }
    }
}

/// `type`: one type name, or a non-empty array of distinct ones.
fn type_names(value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let known = |name: &Value| name.as_str().is_some_and(|n| TYPES.contains(&n));
    let expected = format!("one of {}, or a non-empty array of them", TYPES.join(", "));
    let Some(list) = value.as_array() else {
        expect(problems, path, value, known(value), &expected);
        return;
    };
    if list.is_empty() {
        fail(problems, path, format!("expected {expected}, found an empty array"));
    }
    for (i, name) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if expect(problems, &at, name, known(name), &format!("one of {}", TYPES.join(", "))) && list[..i].contains(name)
        {
            fail(problems, &at, format!("{name} is listed twice"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(schema: Value) -> Vec<String> {
        let mut problems = Vec::new();
        check(&schema, "$.definitions.d", &mut problems);
        let mut paths: Vec<String> = problems.into_iter().map(|p| p.path).collect();
        paths.sort();
        paths
    }

    #[test]
    fn nested_schemas_are_checked_with_their_paths() {
        let schema = json!({
            "type": "object",
            "properties": { "port": { "type": "int", "minimum": "1" } },
            "items": [true, { "maxLength": -1 }],
            "dependencies": { "a": ["b", "b"], "c": { "not": 3 } },
            "anyOf": [],
        });
        assert_eq!(
            paths(schema),
            [
                "$.definitions.d.anyOf",
                "$.definitions.d.dependencies.a[1]",
                "$.definitions.d.dependencies.c.not",
                "$.definitions.d.items[1].maxLength",
                "$.definitions.d.properties.port.minimum",
                "$.definitions.d.properties.port.type",
            ]
        );
    }

    // Python's bundled draft-07 meta-schema predates `writeOnly`, so the table test in
    // tests/validate.rs cannot show this one; 101 §Definitions and the published meta-schema
    // make it a boolean.
    #[test]
    fn write_only_is_a_boolean() {
        assert_eq!(paths(json!({ "writeOnly": "yes" })), ["$.definitions.d.writeOnly"]);
        assert!(paths(json!({ "writeOnly": true, "x-unknown": [1], "const": null, "default": {} })).is_empty());
    }

    #[test]
    fn a_schema_is_an_object_or_a_boolean() {
        assert!(paths(json!(false)).is_empty());
        assert_eq!(paths(json!("string")), ["$.definitions.d"]);
        assert_eq!(paths(json!({ "type": ["string", "null", "string"] })), ["$.definitions.d.type[2]"]);
        assert_eq!(paths(json!({ "type": [] })), ["$.definitions.d.type"]);
    }
}
