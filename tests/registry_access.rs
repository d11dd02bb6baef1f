//! Reaching registries as operators have them, against real docker-registry servers: each network
//! failure named at once and not retried (refused, unknown host, plain http, https listed as
//! plain, an untrusted certificate), retries told with -v, a self-signed https registry trusted
//! by --cert-dir, SSL_CERT_FILE, certs.d or --tls-verify=false, and credentials from every place
//! podman, skopeo and docker keep them, never shown.

mod common;

use common::proxy::{Fault, FaultyProxy};
use common::*;
use ferry::oci::Layout;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A bundle.json whose one image is `image`, pinned to `digest`.
fn bundle_naming(dir: &Path, image: &str, digest: &str) -> PathBuf {
    let bundle = dir.join("bundle.json");
    let doc = json!({
        "schemaVersion": "v1.2.0", "name": "app", "version": "1.0.0",
        "invocationImages": [{ "image": image, "contentDigest": digest }]
    });
    std::fs::write(&bundle, doc.to_string()).unwrap();
    bundle
}

/// Pushes an image to `registry` as `team/app:1` (with skopeo, `creds` if given) and writes a
/// bundle.json naming it.
fn bundle_in(dir: &Path, registry: &TestRegistry, creds: Option<&str>) -> PathBuf {
    let layout_path = dir.join("images");
    let layout = Layout::create(&layout_path).unwrap();
    let (root, _) = write_multiarch_image(&layout, "app", 3);
    registry.push_with(&layout_path, "app", "team/app:1", creds);
    bundle_naming(dir, &format!("{}/team/app:1", registry.host), &root.digest.to_string())
}

/// `ferry -v ARGS export BUNDLE -o DIR/NAME.tgz`, with `env` set.
fn export(dir: &Path, bundle: &Path, name: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let out = dir.join(format!("{name}.tgz"));
    let mut command = ferry_command(dir);
    command.arg("-v").args(args).arg("export").arg(bundle).arg("-o").arg(&out);
    for (name, value) in env {
        command.env(name, value);
    }
    let o = command.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(o.status.success(), out.exists(), "{}", text(&o.stderr));
    o
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Exits 1 with `expected` in its error, at the first try (no retry told with -v), and gives
/// the plain-http hint only if `hint`.
fn assert_fails_at_once(o: &Output, expected: &[&str], hint: bool) {
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{part:?} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("retrying"), "retried what cannot succeed:\n{stderr}");
    assert_eq!(stderr.contains("--insecure-registry"), hint, "{stderr}");
    assert!(!stderr.contains("error sending request"), "{stderr}");
}

#[test]
fn network_failures_name_their_cause_at_once() {
    let dir = tempfile::tempdir().unwrap();

    // Nothing listens on the port.
    let host = format!("127.0.0.1:{}", free_port());
    let bundle = bundle_naming(dir.path(), &format!("{host}/team/app:1"), DIGEST);
    let o = export(dir.path(), &bundle, "refused", &[], &[]);
    assert_fails_at_once(&o, &[&host, "refused the connection"], false);

    // A name that cannot resolve.
    let bundle = bundle_naming(dir.path(), "nonexistent.invalid/team/app:1", DIGEST);
    let o = export(dir.path(), &bundle, "unknown", &[], &[]);
    assert_fails_at_once(&o, &["unknown host nonexistent.invalid"], false);

    // A plain-http registry reached over https: the one case for the --insecure-registry hint.
    let plain = TestRegistry::start();
    let bundle = bundle_in(dir.path(), &plain, None);
    let o = export(dir.path(), &bundle, "plain", &[], &[]);
    assert_fails_at_once(&o, &["plain http", &format!("--insecure-registry {}", plain.host)], true);

    // An https registry with a certificate of a CA nobody trusts, reached over https, then over http.
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    let tls = TestRegistry::start_with_tls(&certs.join("server.crt"), &certs.join("server.key"));
    let bundle = bundle_in(dir.path(), &tls, None);
    let o = export(dir.path(), &bundle, "untrusted", &[], &[]);
    assert_fails_at_once(&o, &["not trusted", "--cert-dir", &format!("--tls-verify={}=false", tls.host)], false);
    let o = export(dir.path(), &bundle, "listed-plain", &["--insecure-registry", &tls.host], &[]);
    assert!(!text(&o.stderr).contains("retrying"), "{}", text(&o.stderr));
    let stderr = text(&o.stderr);
    assert!(stderr.contains(&format!("{} serves https", tls.host)), "{stderr}");
    assert!(stderr.contains("drop it from --insecure-registry"), "{stderr}");
}

