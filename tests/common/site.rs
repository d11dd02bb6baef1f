//! A site to install at, with one of ferry's two executors: podman's Docker-compatible service
//! on a socket of its own and a real registry holding an invocation image built from Debian's
//! static busybox and a `/cnab/app/run` script; or no container engine at all and the same
//! probe as a WebAssembly component beside bundle.json. Then a bundle.json naming the
//! invocation image, and the store ferry records in. The runtime-contract tests run on both.

use super::{TestRegistry, ferry_command, text};
use ferry::oci::media_types::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use ferry::oci::{Descriptor, Layout, REF_NAME};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `podman system service` on a socket in a temporary directory, stopped on drop.
pub struct Podman {
    pub socket: String,
    pub child: Child,
    _dir: tempfile::TempDir,
}

impl Podman {
    pub fn start() -> Podman {
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

pub struct Site {
    pub dir: tempfile::TempDir,
    pub registry: TestRegistry,
    /// `None`: the WASI executor's site, where no container engine runs.
    pub podman: Option<Podman>,
    pub bundle: PathBuf,
    /// What FERRY_STORE says: a SQLite file in `dir` unless a test names another store.
    pub store: String,
}

impl Site {
    /// The container executor's site.
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start();
        let podman = Podman::start();
        let layout = dir.path().join("installer-layout");
        let digest = write_installer(&layout, "installer");
        registry.push(&layout, "installer", "shop/installer:1");
        let image = json!({ "image": format!("{}/shop/installer:1", registry.host), "imageType": "oci", "contentDigest": digest });
        Site::with(dir, registry, Some(podman), image)
    }

    /// The WASI executor's site: the probe is a component beside bundle.json.
    pub fn wasi() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(super::guest("probe-installer.wasm")).unwrap();
        std::fs::write(dir.path().join("probe.wasm"), &bytes).unwrap();
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
        let image = json!({ "image": "probe.wasm", "imageType": "wasm", "contentDigest": digest });
        Site::with(dir, TestRegistry::start(), None, image)
    }

    fn with(dir: tempfile::TempDir, registry: TestRegistry, podman: Option<Podman>, image: Value) -> Site {
        let bundle = json!({
            "schemaVersion": "v1.2.0", "name": "shop", "version": "1.0.0",
            "invocationImages": [image],
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
        let store = dir.path().join("store/ferry.db").display().to_string();
        Site { dir, registry, podman, bundle: path, store }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = ferry_command(self.dir.path());
        command
            .args(args)
            .args(["--insecure-registry", &self.registry.host])
            .env("DOCKER_HOST", self.engine())
            .env("FERRY_STORE", &self.store)
            .env("FERRY_TEST_TOKEN", "t0ken-value")
            .stdin(Stdio::null());
        command
    }

    /// Where ferry looks for a container engine: podman's socket, or one that does not exist.
    pub fn engine(&self) -> String {
        match &self.podman {
            Some(podman) => podman.socket.clone(),
            None => format!("unix://{}/no-engine.sock", self.dir.path().display()),
        }
    }

    pub fn ferry(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// Starts a slow install (its run tool sleeps 30 s) in the background and returns once its
    /// claim's result says `running`.
    // The child is returned: the caller kills or waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start_running(&self, installation: &str, inputs: &[&str]) -> std::process::Child {
        let mut child = self
            .command(&["install", installation, self.bundle.to_str().unwrap(), "--param", "wait=30"])
            .args(inputs)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(format!("{installation}.stderr"))).unwrap())
            .spawn()
            .unwrap();
        // A bound, not a timing: a cold driver cache on a loaded machine takes a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(self.dir.path().join(format!("{installation}.stderr")));
                panic!("the install of {installation} ended ({status}) before it was seen running: {stderr:?}");
            }
            let out = self.ferry(&["installations", "show", installation, "--format", "json"]);
            if out.status.success()
                && serde_json::from_slice::<Value>(&out.stdout).unwrap()["actions"][0]["result"]["status"] == "running"
            {
                return child;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the install of {installation} never started running");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn show(&self, installation: &str) -> Value {
        let out = self.ferry(&["installations", "show", installation, "--format", "json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn output(&self, installation: &str, name: &str) -> String {
        let out = self.ferry(&["outputs", installation, name]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    }
}

pub fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}
