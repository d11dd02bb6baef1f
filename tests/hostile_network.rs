//! Registries, token realms and URL servers that try to make ferry read without end, wait
//! without end, hand over credentials, or leave its temporary files behind when interrupted.
//! Each is a small HTTP server on a loopback port, written here; what it sent is counted, and the
//! `ferry` binary is run against it.

mod common;

use common::*;
use ferry::oci::Digest;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most an endless body sends before the server gives up: far past every cap.
const ENDLESS: u64 = 64 << 20;
/// Less than an endless body, more than a cap plus what the kernel buffers on a loopback
/// connection: a transfer that sent less than this was cut off.
const CUT_OFF: u64 = 24 << 20;

enum Body {
    Bytes(Vec<u8>),
    /// Zeros, with no length, until [`ENDLESS`] or the client goes.
    Endless,
    /// `Content-Length: 1000`, then a byte every 200 ms for 20 s at most.
    Trickle,
    /// `Content-Length: 1000`, ten bytes, then nothing for 30 s.
    StallAfterHeaders,
    /// No answer at all for 30 s.
    Silent,
    /// The length of all the bytes, the first `.1` of them, then the connection closes.
    CutAt(Vec<u8>, usize),
}

struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

impl Answer {
    fn ok(body: Body) -> Self {
        Answer { status: 200, headers: Vec::new(), body }
    }
    fn bytes(bytes: &[u8]) -> Self {
        Answer::ok(Body::Bytes(bytes.to_vec()))
    }
    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn status(status: u16) -> Self {
        Answer { status, headers: Vec::new(), body: Body::Bytes(Vec::new()) }
    }
}

/// A request as the server saw it, and how many body bytes it sent in answer.
#[derive(Clone, Debug)]
struct Seen {
    line: String,
    authorization: Option<String>,
    range: Option<String>,
    sent: u64,
}

/// `route(method, path, authorization)`: the answer to a request.
type Route = dyn Fn(&str, &str, Option<&str>) -> Answer + Send + Sync;

struct Server {
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Answers each request as `route` says, one per connection.
    fn start(route: impl Fn(&str, &str, Option<&str>) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (route, log) = (Arc::new(route) as Arc<Route>, seen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let (route, log) = (route.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &*route, &log);
                });
            }
        });
        Server { host, seen }
    }

    /// Requests whose request line contains `part`.
    fn requests(&self, part: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.line.contains(part)).cloned().collect()
    }

    /// Body bytes sent in answer to requests whose request line contains `part`.
    fn sent(&self, part: &str) -> u64 {
        self.requests(part).iter().map(|s| s.sent).sum()
    }
}

fn serve(client: TcpStream, route: &Route, log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let (mut line, mut authorization, mut range) = (String::new(), None, None);
    reader.read_line(&mut line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            } else if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_owned());
            }
        }
    }
    let line = line.trim_end().to_owned();
    let at = {
        let mut log = log.lock().unwrap();
        log.push(Seen { line: line.clone(), authorization: authorization.clone(), range, sent: 0 });
        log.len() - 1
    };
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let answer = route(method, path, authorization.as_deref());
    let mut client = client;
    let sent = |n: usize| log.lock().unwrap()[at].sent += n as u64;
    let length = match &answer.body {
        Body::Silent => {
            std::thread::sleep(Duration::from_secs(30));
            return Ok(());
        }
        Body::Bytes(bytes) | Body::CutAt(bytes, _) => Some(bytes.len()),
        Body::Endless => None,
        Body::Trickle | Body::StallAfterHeaders => Some(1000),
    };
    let mut head = format!("HTTP/1.1 {} Hostile\r\nConnection: close\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    client.write_all(format!("{head}\r\n").as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    match answer.body {
        Body::Bytes(bytes) => {
            client.write_all(&bytes)?;
            sent(bytes.len());
        }
        Body::Endless => {
            let chunk = vec![0u8; 64 << 10];
            for _ in 0..ENDLESS / chunk.len() as u64 {
                client.write_all(&chunk)?;
                sent(chunk.len());
            }
        }
        Body::Trickle => {
            for _ in 0..100 {
                client.write_all(b"x")?;
                client.flush()?;
                sent(1);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Body::StallAfterHeaders => {
            client.write_all(&[0; 10])?;
            sent(10);
            std::thread::sleep(Duration::from_secs(30));
        }
        Body::CutAt(bytes, at) => {
            client.write_all(&bytes[..at])?;
            sent(at);
        }
        Body::Silent => unreachable!("answered above"),
    }
    Ok(())
}

/// A one-layer OCI image, as a registry serves it under `team/app:1`.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: Digest,
    layer: Vec<u8>,
    layer_digest: Digest,
}

