//! Helpers shared by the integration tests: a runtime over the repository's own driver
//! components, and OCI images written byte by byte into layouts.
#![allow(dead_code)]

pub mod http_server;
pub mod official_schema;
pub mod proxy;
pub mod site;

use ferry::config::Limits;
use ferry::driver::{Driver, Events, Image, Level, Runtime, Settings, VerifiedComponent};
use ferry::oci::{Descriptor, Digest, Layout, REF_NAME};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A driver component built from this repository by host/build.rs.
pub fn guest(file: &str) -> PathBuf {
    Path::new(env!("FERRY_GUEST_DIR")).join(file)
}

pub const OCI_DRIVER: &str = "ferry_driver_oci.wasm";
pub const FILE_DRIVER: &str = "example_file_driver.wasm";
pub const HOSTILE_DRIVER: &str = "ferry_driver_hostile.wasm";

/// Keeps every log line drivers write.
#[derive(Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<(Level, String)>>,
}

impl Events for Recorder {
    fn log(&self, _driver: &str, level: Level, message: &str) {
        self.lines.lock().unwrap().push((level, message.to_owned()));
    }
}

pub fn runtime(limits: Limits, cache_dir: &Path) -> Runtime {
    Runtime::new(Settings { limits, cache_dir: Some(cache_dir.to_owned()), events: Arc::new(Recorder::default()) })
        .expect("runtime")
}

pub fn component(file: &str) -> VerifiedComponent {
    VerifiedComponent::local(std::fs::read(guest(file)).expect("guest component (built by host/build.rs)"))
}

pub fn load<'rt>(runtime: &'rt Runtime, file: &str) -> Driver<'rt> {
    runtime.load(&component(file)).unwrap_or_else(|e| panic!("loading {file}: {e}"))
}

