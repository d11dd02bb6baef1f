//! Invocation images that are WebAssembly components, run by ferry in its own sandbox (issue
//! 13): the example installer through install, upgrade and uninstall with no container engine,
//! the network only as far as the bundle declares and the operator grants, and hostile
//! installers each stopped with a named error, recorded as failed, the next action unharmed.

mod common;

use common::site::ok;
use common::{TestRegistry, ferry_command, guest, text};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

/// A loopback HTTP endpoint that answers every request with 200 and keeps what it was sent.
struct Endpoint {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let request = read_request(&mut stream);
                let body = request.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
                kept.lock().unwrap().push(request);
                let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\nwelcome {body}", body.len() + 8);
            }
        });
        Endpoint { port, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The head of an HTTP/1 request and as much body as its Content-Length says; what a bare TCP
/// connection sends (nothing) is an empty request.
fn read_request(stream: &mut std::net::TcpStream) -> String {
    let mut request = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&request).into_owned(),
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
}

struct Site {
    dir: tempfile::TempDir,
    store: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let store = dir.path().join("store/ferry.db");
        Site { dir, store }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `ferry ARGS` with no container engine anywhere: DOCKER_HOST names a socket that does not exist.
    fn ferry(&self, args: &[&str]) -> Output {
        self.ferry_with(args, &[])
    }

