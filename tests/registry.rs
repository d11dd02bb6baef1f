//! Registry access as operators have it: retries through 503s, 429s and dropped connections,
//! and credentials from the Docker config file and credential helpers.

mod common;

use common::proxy::{Fault, FaultyProxy};
use common::*;
use ferry::oci::{Layout, Stored};
use serde_json::json;
use std::path::Path;
use std::process::Output;

fn ferry_with(args: &[&str], dir: &Path, docker_config: &Path, path_prefix: Option<&Path>) -> Output {
    let mut command = ferry_command(dir);
    command.args(args).env("DOCKER_CONFIG", docker_config);
    if let Some(prefix) = path_prefix {
        command.env("PATH", format!("{}:{}", prefix.display(), std::env::var("PATH").unwrap()));
    }
    command.output().unwrap()
}

/// Pushes one image to `host` and writes a bundle.json naming it (as seen through `via`).
fn bundle_for(dir: &Path, registry: &TestRegistry, via: &str, creds: Option<&str>) -> std::path::PathBuf {
    let layout_path = dir.join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (root, _) = write_multiarch_image(&layout, "app", 5);
    registry.push_with(&layout_path, "app", "team/app:1", creds);
    let bundle = dir.join("bundle.json");
    let doc = json!({
        "schemaVersion": "v1.2.0", "name": "app", "version": "1.0.0",
        "invocationImages": [{ "image": format!("{via}/team/app:1"), "contentDigest": root.digest.to_string() }]
    });
    std::fs::write(&bundle, doc.to_string()).unwrap();
    bundle
}

#[test]
fn export_retries_through_server_errors_and_dropped_connections() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let proxy = FaultyProxy::start(
        &registry.host,
        Box::new(|n, line| match n {
            // Each blob: first a 503, then a 429, then the connection drops mid-body; then it works.
            0 if line.contains("/blobs/") => Some(Fault::Status(503)),
            1 if line.contains("/blobs/") => Some(Fault::Status(429)),
            2 if line.contains("/blobs/") => Some(Fault::Drop),
            0 if line.contains("/manifests/") => Some(Fault::Status(502)),
            _ => None,
        }),
    );
    let bundle = bundle_for(dir.path(), &registry, &proxy.host, None);
    let out = dir.path().join("app.tgz");
    let o = ferry(
        &["--insecure-registry", &proxy.host, "export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = ferry(&["verify", out.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let faults = proxy.seen.lock().unwrap().iter().filter(|(_, f)| f.is_some()).count();
    assert!(faults >= 3 * 5, "only {faults} faults were injected");
}

#[test]
fn export_gives_up_with_a_clear_error_when_the_registry_keeps_failing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let proxy =
        FaultyProxy::start(&registry.host, Box::new(|_, line| line.contains("/blobs/").then_some(Fault::Status(503))));
    let bundle = bundle_for(dir.path(), &registry, &proxy.host, None);
    let out = dir.path().join("app.tgz");
    let o = ferry(
        &["--insecure-registry", &proxy.host, "export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(stderr.contains("503") && stderr.contains("invocationImages[0]"), "{stderr}");
    assert!(!out.exists());
    // One first try and four retries per blob, not more; blobs are fetched in parallel, and
    // none is tried again once one has failed for good.
    let seen = proxy.seen.lock().unwrap();
    let mut tries: std::collections::BTreeMap<&str, usize> = Default::default();
    for (line, _) in seen.iter().filter(|(line, _)| line.contains("/blobs/")) {
        *tries.entry(line.as_str()).or_default() += 1;
    }
    assert!(tries.values().all(|&n| n <= 5) && tries.values().any(|&n| n == 5), "{tries:?}");
}

#[test]
fn credentials_come_from_the_docker_config_and_credential_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start_with_password("operator", "s3cret");
    let bundle = bundle_for(dir.path(), &registry, &registry.host, Some("operator:s3cret"));
    let export = |config: &Path, path: Option<&Path>, name: &str| {
        let out = dir.path().join(name);
        let o = ferry_with(
            &["--insecure-registry", &registry.host, "export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
            dir.path(),
            config,
            path,
        );
        (o, out)
    };

    // No credentials: refused, saying so.
    let (o, out) = export(&dir.path().join("empty"), None, "none.tgz");
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).to_lowercase().contains("authoriz"), "{}", text(&o.stderr));
    assert!(!out.exists());

    // `auths` in config.json.
    let basic = dir.path().join("basic");
    std::fs::create_dir_all(&basic).unwrap();
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("operator:s3cret")
    };
    std::fs::write(
        basic.join("config.json"),
        json!({ "auths": { registry.host.clone(): { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let (o, out) = export(&basic, None, "basic.tgz");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.exists());

    // A credential helper named in `credHelpers`.
    let helper_dir = dir.path().join("bin");
    std::fs::create_dir_all(&helper_dir).unwrap();
    let helper = helper_dir.join("docker-credential-ferrytest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$server\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"Username\":\"operator\",\"Secret\":\"s3cret\"}}'\n",
            registry.host
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helped = dir.path().join("helped");
    std::fs::create_dir_all(&helped).unwrap();
    std::fs::write(
        helped.join("config.json"),
        json!({ "credHelpers": { registry.host.clone(): "ferrytest" } }).to_string(),
    )
    .unwrap();
    let (o, out) = export(&helped, Some(&helper_dir), "helped.tgz");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.exists());
}

#[test]
fn ranged_reads_and_streamed_copies_return_the_blobs_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let layout_path = dir.path().join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (_, blobs) = write_multiarch_image(&layout, "app", 9);
    registry.push(&layout_path, "app", "team/app:1");
    let client = ferry::registry::Registry::new(&registry.options(dir.path())).unwrap();
    let reference: oci_client::Reference = format!("{}/team/app:1", registry.host).parse().unwrap();
    let base = &blobs[0];
    let bytes = layout.read_blob(base, 1 << 20).unwrap();
    // Blobs are read only as a manifest fetched from the registry declares them.
    let unread = client.read(&reference, base, 0, 64, None).unwrap_err();
    assert!(unread.message.contains("no manifest fetched"), "{unread}");
    let (index, _, _) = client.manifest(&reference, None).unwrap();
    for child in ferry::oci::children(&index).unwrap() {
        client.manifest(&reference.clone_with_digest(child.digest.to_string()), None).unwrap();
    }
    assert_eq!(client.read(&reference, base, 1000, 64, None).unwrap(), bytes[1000..1064]);
    assert_eq!(client.read(&reference, base, bytes.len() as u64 - 10, 64, None).unwrap(), bytes[bytes.len() - 10..]);
    let mut copied = Vec::new();
    assert_eq!(client.copy_blob(&reference, base, None, &mut copied).unwrap(), bytes.len() as u64);
    assert_eq!(copied, bytes);
}