pub fn image(key: &str, reference: &str, image_type: &str) -> Image {
    Image { key: key.into(), reference: reference.into(), image_type: image_type.into(), ..Default::default() }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn put(layout: &Layout, media_type: &str, bytes: &[u8]) -> Descriptor {
    let digest = layout.put_bytes(bytes).unwrap();
    Descriptor::new(media_type, digest, bytes.len() as u64)
}

fn descriptor_json(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({ "mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size })
}

/// Writes a two-platform image (an index over two manifests that share their base layer) into
/// `layout` under `name`; returns the index's descriptor and every blob digest it refers to.
pub fn write_multiarch_image(layout: &Layout, name: &str, seed: u8) -> (Descriptor, Vec<Digest>) {
    write_image_with(layout, name, seed, &OCI_TYPES)
}

/// The same, with Docker's media types: a manifest list over schema2 manifests.
pub fn write_docker_image(layout: &Layout, name: &str, seed: u8) -> (Descriptor, Vec<Digest>) {
    write_image_with(layout, name, seed, &DOCKER_TYPES)
}

struct MediaTypes {
    index: &'static str,
    manifest: &'static str,
    config: &'static str,
    layer: &'static str,
}

const OCI_TYPES: MediaTypes = MediaTypes {
    index: OCI_INDEX,
    manifest: OCI_MANIFEST,
    config: "application/vnd.oci.image.config.v1+json",
    layer: "application/vnd.oci.image.layer.v1.tar+gzip",
};

const DOCKER_TYPES: MediaTypes = MediaTypes {
    index: "application/vnd.docker.distribution.manifest.list.v2+json",
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
    layer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
};

fn write_image_with(layout: &Layout, name: &str, seed: u8, types: &MediaTypes) -> (Descriptor, Vec<Digest>) {
    let base = put(layout, types.layer, &vec![seed; 300_000]);
    let mut blobs = vec![base.digest.clone()];
    let mut manifests = Vec::new();
    for (arch, fill) in [("amd64", seed.wrapping_add(1)), ("arm64", seed.wrapping_add(2))] {
        let top = put(layout, types.layer, &vec![fill; 70_000]);
        let config = put(
            layout,
            types.config,
            serde_json::json!({ "os": "linux", "architecture": arch, "rootfs": { "type": "layers" } })
                .to_string()
                .as_bytes(),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": types.manifest,
            "config": descriptor_json(&config),
            "layers": [descriptor_json(&base), descriptor_json(&top)],
        });
        let manifest = put(layout, types.manifest, manifest.to_string().as_bytes());
        blobs.extend([top.digest.clone(), config.digest.clone(), manifest.digest.clone()]);
        let mut entry = descriptor_json(&manifest);
        entry["platform"] = serde_json::json!({ "os": "linux", "architecture": arch });
        manifests.push(entry);
    }
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": types.index, "manifests": manifests });
    let mut root = put(layout, types.index, index.to_string().as_bytes());
    blobs.push(root.digest.clone());
    let mut named = root.clone();
    named.annotations.insert(REF_NAME.into(), name.into());
    layout.add_to_index(named).unwrap();
    root.annotations.clear();
    (root, blobs)
}

/// The `ferry` binary, with no config, credentials or CA settings of the user's. Its compiled-driver
/// cache is shared by every test (entries are written atomically), so each driver is compiled
/// once per build rather than once per test; the tests of the cache itself use their own.
pub fn ferry_command(dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    ferry_env(&mut command, dir);
    command
}

/// The environment [`ferry_command`] gives ferry, for a command that runs it in turn.
pub fn ferry_env<'c>(command: &'c mut std::process::Command, dir: &Path) -> &'c mut std::process::Command {
    command
        .env("FERRY_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("ferry-cache"))
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .env("XDG_RUNTIME_DIR", dir.join("no-runtime-dir"))
        .env("HOME", dir.join("no-home"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    command
}

/// Runs `ferry ARGS` as [`ferry_command`] sets it up.
pub fn ferry(args: &[&str], dir: &Path) -> std::process::Output {
    ferry_command(dir).args(args).output().unwrap()
}

/// After a complete relocation that wrote `mapping`, `ferry ARGS relocate ... --dry-run` (`args`
/// without the flag) must predict the real run: nothing to send for any image, and the very
/// references the mapping holds.
pub fn assert_dry_run_predicts_nothing_to_send(args: &[&str], mapping: &serde_json::Value, dir: &Path) {
    let o = ferry(&[args, &["--dry-run", "--format", "json"]].concat(), dir);
    assert!(o.status.success(), "relocate --dry-run: {}", text(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let plan = plan.as_array().unwrap();
    assert_eq!(plan.len(), mapping.as_object().unwrap().len(), "{plan:#?}");
    for image in plan {
        assert_eq!(image["bytesToSend"], 0, "after a complete relocation: {image}");
        assert_eq!(image["present"], image["blobs"], "{image}");
        let original = image["original"].as_str().unwrap();
        assert_eq!(image["destination"], mapping[original], "the dry run predicts another reference: {image}");
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A real registry (Debian's docker-registry) on a free loopback port, stopped on drop.
pub struct TestRegistry {
    pub host: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A registry that wants `user` and `password` (htpasswd auth) for everything.
    pub fn start_with_password(user: &str, password: &str) -> Self {
        let out = std::process::Command::new("python3")
            .args(["-c", "import bcrypt, sys; print(sys.argv[1] + ':' + bcrypt.hashpw(sys.argv[2].encode(), bcrypt.gensalt(4)).decode())"])
            .args([user, password])
            .output()
            .expect("python3 with bcrypt (scripts/setup installs it)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let file = tempfile::NamedTempFile::new().unwrap().into_temp_path().keep().unwrap();
        std::fs::write(&file, &out.stdout).unwrap();
        Self::start_with(&format!("auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n", file.display()))
    }

    /// A registry served over https with certificate `cert` and key `key` (PEM).
    pub fn start_with_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()))
    }

    fn start_with(extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n{extra_config}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/setup installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(std::time::Instant::now() < deadline, "the registry did not start on {host}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        TestRegistry { host, child, _dir: dir }
    }

    /// Where the registry keeps what it stores (`docker/registry/v2/...`), for tests that damage
    /// it behind its back.
    /// Options for ferry's registry client that reach this registry over plain http with no
    /// credentials of the user's (an empty auth file written in `dir`).
    pub fn options(&self, dir: &Path) -> ferry::registry::RegistryOptions {
        let none = dir.join("no-credentials.json");
        std::fs::write(&none, "{}").unwrap();
        ferry::registry::RegistryOptions {
            insecure: vec![self.host.clone()],
            credentials: ferry::registry::CredentialOptions { authfile: Some(none), ..Default::default() },
            ..Default::default()
        }
    }

    pub fn storage(&self) -> PathBuf {
        self._dir.path().join("data/docker/registry/v2")
    }

    /// Pushes image `name` of an OCI layout, every platform, digests kept, with skopeo.
    pub fn push(&self, layout: &Path, name: &str, repository_and_tag: &str) {
        self.push_with(layout, name, repository_and_tag, None)
    }

    /// [`push`](Self::push), as `USER:PASSWORD` when `creds` is given.
    pub fn push_with(&self, layout: &Path, name: &str, repository_and_tag: &str, creds: Option<&str>) {
        let mut skopeo = std::process::Command::new("skopeo");
        skopeo.args(["copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false"]);
        if let Some(creds) = creds {
            skopeo.arg(format!("--dest-creds={creds}"));
        }
        let status = skopeo
            .arg(format!("oci:{}:{name}", layout.display()))
            .arg(format!("docker://{}/{repository_and_tag}", self.host))
            .status()
            .expect("skopeo (scripts/setup installs it)");
        assert!(status.success(), "skopeo push of {name} failed");
    }

    /// Pushes image `name` byte for byte over the distribution API, Docker media types included
    /// (skopeo's oci: transport does not read those from a layout).
    pub fn push_as_stored(&self, layout: &Path, name: &str, repository_and_tag: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/push-layout.py");
        let status = std::process::Command::new("python3")
            .arg(script)
            .arg(layout)
            .args([name, &self.host, repository_and_tag])
            .status()
            .unwrap();
        assert!(status.success(), "pushing {name} failed");
    }
}

/// A test CA (`ca.crt`) and a server certificate it signed for 127.0.0.1 (`server.crt`,
/// `server.key`), PEM files made in `dir` with the openssl CLI.
pub fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("openssl.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         [server]\nbasicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", "-days", "2"][..],
            &key,
            &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=ferry test CA"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-new", "-config", "openssl.cnf"][..],
            &key,
            &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        "openssl.cnf",
        "-extensions",
        "server",
        "-out",
        "server.crt",
    ]);
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- thick bundles and tarballs, made and changed byte by byte ----

pub fn archive_names(tar: &Path) -> Vec<String> {
    let file = std::fs::File::open(tar).unwrap();
    tar::Archive::new(file).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

/// Where the bytes of entry `name` begin in a .tar.
pub fn entry_offset(tar: &Path, name: &str) -> u64 {
    let file = std::fs::File::open(tar).unwrap();
    let mut archive = tar::Archive::new(file);
    let found = archive.entries_with_seek().unwrap().map(|e| e.unwrap()).find(|e| e.path().unwrap() == Path::new(name));
    found.unwrap_or_else(|| panic!("{} has no entry {name}", tar.display())).raw_file_position()
}

/// Copies the thick bundle `from` to `to` with blob `old` replaced by `bytes` under their own
/// digest, and every document that names a replaced digest (its manifest, a config that lists
/// it, then index.json naming that manifest) rewritten to match: digests all consistent, content
/// changed.
pub fn replace_blob(from: &Path, to: &Path, old: &str, bytes: &[u8]) {
    let blobs = "artifacts/layout/blobs/sha256/";
    let mut entries: Vec<(tar::Header, String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        entries.push((entry.header().clone(), name, data));
    }
    let digest_of = |name: &str| name.strip_prefix(blobs).map(|hex| format!("sha256:{hex}"));
    let rename = |name: &mut String, data: &[u8]| *name = format!("{blobs}{}", Digest::of(data).hex());
    let mut renamed = Vec::new();
    for (_, name, data) in entries.iter_mut().filter(|(_, name, _)| digest_of(name).as_deref() == Some(old)) {
        *data = bytes.to_vec();
        rename(name, data);
        renamed.push((old.to_owned(), digest_of(name).unwrap()));
    }
    // A document may name several replaced digests (a manifest: its layer and the config that
    // lists the layer); rewriting until nothing names an old one makes every digest follow.
    loop {
        let mut changed = false;
        for (_, name, data) in entries.iter_mut() {
            let Ok(content) = std::str::from_utf8(data) else { continue };
            let is_document = name.starts_with(blobs) || name.ends_with("index.json");
            if !is_document || !renamed.iter().any(|(old, _)| content.contains(old.as_str())) {
                continue;
            }
            let rewritten = renamed.iter().fold(content.to_owned(), |text, (old, new)| text.replace(old, new));
            *data = rewritten.into_bytes();
            if let Some(before) = digest_of(name) {
                rename(name, data);
                renamed.push((before, digest_of(name).unwrap()));
            }
            changed = true;
        }
        if !changed {
            break;
        }
    }
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    for (mut header, name, data) in entries {
        header.set_path(&name).unwrap();
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data.as_slice()).unwrap();
    }
    builder.finish().unwrap();
}

/// An entry of a tarball made by [`tar_gz`].
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// A gzip tarball of `entries`, names written as given (`..` and absolute targets included: the
/// tar crate's own checks would refuse them).
pub fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar_of(entries)).unwrap();
    gz.finish().unwrap()
}

/// An uncompressed tarball of `entries`, names written as [`tar_gz`] writes them.
pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, bytes, link): (&str, &[u8], Option<&str>) = match *entry {
            Entry::Dir(name) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (name, b"", None)
            }
            Entry::File(name, bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                (name, bytes, None)
            }
            Entry::Symlink(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                (name, b"", Some(target))
            }
            Entry::HardLink(name, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(0o644);
                (name, b"", Some(target))
            }
        };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_size(bytes.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Every file under `root`, by its path below it, with its bytes.
pub fn files_under(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.insert(path.strip_prefix(root).unwrap().to_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// `skopeo inspect --raw` of a reference in a plain-HTTP registry.
pub fn skopeo_raw(reference: &str) -> Vec<u8> {
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo inspect {reference}: {}", text(&o.stderr));
    o.stdout
}
