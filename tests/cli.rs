//! The `ferry driver` commands, run as an operator would run them.

mod common;

use common::{Entry, ferry, ferry_command, tar_of, text};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[test]
fn driver_list_names_the_built_in_drivers() {
    let cache = tempfile::tempdir().unwrap();
    let out = ferry(&["driver", "list", "--format", "json"], cache.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let oci = list.as_array().unwrap().iter().find(|d| d["name"] == "oci").expect("oci driver");
    assert_eq!(oci["imageTypes"], serde_json::json!(["oci", "docker"]));
    assert_eq!(oci["interface"], "ferry:driver/driver@0.1.0");

    let out = ferry(&["driver", "list"], cache.path());
    let table = text(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("oci") && l.contains("oci, docker")), "{table}");
}

#[test]
fn driver_inspect_shows_what_a_component_declares() {
    let cache = tempfile::tempdir().unwrap();
    let file = common::guest(common::FILE_DRIVER);
    let out = ferry(&["driver", "inspect", file.to_str().unwrap(), "--format", "json"], cache.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["name"], "example-file");
    assert_eq!(report["imageTypes"], serde_json::json!(["example-file"]));
    let imports = report["imports"].as_array().unwrap();
    assert!(imports.iter().any(|i| i == "ferry:driver/host@0.1.0"), "{imports:?}");
    assert!(!imports.iter().any(|i| i.as_str().unwrap().starts_with("wasi:sockets")), "{imports:?}");
}

#[test]
fn driver_inspect_refuses_what_is_not_a_driver() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let text_file = dir.path().join("notes.wasm");
    std::fs::write(&text_file, "hello").unwrap();
    let command = common::guest("not-a-driver.wasm");
    let networked = common::guest("ferry_driver_wants_sockets.wasm");
    for (file, expected) in [
        (networked.as_path(), "it imports what ferry does not provide to drivers: wasi:sockets/"),
        (core.as_path(), "core WebAssembly module, not a component"),
        (text_file.as_path(), "not a WebAssembly component"),
        (
            command.as_path(),
            "does not implement the driver interface ferry:driver/driver@0.1.0; it exports: wasi:cli/run",
        ),
        (dir.path().join("missing.wasm").as_path(), "reading"),
    ] {
        let out = ferry(&["driver", "inspect", file.to_str().unwrap()], dir.path());
        assert_eq!(out.status.code(), Some(1), "{}", file.display());
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected) && stderr.contains(file.to_str().unwrap()), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn limits_come_from_the_config_file_and_bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[drivers]\ntimeout = \"forever\"\n").unwrap();
    let out = ferry(&["--config", config.to_str().unwrap(), "driver", "list"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("drivers.timeout") && stderr.contains("forever"), "{stderr}");

    let out = ferry(&["driver", "list", "--driver-memory", "lots"], dir.path());
    assert_eq!(out.status.code(), Some(2), "a bad flag is a usage error");
    assert!(text(&out.stderr).contains("--driver-memory"));
}

/// Every command ferry has, as `ferry --help` and `ferry driver --help` list them.
fn commands(dir: &Path) -> Vec<Vec<String>> {
    let listed = |args: &[&str]| -> Vec<String> {
        let out = ferry(args, dir);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let help = text(&out.stdout);
        let section = help.split("Commands:\n").nth(1).unwrap_or_else(|| panic!("no commands in {help}"));
        section
            .lines()
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| *name != "help")
            .map(String::from)
            .collect()
    };
    let mut all = Vec::new();
    for command in listed(&["--help"]) {
        if command == "driver" || command == "installations" {
            all.extend(listed(&[&command, "--help"]).into_iter().map(|sub| vec![command.clone(), sub]));
        } else {
            all.push(vec![command]);
        }
    }
    all
}

