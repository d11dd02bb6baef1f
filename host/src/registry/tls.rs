//! Which certificates ferry trusts for each server, as podman and skopeo decide it: the system's
//! roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`, which replace them), plus the CAs (`*.crt`) of
//! `--cert-dir DIR`, or, without it, of the server's `certs.d/HOST:PORT/` directories; and
//! `--tls-verify=false` (every server) or `--tls-verify=HOST:PORT=false` (one) to check nothing.
//!
//! A reqwest client holds one TLS policy, so a server with a policy of its own gets its own
//! clients, made when it is first contacted.

use anyhow::{Context, Result, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Whether certificates are checked, for servers `hosts` does not name (`--tls-verify`).
    pub verify: bool,
    /// Per server (`host[:port]`), whether its certificate is checked (`--tls-verify=HOST=BOOL`).
    pub hosts: BTreeMap<String, bool>,
    /// A directory whose `*.crt` are trusted CAs for every server (`--cert-dir`); without it, each
    /// server's [`certs_d`] directories.
    pub cert_dir: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { verify: true, hosts: BTreeMap::new(), cert_dir: None }
    }
}

/// `--tls-verify[=BOOL]` or `--tls-verify=HOST[:PORT]=BOOL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsVerify {
    pub host: Option<String>,
    pub verify: bool,
}

impl std::str::FromStr for TlsVerify {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (host, value) = match text.rsplit_once('=') {
            Some((host, value)) if !host.is_empty() => (Some(host.to_owned()), value),
            _ => (None, text),
        };
        let verify = match value {
            "true" => true,
            "false" => false,
            _ => return Err(format!("{text:?}: give true or false, for every server, or HOST[:PORT]=false for one")),
        };
        Ok(TlsVerify { host, verify })
    }
}

impl TlsOptions {
    /// The options `--tls-verify` (each) and `--cert-dir` give; for a server named more than
    /// once, the last word holds.
    pub fn from_flags(flags: &[TlsVerify], cert_dir: Option<PathBuf>) -> Self {
        let mut options = TlsOptions { cert_dir, ..TlsOptions::default() };
        for flag in flags {
            match &flag.host {
                Some(host) => {
                    options.hosts.insert(host.clone(), flag.verify);
                }
                None => options.verify = flag.verify,
            }
        }
        options
    }
}

/// How one server's certificate is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Policy {
    pub verify: bool,
    /// CAs trusted besides the system's, DER.
    pub cas: Vec<Vec<u8>>,
}

impl TlsOptions {
    /// The policy for servers with none of their own.
    pub(super) fn default_policy(&self) -> Result<Policy> {
        let cas = match &self.cert_dir {
            Some(dir) => {
                let found = crt_files(dir).with_context(|| format!("--cert-dir {}", dir.display()))?;
                read_cas(&found)?
            }
            None => Vec::new(),
        };
        Ok(Policy { verify: self.verify, cas })
    }

    /// `host`'s policy (`host[:port]`), `None` when it is the default one.
    pub(super) fn policy_for(&self, host: &str, default: &Policy) -> Result<Option<Policy>> {
        let verify = self.hosts.get(host).copied().unwrap_or(self.verify);
        let mut cas = default.cas.clone();
        if self.cert_dir.is_none() {
            for dir in certs_d(host) {
                // A directory that is not there, or not readable, holds nothing for this server.
                if let Ok(found) = crt_files(&dir) {
                    cas.extend(read_cas(&found)?);
                }
            }
        }
        let policy = Policy { verify, cas };
        Ok((policy != *default).then_some(policy))
    }
}

/// The directories podman, skopeo and docker read a server's CAs from: containers-certs.d(5)'s
/// `~/.config/containers/certs.d/HOST:PORT`, `/etc/containers/certs.d/HOST:PORT`, and docker's
/// `/etc/docker/certs.d/HOST:PORT`.
pub fn certs_d(host: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dirs.push(PathBuf::from(home).join(".config/containers/certs.d").join(host));
    }
    dirs.push(Path::new("/etc/containers/certs.d").join(host));
    dirs.push(Path::new("/etc/docker/certs.d").join(host));
    dirs
}

/// `dir`'s `*.crt` files, in name order.
fn crt_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "crt") && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Every certificate of PEM files `paths`; a file with none is an error naming it.
fn read_cas(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut cas = Vec::new();
    for path in paths {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no PEM certificate", path.display());
        }
        cas.extend(certs.into_iter().map(|c| c.to_vec()));
    }
    Ok(cas)
}

impl Policy {
    /// A reqwest client builder that checks certificates this way.
    pub(super) fn reqwest(&self) -> Result<reqwest::ClientBuilder> {
        let cas = self.cas.iter().map(|der| reqwest::Certificate::from_der(der)).collect::<Result<Vec<_>, _>>()?;
        Ok(reqwest::Client::builder().tls_danger_accept_invalid_certs(!self.verify).tls_certs_merge(cas))
    }

    /// The same, for oci-client's configuration.
    pub(super) fn oci(&self, config: &mut oci_client::client::ClientConfig) {
        use oci_client::client::{Certificate, CertificateEncoding};
        config.accept_invalid_certificates = !self.verify;
        config.extra_root_certificates =
            self.cas.iter().map(|der| Certificate { encoding: CertificateEncoding::Der, data: der.clone() }).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_verify_is_global_or_per_server_and_the_last_word_holds() {
        let flags: Vec<TlsVerify> =
            ["false", "r.example:5000=true", "other:443=false", "other:443=true"].map(|f| f.parse().unwrap()).into();
        let options = TlsOptions::from_flags(&flags, None);
        assert!(!options.verify);
        assert_eq!(options.hosts.get("r.example:5000"), Some(&true));
        assert_eq!(options.hosts.get("other:443"), Some(&true));
        assert!("maybe".parse::<TlsVerify>().is_err());
        assert!("r.example=yes".parse::<TlsVerify>().is_err());
    }

    #[test]
    fn cert_dir_cas_are_read_and_a_file_without_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("not-a-ca.txt"), "ignored").unwrap();
        let options = TlsOptions { cert_dir: Some(dir.path().to_owned()), ..TlsOptions::default() };
        assert_eq!(options.default_policy().unwrap(), Policy { verify: true, cas: Vec::new() });
        std::fs::write(dir.path().join("bad.crt"), "no certificate here").unwrap();
        let e = options.default_policy().unwrap_err();
        assert!(format!("{e:#}").contains("bad.crt"), "{e:#}");
        let missing = TlsOptions { cert_dir: Some(dir.path().join("missing")), ..TlsOptions::default() };
        assert!(format!("{:#}", missing.default_policy().unwrap_err()).contains("--cert-dir"));
    }
}
