//! The structure CNAB Core 1.2 gives bundle.json (101 and its schema): which fields an object
//! holds, their JSON types, which are required, the two patterns, and that only the top level
//! is closed to unknown fields. Problems carry [`Rule::Schema`]; tests/validate.rs compares the
//! verdicts with the official schema.

use super::definitions;
use super::validate::{Problem, Rule, key};
use serde_json::{Map, Value};

/// What a field may hold.
#[derive(Clone, Copy)]
enum Shape {
    String,
    Boolean,
    Integer,
    /// Any array: the schema types `requiredExtensions` but its item rule is written as
    /// `additionalProperties`, which checks nothing on an array (the prose rule does).
    Array,
    Strings,
    /// Any object (`custom`).
    Object,
    /// An object of strings (`labels`).
    StringMap,
    /// `version`: the schema's pattern is unanchored, so it asks only for one digit somewhere;
    /// the prose rule `VersionSemver` asks for the rest.
    Version,
    /// An output path: a file under `/cnab/app/outputs/`, on one line.
    OutputPath,
    Record(&'static Record),
    ListOf(&'static Record),
    MapOf(&'static Record),
    /// `definitions`: named JSON Schemas.
    Definitions,
}

struct Record {
    fields: &'static [(&'static str, Shape)],
    required: &'static [&'static str],
    /// Whether a field not listed is refused: 101 allows extra fields only under `custom`, but
    /// the schema closes only the top level, and ferry agrees with the schema.
    closed: bool,
}

const BUNDLE: Record = Record {
    fields: &[
        ("schemaVersion", Shape::String),
        ("name", Shape::String),
        ("version", Shape::Version),
        ("description", Shape::String),
        ("keywords", Shape::Strings),
        ("license", Shape::String),
        ("maintainers", Shape::ListOf(&MAINTAINER)),
        ("invocationImages", Shape::ListOf(&INVOCATION_IMAGE)),
        ("images", Shape::MapOf(&IMAGE)),
        ("actions", Shape::MapOf(&ACTION)),
        ("parameters", Shape::MapOf(&PARAMETER)),
        ("credentials", Shape::MapOf(&CREDENTIAL)),
        ("outputs", Shape::MapOf(&OUTPUT)),
        ("definitions", Shape::Definitions),
        ("custom", Shape::Object),
        ("requiredExtensions", Shape::Array),
    ],
    required: &["schemaVersion", "name", "version", "invocationImages"],
    closed: true,
};

const MAINTAINER: Record = Record {
    fields: &[("name", Shape::String), ("email", Shape::String), ("url", Shape::String)],
    required: &["name"],
    closed: false,
};

const INVOCATION_IMAGE: Record = Record {
    fields: &[
        ("image", Shape::String),
        ("imageType", Shape::String),
        ("contentDigest", Shape::String),
        ("size", Shape::Integer),
        ("labels", Shape::StringMap),
        ("mediaType", Shape::String),
    ],
    required: &["image"],
    closed: false,
};

/// An entry of `images`: an invocation image's fields and a description.
const IMAGE: Record = Record {
    fields: &[
        ("image", Shape::String),
        ("imageType", Shape::String),
        ("contentDigest", Shape::String),
        ("description", Shape::String),
        ("size", Shape::Integer),
        ("labels", Shape::StringMap),
        ("mediaType", Shape::String),
    ],
    required: &["image"],
    closed: false,
};

const ACTION: Record = Record {
    fields: &[
        ("title", Shape::String),
        ("description", Shape::String),
        ("modifies", Shape::Boolean),
        ("stateless", Shape::Boolean),
    ],
    required: &[],
    closed: false,
};

const PARAMETER: Record = Record {
    fields: &[
        ("definition", Shape::String),
        ("destination", Shape::Record(&DESTINATION)),
        ("applyTo", Shape::Strings),
        ("description", Shape::String),
        ("required", Shape::Boolean),
    ],
    required: &["definition", "destination"],
    closed: false,
};

const DESTINATION: Record =
    Record { fields: &[("env", Shape::String), ("path", Shape::String)], required: &[], closed: false };

const CREDENTIAL: Record = Record {
    fields: &[
        ("env", Shape::String),
        ("path", Shape::String),
        ("applyTo", Shape::Strings),
        ("description", Shape::String),
        ("required", Shape::Boolean),
    ],
    required: &[],
    closed: false,
};

