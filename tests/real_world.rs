//! Files found in the wild that ferry must tell apart and answer plainly: clear-signed bundles,
//! byte-order marks, JSON that is not an object, bytes that are no bundle at all, schema
//! versions ferry does not read, destinations the spec calls conflicting.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;

fn bundle() -> Value {
    json!({
        "schemaVersion": "v1.2.0",
        "name": "wild",
        "version": "1.0.0",
        "invocationImages": [{ "imageType": "docker", "image": "example.com/wild/installer:1.0.0" }]
    })
}

/// `ferry validate FILE --format json`: exit code and the document it printed (always one).
fn validate_json(file: &Path, dir: &Path) -> (Option<i32>, Value) {
    let o = ferry(&["validate", file.to_str().unwrap(), "--format", "json"], dir);
    let report = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{}: --format json printed no JSON ({e}): {}", file.display(), text(&o.stdout)));
    (o.status.code(), report)
}

#[test]
fn a_clear_signed_bundle_is_validated_from_the_json_inside_and_says_the_signature_was_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let signed = dir.path().join("bundle.cnab");
    let json = serde_json::to_string(&bundle()).unwrap();
    std::fs::write(
        &signed,
        format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{json}\n-----BEGIN PGP SIGNATURE-----\n\n\
             iQEzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n"
        ),
    )
    .unwrap();
    let o = ferry(&["validate", signed.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("signature was not checked"), "{}", text(&o.stderr));
}

#[test]
fn files_that_are_no_bundle_get_a_sentence_and_json_output_is_always_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let json = serde_json::to_vec(&bundle()).unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("bom.json", [b"\xef\xbb\xbf".to_vec(), json.clone()].concat(), "byte-order mark"),
        ("array.json", b"[1, 2, 3]".to_vec(), "object"),
        ("random.bin", vec![0, 159, 146, 150, 7, 7, 7], "neither JSON nor a thick bundle"),
        ("app.zip", b"PK\x03\x04rest of a zip".to_vec(), "zip"),
    ];
    for (name, bytes, says) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let o = ferry(&["validate", file.to_str().unwrap()], dir.path());
        assert_eq!(o.status.code(), Some(1), "{name}");
        let stderr = text(&o.stderr);
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert!(!stderr.contains("\u{fffd}") && stderr.len() < 600, "{name}: garbage on the terminal: {stderr}");
        let (code, report) = validate_json(&file, dir.path());
        assert_eq!(code, Some(1), "{name}");
        assert_eq!(report["valid"], false, "{name}: {report}");
        assert!(report["problems"][0]["message"].as_str().unwrap().contains(says), "{name}: {report}");
    }
}

#[test]
fn schema_versions_ferry_does_not_read_are_refused_naming_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    for (version, says) in [("v99.98", "not a CNAB Core version"), ("v0.9.0", "pre-1.0"), ("v1.0.0-WD", "")] {
        let file = dir.path().join("bundle.json");
        let mut doc = bundle();
        doc["schemaVersion"] = json!(version);
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        let (code, report) = validate_json(&file, dir.path());
        if says.is_empty() {
            assert_eq!(code, Some(0), "{version}: {report}");
            continue;
        }
        assert_eq!(code, Some(1), "{version}: {report}");
        let problem = &report["problems"][0];
        assert_eq!(problem["path"], "$.schemaVersion", "{version}: {report}");
        assert_eq!(problem["rule"], "SchemaVersionSupported", "{version}: {report}");
        assert!(problem["message"].as_str().unwrap().contains(says), "{version}: {report}");
    }
}

#[test]
fn a_parameter_and_a_credential_sharing_a_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.json");
    let mut doc = bundle();
    doc["definitions"] = json!({ "s": { "type": "string" } });
    doc["parameters"] = json!({ "config": { "definition": "s", "destination": { "path": "/etc/app.conf" } } });
    doc["credentials"] = json!({ "secret": { "path": "/etc/app.conf" } });
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let (code, report) = validate_json(&file, dir.path());
    assert_eq!(code, Some(1), "{report}");
    let problem = &report["problems"][0];
    assert_eq!(problem["rule"], "PathConflict", "{report}");
    assert_eq!(problem["path"], "$.credentials.secret.path", "{report}");
    assert!(problem["message"].as_str().unwrap().contains("$.parameters.config"), "{report}");
}

#[test]
fn written_files_get_the_umask_mode_and_unknown_extensions_and_bare_paths_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("installer.tar"), tar_of(&[Entry::File("run", b"#!/bin/sh\n")])).unwrap();
    let mut doc = bundle();
    doc["invocationImages"] = json!([{ "image": "installer.tar", "imageType": "tarball" }]);
    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, serde_json::to_vec(&doc).unwrap()).unwrap();
    // ferry runs under umask 027: a file it writes must come out 0640, neither the 0600 a
    // temporary file is created with nor what the test's own umask would give.
    let under_umask = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut command = ferry_command(dir.path());
        command.args(args);
        // SAFETY: umask(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(|| {
                libc::umask(0o027);
                Ok(())
            })
        };
        command.output().unwrap()
    };
    let export = |out: &Path| under_umask(&["export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()]);

    let zip = dir.path().join("app.zip");
    let o = export(&zip);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains(".tar, .tgz"), "{}", text(&o.stderr));
    assert!(!zip.exists());

    let tar = dir.path().join("app.tar");
    let o = export(&tar);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::metadata(&tar).unwrap().permissions().mode() & 0o777, 0o640);
    let mapping = dir.path().join("mapping.json");
    let site = format!("file://{}", dir.path().join("site").display());
    let o = under_umask(&["relocate", tar.to_str().unwrap(), "--to", &site, "-o", mapping.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::metadata(&mapping).unwrap().permissions().mode() & 0o777, 0o640);

    let bare = dir.path().join("site2");
    let o = ferry(&["relocate", tar.to_str().unwrap(), "--to", bare.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("file:///"), "{}", text(&o.stderr));
    assert!(!bare.exists());
}