impl Image {
    fn new(layer: &[u8]) -> Self {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let (config_digest, layer_digest) = (Digest::of(&config), Digest::of(layer));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len() }],
        });
        Image {
            manifest: manifest.to_string().into_bytes(),
            config,
            config_digest,
            layer: layer.to_vec(),
            layer_digest,
        }
    }

    /// The answer of an honest registry to `path`, but for the layer's body, `layer`.
    fn answer(&self, path: &str, layer: impl FnOnce(&Image) -> Body) -> Answer {
        if path == "/v2/" {
            Answer::bytes(b"{}")
        } else if path == "/v2/team/app/manifests/1" {
            Answer::bytes(&self.manifest).with("Content-Type", OCI_MANIFEST)
        } else if path == format!("/v2/team/app/blobs/{}", self.config_digest) {
            Answer::bytes(&self.config)
        } else if path == format!("/v2/team/app/blobs/{}", self.layer_digest) {
            Answer::ok(layer(self))
        } else {
            Answer::status(404)
        }
    }
}

/// A bundle.json in `dir` whose one image (its invocation image) is `image`.
fn bundle(dir: &Path, image: serde_json::Value) -> PathBuf {
    let path = dir.join("bundle.json");
    let doc = json!({ "schemaVersion": "v1.2.0", "name": "hostile", "version": "1.0.0", "invocationImages": [image] });
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// `ferry [--insecure-registry HOST] EXTRA... export BUNDLE -o DIR/out/bundle.tar`.
fn export(dir: &Path, bundle: &Path, insecure: Option<&str>, extra: &[&str]) -> std::process::Output {
    let out = dir.join("out/bundle.tar");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let mut args: Vec<&str> = Vec::new();
    if let Some(host) = insecure {
        args.extend(["--insecure-registry", host]);
    }
    args.extend(extra);
    args.extend(["export", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    ferry(&args, dir)
}

fn registry_image(server: &Server) -> serde_json::Value {
    json!({ "image": format!("{}/team/app:1", server.host), "imageType": "oci" })
}

#[test]
fn a_manifest_answer_is_read_no_further_than_the_manifest_cap() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new(b"layer");
    let server = Server::start(move |_, path, _| {
        if path.contains("/manifests/") { Answer::ok(Body::Endless) } else { image.answer(path, |_| Body::Endless) }
    });
    let o = export(dir.path(), &bundle(dir.path(), registry_image(&server)), Some(&server.host), &[]);
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("the most a manifest may have"), "{stderr}");
    let sent = server.sent("/manifests/");
    assert!(sent < CUT_OFF, "the registry sent {sent} bytes of manifest");
}

#[test]
fn a_token_answer_is_read_no_further_than_the_token_cap() {
    let dir = tempfile::tempdir().unwrap();
    let realm = Server::start(|_, _, _| Answer::ok(Body::Endless));
    let challenge = format!(r#"Bearer realm="http://{}/token",service="hostile""#, realm.host);
    let registry = Server::start(move |_, _, _| Answer::status(401).with("WWW-Authenticate", challenge.clone()));
    let o = export(dir.path(), &bundle(dir.path(), registry_image(&registry)), Some(&registry.host), &[]);
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("the most a token answer may have"), "{stderr}");
    let sent = realm.sent("/token");
    assert!(sent < CUT_OFF, "the realm sent {sent} bytes of token");
}

#[test]
fn a_blob_is_read_no_further_than_its_declared_size_and_not_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new(&[7; 100]);
    let layer = format!("/blobs/{}", image.layer_digest);
    let server = Server::start(move |_, path, _| image.answer(path, |_| Body::Endless));
    let o = export(dir.path(), &bundle(dir.path(), registry_image(&server)), Some(&server.host), &[]);
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("sent more than the 100 bytes its manifest declares"), "{stderr}");
    assert_eq!(server.requests(&layer).len(), 1, "a blob larger than declared was fetched again");
    let sent = server.sent(&layer);
    assert!(sent < CUT_OFF, "the registry sent {sent} bytes of a 100-byte layer");
    assert!(!dir.path().join("out/bundle.tar").exists());
}

