//! Credentials the way podman, skopeo and docker find them. For a registry, the first that has
//! any: `--creds`; then the auth files of containers-auth.json(5), in order: `--authfile FILE`
//! or `$REGISTRY_AUTH_FILE` (either one alone, as in podman), else
//! `${XDG_RUNTIME_DIR}/containers/auth.json`, `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`
//! and docker's `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`). In each file a credential
//! helper (`credHelpers`, `credsStore`) comes before its `auths`, and of its `auths` the entry
//! of the longest namespace holding the repository (`host/team` before `host`).
//!
//! Where credentials came from is kept for messages; the secret never goes into one.

use anyhow::{Context, Result, bail};
use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `--creds [REGISTRY=]USER[:PASS]`.
#[derive(Clone)]
pub struct Creds {
    /// `None`: the registry the command writes to.
    pub registry: Option<String>,
    pub user: String,
    /// `None`: asked for on the terminal.
    pub password: Option<String>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds").field("registry", &self.registry).field("user", &self.user).finish_non_exhaustive()
    }
}

impl std::str::FromStr for Creds {
    type Err = String;

    /// A registry is what precedes the first `=` when it looks like one (`host`, `host.domain`,
    /// `host:port`, with a dot, a port or `localhost`); a user name rarely does, a password
    /// (base64 tokens end in `=`) often holds one.
    fn from_str(text: &str) -> Result<Self, String> {
        let (registry, rest) = match text.split_once('=') {
            Some((registry, rest)) if looks_like_registry(registry) => (Some(registry.to_owned()), rest),
            _ => (None, text),
        };
        let (user, password) = match rest.split_once(':') {
            Some((user, password)) => (user, Some(password.to_owned())),
            None => (rest, None),
        };
        if user.is_empty() {
            return Err("give [REGISTRY=]USER[:PASSWORD], such as registry.example:5000=operator".into());
        }
        Ok(Creds { registry, user: user.to_owned(), password })
    }
}

fn looks_like_registry(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    host_ok && port_ok && (host.contains('.') || port.is_some() || host == "localhost")
}

/// Where the operator's credentials are.
#[derive(Clone, Debug, Default)]
pub struct CredentialOptions {
    /// `--creds`.
    pub creds: Vec<Creds>,
    /// `--authfile`; `None`: `$REGISTRY_AUTH_FILE`, else the default files.
    pub authfile: Option<PathBuf>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

pub struct Credentials {
    /// `--creds`, by registry: user and password.
    flags: BTreeMap<String, (String, String)>,
    /// The auth files that exist, in the order they are read.
    files: Vec<(PathBuf, AuthFile)>,
    /// Every file read or looked for, for "no credentials" messages.
    searched: Vec<PathBuf>,
}

/// Credentials for one registry, and where they came from.
pub struct Found {
    pub auth: RegistryAuth,
    /// `--creds`, a file's `auths`, a credential helper: never the secret. `None` when there are none.
    pub from: Option<String>,
}

/// Docker Hub's credentials are filed under its old API address.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The auth files read when neither `--authfile` nor `$REGISTRY_AUTH_FILE` names one.
fn default_files() -> Vec<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = var("HOME");
    let mut files = Vec::new();
    match var("XDG_RUNTIME_DIR") {
        Some(dir) => files.push(dir.join("containers/auth.json")),
        // SAFETY: getuid cannot fail.
        None => files.push(PathBuf::from(format!("/run/containers/{}/auth.json", unsafe { libc::getuid() }))),
    }
    if let Some(config) = var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        files.push(config.join("containers/auth.json"));
    }
    match var("DOCKER_CONFIG") {
        Some(dir) => files.push(dir.join("config.json")),
        None => files.extend(home.map(|h| h.join(".docker/config.json"))),
    }
    files
}

/// An auth file key's registry and namespace: `https://host:5000/v1/` (docker's) is `host:5000`
/// alone; `host/team` (containers-auth.json's) is `host` and namespace `team`.
fn key_parts(key: &str) -> (&str, &str) {
    match key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")) {
        Some(rest) => (rest.split('/').next().unwrap_or(rest), ""),
        None => key.split_once('/').unwrap_or((key, "")),
    }
}

