//! `ferry validate` against the official CNAB schemas in ../shared/cnab-schema, checked by an
//! independent validator (Python's jsonschema). ferry must agree with the schema on every
//! document, except where a named rule of the spec's prose makes it stricter.

use ferry::bundle::{Rule, validate};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn minimal() -> Value {
    json!({
        "schemaVersion": "v1.2.0",
        "name": "helloworld",
        "version": "0.1.2",
        "invocationImages": [{ "imageType": "docker", "image": "technosophos/helloworld:0.1.0" }]
    })
}

fn with(mut doc: Value, pointer_field: &[(&str, Value)]) -> Value {
    for (field, value) in pointer_field {
        doc[*field] = value.clone();
    }
    doc
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

/// (name, document, the prose rule that makes ferry stricter than the schema, if any)
fn cases() -> Vec<(&'static str, Value, Option<Rule>)> {
    let mut params_no_destination = full();
    params_no_destination["parameters"]["port"]["destination"] = json!({});
    let mut cred_no_destination = full();
    cred_no_destination["credentials"]["kubeconfig"] = json!({ "description": "nothing" });
    let mut param_in_outputs = full();
    param_in_outputs["parameters"]["port"]["destination"] = json!({ "path": "/cnab/app/outputs/port" });
    let mut install_action = full();
    install_action["actions"]["install"] = json!({});
    let mut missing_definition = full();
    missing_definition["parameters"]["port"]["definition"] = json!("nope");
    let mut cnab_env = full();
    cnab_env["parameters"]["port"]["destination"] = json!({ "env": "CNAB_ACTION" });
    let mut shared_env = full();
    shared_env["credentials"]["kubeconfig"] = json!({ "env": "PORT" });
    let mut same_output_path = full();
    same_output_path["outputs"]["again"] = json!({ "definition": "url", "path": "/cnab/app/outputs/url" });
    let mut bad_digest = full();
    bad_digest["images"]["web"]["contentDigest"] = json!("sha256:XYZ");
    let mut output_outside = full();
    output_outside["outputs"]["url"]["path"] = json!("/tmp/url");
    let mut image_without_image = full();
    image_without_image["images"]["web"] = json!({ "imageType": "oci" });
    let mut unknown_image_field = full();
    unknown_image_field["images"]["web"]["platform"] = json!({ "os": "linux" });
    let mut size_string = full();
    size_string["invocationImages"][0]["size"] = json!("big");
    let mut null_maps = minimal();
    for field in ["images", "parameters", "credentials"] {
        null_maps[field] = Value::Null;
    }

    vec![
        ("minimal", minimal(), None),
        ("every field", full(), None),
        ("null optional maps", null_maps, None),
        ("schemaVersion without v", with(minimal(), &[("schemaVersion", json!("1.2.0"))]), None),
        (
            "missing name",
            {
                let mut d = minimal();
                d.as_object_mut().unwrap().remove("name");
                d
            },
            None,
        ),
        (
            "missing invocationImages",
            {
                let mut d = minimal();
                d.as_object_mut().unwrap().remove("invocationImages");
                d
            },
            None,
        ),
        ("extra top-level field", with(minimal(), &[("extra", json!(1))]), None),
        ("version with a word in it", with(minimal(), &[("version", json!("latest"))]), None),
        ("image without image", image_without_image, None),
        ("unknown image field", unknown_image_field, None),
        ("size is a string", size_string, None),
        ("output outside /cnab/app/outputs", output_outside, None),
        ("keywords not strings", with(minimal(), &[("keywords", json!([1]))]), None),
        (
            "no invocation images",
            with(minimal(), &[("invocationImages", json!([]))]),
            Some(Rule::InvocationImageRequired),
        ),
        (
            "version 1.0 (unanchored schema pattern)",
            with(minimal(), &[("version", json!("1.0"))]),
            Some(Rule::VersionSemver),
        ),
        ("version with trailing junk", with(minimal(), &[("version", json!("1.0.0 beta"))]), Some(Rule::VersionSemver)),
        (
            "schemaVersion not a version",
            with(minimal(), &[("schemaVersion", json!("one"))]),
            Some(Rule::SchemaVersionSemver),
        ),
        ("name with a newline", with(minimal(), &[("name", json!("hello\nworld"))]), Some(Rule::NameGraphic)),
        ("parameter destination without env or path", params_no_destination, Some(Rule::ParameterDestination)),
        ("credential without env or path", cred_no_destination, Some(Rule::CredentialDestination)),
        ("parameter path under outputs", param_in_outputs, Some(Rule::PathUnderOutputs)),
        ("custom action named install", install_action, Some(Rule::BuiltinActionName)),
        ("parameter with a missing definition", missing_definition, Some(Rule::DefinitionExists)),
        ("parameter with a CNAB_ variable", cnab_env, Some(Rule::EnvConflict)),
        ("parameter and credential share a variable", shared_env, Some(Rule::EnvConflict)),
        ("two outputs with one path", same_output_path, Some(Rule::OutputPathDistinct)),
        ("contentDigest not a digest", bad_digest, Some(Rule::ContentDigestFormat)),
        (
            "requiredExtensions not strings",
            with(minimal(), &[("requiredExtensions", json!([7]))]),
            Some(Rule::RequiredExtensionNames),
        ),
    ]
}

/// The official schema's verdict on each document, from Python's jsonschema.
fn schema_verdicts(docs: &[Value]) -> Vec<bool> {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/cnab-schema/bundle.schema.json");
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft7Validator(schema)
print(json.dumps([validator.is_valid(doc) for doc in json.load(sys.stdin)]))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(&schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    serde_json::to_writer(child.stdin.take().unwrap(), docs).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python jsonschema failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ferry_agrees_with_the_official_schema_except_where_the_prose_is_stricter() {
    let cases = cases();
    let docs: Vec<Value> = cases.iter().map(|(_, d, _)| d.clone()).collect();
    let verdicts = schema_verdicts(&docs);
    let mut rules_seen = Vec::new();
    for ((name, doc, stricter), schema_valid) in cases.iter().zip(verdicts) {
        let problems = validate(&serde_json::to_vec(doc).unwrap());
        let schema_problems = problems.iter().filter(|p| p.rule == Rule::Schema).count();
        assert_eq!(
            schema_problems == 0,
            schema_valid,
            "{name}: schema says valid={schema_valid}, ferry says {problems:?}"
        );
        match stricter {
            None => assert!(
                !schema_valid || problems.is_empty(),
                "{name}: ferry is stricter than the schema without a named rule: {problems:?}"
            ),
            Some(rule) => {
                assert!(schema_valid, "{name}: the schema already refuses it; the case proves nothing");
                assert!(problems.iter().any(|p| p.rule == *rule), "{name}: expected {rule:?}, got {problems:?}");
                rules_seen.push(*rule);
            }
        }
    }
    assert!(rules_seen.len() >= 12);
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
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["validate", "-o", "json"]).arg(&broken).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert!(report["problems"][0]["message"].as_str().unwrap().contains("not JSON"));
}