    fn ferry_with(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        ferry_command(self.path())
            .args(args)
            .envs(env.iter().copied())
            .env("DOCKER_HOST", format!("unix://{}/no-engine.sock", self.path().display()))
            .env("FERRY_STORE", &self.store)
            .env("TMPDIR", self.path().join("tmp"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn output(&self, installation: &str, name: &str) -> String {
        let out = self.ferry(&["outputs", installation, name]);
        ok(&out);
        text(&out.stdout)
    }

    fn last_result(&self, installation: &str) -> Value {
        let out = self.ferry(&["installations", "show", installation, "--format", "json"]);
        ok(&out);
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        shown["actions"].as_array().unwrap().last().unwrap()["result"].clone()
    }

    /// Writes `component` beside a bundle.json made from `bundle` with its digest pinned.
    fn bundle(&self, component: &str, mut bundle: Value) -> String {
        let bytes = std::fs::read(guest(component)).unwrap();
        std::fs::write(self.path().join("installer.wasm"), &bytes).unwrap();
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
        bundle["invocationImages"] =
            json!([{ "imageType": "wasm", "image": "installer.wasm", "contentDigest": digest }]);
        let path = self.path().join("bundle.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&bundle).unwrap()).unwrap();
        path.display().to_string()
    }

    fn greeter(&self, port: u16) -> String {
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wasi-installer/bundle.json.in"))
                .unwrap()
                .replace("@PORT@", &port.to_string())
                .replace("@DIGEST@", "sha256:0000000000000000000000000000000000000000000000000000000000000000");
        self.bundle("wasi-installer.wasm", serde_json::from_str(&template).unwrap())
    }
}

#[test]
fn an_installer_component_runs_install_upgrade_and_uninstall_with_no_container_engine() {
    let site = Site::new();
    let endpoint = Endpoint::start();
    let bundle = site.greeter(endpoint.port);
    let url = format!("http://127.0.0.1:{}/hook", endpoint.port);
    let grant = format!("127.0.0.1:{}", endpoint.port);
    let endpoint_param = format!("endpoint={url}");
    let inputs =
        ["--param", endpoint_param.as_str(), "--cred", "token=value:s3cret", "--allow-outbound", grant.as_str()];

    let out = site.ferry(&[&["install", "demo", bundle.as_str()][..], &inputs].concat());
    ok(&out);
    assert!(text(&out.stdout).contains("install demo: hello"), "the installer's stdout streams: {}", text(&out.stdout));
    assert_eq!(site.output("demo", "greeting"), "hello, demo");
    assert_eq!(site.output("demo", "answer"), "welcome install demo");
    let seen = endpoint.requests();
    assert_eq!(seen.len(), 1);
    let head = seen[0].to_ascii_lowercase();
    assert!(head.starts_with("post /hook ") && head.contains("authorization: bearer s3cret"), "{seen:?}");

    let upgraded =
        site.ferry(&[&["upgrade", "demo", "--param", "greeting=hi", "--format", "json"][..], &inputs].concat());
    ok(&upgraded);
    let report: Value =
        serde_json::from_slice(&upgraded.stdout).expect("with --format json, stdout is the report alone");
    assert_eq!(report["result"]["status"], "succeeded");
    assert!(text(&upgraded.stderr).contains("upgrade demo: hi"), "the installer's stdout went to stderr");
    assert_eq!(site.output("demo", "greeting"), "hi, demo");
    assert_eq!(site.output("demo", "answer"), "welcome upgrade demo");

    ok(&site.ferry(&[&["uninstall", "demo"][..], &inputs].concat()));
    assert_eq!(endpoint.requests().len(), 3);
    let statuses: Vec<Value> = {
        let shown = site.ferry(&["installations", "show", "demo", "--format", "json"]);
        let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
        shown["actions"].as_array().unwrap().iter().map(|a| a["result"]["status"].clone()).collect()
    };
    assert_eq!(statuses, ["succeeded", "succeeded", "succeeded"]);

    // The same bundle exported to a thick bundle installs from the archive alone.
    let archive = site.path().join("greeter.tgz");
    ok(&site.ferry(&["export", bundle.as_str(), "-o", archive.to_str().unwrap()]));
    let inspected = site.ferry(&["inspect", archive.to_str().unwrap()]);
    ok(&inspected);
    let asks = format!("installer asks to reach http://127.0.0.1:{} (closed unless granted", endpoint.port);
    assert!(text(&inspected.stdout).contains(&asks), "{}", text(&inspected.stdout));
    std::fs::remove_file(site.path().join("installer.wasm")).unwrap();
    ok(&site.ferry(&[&["install", "again", archive.to_str().unwrap()][..], &inputs].concat()));
    assert_eq!(site.output("again", "answer"), "welcome install again");

    // Published to a registry, it installs by reference, pinned by digest, with no engine.
    let registry = TestRegistry::start();
    let reference = format!("{}/apps/greeter:0.1.0", registry.host);
    ok(&site.ferry(&["--insecure-registry", &registry.host, "push", archive.to_str().unwrap(), &reference]));
    let by_reference =
        [&["--insecure-registry", registry.host.as_str(), "install", "published", &reference][..], &inputs];
    ok(&site.ferry(&by_reference.concat()));
    assert_eq!(site.output("published", "answer"), "welcome install published");
    let leftovers: Vec<_> = std::fs::read_dir(site.path().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "the sandbox's files are removed: {leftovers:?}");
}

#[test]
fn a_declared_host_is_closed_until_the_operator_grants_it_and_a_grant_alone_opens_nothing() {
    let site = Site::new();
    let endpoint = Endpoint::start();
    let bundle = site.greeter(endpoint.port);
    let url = format!("endpoint=http://127.0.0.1:{}/hook", endpoint.port);

    let out = site.ferry(&["install", "closed", &bundle, "--param", &url, "--cred", "token=value:t"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let message = site.last_result("closed")["message"].as_str().unwrap().to_owned();
    let refused = format!("refused a connection to http://127.0.0.1:{}", endpoint.port);
    assert!(message.contains(&refused), "wasi:http names the request's endpoint: {message}");
    assert!(message.contains("--allow-outbound"), "{message}");
    assert!(text(&out.stderr).contains("stays closed: grant it with --allow-outbound"), "{}", text(&out.stderr));

    // Granted, but not what the bundle declares: a second server on another port.
    let other = Endpoint::start();
    let other_url = format!("endpoint=http://127.0.0.1:{}/hook", other.port);
    let other_grant = format!("127.0.0.1:{}", other.port);
    let out = site.ferry(&[
        "install",
        "undeclared",
        &bundle,
        "--param",
        &other_url,
        "--cred",
        "token=value:t",
        "--allow-outbound",
        &other_grant,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the bundle does not declare it, so it gives nothing"), "{}", text(&out.stderr));
    let message = site.last_result("undeclared")["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&format!("refused a connection to http://127.0.0.1:{}", other.port)), "{message}");
    assert!(endpoint.requests().is_empty() && other.requests().is_empty(), "nothing reached either server");

    // A declaration ferry cannot read is a warning of `validate`, and `--strict` fails on it.
    ok(&site.ferry(&["validate", "--strict", &bundle]));
    let mut broken: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    broken["custom"]["io.ferry.wasi"]["allowedOutboundHosts"] = json!(["ftp://127.0.0.1:21"]);
    std::fs::write(&bundle, broken.to_string()).unwrap();
    let out = site.ferry(&["validate", "--strict", &bundle]);
    assert_eq!(out.status.code(), Some(1));
    let said = "warning: $.custom[\"io.ferry.wasi\"].allowedOutboundHosts[0]: \"ftp://127.0.0.1:21\": the scheme is";
    assert!(text(&out.stderr).contains(said), "{}", text(&out.stderr));
}

#[test]
fn hostile_installers_are_stopped_with_a_named_error_and_the_next_action_works() {
    let site = Site::new();
    let target = Endpoint::start();
    let open = Endpoint::start();
    let actions: serde_json::Map<String, Value> =
        ["loop", "sleep", "grow", "escape", "connect", "outputs", "flood", "crash", "noop"]
            .iter()
            .map(|a| (a.to_string(), json!({ "modifies": false })))
            .collect();
    let bundle = site.bundle(
        "hostile-installer.wasm",
        json!({
            "schemaVersion": "v1.2.0", "name": "hostile", "version": "1.0.0",
            "parameters": { "target": { "definition": "text", "destination": { "env": "TARGET" } } },
            "outputs": { "big": { "definition": "text", "path": "/cnab/app/outputs/big", "applyTo": ["outputs"] } },
            "definitions": { "text": { "type": "string", "default": "" } },
            "actions": actions,
            "custom": { "io.ferry.wasi": { "allowedOutboundHosts": [format!("tcp://127.0.0.1:{}", open.port)] } },
            "requiredExtensions": ["io.ferry.wasi"],
        }),
    );
    ok(&site.ferry(&["install", "h", &bundle]));
    let target_param = format!("target=127.0.0.1:{}", target.port);
    let target_grant = format!("127.0.0.1:{}", target.port);
    let cases: [(&str, &[&str], &str); 8] = [
        ("loop", &["--installer-timeout", "2s"], "stopped at its time limit of 2s (--installer-timeout)"),
        ("sleep", &["--installer-timeout", "2s"], "stopped at its time limit of 2s (--installer-timeout)"),
        ("grow", &["--installer-memory", "64MiB"], "hit its memory limit of 64 MiB (--installer-memory)"),
        ("escape", &[], "the run tool exited with status"),
        (
            "connect",
            &["--param", &target_param, "--allow-outbound", &target_grant],
            "refused a connection to 127.0.0.1:",
        ),
        (
            "outputs",
            &["--output-limit", "1MiB"],
            "wrote more than 1 MiB under /cnab/app/outputs/ (1 declared, 1 MiB an output may hold, --output-limit)",
        ),
        ("flood", &["--installer-output", "1MiB"], "wrote more than 1 MiB to stdout and stderr (--installer-output)"),
        ("crash", &[], "the installer crashed: "),
    ];
    for (action, flags, says) in cases {
        let out = site.ferry(&[&["invoke", "h", action][..], flags].concat());
        assert_eq!(out.status.code(), Some(1), "{action}: {}", text(&out.stderr));
        let result = site.last_result("h");
        assert_eq!(result["status"], "failed", "{action}");
        let message = result["message"].as_str().unwrap();
        assert!(message.contains(says), "{action}: {message}");
        if action == "escape" {
            assert!(!text(&out.stdout).contains("ESCAPED"), "{}", text(&out.stdout));
            assert_eq!(text(&out.stderr).matches("refused: ").count(), 4, "{}", text(&out.stderr));
        }
        let next = site.ferry(&["invoke", "h", "noop"]);
        ok(&next);
        assert_eq!(site.last_result("h")["status"], "succeeded", "after {action}");
    }
    assert!(target.requests().is_empty(), "the undeclared target was never reached");

    // What is both declared and granted is reachable over a TCP socket.
    let open_param = format!("target=127.0.0.1:{}", open.port);
    let open_grant = format!("127.0.0.1:{}", open.port);
    let out = site.ferry(&["invoke", "h", "connect", "--param", &open_param, "--allow-outbound", &open_grant]);
    ok(&out);
    assert!(text(&out.stdout).contains(&format!("CONNECTED to 127.0.0.1:{}", open.port)), "{}", text(&out.stdout));
    assert_eq!(open.requests().len(), 1, "the granted endpoint saw the connection");
    let leftovers: Vec<_> = std::fs::read_dir(site.path().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "nothing is left behind, not even the 1 GiB output: {leftovers:?}");
}

#[test]
fn https_from_an_installer_trusts_what_ferry_trusts() {
    let site = Site::new();
    common::make_certificates(site.path());
    // A loopback HTTPS endpoint whose certificate only the test's CA vouches for.
    let server = r#"
import http.server, ssl, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        reply = b"welcome " + self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200); self.send_header("Content-Length", str(len(reply))); self.end_headers()
        self.wfile.write(reply)
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1] + "/server.crt", sys.argv[1] + "/server.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", server, site.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut port).unwrap();
    let port: u16 = port.trim().parse().unwrap();
    let bundle = site.greeter(port);
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    doc["custom"]["io.ferry.wasi"]["allowedOutboundHosts"] = json!([format!("https://127.0.0.1:{port}")]);
    std::fs::write(&bundle, doc.to_string()).unwrap();
    let endpoint = format!("endpoint=https://127.0.0.1:{port}/hook");
    let grant = format!("127.0.0.1:{port}");
    let install = |name: &str| {
        let args =
            ["install", name, &bundle, "--param", &endpoint, "--cred", "token=value:t", "--allow-outbound", &grant];
        args.map(str::to_owned)
    };

    let untrusted = site.ferry(&install("untrusted").each_ref().map(String::as_str));
    assert_eq!(untrusted.status.code(), Some(1), "{}", text(&untrusted.stderr));
    assert!(text(&untrusted.stderr).contains("TlsCertificateError"), "{}", text(&untrusted.stderr));

    let ca = site.path().join("ca.crt");
    let trusted = site.ferry_with(&install("trusted").each_ref().map(String::as_str), &[("SSL_CERT_FILE", &ca)]);
    let _ = child.kill();
    let _ = child.wait();
    ok(&trusted);
    assert_eq!(site.output("trusted", "answer"), "welcome install trusted");
}