impl Credentials {
    /// Reads the files `options` name; asks on the terminal for a `--creds` password left out.
    /// `destination`: the registry the command writes to, the one `--creds USER[:PASS]` is for.
    pub fn load(options: &CredentialOptions, destination: Option<&str>) -> Result<Self> {
        let mut flags = BTreeMap::new();
        for creds in &options.creds {
            let Some(registry) = creds.registry.as_deref().or(destination) else {
                bail!(
                    "--creds {}: this command writes to no registry; name the registry it is for: --creds \
                     REGISTRY={}[:PASSWORD]",
                    creds.user,
                    creds.user
                );
            };
            let password = match &creds.password {
                Some(password) => password.clone(),
                None => ask_password(&creds.user, registry)?,
            };
            flags.insert(registry.to_owned(), (creds.user.clone(), password));
        }
        let named = match &options.authfile {
            Some(path) => Some((path.clone(), "--authfile")),
            None => std::env::var_os("REGISTRY_AUTH_FILE")
                .filter(|v| !v.is_empty())
                .map(|v| (PathBuf::from(v), "REGISTRY_AUTH_FILE")),
        };
        let searched = match &named {
            Some((path, by)) => {
                anyhow::ensure!(path.is_file(), "{by} {}: no such file", path.display());
                vec![path.clone()]
            }
            None => default_files(),
        };
        let mut files = Vec::new();
        for path in &searched {
            if !path.exists() {
                continue;
            }
            let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let file = serde_json::from_slice(&text).with_context(|| {
                format!("{} is not an auth file (containers-auth.json, docker config.json)", path.display())
            })?;
            files.push((path.clone(), file));
        }
        Ok(Credentials { flags, files, searched })
    }

    /// What to present to `registry` (a host, as in a reference) for `repository`, and where
    /// it came from. In a file, the entry of the longest namespace `repository` is in wins.
    pub fn lookup(&self, registry: &str, repository: &str) -> Result<Found> {
        let hub = matches!(registry, "docker.io" | "index.docker.io" | "registry-1.docker.io");
        let flag = match hub {
            true => ["docker.io", "index.docker.io", "registry-1.docker.io"].iter().find_map(|h| self.flags.get(*h)),
            false => self.flags.get(registry),
        };
        if let Some((user, password)) = flag {
            return Ok(Found {
                auth: RegistryAuth::Basic(user.clone(), password.clone()),
                from: Some("--creds".into()),
            });
        }
        let server = if hub { DOCKER_HUB } else { registry };
        // How specific `key` is for this repository (its namespace's length), if it applies.
        let applies = |key: &str| {
            let (host, namespace) = key_parts(key);
            let host_matches = if hub { matches!(host, "index.docker.io" | "docker.io") } else { host == registry };
            let inside = namespace.is_empty()
                || repository == namespace
                || repository.strip_prefix(namespace).is_some_and(|rest| rest.starts_with('/'));
            (host_matches && inside).then_some(namespace.len())
        };
        for (path, file) in &self.files {
            let helper = file
                .cred_helpers
                .iter()
                .find(|(key, _)| applies(key) == Some(0))
                .map(|(_, h)| h)
                .or(file.creds_store.as_ref());
            if let Some(helper) = helper
                && let Some(auth) = ask_helper(helper, server)?
            {
                return Ok(Found {
                    auth,
                    from: Some(format!("credential helper docker-credential-{helper} ({})", path.display())),
                });
            }
            let best =
                file.auths.iter().filter_map(|(key, entry)| Some((applies(key)?, key, entry))).max_by_key(|c| c.0);
            let Some((_, key, entry)) = best else { continue };
            let from = format!("{} (auths[{key:?}])", path.display());
            if let Some(encoded) = &entry.auth {
                let decoded =
                    base64::engine::general_purpose::STANDARD.decode(encoded.trim()).with_context(|| from.clone())?;
                let decoded = String::from_utf8(decoded).with_context(|| from.clone())?;
                let (user, password) =
                    decoded.split_once(':').with_context(|| format!("{from}.auth is not user:password"))?;
                return Ok(Found { auth: RegistryAuth::Basic(user.to_owned(), password.to_owned()), from: Some(from) });
            }
            if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                return Ok(Found { auth: RegistryAuth::Basic(u.clone(), p.clone()), from: Some(from) });
            }
        }
        Ok(Found { auth: RegistryAuth::Anonymous, from: None })
    }

    /// Where credentials were looked for: `--creds` and each file.
    pub fn searched(&self) -> String {
        let mut places = vec!["--creds".to_owned()];
        places.extend(self.searched.iter().map(|p| p.display().to_string()));
        places.join(", ")
    }
}

