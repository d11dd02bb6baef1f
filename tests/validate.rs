//! `ferry validate`: a table of bundles, each with the verdict ferry must give. Where the
//! official CNAB schemas are at hand (../shared/cnab-schema), an independent validator (Python's
//! jsonschema) confirms each row: the schema refuses exactly the rows ferry refuses for their
//! structure, and accepts the rows a named rule of the spec's prose refuses.

mod common;

use common::official_schema;
use ferry::bundle::{Rule, validate};
use serde_json::{Value, json};
use std::process::Command;

fn minimal() -> Value {
    json!({
        "schemaVersion": "v1.2.0",
        "name": "helloworld",
        "version": "0.1.2",
        "invocationImages": [{ "imageType": "docker", "image": "technosophos/helloworld:0.1.0" }]
    })
}

fn full() -> Value {
    json!({
        "schemaVersion": "1.2.0",
        "name": "full",
        "version": "1.0.0-rc.1+build.7",
        "description": "every field",
        "keywords": ["a", "b"],
        "license": "Apache-2.0",
        "maintainers": [{ "name": "Ops", "email": "ops@example.com", "url": "https://example.com" }],
        "invocationImages": [{
            "image": "registry.example/app-installer@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "imageType": "oci",
            "contentDigest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "size": 1234,
            "labels": { "os": "linux", "architecture": "amd64" },
            "mediaType": "application/vnd.oci.image.manifest.v1+json"
        }],
        "images": {
            "web": { "image": "registry.example/web:1", "description": "front end", "imageType": "docker" },
            "disk": { "image": "disks/root.qcow2", "imageType": "vm-disk", "size": 10 }
        },
        "actions": { "io.cnab.status": { "modifies": false, "stateless": false, "title": "Status" } },
        "parameters": {
            "port": { "definition": "port", "destination": { "env": "PORT" }, "applyTo": ["install"], "required": true }
        },
        "credentials": { "kubeconfig": { "path": "/root/.kube/config", "required": true } },
        "outputs": { "url": { "definition": "url", "path": "/cnab/app/outputs/url" } },
        "definitions": { "port": { "type": "integer", "default": 8080 }, "url": { "type": "string" } },
        "custom": { "com.example.anything": { "kept": [1, 2, 3] } },
        "requiredExtensions": ["com.example.anything"]
    })
}

/// Definitions that use every keyword 101 §Definitions lists, each in a form draft-07 allows.
fn every_keyword() -> Value {
    json!({
        "port": { "type": "integer", "minimum": 1, "exclusiveMaximum": 65536, "multipleOf": 1, "default": 8080 },
        "url": {
            "type": ["string", "null"], "minLength": 1, "maxLength": 2048, "pattern": "^https?://",
            "format": "uri", "contentEncoding": "7bit", "contentMediaType": "text/plain"
        },
        "mode": {
            "enum": ["fast", "safe"], "const": "fast", "readOnly": true, "writeOnly": false, "title": "Mode",
            "description": "how", "$comment": "why", "examples": ["fast"], "$id": "#mode"
        },
        "config": {
            "type": "object", "properties": { "a": { "type": "string" } }, "required": ["a"],
            "additionalProperties": false, "patternProperties": { "^x-": true }, "propertyNames": { "maxLength": 10 },
            "minProperties": 1, "maxProperties": 5, "dependencies": { "a": ["b"], "b": { "required": ["a"] } },
            "definitions": { "inner": { "type": "number", "maximum": 1.5, "exclusiveMinimum": -1 } },
            "if": { "required": ["a"] }, "then": { "minProperties": 1 }, "else": false
        },
        "list": {
            "type": "array", "items": [{ "type": "string" }, true], "additionalItems": false, "minItems": 0,
            "maxItems": 3, "uniqueItems": true, "contains": { "const": "x" }
        },
        "choice": {
            "anyOf": [{ "type": "string" }, { "type": "integer" }], "allOf": [true], "oneOf": [{ "minimum": 0 }],
            "not": { "type": "null" }, "$ref": "#/definitions/port"
        },
        "anything": true,
        "nothing": false,
        "unknown keyword": { "x-ferry": [1, { "a": null }] }
    })
}