/// `(flags, description)` of each option in a `--help` section, e.g. "Options".
fn section(help: &str, heading: &str) -> Vec<(String, String)> {
    let Some(body) = help.split(&format!("\n{heading}:\n")).nth(1) else { return Vec::new() };
    // Up to the next heading; each option on a line of its own, its description below it.
    let lines: Vec<&str> = body.lines().take_while(|l| l.is_empty() || l.starts_with(' ')).collect();
    let mut options = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with('-') && line.len() - line.trim_start().len() <= 6 {
            // Short help puts the description beside the flags, long help below them.
            let (flags, beside) = line.trim().split_once("  ").unwrap_or((line.trim(), ""));
            let below = || lines.get(i + 1).map(|l| l.trim().to_owned()).unwrap_or_default();
            let description = if beside.trim().is_empty() { below() } else { beside.trim().to_owned() };
            options.push((flags.to_owned(), description));
        }
    }
    options
}

#[test]
fn every_command_takes_o_as_a_file_and_format_as_the_style_and_describes_every_option() {
    let dir = tempfile::tempdir().unwrap();
    let commands = commands(dir.path());
    let names: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
    for expected in
        ["validate", "export", "inspect", "verify", "relocate", "driver list", "driver inspect", "driver add"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} is not listed: {names:?}");
    }
    for command in &commands {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let out = ferry(&args, dir.path());
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        let own = section(&help, "Options");
        let name = command.join(" ");
        // Global flags stand under their own headings, not among the command's options.
        assert!(!own.iter().any(|(f, _)| f.contains("--insecure-registry") || f.contains("--driver-memory")), "{name}");
        let mut options = own.clone();
        for heading in ["Global options", "Driver limits", "Registry options", "Bundle drivers"] {
            let listed = section(&help, heading);
            assert!(!listed.is_empty(), "{name}: no {heading} heading");
            options.extend(listed);
        }
        // The install commands' sandbox flags have a heading of their own.
        options.extend(section(&help, "WASI installers (invocation images of imageType wasm)"));
        for (flags, description) in &options {
            assert!(!description.is_empty() && !description.starts_with('-'), "{name}: {flags} has no description");
        }
        if let Some((flags, _)) = own.iter().find(|(f, _)| f.split([',', ' ']).any(|part| part == "--output")) {
            assert_eq!(flags, "-o, --output <FILE>", "{name}: -o is a file");
        }
        if name != "completion" {
            assert!(own.iter().any(|(f, _)| f == "--format <FORMAT>"), "{name} has no --format: {own:?}");
            assert!(help.contains("Examples:\n  ferry "), "{name} has no examples");
        }
    }
    // `driver`'s own line says all it does, `add` included.
    let out = ferry(&["--help"], dir.path());
    // A global flag without a heading of its own would be listed here, and in every command's
    // own options.
    let top: Vec<String> = section(&text(&out.stdout), "Options").into_iter().map(|(flags, _)| flags).collect();
    assert_eq!(top, ["-h, --help", "-V, --version"], "global flags outside their headings");
    let line = text(&out.stdout).lines().find(|l| l.trim_start().starts_with("driver ")).unwrap().to_owned();
    assert!(line.contains("list") && line.contains("inspect") && line.contains("declare"), "{line}");
}

#[test]
fn the_old_o_json_spelling_is_refused_pointing_to_format() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = thin_bundle(dir.path());
    for args in [
        vec!["validate", bundle.to_str().unwrap(), "-o", "json"],
        vec!["inspect", "app.tar", "-o", "json"],
        vec!["verify", "app.tar", "--output", "text"],
        vec!["export", bundle.to_str().unwrap(), "-o", "json"],
        vec!["relocate", "app.tar", "--to", "file:///x", "-o", "json"],
        vec!["driver", "list", "-o", "json"],
        vec!["driver", "inspect", "x.wasm", "-o", "JSON"],
    ] {
        let out = ferry(&args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let wanted = format!("use --format {}", args.last().unwrap().to_lowercase());
        assert!(text(&out.stderr).contains(&wanted), "{args:?}: {}", text(&out.stderr));
        assert!(!dir.path().join("json").exists(), "{args:?} wrote a file named json");
    }
}

