//! Credentials the way container tools find them: `~/.docker/config.json` (`$DOCKER_CONFIG`),
//! its `auths`, and credential helpers (`credHelpers`, `credsStore`).

use anyhow::{Context, Result, bail};
use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
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
    config: DockerConfig,
    path: Option<PathBuf>,
}

/// Docker Hub's credentials are filed under its old API address.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// `https://host:5000/v1/` → `host:5000`.
fn host_of(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

impl Credentials {
    pub fn load(path: Option<PathBuf>) -> Result<Self> {
        let path = path.or_else(default_path);
        let config = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_slice(&text).with_context(|| format!("{} is not a Docker config file", p.display()))?
            }
            _ => DockerConfig::default(),
        };
        Ok(Credentials { config, path })
    }

    /// What to present to `registry` (a host, as in a reference): a helper's answer, else the
    /// config's `auths` entry, else nothing.
    pub fn lookup(&self, registry: &str) -> Result<RegistryAuth> {
        let hub = matches!(registry, "docker.io" | "index.docker.io" | "registry-1.docker.io");
        let server = if hub { DOCKER_HUB } else { registry };
        let helper = self.config.cred_helpers.get(registry).or(self.config.creds_store.as_ref());
        if let Some(helper) = helper
            && let Some(auth) = ask_helper(helper, server)?
        {
            return Ok(auth);
        }
        let entry = self
            .config
            .auths
            .iter()
            .find(|(key, _)| if hub { host_of(key) == "index.docker.io" } else { host_of(key) == registry });
        let Some((_, entry)) = entry else { return Ok(RegistryAuth::Anonymous) };
        if let Some(encoded) = &entry.auth {
            let at = || {
                format!(
                    "{}: auths[{registry:?}].auth",
                    self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                )
            };
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).with_context(at)?;
            let decoded = String::from_utf8(decoded).with_context(at)?;
            let (user, password) = decoded.split_once(':').with_context(|| format!("{} is not user:password", at()))?;
            return Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()));
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) => Ok(RegistryAuth::Basic(u.clone(), p.clone())),
            _ => Ok(RegistryAuth::Anonymous),
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
        bail!("credential helper {program} failed for {server}: {message}");
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{program} answered something that is not credentials"))?;
    Ok(Some(RegistryAuth::Basic(answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_are_matched_by_host_and_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://registry.example:5000/v1/":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"username":"hub","password":"pw"}}}"#,
        )
        .unwrap();
        let creds = Credentials::load(Some(path)).unwrap();
        assert_eq!(creds.lookup("registry.example:5000").unwrap(), RegistryAuth::Basic("user".into(), "pass".into()));
        assert_eq!(creds.lookup("docker.io").unwrap(), RegistryAuth::Basic("hub".into(), "pw".into()));
        assert_eq!(creds.lookup("other.example").unwrap(), RegistryAuth::Anonymous);
    }
}