#[test]
fn a_blob_whose_bytes_do_not_match_its_digest_is_not_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new(&[7; 100]);
    let layer = format!("/blobs/{}", image.layer_digest);
    let server = Server::start(move |_, path, _| image.answer(path, |_| Body::Bytes(vec![8; 100])));
    let o = export(dir.path(), &bundle(dir.path(), registry_image(&server)), Some(&server.host), &[]);
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("digest"), "{stderr}");
    assert_eq!(server.requests(&layer).len(), 1, "a blob with the wrong digest was fetched again: {stderr}");
}

/// A layer whose first answer breaks off after `cut` bytes; the next is `rest(layer, cut)`.
fn export_with_a_broken_layer(rest: fn(&[u8], usize) -> Answer) -> (tempfile::TempDir, Server, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let image = Image::new(&layer);
    let layer_path = format!("/v2/team/app/blobs/{}", image.layer_digest);
    let answers = std::sync::atomic::AtomicUsize::new(0);
    let server = Server::start(move |_, path, _| {
        if path != layer_path {
            return image.answer(path, |_| unreachable!());
        }
        match answers.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Answer::ok(Body::CutAt(image.layer.clone(), 100_000)),
            _ => rest(&image.layer, 100_000),
        }
    });
    let o = export(dir.path(), &bundle(dir.path(), registry_image(&server)), Some(&server.host), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    (dir, server, layer)
}

/// The layer as the exported archive holds it, after `ferry verify` checked every digest.
fn exported_layer(dir: &Path, layer: &[u8]) -> Vec<u8> {
    let tar = dir.join("out/bundle.tar");
    let o = ferry(&["verify", tar.to_str().unwrap()], dir);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let name = format!("artifacts/layout/blobs/sha256/{}", Digest::of(layer).hex());
    let mut archive = ferry::archive::open(&tar).unwrap();
    let mut entry =
        archive.entries().unwrap().map(Result::unwrap).find(|e| *e.path_bytes() == *name.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
    bytes
}

// A blob is fetched while the archive is written, its bytes going straight into it: after a
// dropped connection, the fetch goes on from where it stopped rather than starting over.
#[test]
fn a_blob_broken_off_is_resumed_from_where_it_stopped() {
    let (dir, server, layer) = export_with_a_broken_layer(|layer, cut| {
        Answer { status: 206, headers: Vec::new(), body: Body::Bytes(layer[cut..].to_vec()) }
            .with("Content-Range", format!("bytes {cut}-{}/{}", layer.len() - 1, layer.len()))
    });
    let digest = Digest::of(&layer).to_string();
    let ranges: Vec<_> = server.requests(&digest).into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [None, Some("bytes=100000-".into())]);
    assert_eq!(server.sent(&digest), layer.len() as u64, "bytes sent twice");
    assert_eq!(exported_layer(dir.path(), &layer), layer);
}