/// A bundle.json whose one image is a local tarball: exported, relocated and inspected offline.
fn thin_bundle(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("installer.tar"), tar_of(&[Entry::File("cnab/app/run", b"#!/bin/sh\n")])).unwrap();
    let bundle = dir.join("bundle.json");
    let doc = json!({
        "schemaVersion": "v1.2.0",
        "name": "cli",
        "version": "1.0.0",
        "invocationImages": [{ "image": "installer.tar", "imageType": "tarball" }],
    });
    std::fs::write(&bundle, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    bundle
}

/// The JSON document a command printed; every object key in it camelCase.
fn json_of(out: &std::process::Output, what: &str) -> Value {
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: no JSON ({e}): {}{}", text(&out.stdout), text(&out.stderr)));
    fn keys(v: &Value, what: &str) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let camel = k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && k.chars().all(|c| c.is_ascii_alphanumeric());
                    assert!(camel, "{what}: key {k:?} is not camelCase");
                    keys(v, what);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| keys(i, what)),
            _ => {}
        }
    }
    keys(&doc, what);
    doc
}

#[test]
fn every_command_prints_json_with_camel_case_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bundle = thin_bundle(d);
    let b = bundle.to_str().unwrap();
    let tar = d.join("app.tar");
    let t = tar.to_str().unwrap();

    let out = ferry(&["validate", b, "--format", "json"], d);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_of(&out, "validate"), json!({ "valid": true, "problems": [], "warnings": [] }));

    let out = ferry(&["export", b, "-o", t, "--format", "json"], d);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let export = json_of(&out, "export");
    assert_eq!(export["images"][0]["imageType"], "tarball", "{export}");
    assert!(export["bytes"].as_u64().unwrap() > 0, "{export}");

    let out = ferry(&["inspect", t, "--format", "json"], d);
    let inspection = json_of(&out, "inspect");
    assert_eq!(inspection["images"][0]["driverFrom"], "built-in", "{inspection}");
    assert!(inspection["bundleDrivers"].is_array(), "{inspection}");

    let out = ferry(&["verify", t, "--format", "json"], d);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_of(&out, "verify"), json!({ "verified": true, "problems": [] }));

    let site = format!("file://{}", d.join("site").display());
    let out = ferry(&["relocate", t, "--to", &site, "--dry-run", "--format", "json"], d);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(json_of(&out, "relocate --dry-run")[0]["bytesToSend"].as_u64().unwrap() > 0);
    let mapping = d.join("mapping.json");
    let out = ferry(&["relocate", t, "--to", &site, "-o", mapping.to_str().unwrap(), "--format", "json"], d);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json_of(&out, "relocate")[0]["key"], "invocationImages[0]");

    let out = ferry(&["driver", "list", "--format", "json"], d);
    assert!(json_of(&out, "driver list").as_array().unwrap().iter().any(|d| d["name"] == "tarball"));

    let driver = d.join("driver.wasm");
    std::fs::copy(common::guest(common::FILE_DRIVER), &driver).unwrap();
    let out = ferry(&["driver", "inspect", driver.to_str().unwrap(), "--format", "json"], d);
    assert_eq!(json_of(&out, "driver inspect")["imageTypes"], json!(["example-file"]));
    let out = ferry(&["driver", "add", b, driver.to_str().unwrap(), "--format", "json"], d);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        json_of(&out, "driver add"),
        json!({
            "name": "example-file",
            "imageTypes": ["example-file"],
            "digest": json_of(&ferry(&["driver", "inspect", driver.to_str().unwrap(), "--format", "json"], d), "")["digest"],
            "path": "driver.wasm",
        })
    );
}