/// `doc` with the value at the JSON pointer `at` set (its parent must exist).
fn set(mut doc: Value, at: &str, value: Value) -> Value {
    let (parent, field) = at.rsplit_once('/').unwrap();
    match doc.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}")) {
        Value::Array(items) => items[field.parse::<usize>().unwrap()] = value,
        parent => parent[field] = value,
    }
    doc
}

/// `doc` without the field at the JSON pointer `at`.
fn without(mut doc: Value, at: &str) -> Value {
    let (parent, field) = at.rsplit_once('/').unwrap();
    doc.pointer_mut(parent).and_then(Value::as_object_mut).unwrap().remove(field).unwrap_or_else(|| panic!("no {at}"));
    doc
}

/// The verdict a row must get.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Valid,
    /// Broken structure: ferry reports `Rule::Schema` at this JSON path and nowhere else, and
    /// the official schema refuses it too.
    Schema(&'static str),
    /// The official schema accepts it; ferry refuses it, by this rule of the spec's prose only.
    Stricter(Rule),
}

use Expect::*;

fn rows() -> Vec<(&'static str, Value, Expect)> {
    let def = |at: &str, value: Value| set(full(), &format!("/definitions{at}"), value);
    vec![
        ("minimal", minimal(), Valid),
        ("every field", full(), Valid),
        ("schemaVersion without v", set(minimal(), "/schemaVersion", json!("1.2.0")), Valid),
        ("definitions using every keyword", set(full(), "/definitions", every_keyword()), Valid),
        (
            "unknown fields below the top level (the schema closes only the top)",
            set(set(full(), "/images/web/platform", json!({ "os": "linux" })), "/parameters/port/x", json!(1)),
            Valid,
        ),
        ("empty maps and lists", set(set(minimal(), "/images", json!({})), "/keywords", json!([])), Valid),
        ("custom holds any JSON", set(minimal(), "/custom", json!({ "a": 1, "b": [null], "c": "d" })), Valid),
        // Structure: the official schema refuses each of these.
        ("not an object", json!(["a bundle"]), Schema("$")),
        ("missing name", without(minimal(), "/name"), Schema("$")),
        ("missing version", without(minimal(), "/version"), Schema("$")),
        ("missing schemaVersion", without(minimal(), "/schemaVersion"), Schema("$")),
        ("missing invocationImages", without(minimal(), "/invocationImages"), Schema("$")),
        ("extra top-level field", set(minimal(), "/extra", json!(1)), Schema("$")),
        ("images: null", set(minimal(), "/images", Value::Null), Schema("$.images")),
        ("parameters: null", set(minimal(), "/parameters", Value::Null), Schema("$.parameters")),
        ("credentials: null", set(minimal(), "/credentials", Value::Null), Schema("$.credentials")),
        ("name not a string", set(minimal(), "/name", json!(7)), Schema("$.name")),
        ("schemaVersion not a string", set(minimal(), "/schemaVersion", json!(1)), Schema("$.schemaVersion")),
        ("version with no digit", set(minimal(), "/version", json!("latest")), Schema("$.version")),
        ("version a number", set(minimal(), "/version", json!(1)), Schema("$.version")),
        ("description not a string", set(full(), "/description", json!(["x"])), Schema("$.description")),
        ("keywords a string", set(minimal(), "/keywords", json!("a")), Schema("$.keywords")),
        ("keywords not strings", set(minimal(), "/keywords", json!(["a", 1])), Schema("$.keywords[1]")),
        ("license not a string", set(full(), "/license", json!(2)), Schema("$.license")),
        ("maintainers an object", set(full(), "/maintainers", json!({ "name": "Ops" })), Schema("$.maintainers")),
        ("maintainer without name", without(full(), "/maintainers/0/name"), Schema("$.maintainers[0]")),
        (
            "maintainer email not a string",
            set(full(), "/maintainers/0/email", json!(1)),
            Schema("$.maintainers[0].email"),
        ),
        ("invocationImages an object", set(minimal(), "/invocationImages", json!({})), Schema("$.invocationImages")),
        (
            "invocation image a string",
            set(minimal(), "/invocationImages/0", json!("x")),
            Schema("$.invocationImages[0]"),
        ),
        (
            "invocation image without image",
            without(full(), "/invocationImages/0/image"),
            Schema("$.invocationImages[0]"),
        ),
        ("size a string", set(full(), "/invocationImages/0/size", json!("big")), Schema("$.invocationImages[0].size")),
        (
            "size with a fraction",
            set(full(), "/invocationImages/0/size", json!(1.5)),
            Schema("$.invocationImages[0].size"),
        ),
        (
            "mediaType not a string",
            set(full(), "/invocationImages/0/mediaType", json!(2)),
            Schema("$.invocationImages[0].mediaType"),
        ),
        (
            "label not a string",
            set(full(), "/invocationImages/0/labels/os", json!(1)),
            Schema("$.invocationImages[0].labels.os"),
        ),
        ("labels an array", set(full(), "/images/web/labels", json!(["a"])), Schema("$.images.web.labels")),
        ("images an array", set(minimal(), "/images", json!([{ "image": "x" }])), Schema("$.images")),
        ("image without image", set(full(), "/images/web", json!({ "imageType": "oci" })), Schema("$.images.web")),
        ("imageType not a string", set(full(), "/images/web/imageType", json!(1)), Schema("$.images.web.imageType")),
        (
            "contentDigest not a string",
            set(full(), "/images/web/contentDigest", json!(1)),
            Schema("$.images.web.contentDigest"),
        ),
        (
            "image description not a string",
            set(full(), "/images/web/description", json!(1)),
            Schema("$.images.web.description"),
        ),
        ("actions an array", set(full(), "/actions", json!(["io.cnab.status"])), Schema("$.actions")),
        (
            "action not an object",
            set(full(), "/actions/io.cnab.status", json!(true)),
            Schema(r#"$.actions["io.cnab.status"]"#),
        ),
        (
            "action modifies a string",
            set(full(), "/actions/io.cnab.status/modifies", json!("yes")),
            Schema(r#"$.actions["io.cnab.status"].modifies"#),
        ),
        (
            "action stateless the string \"false\" (the schema's own default)",
            set(full(), "/actions/io.cnab.status/stateless", json!("false")),
            Schema(r#"$.actions["io.cnab.status"].stateless"#),
        ),
        ("parameter without definition", without(full(), "/parameters/port/definition"), Schema("$.parameters.port")),
        ("parameter without destination", without(full(), "/parameters/port/destination"), Schema("$.parameters.port")),
        (
            "destination a string",
            set(full(), "/parameters/port/destination", json!("PORT")),
            Schema("$.parameters.port.destination"),
        ),
        (
            "destination env a number",
            set(full(), "/parameters/port/destination/env", json!(8080)),
            Schema("$.parameters.port.destination.env"),
        ),
        (
            "parameter required a string",
            set(full(), "/parameters/port/required", json!("yes")),
            Schema("$.parameters.port.required"),
        ),
        (
            "applyTo a string",
            set(full(), "/parameters/port/applyTo", json!("install")),
            Schema("$.parameters.port.applyTo"),
        ),
        (
            "applyTo not strings",
            set(full(), "/parameters/port/applyTo", json!([1])),
            Schema("$.parameters.port.applyTo[0]"),
        ),
        (
            "parameter description not a string",
            set(full(), "/parameters/port/description", json!(1)),
            Schema("$.parameters.port.description"),
        ),
        (
            "credential a string",
            set(full(), "/credentials/kubeconfig", json!("~/.kube")),
            Schema("$.credentials.kubeconfig"),
        ),
        (
            "credential env a number",
            set(full(), "/credentials/kubeconfig/env", json!(1)),
            Schema("$.credentials.kubeconfig.env"),
        ),
        (
            "credential required a string",
            set(full(), "/credentials/kubeconfig/required", json!("no")),
            Schema("$.credentials.kubeconfig.required"),
        ),
        (
            "credential applyTo not strings",
            set(full(), "/credentials/kubeconfig/applyTo", json!([false])),
            Schema("$.credentials.kubeconfig.applyTo[0]"),
        ),
        (
            "output outside /cnab/app/outputs",
            set(full(), "/outputs/url/path", json!("/tmp/url")),
            Schema("$.outputs.url.path"),
        ),
        (
            "output path the directory itself",
            set(full(), "/outputs/url/path", json!("/cnab/app/outputs/")),
            Schema("$.outputs.url.path"),
        ),
        ("output path a number", set(full(), "/outputs/url/path", json!(1)), Schema("$.outputs.url.path")),
        ("output without path", without(full(), "/outputs/url/path"), Schema("$.outputs.url")),
        ("output without definition", without(full(), "/outputs/url/definition"), Schema("$.outputs.url")),
        ("custom an array", set(full(), "/custom", json!([1])), Schema("$.custom")),
        (
            "requiredExtensions an object",
            set(minimal(), "/requiredExtensions", json!({ "a": "b" })),
            Schema("$.requiredExtensions"),
        ),
        // The JSON Schema keywords of definitions, as draft-07's meta-schema types them.
        ("definitions an array", set(minimal(), "/definitions", json!([])), Schema("$.definitions")),
        ("definition a string", def("/port", json!("integer")), Schema("$.definitions.port")),
        ("type not a type name", def("/port/type", json!("int")), Schema("$.definitions.port.type")),
        ("type an empty array", def("/port/type", json!([])), Schema("$.definitions.port.type")),
        ("type listed twice", def("/port/type", json!(["integer", "integer"])), Schema("$.definitions.port.type[1]")),
        ("maxLength negative", def("/url/maxLength", json!(-1)), Schema("$.definitions.url.maxLength")),
        ("minLength with a fraction", def("/url/minLength", json!(1.5)), Schema("$.definitions.url.minLength")),
        (
            "exclusiveMinimum a boolean (draft-04)",
            def("/port/exclusiveMinimum", json!(true)),
            Schema("$.definitions.port.exclusiveMinimum"),
        ),
        ("maximum a string", def("/port/maximum", json!("10")), Schema("$.definitions.port.maximum")),
        ("multipleOf zero", def("/port/multipleOf", json!(0)), Schema("$.definitions.port.multipleOf")),
        ("pattern not a string", def("/url/pattern", json!(1)), Schema("$.definitions.url.pattern")),
        ("format not a string", def("/url/format", json!(true)), Schema("$.definitions.url.format")),
        (
            "contentEncoding not a string",
            def("/url/contentEncoding", json!(64)),
            Schema("$.definitions.url.contentEncoding"),
        ),
        ("enum not an array", def("/url/enum", json!("a")), Schema("$.definitions.url.enum")),
        ("readOnly a string", def("/url/readOnly", json!("yes")), Schema("$.definitions.url.readOnly")),
        ("required not strings", def("/url/required", json!([1])), Schema("$.definitions.url.required[0]")),
        ("required listed twice", def("/url/required", json!(["a", "a"])), Schema("$.definitions.url.required[1]")),
        ("items an empty array", def("/url/items", json!([])), Schema("$.definitions.url.items")),
        ("items not a schema", def("/url/items", json!(3)), Schema("$.definitions.url.items")),
        ("allOf empty", def("/url/allOf", json!([])), Schema("$.definitions.url.allOf")),
        ("anyOf holds a non-schema", def("/url/anyOf", json!([true, "x"])), Schema("$.definitions.url.anyOf[1]")),
        ("not a number", def("/url/not", json!(1)), Schema("$.definitions.url.not")),
        ("properties an array", def("/url/properties", json!([])), Schema("$.definitions.url.properties")),
        (
            "a nested property with an unknown type",
            def("/url/properties", json!({ "a": { "type": "text" } })),
            Schema("$.definitions.url.properties.a.type"),
        ),
        (
            "dependencies listing a name twice",
            def("/url/dependencies", json!({ "a": ["b", "b"] })),
            Schema("$.definitions.url.dependencies.a[1]"),
        ),
        ("propertyNames a string", def("/url/propertyNames", json!("a")), Schema("$.definitions.url.propertyNames")),
        // The spec's prose: the official schema accepts each of these.
        (
            "no invocation images",
            set(minimal(), "/invocationImages", json!([])),
            Stricter(Rule::InvocationImageRequired),
        ),
        (
            "version 1.0 (the schema's pattern is unanchored)",
            set(minimal(), "/version", json!("1.0")),
            Stricter(Rule::VersionSemver),
        ),
        ("version with trailing junk", set(minimal(), "/version", json!("1.0.0 beta")), Stricter(Rule::VersionSemver)),
        (
            "schemaVersion not a version",
            set(minimal(), "/schemaVersion", json!("one")),
            Stricter(Rule::SchemaVersionSemver),
        ),
        (
            "schemaVersion of another major",
            set(minimal(), "/schemaVersion", json!("v99.98")),
            Stricter(Rule::SchemaVersionSupported),
        ),
        (
            "schemaVersion of a pre-1.0 draft",
            set(minimal(), "/schemaVersion", json!("v0.9.0")),
            Stricter(Rule::SchemaVersionSupported),
        ),
        ("name with a newline", set(minimal(), "/name", json!("hello\nworld")), Stricter(Rule::NameGraphic)),
        (
            "parameter destination without env or path",
            set(full(), "/parameters/port/destination", json!({})),
            Stricter(Rule::ParameterDestination),
        ),
        (
            "credential without env or path",
            set(full(), "/credentials/kubeconfig", json!({ "description": "nothing" })),
            Stricter(Rule::CredentialDestination),
        ),
        (
            "parameter path under outputs",
            set(full(), "/parameters/port/destination", json!({ "path": "/cnab/app/outputs/port" })),
            Stricter(Rule::PathUnderOutputs),
        ),
        ("custom action named install", set(full(), "/actions/install", json!({})), Stricter(Rule::BuiltinActionName)),
        (
            "parameter with a missing definition",
            set(full(), "/parameters/port/definition", json!("nope")),
            Stricter(Rule::DefinitionExists),
        ),
        (
            "parameter with a CNAB_ variable",
            set(full(), "/parameters/port/destination", json!({ "env": "CNAB_ACTION" })),
            Stricter(Rule::EnvConflict),
        ),
        (
            "parameter and credential share a variable",
            set(full(), "/credentials/kubeconfig", json!({ "env": "PORT" })),
            Stricter(Rule::EnvConflict),
        ),
        (
            "parameter and credential share a path",
            set(full(), "/parameters/port/destination", json!({ "path": "/root/.kube/config" })),
            Stricter(Rule::PathConflict),
        ),
        (
            "two outputs with one path",
            set(full(), "/outputs/again", json!({ "definition": "url", "path": "/cnab/app/outputs/url" })),
            Stricter(Rule::OutputPathDistinct),
        ),
        (
            "contentDigest not a digest",
            set(full(), "/images/web/contentDigest", json!("sha256:XYZ")),
            Stricter(Rule::ContentDigestFormat),
        ),
        (
            "requiredExtensions not strings",
            set(minimal(), "/requiredExtensions", json!([7])),
            Stricter(Rule::RequiredExtensionNames),
        ),
    ]
}

#[test]
fn ferry_gives_every_row_of_the_table_its_verdict() {
    let rows = rows();
    for (name, doc, expect) in &rows {
        let problems = validate(&serde_json::to_vec(doc).unwrap());
        let schema_paths: Vec<&str> =
            problems.iter().filter(|p| p.rule == Rule::Schema).map(|p| p.path.as_str()).collect();
        match expect {
            Valid => assert!(problems.is_empty(), "{name}: expected valid, got {problems:?}"),
            Schema(path) => assert!(
                !schema_paths.is_empty() && schema_paths.iter().all(|p| p == path),
                "{name}: expected structural problems at {path} only, got {problems:?}"
            ),
            Stricter(rule) => assert!(
                !problems.is_empty() && problems.iter().all(|p| p.rule == *rule),
                "{name}: expected {rule:?} only, got {problems:?}"
            ),
        }
    }
    let prose_rules: Vec<Rule> = rows
        .iter()
        .filter_map(|(_, _, e)| match e {
            Stricter(rule) => Some(*rule),
            _ => None,
        })
        .collect();
    for rule in [
        Rule::InvocationImageRequired,
        Rule::VersionSemver,
        Rule::SchemaVersionSemver,
        Rule::SchemaVersionSupported,
        Rule::NameGraphic,
        Rule::ParameterDestination,
        Rule::CredentialDestination,
        Rule::PathUnderOutputs,
        Rule::OutputPathDistinct,
        Rule::BuiltinActionName,
        Rule::DefinitionExists,
        Rule::EnvConflict,
        Rule::PathConflict,
        Rule::ContentDigestFormat,
        Rule::RequiredExtensionNames,
    ] {
        assert!(prose_rules.contains(&rule), "no row shows what {rule:?} adds to the schema");
    }
}

#[test]
fn the_official_schema_agrees_with_every_row_of_the_table() {
    let rows = rows();
    let docs: Vec<Value> = rows.iter().map(|(_, doc, _)| doc.clone()).collect();
    let Some(verdicts) = official_schema::verdicts("bundle.schema.json", &docs) else {
        return;
    };
    for ((name, _, expect), schema_valid) in rows.iter().zip(verdicts) {
        let structural = matches!(expect, Schema(_));
        assert_eq!(
            schema_valid, !structural,
            "{name}: the official schema says valid={schema_valid}, the table says {expect:?}"
        );
    }
}

#[test]
fn every_problem_names_its_json_path() {
    let mut doc = full();
    doc["parameters"]["port"]["destination"] = json!({});
    doc["images"]["web"]["size"] = json!("big");
    doc["invocationImages"] = json!([]);
    let problems = validate(&serde_json::to_vec(&doc).unwrap());
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"$.parameters.port.destination"), "{paths:?}");
    assert!(paths.contains(&"$.images.web.size"), "{paths:?}");
    assert!(paths.contains(&"$.invocationImages"), "{paths:?}");
}

#[test]
fn the_validate_command_prints_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, serde_json::to_vec(&full()).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).arg("validate").arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = dir.path().join("bad.json");
    let mut doc = full();
    doc["actions"]["uninstall"] = json!({});
    doc["version"] = json!("one");
    std::fs::write(&bad, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("$.actions.uninstall") && stderr.contains("$.version"), "{stderr}");

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"name\": ").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_ferry")).args(["validate", "--format", "json"]).arg(&broken).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert!(report["problems"][0]["message"].as_str().unwrap().contains("not JSON"));
}