const OUTPUT: Record = Record {
    fields: &[
        ("definition", Shape::String),
        ("path", Shape::OutputPath),
        ("applyTo", Shape::Strings),
        ("description", Shape::String),
    ],
    required: &["definition", "path"],
    closed: false,
};

const OUTPUTS_PREFIX: &str = "/cnab/app/outputs/";

/// Every structural problem of `doc` as a bundle.json.
pub(super) fn check(doc: &Value, problems: &mut Vec<Problem>) {
    record(doc, "$", &BUNDLE, problems);
}

pub(super) fn fail(problems: &mut Vec<Problem>, path: &str, message: String) {
    problems.push(Problem { path: path.to_owned(), rule: Rule::Schema, message });
}

/// How a value is named in a message: its JSON type, and the value itself when it is short.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a long string".into(),
        Value::String(_) => format!("the string {value}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A JSON Schema `integer` (draft 6 on): a number without a fractional part, `1.0` included.
pub(super) fn is_integer(value: &Value) -> bool {
    value.as_f64().is_some_and(|n| n.fract() == 0.0)
}

/// Refuses `value` unless `ok`; `expected` says what it should be, as in "an object".
pub(super) fn expect(problems: &mut Vec<Problem>, path: &str, value: &Value, ok: bool, expected: &str) -> bool {
    if !ok {
        let hint = if value.is_null() { " (leave an optional field out rather than writing null)" } else { "" };
        fail(problems, path, format!("expected {expected}, found {}{hint}", describe(value)));
    }
    ok
}

pub(super) fn object<'v>(value: &'v Value, path: &str, problems: &mut Vec<Problem>) -> Option<&'v Map<String, Value>> {
    let map = value.as_object();
    expect(problems, path, value, map.is_some(), "an object");
    map
}

fn record(value: &Value, path: &str, record: &Record, problems: &mut Vec<Problem>) {
    let Some(map) = object(value, path, problems) else {
        return;
    };
    for field in record.required.iter().filter(|f| !map.contains_key(**f)) {
        fail(problems, path, format!("the required field {field:?} is missing"));
    }
    for (name, value) in map {
        match record.fields.iter().find(|(f, _)| f == name) {
            Some((_, shape)) => field(value, &format!("{path}{}", key(name)), *shape, problems),
            None if record.closed => fail(
                problems,
                path,
                format!(
                    "{name:?} is not a field of bundle.json{}; data of an extension goes under \"custom\"",
                    did_you_mean(name, record)
                ),
            ),
            None => {}
        }
    }
}

fn field(value: &Value, path: &str, shape: Shape, problems: &mut Vec<Problem>) {
    match shape {
        Shape::String => {
            expect(problems, path, value, value.is_string(), "a string");
        }
        Shape::Boolean => {
            expect(problems, path, value, value.is_boolean(), "true or false");
        }
        Shape::Integer => {
            expect(problems, path, value, is_integer(value), "an integer");
        }
        Shape::Array => {
            expect(problems, path, value, value.is_array(), "an array");
        }
        Shape::Strings => {
            if expect(problems, path, value, value.is_array(), "an array of strings") {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    expect(problems, &format!("{path}[{i}]"), item, item.is_string(), "a string");
                }
            }
        }
        Shape::Object => {
            object(value, path, problems);
        }
        Shape::StringMap => {
            for (name, item) in object(value, path, problems).into_iter().flatten() {
                expect(problems, &format!("{path}{}", key(name)), item, item.is_string(), "a string");
            }
        }
        Shape::Version => {
            if expect(problems, path, value, value.is_string(), "a string") {
                let version = value.as_str().unwrap_or_default();
                if !version.bytes().any(|b| b.is_ascii_digit()) {
                    fail(problems, path, format!("{version:?} is not a version: it holds no digit"));
                }
            }
        }
        Shape::OutputPath => {
            if expect(problems, path, value, value.is_string(), "a string") {
                let output = value.as_str().unwrap_or_default();
                if !is_output_path(output) {
                    fail(problems, path, format!("{output:?} is not a file under {OUTPUTS_PREFIX}, on one line"));
                }
            }
        }
        Shape::Record(inner) => record(value, path, inner, problems),
        Shape::ListOf(inner) => {
            if expect(problems, path, value, value.is_array(), "an array") {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    record(item, &format!("{path}[{i}]"), inner, problems);
                }
            }
        }
        Shape::MapOf(inner) => {
            for (name, item) in object(value, path, problems).into_iter().flatten() {
                record(item, &format!("{path}{}", key(name)), inner, problems);
            }
        }
        Shape::Definitions => {
            for (name, schema) in object(value, path, problems).into_iter().flatten() {
                definitions::check(schema, &format!("{path}{}", key(name)), problems);
            }
        }
    }
}