#[test]
fn a_report_goes_to_the_o_file_and_problems_make_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bundle = thin_bundle(d);
    let tar = d.join("app.tar");
    let o = ferry(&["export", bundle.to_str().unwrap(), "-o", tar.to_str().unwrap()], d);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // A blob whose bytes no longer match its name: verify finds it, says where, exits 1.
    let mut bytes = std::fs::read(&tar).unwrap();
    let at = bytes.windows(10).position(|w| w == b"#!/bin/sh\n").expect("the script in the layer");
    bytes[at] = b'X';
    let broken = d.join("broken.tar");
    std::fs::write(&broken, bytes).unwrap();
    let report = d.join("verify.json");
    let o = ferry(&["verify", broken.to_str().unwrap(), "--format", "json", "-o", report.to_str().unwrap()], d);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "the report went to stdout: {}", text(&o.stdout));
    let verified: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(verified["verified"], false);
    let problem = &verified["problems"][0];
    assert!(problem["where"].as_str().unwrap().starts_with("blob sha256:"), "{verified}");
    assert!(problem["message"].as_str().unwrap().contains("hash to"), "{verified}");

    let listing = d.join("drivers.txt");
    let o = ferry(&["driver", "list", "-o", listing.to_str().unwrap()], d);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o.stderr));
    assert!(std::fs::read_to_string(&listing).unwrap().starts_with("NAME"));

    let invalid = d.join("invalid.json");
    std::fs::write(&invalid, r#"{"schemaVersion":"v1.2.0"}"#).unwrap();
    let o = ferry(&["validate", invalid.to_str().unwrap()], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("problem"), "{}", text(&o.stderr));
}

#[test]
fn with_format_json_errors_are_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("missing.tar");
    for args in [
        vec!["inspect", missing.to_str().unwrap(), "--format", "json"],
        vec!["verify", missing.to_str().unwrap(), "--format", "json"],
        vec!["driver", "inspect", missing.to_str().unwrap(), "--format", "json"],
        vec!["export", missing.to_str().unwrap(), "-o", "out.tar", "--format", "json"],
    ] {
        let out = ferry(&args, d);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let doc = json_of(&out, &args.join(" "));
        let message = doc["error"]["message"].as_str().unwrap_or_else(|| panic!("{args:?}: {doc}"));
        assert!(message.contains("missing.tar"), "{args:?}: {doc}");
        assert!(doc["error"]["causes"].as_array().is_some_and(|c| !c.is_empty()), "{args:?}: {doc}");
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    }
    // A usage error, when the command line asks for JSON: exit status 2, one JSON document.
    let out = ferry(&["inspect", "--format", "json"], d);
    assert_eq!(out.status.code(), Some(2));
    let doc = json_of(&out, "usage");
    assert!(doc["error"]["message"].as_str().unwrap().contains("<BUNDLE>"), "{doc}");
    // Without it, clap's own text on stderr.
    let out = ferry(&["inspect"], d);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty() && text(&out.stderr).contains("Usage:"));
}

#[test]
fn export_refuses_an_existing_file_unless_forced_and_a_missing_directory_always() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bundle = thin_bundle(d);
    let b = bundle.to_str().unwrap();
    let tar = d.join("app.tar");
    std::fs::write(&tar, b"the operator's file").unwrap();
    let o = ferry(&["export", b, "-o", tar.to_str().unwrap()], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("exists; pass --force"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(&tar).unwrap(), b"the operator's file");
    let o = ferry(&["export", b, "-o", tar.to_str().unwrap(), "--force"], d);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(ferry(&["verify", tar.to_str().unwrap()], d).status.success());

    // A missing directory is refused alike by export and relocate, naming the path given.
    let nowhere = d.join("nowhere");
    let site = format!("file://{}", d.join("site").display());
    for args in [
        vec!["export", b, "-o", "nowhere/app.tar"],
        vec!["relocate", "app.tar", "--to", &site, "-o", "nowhere/mapping.json"],
        vec!["inspect", "app.tar", "-o", "nowhere/inspect.txt"],
    ] {
        let o = ferry_command(d).current_dir(d).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let stderr = text(&o.stderr);
        assert!(stderr.contains("nowhere does not exist") && stderr.contains(args.last().unwrap()), "{stderr}");
        assert!(!stderr.contains(".ferry"), "an internal file is named: {stderr}");
        assert!(!nowhere.exists());
    }
}