#[test]
fn transient_failures_are_retried_and_each_retry_is_told_with_verbose() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start();
    let bundle = bundle_in(dir.path(), &registry, None);
    let proxy = FaultyProxy::start(
        &registry.host,
        Box::new(|n, line| (n < 2 && line.contains("/manifests/")).then_some(Fault::Status(503))),
    );
    let via = std::fs::read_to_string(&bundle).unwrap().replace(&registry.host, &proxy.host);
    std::fs::write(&bundle, via).unwrap();
    let o = export(dir.path(), &bundle, "retried", &["--insecure-registry", &proxy.host], &[]);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("retrying in 0.1s (attempt 2 of 5)"), "{stderr}");
    assert!(stderr.contains("retrying in 0.4s (attempt 3 of 5)") && stderr.contains("503"), "{stderr}");

    // Without -v, nothing is told.
    let out = dir.path().join("quiet.tgz");
    let quiet = ferry(
        &["--insecure-registry", &proxy.host, "export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()],
        dir.path(),
    );
    assert!(quiet.status.success() && !text(&quiet.stderr).contains("retrying"), "{}", text(&quiet.stderr));
}

#[test]
fn a_self_signed_registry_is_trusted_as_podman_and_skopeo_trust_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    let registry = TestRegistry::start_with_tls(&certs.join("server.crt"), &certs.join("server.key"));
    let bundle = bundle_in(dir.path(), &registry, None);
    // --cert-dir reads DIR/*.crt, and only those.
    let cert_dir = dir.path().join("cert-dir");
    std::fs::create_dir(&cert_dir).unwrap();
    std::fs::copy(certs.join("ca.crt"), cert_dir.join("ca.crt")).unwrap();
    let ca = certs.join("ca.crt");

    let o = export(dir.path(), &bundle, "cert-dir", &["--cert-dir", cert_dir.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = export(dir.path(), &bundle, "ssl-cert-file", &[], &[("SSL_CERT_FILE", &ca)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = export(dir.path(), &bundle, "no-verify", &["--tls-verify=false"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let this_one = format!("--tls-verify={}=false", registry.host);
    let o = export(dir.path(), &bundle, "no-verify-host", &[&this_one], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Another registry's exemption, and a directory without the CA, change nothing.
    let o = export(dir.path(), &bundle, "other-host", &["--tls-verify=127.0.0.2:443=false"], &[]);
    assert!(text(&o.stderr).contains("not trusted"), "{}", text(&o.stderr));
    let o = export(dir.path(), &bundle, "empty-dir", &["--cert-dir", dir.path().join("images").to_str().unwrap()], &[]);
    assert!(text(&o.stderr).contains("not trusted"), "{}", text(&o.stderr));

    // containers-certs.d(5): ~/.config/containers/certs.d/HOST:PORT/ca.crt.
    let home = dir.path().join("home");
    let certs_d = home.join(".config/containers/certs.d").join(&registry.host);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(&ca, certs_d.join("ca.crt")).unwrap();
    let o = export(dir.path(), &bundle, "certs-d", &[], &[("HOME", &home)]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // Relocation pushes with the same trust (oci-client's client).
    let mapping = dir.path().join("mapping.json");
    let o = ferry(
        &[
            "--cert-dir",
            cert_dir.to_str().unwrap(),
            "relocate",
            bundle.to_str().unwrap(),
            "--to",
            &format!("{}/copy", registry.host),
            "-o",
            mapping.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = ferry(&["relocate", bundle.to_str().unwrap(), "--to", &format!("{}/again", registry.host)], dir.path());
    assert!(o.status.code() == Some(1) && text(&o.stderr).contains("not trusted"), "{}", text(&o.stderr));
}

#[test]
fn credentials_come_from_every_place_podman_skopeo_and_docker_keep_them() {
    let dir = tempfile::tempdir().unwrap();
    let (user, password) = ("operator", "s3cret-Pa55");
    let registry = TestRegistry::start_with_password(user, password);
    let bundle = bundle_in(dir.path(), &registry, Some(&format!("{user}:{password}")));
    let plain = ["--insecure-registry", &registry.host];
    let auth_file = |path: &Path| {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, json!({ "auths": { registry.host.clone(): { "auth": auth } } }).to_string()).unwrap();
    };
    let mut outputs = Vec::new();

    // None: refused, saying that none were sent, where ferry looked, and how to log in.
    let o = export(dir.path(), &bundle, "none", &plain, &[]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("no credentials were sent to {}", registry.host)), "{stderr}");
    assert!(stderr.contains("no-runtime-dir/containers/auth.json") && stderr.contains("no-docker-config"), "{stderr}");
    assert!(stderr.contains(&format!("podman login {}", registry.host)), "{stderr}");
    assert!(stderr.contains(&format!("docker login {}", registry.host)), "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    outputs.push(o);

    // --creds REGISTRY=USER:PASSWORD; a wrong password says credentials were sent, and from where.
    let creds = format!("{}={user}:{password}", registry.host);
    let o = export(dir.path(), &bundle, "creds", &[&plain[..], &["--creds", &creds]].concat(), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    outputs.push(o);
    let wrong = format!("{}={user}:not-{password}", registry.host);
    let o = export(dir.path(), &bundle, "wrong", &[&plain[..], &["--creds", &wrong]].concat(), &[]);
    let stderr = text(&o.stderr);
    assert!(stderr.contains("credentials from --creds were sent") && stderr.contains("refused"), "{stderr}");
    assert!(stderr.contains(&format!("podman login {}", registry.host)), "{stderr}");
    assert!(!stderr.contains(&format!("not-{password}")), "{stderr}");
    outputs.push(o);

    // --creds without a password, and no terminal to ask on; without a registry, for a command
    // that writes to none.
    let alone = format!("{}={user}", registry.host);
    let o = export(dir.path(), &bundle, "no-password", &[&plain[..], &["--creds", &alone]].concat(), &[]);
    assert!(text(&o.stderr).contains("stdin is not a terminal"), "{}", text(&o.stderr));
    let bare = format!("{user}:{password}");
    let o = export(dir.path(), &bundle, "bare", &[&plain[..], &["--creds", &bare]].concat(), &[]);
    assert!(text(&o.stderr).contains(&format!("--creds REGISTRY={user}")), "{}", text(&o.stderr));
    outputs.push(o);

    // --authfile, and REGISTRY_AUTH_FILE: that file alone.
    let named = dir.path().join("named/auth.json");
    auth_file(&named);
    let o =
        export(dir.path(), &bundle, "authfile", &[&plain[..], &["--authfile", named.to_str().unwrap()]].concat(), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    outputs.push(o);
    let o = export(dir.path(), &bundle, "registry-auth-file", &plain, &[("REGISTRY_AUTH_FILE", &named)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    outputs.push(o);
    let o = export(dir.path(), &bundle, "missing", &plain, &[("REGISTRY_AUTH_FILE", &dir.path().join("nothing.json"))]);
    assert!(text(&o.stderr).contains("REGISTRY_AUTH_FILE"), "{}", text(&o.stderr));

    // podman's ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.config/containers/auth.json, and
    // docker's $DOCKER_CONFIG/config.json.
    let runtime_dir = dir.path().join("run");
    auth_file(&runtime_dir.join("containers/auth.json"));
    let o = export(dir.path(), &bundle, "xdg-runtime", &plain, &[("XDG_RUNTIME_DIR", &runtime_dir)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    outputs.push(o);
    let config_home = dir.path().join("config-home");
    auth_file(&config_home.join("containers/auth.json"));
    let o = export(dir.path(), &bundle, "xdg-config", &plain, &[("XDG_CONFIG_HOME", &config_home)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    outputs.push(o);
    let docker = dir.path().join("docker");
    auth_file(&docker.join("config.json"));
    let o = export(dir.path(), &bundle, "docker", &plain, &[("DOCKER_CONFIG", &docker)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    outputs.push(o);

    // relocate: --creds USER:PASSWORD is for its --to registry (here also the source).
    let o = ferry(
        &[
            &plain[..],
            &["--creds", &bare, "relocate", bundle.to_str().unwrap(), "--to"],
            &[&format!("{}/copy", registry.host)],
        ]
        .concat(),
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    outputs.push(o);

    // The secret is never shown, not even with -v.
    for o in &outputs {
        assert!(!text(&o.stderr).contains(password), "{}", text(&o.stderr));
    }
}

/// Runs `ferry ARGS` on a terminal (a pty, through python3), types `password` once it asks,
/// and returns its exit status and everything the terminal showed.
fn on_terminal(dir: &Path, args: &[&str], password: &str) -> (i32, String) {
    const SCRIPT: &str = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
def read():
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""
shown = b""
while b"Password for" not in shown:
    chunk = read()
    if not chunk:
        break
    shown += chunk
os.write(fd, os.environ["TYPED"].encode() + b"\n")
while True:
    chunk = read()
    if not chunk:
        break
    shown += chunk
sys.stdout.buffer.write(shown)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;
    let ferry = ferry_command(dir);
    let mut python = Command::new("python3");
    for (name, value) in ferry.get_envs() {
        match value {
            Some(value) => python.env(name, value),
            None => python.env_remove(name),
        };
    }
    let o = python.args(["-c", SCRIPT]).arg(ferry.get_program()).args(args).env("TYPED", password).output().unwrap();
    (o.status.code().unwrap_or(-1), text(&o.stdout))
}

#[test]
fn a_password_left_out_is_asked_for_on_the_terminal_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let (user, password) = ("operator", "typed-Secr3t");
    let registry = TestRegistry::start_with_password(user, password);
    let bundle = bundle_in(dir.path(), &registry, Some(&format!("{user}:{password}")));
    let out = dir.path().join("asked.tgz");
    let creds = format!("{}={user}", registry.host);
    let args = ["--insecure-registry", &registry.host, "--creds", &creds, "export", bundle.to_str().unwrap(), "-o"];
    let (status, shown) = on_terminal(dir.path(), &[&args[..], &[out.to_str().unwrap()]].concat(), password);
    assert_eq!(status, 0, "{shown}");
    assert!(shown.contains(&format!("Password for {user} at {}", registry.host)), "{shown}");
    assert!(!shown.contains(password), "the password was echoed:\n{shown}");
    assert!(out.exists());
}