/// Warns about every field CNAB does not define in an object whose fields it does define
/// (the top level's are errors already; `custom` and `labels` are free-form). The spec lets
/// them through, but a misspelt `imageType` or `contentDigest` silently changes what ferry does.
pub(super) fn unknown_fields(doc: &Value, warnings: &mut Vec<Problem>) {
    walk(doc, "$", &BUNDLE, warnings);
}

fn walk(value: &Value, path: &str, record: &Record, warnings: &mut Vec<Problem>) {
    let Some(map) = value.as_object() else { return };
    for (name, value) in map {
        let at = format!("{path}{}", key(name));
        match record.fields.iter().find(|(f, _)| f == name).map(|(_, shape)| *shape) {
            None if !record.closed => warnings.push(Problem {
                path: at,
                rule: Rule::UnknownField,
                message: format!("{name:?} is not a field CNAB defines here{}", did_you_mean(name, record)),
            }),
            Some(Shape::Record(inner)) => walk(value, &at, inner, warnings),
            Some(Shape::ListOf(inner)) => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    walk(item, &format!("{at}[{i}]"), inner, warnings);
                }
            }
            Some(Shape::MapOf(inner)) => {
                for (name, item) in value.as_object().into_iter().flatten() {
                    walk(item, &format!("{at}{}", key(name)), inner, warnings);
                }
            }
            Some(Shape::Definitions) => {
                for (name, schema) in value.as_object().into_iter().flatten() {
                    definitions::misspelt_keywords(schema, &format!("{at}{}", key(name)), warnings);
                }
            }
            _ => {}
        }
    }
}

/// `; did you mean "imageType"?` when `name` looks like a misspelt field of `record`.
fn did_you_mean(name: &str, record: &Record) -> String {
    let known: Vec<&str> = record.fields.iter().map(|(f, _)| *f).collect();
    super::suggest::closest(name, &known).map(|f| format!("; did you mean {f:?}?")).unwrap_or_default()
}

/// The schema's `^/cnab/app/outputs/.+$`, read as JSON Schema reads patterns (ECMA-262): `.`
/// matches no line terminator, and `$` only the end.
fn is_output_path(path: &str) -> bool {
    path.strip_prefix(OUTPUTS_PREFIX)
        .is_some_and(|file| !file.is_empty() && !file.contains(['\n', '\r', '\u{2028}', '\u{2029}']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(doc: Value) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        check(&doc, &mut problems);
        problems.into_iter().map(|p| (p.path, p.message)).collect()
    }

    #[test]
    fn output_paths_are_files_under_the_outputs_directory_on_one_line() {
        assert!(is_output_path("/cnab/app/outputs/url") && is_output_path("/cnab/app/outputs/a/b"));
        for bad in
            ["/cnab/app/outputs/", "/cnab/app/outputs", "/tmp/url", "/cnab/app/outputs/a\n", "/cnab/app/outputs/a\rb"]
        {
            assert!(!is_output_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn missing_and_unknown_fields_are_reported_on_their_object() {
        let found = problems(json!({ "name": "x", "version": "1.0.0", "schemaVersion": "v1", "extra": 1 }));
        assert_eq!(
            found,
            [
                ("$".to_owned(), r#"the required field "invocationImages" is missing"#.to_owned()),
                (
                    "$".to_owned(),
                    r#""extra" is not a field of bundle.json; data of an extension goes under "custom""#.into()
                ),
            ]
        );
    }

    #[test]
    fn a_null_map_is_refused_with_a_hint() {
        let found = problems(
            json!({ "name": "x", "version": "1", "schemaVersion": "v1", "invocationImages": [], "images": null }),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "$.images");
        assert!(found[0].1.contains("found null (leave an optional field out"), "{found:?}");
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        assert!(is_integer(&json!(3)) && is_integer(&json!(3.0)) && is_integer(&json!(-2)));
        assert!(!is_integer(&json!(3.5)) && !is_integer(&json!("3")));
    }
}
