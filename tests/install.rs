//! `ferry install`, `upgrade`, `invoke`, `uninstall` on a real container engine: podman's
//! Docker-compatible service, started by each test on its own socket. The invocation image is
//! built here from Debian's static busybox and a `/cnab/app/run` script, pushed into a real
//! registry, and what the run tool saw comes back as outputs.

mod common;

use common::{TestRegistry, ferry_command, text};
use ferry::oci::media_types::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use ferry::oci::{Descriptor, Layout, REF_NAME};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `podman system service` on a socket in a temporary directory, stopped on drop.
struct Podman {
    socket: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Podman {
    fn start() -> Podman {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podman.sock");
        let socket = format!("unix://{}", path.display());
        let child = Command::new("podman")
            .args(["system", "service", "--time=0", &socket])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman (scripts/setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&path).is_err() {
            assert!(Instant::now() < deadline, "podman's service did not start on {socket}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Podman { socket, child, _dir: dir }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the run tool does: reports what it was given as outputs, fails when asked to.
const RUN: &str = r#"#!/bin/sh
set -e
out=/cnab/app/outputs
echo "run tool: $CNAB_ACTION of $CNAB_INSTALLATION_NAME"
sleep "${WAIT:-0}"
printf '%s' "$CNAB_ACTION|$CNAB_INSTALLATION_NAME|$CNAB_BUNDLE_NAME|$CNAB_BUNDLE_VERSION|$CNAB_CLAIMS_VERSION" > $out/env
printf '%s' "$CNAB_REVISION" > $out/revision
printf '%s' "$PORT" > $out/port
cat /cnab/app/greeting > $out/greeting
cat /cnab/app/token > $out/token
sha256sum /cnab/bundle.json | cut -d' ' -f1 > $out/bundle
grep -q "\"id\"" /cnab/claim.json && printf yes > $out/claim
if [ -f /cnab/app/relocation-mapping.json ]; then cat /cnab/app/relocation-mapping.json > $out/mapping; else printf none > $out/mapping; fi
if [ -d /cnab/app/artifacts ]; then (cd /cnab/app/artifacts && find . -type f | sort | head -50) > $out/artifacts; else printf none > $out/artifacts; fi
if [ "$FAIL" = "yes" ]; then echo "failing as asked" >&2; exit 3; fi
"#;

fn put(layout: &Layout, media_type: &str, bytes: &[u8]) -> Descriptor {
    let digest = layout.put_bytes(bytes).unwrap();
    serde_json::from_value(json!({ "mediaType": media_type, "digest": digest.to_string(), "size": bytes.len() }))
        .unwrap()
}

/// A one-layer image: busybox as /bin/sh, and the run tool. Returns the manifest's digest.
fn write_installer(layout_dir: &Path, name: &str) -> String {
    let layout = Layout::create(layout_dir).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, bytes: &[u8], kind: tar::EntryType, link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(bytes.len() as u64);
        header.set_mtime(0);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        builder.append_data(&mut header, path, bytes).unwrap();
    };
    let dir = tar::EntryType::Directory;
    for d in ["bin", "cnab", "cnab/app", "tmp", "usr", "usr/bin"] {
        add(d, 0o755, b"", dir, None);
    }
    add("bin/busybox", 0o755, &std::fs::read("/bin/busybox").unwrap(), tar::EntryType::Regular, None);
    for tool in ["sh", "cat", "grep", "cut", "sha256sum", "find", "sort", "head", "printf", "echo", "sleep"] {
        add(&format!("bin/{tool}"), 0o777, b"", tar::EntryType::Symlink, Some("busybox"));
    }
    add("cnab/app/run", 0o755, RUN.as_bytes(), tar::EntryType::Regular, None);
    let layer_bytes = builder.into_inner().unwrap();
    let layer = put(&layout, OCI_LAYER_TAR, &layer_bytes);
    let config = json!({
        "os": "linux", "architecture": "amd64",
        "config": { "Env": ["PATH=/bin"], "Entrypoint": ["/cnab/app/run"] },
        "rootfs": { "type": "layers", "diff_ids": [layer.digest.to_string()] },
    });
    let config = put(&layout, OCI_CONFIG, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config.digest.to_string(), "size": config.size },
        "layers": [{ "mediaType": OCI_LAYER_TAR, "digest": layer.digest.to_string(), "size": layer.size }],
    });
    let mut manifest = put(&layout, OCI_MANIFEST, manifest.to_string().as_bytes());
    let digest = manifest.digest.to_string();
    manifest.annotations.insert(REF_NAME.into(), name.into());
    layout.add_to_index(manifest).unwrap();
    digest
}

struct Site {
    dir: tempfile::TempDir,
    registry: TestRegistry,
    podman: Podman,
    bundle: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start();
        let podman = Podman::start();
        let layout = dir.path().join("installer-layout");
        let digest = write_installer(&layout, "installer");
        registry.push(&layout, "installer", "shop/installer:1");
        let bundle = json!({
            "schemaVersion": "v1.2.0", "name": "shop", "version": "1.0.0",
            "invocationImages": [{ "image": format!("{}/shop/installer:1", registry.host), "imageType": "oci", "contentDigest": digest }],
            "definitions": {
                "port": { "type": "integer", "minimum": 1, "maximum": 65535, "default": 8080 },
                "text": { "type": "string", "minLength": 1 },
                "flag": { "type": "string", "enum": ["yes", "no"], "default": "no" },
                "seconds": { "type": "integer", "minimum": 0, "default": 0 },
                "secret": { "type": "string", "writeOnly": true },
                "plain": { "type": "string" },
            },
            "parameters": {
                "port": { "definition": "port", "destination": { "env": "PORT" } },
                "greeting": { "definition": "text", "destination": { "path": "/cnab/app/greeting" }, "required": true },
                "fail": { "definition": "flag", "destination": { "env": "FAIL" } },
                "wait": { "definition": "seconds", "destination": { "env": "WAIT" } },
            },
            "credentials": { "token": { "path": "/cnab/app/token", "required": true } },
            "outputs": {
                "env": { "definition": "plain", "path": "/cnab/app/outputs/env" },
                "revision": { "definition": "plain", "path": "/cnab/app/outputs/revision" },
                "port": { "definition": "plain", "path": "/cnab/app/outputs/port" },
                "greeting": { "definition": "plain", "path": "/cnab/app/outputs/greeting" },
                "token": { "definition": "secret", "path": "/cnab/app/outputs/token" },
                "bundle": { "definition": "plain", "path": "/cnab/app/outputs/bundle" },
                "claim": { "definition": "plain", "path": "/cnab/app/outputs/claim" },
                "mapping": { "definition": "plain", "path": "/cnab/app/outputs/mapping" },
                "artifacts": { "definition": "plain", "path": "/cnab/app/outputs/artifacts" },
            },
            "actions": {
                "status": { "modifies": false },
                "migrate": { "modifies": true },
            },
        });
        let path = dir.path().join("bundle.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&bundle).unwrap()).unwrap();
        Site { dir, registry, podman, bundle: path }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = ferry_command(self.dir.path());
        command
            .args(args)
            .args(["--insecure-registry", &self.registry.host])
            .env("DOCKER_HOST", &self.podman.socket)
            .env("FERRY_STORE", self.dir.path().join("store/ferry.db"))
            .env("FERRY_TEST_TOKEN", "t0ken-value")
            .stdin(Stdio::null());
        command
    }

    fn ferry(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    fn show(&self, installation: &str) -> Value {
        let out = self.ferry(&["installations", "show", installation, "--format", "json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn output(&self, installation: &str, name: &str) -> String {
        let out = self.ferry(&["outputs", installation, name]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    }
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn an_installation_lives_through_install_upgrade_custom_actions_and_uninstall() {
    let site = Site::new();
    let bundle = site.bundle.to_str().unwrap();
    let out =
        site.ferry(&["install", "prod", bundle, "--param", "greeting=hello", "--cred", "token=env:FERRY_TEST_TOKEN"]);
    ok(&out);
    assert!(text(&out.stdout).contains("run tool: install of prod"), "the run tool's output streams to the operator");
    assert!(!text(&out.stdout).contains("t0ken-value") && !text(&out.stderr).contains("t0ken-value"));

    assert_eq!(site.output("prod", "env"), "install|prod|shop|1.0.0|CNAB-Claims-1.0.0");
    assert_eq!(site.output("prod", "port"), "8080", "the default applies");
    assert_eq!(site.output("prod", "greeting"), "hello");
    assert_eq!(site.output("prod", "token"), "t0ken-value", "an explicitly named sensitive output is shown");
    assert_eq!(site.output("prod", "claim"), "yes");
    assert_eq!(site.output("prod", "mapping"), "none");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&site.bundle).unwrap()));
    assert_eq!(site.output("prod", "bundle").trim(), sha, "/cnab/bundle.json holds the exact bytes");
    let listed = site.ferry(&["outputs", "prod"]);
    ok(&listed);
    assert!(!text(&listed.stdout).contains("t0ken-value"), "a writeOnly output is not listed with the others");

    let first_revision = site.output("prod", "revision");
    ok(&site.ferry(&["upgrade", "prod", "--param", "port=9090", "--cred", "token=value:other"]));
    assert_eq!(site.output("prod", "port"), "9090");
    assert_eq!(site.output("prod", "greeting"), "hello", "upgrade keeps the values the last action used");
    let upgraded = site.output("prod", "revision");
    assert_ne!(upgraded, first_revision);

    ok(&site.ferry(&["invoke", "prod", "status", "--cred", "token=value:x"]));
    assert_eq!(site.output("prod", "revision"), upgraded, "an action that does not modify keeps the revision");
    ok(&site.ferry(&["invoke", "prod", "migrate", "--cred", "token=value:x"]));
    assert_ne!(site.output("prod", "revision"), upgraded);

    let shown = site.show("prod");
    let actions: Vec<&str> =
        shown["actions"].as_array().unwrap().iter().map(|a| a["claim"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["install", "upgrade", "status", "migrate"]);
    for a in shown["actions"].as_array().unwrap() {
        assert_eq!(a["result"]["status"], "succeeded");
        assert!(a["claim"]["parameters"].get("greeting").is_some());
        assert!(!a.to_string().contains("t0ken-value"), "no credential in a claim or result");
        assert!(a["result"]["outputs"]["port"]["contentDigest"].as_str().unwrap().starts_with("sha256:"));
    }
    let claims: Vec<Value> = shown["actions"].as_array().unwrap().iter().map(|a| a["claim"].clone()).collect();
    let results: Vec<Value> = shown["actions"].as_array().unwrap().iter().map(|a| a["result"].clone()).collect();
    if let Some(verdicts) = common::official_schema::verdicts("claim.schema.json", &claims) {
        assert!(verdicts.iter().all(|v| *v), "claims the official schema refuses: {verdicts:?}");
    }
    if let Some(verdicts) = common::official_schema::verdicts("claim-result.schema.json", &results) {
        assert!(verdicts.iter().all(|v| *v), "results the official schema refuses: {verdicts:?}");
    }

    let again = site.ferry(&["install", "prod", bundle, "--param", "greeting=x", "--cred", "token=value:x"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("ferry upgrade prod"), "{}", text(&again.stderr));

    ok(&site.ferry(&["uninstall", "prod", "--cred", "token=value:x"]));
    let list = site.ferry(&["installations", "list", "--format", "json"]);
    ok(&list);
    assert_eq!(serde_json::from_slice::<Value>(&list.stdout).unwrap(), json!([]));
    let all = site.ferry(&["installations", "list", "--all", "--format", "json"]);
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!((all[0]["name"].as_str(), all[0]["lastAction"].as_str()), (Some("prod"), Some("uninstall")));
}

#[test]
fn a_failing_run_is_recorded_as_failed_with_its_exit_status() {
    let site = Site::new();
    let bundle = site.bundle.to_str().unwrap();
    let out = site.ferry(&[
        "install",
        "bad",
        bundle,
        "--param",
        "greeting=hi",
        "--param",
        "fail=yes",
        "--cred",
        "token=value:x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("failing as asked"), "the run tool's stderr streams to the operator");
    let shown = site.show("bad");
    let result = &shown["actions"][0]["result"];
    assert_eq!(result["status"], "failed");
    assert!(result["message"].as_str().unwrap().contains("status 3"), "{result}");
    let claim = shown["actions"][0]["claim"]["id"].as_str().unwrap();
    let filter = format!("label=io.ferry.run={claim}");
    let containers = Command::new("podman")
        .args(["--url", &site.podman.socket, "ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])
        .output()
        .unwrap();
    assert!(containers.status.success(), "{}", text(&containers.stderr));
    assert_eq!(text(&containers.stdout).trim(), "", "the container is removed");
}

#[test]
fn inputs_that_break_the_bundle_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = json!({
        "schemaVersion": "v1.2.0", "name": "shop", "version": "1.0.0",
        "invocationImages": [{ "image": "127.0.0.1:9/never/pulled:1" }],
        "definitions": { "port": { "type": "integer", "maximum": 100 }, "s": { "type": "string" } },
        "parameters": { "port": { "definition": "port", "destination": { "env": "PORT" } } },
        "credentials": { "token": { "env": "TOKEN", "required": true } },
        "outputs": { "escape": { "definition": "s", "path": "/cnab/app/outputs/../run" } },
    });
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, bundle.to_string()).unwrap();
    let path = path.to_str().unwrap();
    let store = dir.path().join("ferry.db");
    let run = |args: &[&str]| {
        ferry_command(dir.path())
            .args(args)
            .env("FERRY_STORE", &store)
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .output()
            .unwrap()
    };
    let cases: [(&[&str], &str); 5] = [
        (&["--param", "port=eighty", "--cred", "token=value:s3cret"], "\"port\": \"eighty\" is not integer (type)"),
        (&["--param", "port=101", "--cred", "token=value:s3cret"], "greater than the maximum 100 (maximum)"),
        (
            &["--param", "colour=red", "--cred", "token=value:s3cret"],
            "\"colour\": the bundle declares no such parameter",
        ),
        (&[], "credential \"token\": required for install"),
        (&["--cred", "token=command:echo s3cret; exit 4"], "credential \"token\""),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["install", "prod", path];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "a credential value was shown: {stderr}");
    }
    let out = run(&["install", "prod", path, "--cred", "token=value:s"]);
    assert!(text(&out.stderr).contains("is not a file inside /cnab/app/outputs/"), "{}", text(&out.stderr));
    let out = run(&["install", "bad\nname", path, "--cred", "token=value:s"]);
    assert!(text(&out.stderr).contains("installation name \"bad\\nname\" holds"), "{}", text(&out.stderr));

    let mut wasm_only = bundle.clone();
    wasm_only["invocationImages"][0]["imageType"] = json!("wasm");
    wasm_only["outputs"] = json!({});
    let wasm_path = dir.path().join("wasm.json");
    std::fs::write(&wasm_path, wasm_only.to_string()).unwrap();
    let out = run(&["install", "prod", wasm_path.to_str().unwrap(), "--cred", "token=value:s"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no invocation image a container engine can run"), "{stderr}");
    assert!(!stderr.contains("nonexistent.sock"), "the engine was contacted first: {stderr}");
    let list = run(&["installations", "list", "--all", "--format", "json"]);
    assert_eq!(text(&list.stdout).trim(), "[]", "nothing was recorded");
}

#[test]
fn a_thick_bundle_installs_at_a_site_with_no_registry() {
    let site = Site::new();
    let archive = site.dir.path().join("shop.tgz");
    ok(&site.ferry(&["export", site.bundle.to_str().unwrap(), "-o", archive.to_str().unwrap()]));
    let Site { dir, registry, podman, .. } = site;
    drop(registry);
    let site = Site { registry: TestRegistry::start(), dir, podman, bundle: archive.clone() };
    let out =
        site.ferry(&["install", "air", archive.to_str().unwrap(), "--param", "greeting=hi", "--cred", "token=value:x"]);
    ok(&out);
    let mapping: Value = serde_json::from_str(&site.output("air", "mapping")).unwrap();
    assert_eq!(mapping.as_object().unwrap().len(), 0, "the invocation image is not among the artifacts: {mapping}");
    assert_eq!(
        site.output("air", "artifacts").trim(),
        "",
        "a bundle with only an invocation image places no artifacts"
    );
}

#[test]
fn a_relocated_bundle_runs_its_invocation_image_from_the_relocated_reference() {
    let site = Site::new();
    let target = TestRegistry::start();
    let mapping = site.dir.path().join("mapping.json");
    let out = site
        .command(&[
            "relocate",
            site.bundle.to_str().unwrap(),
            "--to",
            &format!("{}/site", target.host),
            "-o",
            mapping.to_str().unwrap(),
        ])
        .args(["--insecure-registry", &target.host])
        .output()
        .unwrap();
    ok(&out);
    let Site { dir, registry, podman, bundle } = site;
    drop(registry);
    let site = Site { registry: target, dir, podman, bundle };
    let out = site.ferry(&[
        "install",
        "moved",
        site.bundle.to_str().unwrap(),
        "--relocation-mapping",
        mapping.to_str().unwrap(),
        "--param",
        "greeting=hi",
        "--cred",
        "token=value:x",
    ]);
    ok(&out);
    assert_eq!(site.output("moved", "mapping").as_bytes(), std::fs::read(&mapping).unwrap().as_slice());
}

#[test]
fn one_action_at_a_time_and_an_interrupted_or_lost_action_is_recorded() {
    let site = Site::new();
    let bundle = site.bundle.to_str().unwrap();
    let inputs = ["--param", "greeting=hi", "--cred", "token=value:x"];
    let mut slow = site
        .command(&["install", "busy", bundle, "--param", "wait=30"])
        .args(inputs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The claim is recorded before the run starts: wait for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while site.ferry(&["installations", "show", "busy"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "the install never recorded its claim");
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = site.ferry(&["upgrade", "busy", "--cred", "token=value:x"]);
    assert_eq!(second.status.code(), Some(1));
    let claim = site.show("busy")["actions"][0]["claim"]["id"].as_str().unwrap().to_owned();
    assert!(
        text(&second.stderr).contains(&format!("install (claim {claim}) has been running")),
        "{}",
        text(&second.stderr)
    );

    // Ctrl-C: the container is stopped and removed, the action recorded as canceled.
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(slow.id() as i32, libc::SIGINT) };
    let status = slow.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(site.show("busy")["actions"][0]["result"]["status"], "canceled");
    let filter = format!("label=io.ferry.run={claim}");
    let left = Command::new("podman")
        .args(["--url", &site.podman.socket, "ps", "-a", "--filter", &filter, "-q"])
        .output()
        .unwrap();
    assert_eq!(text(&left.stdout).trim(), "", "the canceled run's container is removed");

    // A ferry killed outright leaves `running`; the next command records it as unknown.
    let mut lost = site
        .command(&["install", "lost", bundle, "--param", "wait=30"])
        .args(inputs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = site.ferry(&["installations", "show", "lost", "--format", "json"]);
        if out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout).unwrap()["actions"][0]["result"]["status"] == "running"
        {
            break;
        }
        assert!(Instant::now() < deadline, "the install never started running");
        std::thread::sleep(Duration::from_millis(100));
    }
    lost.kill().unwrap();
    lost.wait().unwrap();
    let next = site.ferry(&["upgrade", "lost", "--cred", "token=value:x"]);
    assert!(text(&next.stderr).contains("never finished; recorded as unknown"), "{}", text(&next.stderr));
    let actions = site.show("lost")["actions"].clone();
    assert_eq!(actions[0]["result"]["status"], "unknown");
    // The killed ferry could not remove its container.
    let filter = format!("label=io.ferry.run={}", actions[0]["claim"]["id"].as_str().unwrap());
    let _ = Command::new("podman").args(["--url", &site.podman.socket, "rm", "-f", "--filter", &filter]).output();
}

#[test]
fn what_the_engine_or_the_run_tool_gets_wrong_is_named() {
    let site = Site::new();
    let bundle = site.bundle.to_str().unwrap();
    let inputs = ["--param", "greeting=hi", "--cred", "token=value:x"];

    let out = site
        .command(&["install", "nowhere", bundle])
        .args(inputs)
        .env("DOCKER_HOST", "unix:///nonexistent/engine.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("/nonexistent/engine.sock") && stderr.contains("podman system service"), "{stderr}");

    let out = site.command(&["install", "capped", bundle, "--output-limit", "4B"]).args(inputs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let result = &site.show("capped")["actions"][0]["result"];
    assert_eq!(result["status"], "failed");
    assert!(result["message"].as_str().unwrap().contains("more than the 4"), "{result}");

    let mut doc: Value = serde_json::from_slice(&std::fs::read(&site.bundle).unwrap()).unwrap();
    doc["invocationImages"][0]["contentDigest"] = json!(format!("sha256:{}", "0".repeat(64)));
    let pinned = site.dir.path().join("wrong-digest.json");
    std::fs::write(&pinned, doc.to_string()).unwrap();
    let out = site.command(&["install", "pinned", pinned.to_str().unwrap()]).args(inputs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("contentDigest"), "{}", text(&out.stderr));
    assert_eq!(site.ferry(&["installations", "show", "pinned"]).status.code(), Some(1), "nothing was recorded");
}

#[test]
fn an_image_that_cannot_be_pulled_a_missing_output_and_a_lost_engine_are_named() {
    let mut site = Site::new();
    let inputs = ["--param", "greeting=hi", "--cred", "token=value:x"];
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&site.bundle).unwrap()).unwrap();

    let mut missing = doc.clone();
    missing["invocationImages"][0]["image"] = json!(format!("{}/shop/absent:1", site.registry.host));
    let path = site.dir.path().join("absent.json");
    std::fs::write(&path, missing.to_string()).unwrap();
    let out = site.command(&["install", "absent", path.to_str().unwrap()]).args(inputs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("shop/absent:1"), "{}", text(&out.stderr));
    assert_eq!(site.ferry(&["installations", "show", "absent"]).status.code(), Some(1), "nothing was recorded");

    doc["outputs"]["never"] =
        json!({ "definition": "plain", "path": "/cnab/app/outputs/never", "applyTo": ["install"] });
    let path = site.dir.path().join("never.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let out = site.command(&["install", "never", path.to_str().unwrap()]).args(inputs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let result = &site.show("never")["actions"][0]["result"];
    assert_eq!(result["status"], "failed");
    assert!(result["message"].as_str().unwrap().contains("did not write the output(s) never"), "{result}");

    let mut lost = site
        .command(&["install", "lost", site.bundle.to_str().unwrap(), "--param", "wait=30"])
        .args(inputs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = site.ferry(&["installations", "show", "lost", "--format", "json"]);
        if out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout).unwrap()["actions"][0]["result"]["status"] == "running"
        {
            break;
        }
        assert!(Instant::now() < deadline, "the install never started running");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    site.podman.child.kill().unwrap();
    site.podman.child.wait().unwrap();
    assert_eq!(lost.wait().unwrap().code(), Some(1));
    let shown = site.show("lost");
    let claim = shown["actions"][0]["claim"]["id"].as_str().unwrap().to_owned();
    let result = &shown["actions"][0]["result"];
    assert_eq!(result["status"], "unknown", "{result}");
    assert!(result["message"].as_str().unwrap().contains("engine was lost"), "{result}");
    // The engine's service is gone; podman itself removes what the lost run left.
    let _ = Command::new("podman").args(["rm", "-f", "--filter", &format!("label=io.ferry.run={claim}")]).output();
}
