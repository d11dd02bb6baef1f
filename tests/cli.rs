//! The `ferry driver` commands, run as an operator would run them.

mod common;

use common::{ferry, text};

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