#[test]
fn misspelt_fields_and_image_types_no_driver_handles_are_warnings_that_strict_makes_failures() {
    // Every field CNAB defines, in every object: no warning.
    assert_eq!(ferry::bundle::warnings(&serde_json::to_vec(&full()).unwrap()), vec![]);

    let dir = tempfile::tempdir().unwrap();
    let mut doc = minimal();
    doc["invocationImages"][0] = json!({ "image": "example.com/app:1", "imagetype": "docker" });
    doc["images"] = json!({
        "disk": { "image": "disk.qcow2", "imageType": "vmdisk", "contentDigets": format!("sha256:{}", "a".repeat(64)) },
        "web": { "image": "example.com/web:1", "vendorNote": "kept" }
    });
    doc["parameters"] = json!({ "port": { "definition": "port", "destination": { "env": "PORT", "paht": "/p" } } });
    doc["definitions"] = json!({ "port": { "type": "integer", "maximun": 65535, "x-ui-widget": "spinner" } });
    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, serde_json::to_vec(&doc).unwrap()).unwrap();
    let validate =
        |extra: &[&str]| common::ferry(&[&["validate", bundle.to_str().unwrap()], extra].concat(), dir.path());

    let o = validate(&[]);
    assert_eq!(o.status.code(), Some(0), "warnings are not problems: {}", common::text(&o.stderr));
    assert!(common::text(&o.stdout).contains("valid, 6 warnings"), "{}", common::text(&o.stdout));
    let stderr = common::text(&o.stderr);
    for line in [
        "$.invocationImages[0].imagetype: \"imagetype\" is not a field CNAB defines here; did you mean \"imageType\"?",
        "$.images.disk.contentDigets: \"contentDigets\" is not a field CNAB defines here; did you mean \"contentDigest\"?",
        "$.images.web.vendorNote: \"vendorNote\" is not a field CNAB defines here\n",
        "$.parameters.port.destination.paht: \"paht\" is not a field CNAB defines here; did you mean \"path\"?",
        "$.definitions.port.maximun: \"maximun\" is not a JSON Schema keyword; did you mean \"maximum\"?",
        "$.images.disk.imageType: imageType \"vmdisk\": no built-in driver handles it",
    ] {
        assert!(stderr.contains(&format!("warning: {line}")), "no {line:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("x-ui-widget"), "an annotation keyword is no typo:\n{stderr}");

    let o = validate(&["--strict"]);
    assert_eq!(o.status.code(), Some(1), "--strict fails on warnings");

    let o = validate(&["--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((&report["valid"], &report["problems"]), (&json!(true), &json!([])));
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 6, "{report:#}");
    let no_driver = warnings.iter().find(|w| w["rule"] == "NoDriver").unwrap();
    assert_eq!(no_driver["path"], "$.images.disk.imageType");
    assert!(warnings.iter().all(|w| w["path"].is_string() && w["message"].is_string()), "{report:#}");

    // A driver the bundle ships for the type handles it, unless the operator refuses bundle drivers.
    doc["custom"] = json!({ "io.ferry.drivers": { "drivers": [{
        "name": "vmdisk", "imageTypes": ["vmdisk"], "digest": format!("sha256:{}", "b".repeat(64)), "path": "vmdisk.wasm"
    }] } });
    doc["requiredExtensions"] = json!(["io.ferry.drivers"]);
    std::fs::write(&bundle, serde_json::to_vec(&doc).unwrap()).unwrap();
    let o = validate(&[]);
    assert!(!common::text(&o.stderr).contains("NoDriver") && !common::text(&o.stderr).contains("imageType \"vmdisk\""));
    let o = common::ferry(&["--no-bundle-drivers", "validate", bundle.to_str().unwrap()], dir.path());
    assert!(
        common::text(&o.stderr)
            .contains("the bundle ships driver \"vmdisk\" for it, and --no-bundle-drivers refuses it"),
        "{}",
        common::text(&o.stderr)
    );

    // A declaration ferry cannot read is a warning too: the spec has nothing to say about it.
    doc["custom"] = json!({ "io.ferry.drivers": { "drivers": [{ "name": "vmdisk" }] } });
    std::fs::write(&bundle, serde_json::to_vec(&doc).unwrap()).unwrap();
    let o = validate(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o.stderr));
    assert!(
        common::text(&o.stderr)
            .contains("warning: $.custom[\"io.ferry.drivers\"]: the drivers the bundle ships cannot be read"),
        "{}",
        common::text(&o.stderr)
    );
}