#[test]
fn a_blob_broken_off_is_resumed_from_a_registry_that_ignores_ranges() {
    let (dir, _server, layer) = export_with_a_broken_layer(|layer, _| Answer::bytes(layer));
    assert_eq!(exported_layer(dir.path(), &layer), layer);
}

#[test]
fn a_registry_trickling_a_blob_is_stopped_at_the_driver_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new(&[7; 1000]);
    let server = Server::start(move |_, path, _| image.answer(path, |_| Body::Trickle));
    let started = Instant::now();
    let o = export(
        dir.path(),
        &bundle(dir.path(), registry_image(&server)),
        Some(&server.host),
        &["--driver-timeout", "2s"],
    );
    let (stderr, took) = (text(&o.stderr), started.elapsed());
    assert!(!o.status.success());
    assert!(stderr.contains("--driver-timeout"), "{stderr}");
    assert!(took < Duration::from_secs(12), "the export took {took:?} with --driver-timeout 2s: {stderr}");
}

#[test]
fn a_destination_registry_that_never_answers_is_left_at_the_driver_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A thick bundle of tarballs only: nothing is read from a registry, everything is pushed.
    let installer = tar_of(&[Entry::File("cnab/app/run", b"#!/bin/sh\n")]);
    std::fs::write(dir.path().join("installer.tar"), installer).unwrap();
    let bundle = bundle(dir.path(), json!({ "image": "installer.tar", "imageType": "tarball" }));
    let o = export(dir.path(), &bundle, None, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The destination says it is a registry, then takes requests and answers none of them.
    let server =
        Server::start(
            |_, path, _| if path == "/v2/" { Answer::ok(Body::Bytes(Vec::new())) } else { Answer::ok(Body::Silent) },
        );
    let started = Instant::now();
    let tar = dir.path().join("out/bundle.tar");
    let to = format!("{}/site", server.host);
    let args =
        ["--insecure-registry", &server.host, "--driver-timeout", "2s", "relocate", tar.to_str().unwrap(), "--to", &to];
    let o = ferry(&args, dir.path());
    let (stderr, took) = (text(&o.stderr), started.elapsed());
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--driver-timeout"), "{stderr}");
    assert!(took < Duration::from_secs(15), "the relocation took {took:?} with --driver-timeout 2s: {stderr}");
}

#[test]
fn a_url_image_is_downloaded_no_further_than_its_declared_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, _, _| Answer::ok(Body::Endless));
    let url = format!("http://{}/disk.img", server.host);
    let o = export(
        dir.path(),
        &bundle(dir.path(), json!({ "image": url, "imageType": "vm-disk", "size": 100 })),
        None,
        &[],
    );
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("sent more than the 100 bytes bundle.json's size declares"), "{stderr}");
    let sent = server.sent("/disk.img");
    assert!(sent < CUT_OFF, "the server sent {sent} bytes of a 100-byte image");
    assert!(!dir.path().join("out/bundle.tar").exists());
}

#[test]
fn a_url_image_must_have_the_declared_size_and_content_digest() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(|_, path, _| if path == "/short" { Answer::bytes(&[1; 50]) } else { Answer::bytes(&[1; 100]) });
    let short = json!({ "image": format!("http://{}/short", server.host), "imageType": "vm-disk", "size": 100 });
    let o = export(dir.path(), &bundle(dir.path(), short), None, &[]);
    assert!(text(&o.stderr).contains("sent 50 bytes; bundle.json says size 100"), "{}", text(&o.stderr));

    let other = Digest::of(&[2; 100]).to_string();
    let wrong =
        json!({ "image": format!("http://{}/wrong", server.host), "imageType": "vm-disk", "contentDigest": other });
    let o = export(dir.path(), &bundle(dir.path(), wrong), None, &[]);
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains(&format!("sent content with digest {}", Digest::of(&[1; 100]))), "{stderr}");
    assert!(stderr.contains(&format!("bundle.json says contentDigest {other}")), "{stderr}");
}