/// Asks for `user`'s password at `registry` on the terminal, without echo; refused when stdin
/// is not a terminal (a script would wait for ever).
fn ask_password(user: &str, registry: &str) -> Result<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!(
            "--creds {user} for {registry} has no password, and stdin is not a terminal to ask for it: give USER:PASSWORD"
        );
    }
    // Echo goes off before the prompt shows: whatever is typed after it is not echoed.
    let echo_off = EchoOff::new();
    eprint!("Password for {user} at {registry}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    drop(echo_off);
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// The terminal on stdin with echo off, restored on drop.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: termios is plain data; tcgetattr fills it or fails, and fd 0 is a terminal.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return EchoOff(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &quiet);
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in new().
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}

/// Runs `docker-credential-HELPER get`; `None` when the helper has nothing for this server.
fn ask_helper(helper: &str, server: &str) -> Result<Option<RegistryAuth>> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running credential helper {program}"))?;
    child.stdin.take().expect("piped").write_all(server.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if message.contains("credentials not found") {
            return Ok(None);
        }
        bail!("credential helper {program} failed for {server}: {}", crate::untrusted::escape(&message));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{program} answered something that is not credentials"))?;
    Ok(Some(RegistryAuth::Basic(answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(path: PathBuf) -> CredentialOptions {
        CredentialOptions { creds: Vec::new(), authfile: Some(path) }
    }

    #[test]
    fn auths_are_matched_by_host_and_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://registry.example:5000/v1/":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"username":"hub","password":"pw"}}}"#,
        )
        .unwrap();
        let creds = Credentials::load(&only(path.clone()), None).unwrap();
        let found = creds.lookup("registry.example:5000", "team/app").unwrap();
        assert_eq!(found.auth, RegistryAuth::Basic("user".into(), "pass".into()));
        assert!(found.from.unwrap().contains("config.json"));
        assert_eq!(
            creds.lookup("docker.io", "library/busybox").unwrap().auth,
            RegistryAuth::Basic("hub".into(), "pw".into())
        );
        let none = creds.lookup("other.example", "team/app").unwrap();
        assert_eq!((none.auth, none.from), (RegistryAuth::Anonymous, None));
    }

    #[test]
    fn creds_flags_come_first_and_name_their_registry() {
        let parse = |t: &str| t.parse::<Creds>().unwrap();
        let c = parse("registry.example:5000=op:pa=ss:w");
        assert_eq!(
            (c.registry.as_deref(), c.user.as_str(), c.password.as_deref()),
            (Some("registry.example:5000"), "op", Some("pa=ss:w"))
        );
        let c = parse("op:dG9rZW4=");
        assert_eq!((c.registry, c.user.as_str(), c.password.as_deref()), (None, "op", Some("dG9rZW4=")));
        let c = parse("localhost=op");
        assert_eq!((c.registry.as_deref(), c.password), (Some("localhost"), None));
        assert!(":pw".parse::<Creds>().is_err());
        assert!(!format!("{:?}", parse("r.example=op:secret")).contains("secret"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, r#"{"auths":{"r.example":{"auth":"dXNlcjpwYXNz"}}}"#).unwrap();
        let options = CredentialOptions { creds: vec![parse("op:pw")], authfile: Some(path) };
        let creds = Credentials::load(&options, Some("r.example")).unwrap();
        let found = creds.lookup("r.example", "team/app").unwrap();
        assert_eq!(
            (found.auth, found.from.as_deref()),
            (RegistryAuth::Basic("op".into(), "pw".into()), Some("--creds"))
        );
        let refused = Credentials::load(&options, None).err().unwrap().to_string();
        assert!(refused.contains("REGISTRY=op") && !refused.contains("pw"), "{refused}");
    }

    #[test]
    fn the_longest_namespace_entry_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let auth = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let doc = serde_json::json!({ "auths": {
            "r.example": { "auth": auth("any:1") },
            "r.example/team": { "auth": auth("team:2") },
            "r.example/team/app": { "auth": auth("app:3") },
        }});
        std::fs::write(&path, doc.to_string()).unwrap();
        let creds = Credentials::load(&only(path), None).unwrap();
        let user = |repository: &str| match creds.lookup("r.example", repository).unwrap().auth {
            RegistryAuth::Basic(user, _) => user,
            other => panic!("{other:?}"),
        };
        assert_eq!(user("team/app"), "app");
        assert_eq!(user("team/app2"), "team");
        assert_eq!(user("team/db/x"), "team");
        assert_eq!(user("teamwork/app"), "any");
    }

    #[test]
    fn a_named_auth_file_must_exist() {
        let e = Credentials::load(&only("/nonexistent/auth.json".into()), None).err().unwrap();
        assert!(e.to_string().contains("--authfile /nonexistent/auth.json"), "{e}");
    }
}