#[test]
fn wrong_kinds_of_input_get_a_sentence_saying_what_they_seem_to_be() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bundle = thin_bundle(d);
    let tar = d.join("app.tar");
    assert!(ferry(&["export", bundle.to_str().unwrap(), "-o", tar.to_str().unwrap()], d).status.success());
    let file = |name: &str, bytes: &[u8]| {
        std::fs::write(d.join(name), bytes).unwrap();
        d.join(name)
    };
    let docker = file(
        "docker.tar",
        &tar_of(&[
            Entry::File("manifest.json", br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#),
            Entry::File("repositories", b"{}"),
            Entry::File("c.json", b"{}"),
            Entry::File("l/layer.tar", &[0; 1024]),
        ]),
    );
    let oci = file("oci.tar", &tar_of(&[Entry::File("oci-layout", b"{}"), Entry::File("index.json", b"{}")]));
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let random = file("random.bin", &random);
    let empty = file("empty", b"");
    let zip = file("app.zip", b"PK\x03\x04\x14\0\0\0\0\0");
    let truncated = file("truncated.tar", &std::fs::read(&tar).unwrap()[..1100]);
    let damaged = {
        let mut bytes = std::fs::read(&tar).unwrap();
        // The second entry's header, its size field made of bytes no tar writes.
        let at = bytes.windows(23).position(|w| w == b"relocation-mapping.json").unwrap();
        bytes[at + 124..at + 136].copy_from_slice(b"\x1b[2J\xfe\x01\x02\x03\x04\x05\x06\x07");
        // With a checksum that matches, so that the size field itself is what the reader trips on.
        bytes[at + 148..at + 156].fill(b' ');
        let sum: u32 = bytes[at..at + 512].iter().map(|&b| u32::from(b)).sum();
        bytes[at + 148..at + 156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        file("damaged.tar", &bytes)
    };
    let cases: [(&Path, &str); 8] = [
        (&docker, "is a docker-archive (what `docker save` writes), not a thick bundle"),
        (&oci, "is an OCI image layout"),
        (&random, "is neither JSON nor a thick bundle"),
        (&empty, "it is empty"),
        (&zip, "it is a zip archive"),
        (&truncated, "not a readable tar"),
        (&damaged, "not a readable tar: a damaged tar header"),
        (&bundle, "is a bundle.json (JSON), not a thick bundle"),
    ];
    let site = format!("file://{}", d.join("site").display());
    for (path, says) in cases {
        let p = path.to_str().unwrap();
        let mut commands = vec![vec!["inspect", p], vec!["verify", p]];
        if path != bundle {
            commands.extend([vec!["relocate", p, "--to", &site, "--dry-run"], vec!["export", p, "-o", "out.tar"]]);
        }
        // validate reads only bundle.json, which comes first in these two.
        if ![&bundle, &truncated, &damaged].contains(&&path.to_path_buf()) {
            commands.push(vec!["validate", p]);
        }
        for args in commands {
            let o = ferry_command(d).current_dir(d).args(&args).output().unwrap();
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            let stderr = text(&o.stderr);
            assert!(stderr.contains(says), "{args:?}: {stderr}");
            assert!(stderr.contains(p), "{args:?} does not name the file: {stderr}");
            assert!(stderr.chars().all(|c| c == '\n' || (' '..='~').contains(&c)), "{args:?}: garbage: {stderr:?}");
            assert!(stderr.lines().count() == 1, "{args:?}: {stderr}");
        }
    }
}

#[test]
fn completion_scripts_and_man_pages_come_from_the_same_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(&["completion", "bash"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("_ferry") && script.contains("--format") && script.contains("relocate"), "{script}");
    let out = ferry(&["completion", "tcsh"], dir.path());
    assert_eq!(out.status.code(), Some(2));

    let out = ferry(&["man", dir.path().to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(dir.path().join("ferry-export.1")).unwrap();
    assert!(page.contains(".TH ferry-export") && page.contains("force"), "{page}");
    assert!(dir.path().join("ferry.1").exists() && dir.path().join("ferry-driver-add.1").exists());
}