/// A file image is held to its declared size as a URL image is.
#[test]
fn a_file_image_must_have_the_declared_size() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("disk.img"), [0; 4096]).unwrap();
    let o = export(
        dir.path(),
        &bundle(dir.path(), json!({ "image": "disk.img", "imageType": "vm-disk", "size": 100 })),
        None,
        &[],
    );
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("bundle.json says size 100, the file is 4096 bytes"), "{stderr}");
}

#[test]
fn a_url_server_that_stalls_after_its_headers_fails_at_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, _, _| Answer::ok(Body::StallAfterHeaders));
    let url = format!("http://{}/disk.img", server.host);
    let started = Instant::now();
    let o = export(
        dir.path(),
        &bundle(dir.path(), json!({ "image": url, "imageType": "vm-disk" })),
        None,
        &["--stall-timeout", "1s"],
    );
    let (stderr, took) = (text(&o.stderr), started.elapsed());
    assert!(!o.status.success());
    assert!(stderr.contains(&format!("{} sent nothing for 1s (--stall-timeout)", server.host)), "{stderr}");
    assert!(took < Duration::from_secs(15), "the export took {took:?}");
}

/// A Docker config in `dir` with credentials `user:secret` for `registry`; its directory.
fn docker_config(dir: &Path, registry: &str) -> PathBuf {
    let config = dir.join("docker");
    std::fs::create_dir_all(&config).unwrap();
    let auths = json!({ "auths": { registry: { "auth": "dXNlcjpzZWNyZXQ=" } } });
    std::fs::write(config.join("config.json"), auths.to_string()).unwrap();
    config
}

#[test]
fn credentials_are_not_sent_to_a_plain_http_token_realm_on_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let realm = Server::start(|_, _, _| Answer::bytes(br#"{"token":"stolen"}"#));
    let challenge = format!(r#"Bearer realm="http://{}/token",service="hostile""#, realm.host);
    let registry = Server::start(move |_, _, _| Answer::status(401).with("WWW-Authenticate", challenge.clone()));
    let bundle = bundle(dir.path(), registry_image(&registry));
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let o = ferry_command(dir.path())
        .env("DOCKER_CONFIG", docker_config(dir.path(), &registry.host))
        .args(["--insecure-registry", &registry.host, "export", bundle.to_str().unwrap()])
        .args(["-o", dir.path().join("out/bundle.tar").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(&format!("its credentials at token realm http://{}/token; refused", realm.host)),
        "{stderr}"
    );
    let leaked: Vec<Seen> = realm.requests("").into_iter().filter(|s| s.authorization.is_some()).collect();
    assert!(leaked.is_empty(), "the realm was sent credentials: {leaked:?}");
}

#[test]
fn credentials_go_to_a_token_realm_on_the_insecure_registry_itself() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new(&[7; 1000]);
    let own_host: Arc<std::sync::OnceLock<String>> = Arc::default();
    let host = own_host.clone();
    let registry = Server::start(move |_, path, authorization| {
        let realm = format!(r#"Bearer realm="http://{}/token",service="self""#, host.get().unwrap());
        match (path, authorization) {
            (p, Some("Basic dXNlcjpzZWNyZXQ=")) if p.starts_with("/token?") => Answer::bytes(br#"{"token":"good"}"#),
            (_, Some("Bearer good")) => image.answer(path, |image| Body::Bytes(image.layer.clone())),
            _ => Answer::status(401).with("WWW-Authenticate", realm),
        }
    });
    own_host.set(registry.host.clone()).unwrap();
    let bundle = bundle(dir.path(), registry_image(&registry));
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let o = ferry_command(dir.path())
        .env("DOCKER_CONFIG", docker_config(dir.path(), &registry.host))
        .args(["--insecure-registry", &registry.host, "export", bundle.to_str().unwrap()])
        .args(["-o", dir.path().join("out/bundle.tar").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let tokens = registry.requests("/token?");
    assert!(tokens.iter().any(|s| s.line.contains("scope=repository%3Ateam%2Fapp%3Apull")), "{tokens:?}");
    let manifests = registry.requests("/manifests/1");
    assert!(manifests.iter().all(|s| s.authorization.as_deref() == Some("Bearer good")), "{manifests:?}");
}

#[test]
fn credentials_do_not_follow_a_redirect_to_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new(&[7; 1000]);
    let layer = image.layer.clone();
    let storage = Server::start(move |_, _, _| Answer::bytes(&layer));
    let storage_host = storage.host.clone();
    let registry = Server::start(move |_, path, authorization| match authorization {
        Some("Basic dXNlcjpzZWNyZXQ=") if path.contains(&image.layer_digest.to_string()) => {
            Answer::status(307).with("Location", format!("http://{storage_host}/layer"))
        }
        Some("Basic dXNlcjpzZWNyZXQ=") => image.answer(path, |_| unreachable!("redirected")),
        _ => Answer::status(401).with("WWW-Authenticate", r#"Basic realm="hostile""#),
    });
    let bundle = bundle(dir.path(), registry_image(&registry));
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let o = ferry_command(dir.path())
        .env("DOCKER_CONFIG", docker_config(dir.path(), &registry.host))
        .args(["--insecure-registry", &registry.host, "export", bundle.to_str().unwrap()])
        .args(["-o", dir.path().join("out/bundle.tar").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let fetched = storage.requests("/layer");
    assert!(!fetched.is_empty() && fetched.iter().all(|s| s.authorization.is_none()), "{fetched:?}");
}

/// Names in `dir` that ferry's temporary files and directories have.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".ferry-"))
        .collect()
}

/// Sends `signal` to `child` once `ready` holds, then waits for it to end; its exit code.
fn interrupt(mut child: std::process::Child, signal: &str, ready: impl Fn() -> bool) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "ferry ended before it could be interrupted");
        assert!(Instant::now() < deadline, "ferry never got to where it is interrupted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry did not end after {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_export_interrupted_by_sigint_leaves_no_staging_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let server = Server::start(|_, _, _| Answer::ok(Body::StallAfterHeaders));
    let image = json!({ "image": format!("http://{}/disk.img", server.host), "imageType": "vm-disk" });
    let bundle = bundle(dir.path(), image);
    let child = ferry_command(dir.path())
        .env("TMPDIR", &tmp)
        .args(["export", bundle.to_str().unwrap(), "-o", out.join("bundle.tgz").to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Mid-download: the staging directory holds the partial download.
    let code = interrupt(child, "-INT", || !server.requests("/disk.img").is_empty() && !leftovers(&out).is_empty());
    assert_eq!(leftovers(&out), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "TMPDIR is not empty");
    assert_eq!(code, Some(130));
}

#[test]
fn a_relocation_of_a_tgz_interrupted_by_sigterm_leaves_no_decompressed_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let image = Image::new(&[7; 1000]);
    let source = Server::start(move |_, path, _| image.answer(path, |image| Body::Bytes(image.layer.clone())));
    let tgz = dir.path().join("bundle.tgz");
    let o = ferry(
        &[
            "--insecure-registry",
            &source.host,
            "export",
            bundle(dir.path(), registry_image(&source)).to_str().unwrap(),
            "-o",
            tgz.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));

    let destination = Server::start(|_, _, _| Answer::ok(Body::Silent));
    let child = ferry_command(dir.path())
        .env("TMPDIR", &tmp)
        .args(["--insecure-registry", &destination.host, "relocate", tgz.to_str().unwrap()])
        .args(["--to", &format!("{}/site", destination.host), "-o", out.join("mapping.json").to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Decompressed, and waiting for the destination to answer.
    let code = interrupt(child, "-TERM", || !destination.requests("/v2/").is_empty());
    assert_eq!(leftovers(&out), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "TMPDIR is not empty");
    assert_eq!(code, Some(143));
}
