//! The network a WASI installer may reach: the endpoints its bundle declares under
//! `custom["io.ferry.wasi"].allowedOutboundHosts` (in Spin's `allowed_outbound_hosts` form), as
//! far as the operator grants them with `--allow-outbound HOST[:PORT]`. Neither alone gives
//! anything: a declaration the operator did not grant stays closed, and a grant the bundle did
//! not declare opens nothing.

use crate::bundle::BundleDoc;
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The `custom` key, which `requiredExtensions` must list.
pub const EXTENSION: &str = "io.ferry.wasi";

/// The most endpoints a bundle may declare.
const MAX_DECLARED: usize = 64;

/// One endpoint a bundle declares: `https://api.example.com:443`, `tcp://10.0.0.5:5432`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Endpoint {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Extension {
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
}

/// What `doc` declares its installer needs; every problem named by its JSON path.
pub fn declared(doc: &BundleDoc) -> Result<Vec<Endpoint>> {
    let Some(value) = doc.custom.as_ref().and_then(|c| c.get(EXTENSION)) else {
        return Ok(Vec::new());
    };
    let at = format!("$.custom[\"{EXTENSION}\"]");
    let extension: Extension = serde_json::from_value(value.clone())
        .with_context(|| format!("{at}: expected {{\"allowedOutboundHosts\": [\"https://HOST:PORT\", ...]}}"))?;
    if !doc.required_extensions.iter().flatten().any(|e| e == EXTENSION) {
        bail!("{at} declares what its installer needs, but $.requiredExtensions does not list {EXTENSION:?}");
    }
    if extension.allowed_outbound_hosts.len() > MAX_DECLARED {
        bail!(
            "{at}.allowedOutboundHosts lists {} endpoints; at most {MAX_DECLARED}",
            extension.allowed_outbound_hosts.len()
        );
    }
    extension
        .allowed_outbound_hosts
        .iter()
        .enumerate()
        .map(|(i, text)| parse_endpoint(text).with_context(|| format!("{at}.allowedOutboundHosts[{i}]")))
        .collect()
}

/// What is wrong with `doc`'s declaration, as a JSON path and a message, if anything.
pub fn problem(doc: &BundleDoc) -> Option<(String, String)> {
    let full = format!("{:#}", declared(doc).err()?);
    // Every error starts with the JSON path, then a space or ": ".
    let end = full.find(' ').unwrap_or(full.len());
    Some((full[..end].trim_end_matches(':').to_owned(), full[end..].trim_start().to_owned()))
}

fn parse_endpoint(text: &str) -> Result<Endpoint> {
    let shown = crate::untrusted::escape(text);
    let Some((scheme, rest)) = text.split_once("://") else {
        bail!("\"{shown}\" is not SCHEME://HOST[:PORT] (e.g. https://api.example.com:443)");
    };
    let default_port = match scheme {
        "https" => Some(443),
        "http" => Some(80),
        "tcp" => None,
        _ => bail!("\"{shown}\": the scheme is http, https or tcp"),
    };
    let (host, port) = split_host_port(rest).with_context(|| format!("\"{shown}\""))?;
    if host.contains('*') {
        bail!("\"{shown}\": ferry grants named hosts, not wildcards");
    }
    let port = port.or(default_port).with_context(|| format!("\"{shown}\": a tcp endpoint needs a port"))?;
    Ok(Endpoint { scheme: scheme.to_owned(), host, port })
}

/// `host`, `host:port`, `[::1]:port`, lowercased; refuses paths and empty hosts.
fn split_host_port(text: &str) -> Result<(String, Option<u16>)> {
    let text = text.strip_suffix('/').unwrap_or(text);
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, rest) = bracketed.split_once(']').context("an IPv6 address in [ ] is not closed")?;
        (host, rest.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*');
    if host.is_empty() || !host.chars().all(valid) {
        bail!("expected HOST[:PORT]");
    }
    let port =
        port.map(|p| p.parse::<u16>().ok().filter(|p| *p != 0).with_context(|| format!("port {p:?}"))).transpose()?;
    Ok((host.to_ascii_lowercase(), port))
}

/// One operator grant: a host, on any port the bundle declares for it unless one is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    host: String,
    port: Option<u16>,
    text: String,
}

impl Grant {
    pub fn parse(text: &str) -> Result<Self> {
        let (host, port) = split_host_port(text).with_context(|| format!("--allow-outbound {text:?}"))?;
        Ok(Grant { host, port, text: text.to_owned() })
    }

    fn covers(&self, endpoint: &Endpoint) -> bool {
        self.host == endpoint.host && self.port.is_none_or(|p| p == endpoint.port)
    }
}

/// What a run may reach, and what the operator should hear about before it starts.
pub struct Network {
    pub open: Vec<Endpoint>,
    /// Declared but not granted: closed.
    pub closed: Vec<Endpoint>,
    /// Granted but not declared: they give nothing.
    pub unused: Vec<String>,
}

impl Network {
    pub fn decide(declared: &[Endpoint], grants: &[Grant]) -> Self {
        let (open, closed) = declared.iter().cloned().partition(|e| grants.iter().any(|g| g.covers(e)));
        let unused = grants.iter().filter(|g| !declared.iter().any(|e| g.covers(e))).map(|g| g.text.clone()).collect();
        Network { open, closed, unused }
    }

    /// The socket addresses the open endpoints resolve to, now: a name is looked up by ferry
    /// once, so the installer reaches the address the operator's resolver gave.
    pub fn addresses(&self) -> Result<BTreeSet<SocketAddr>> {
        let mut addresses = BTreeSet::new();
        for endpoint in &self.open {
            let found = (endpoint.host.as_str(), endpoint.port)
                .to_socket_addrs()
                .with_context(|| format!("looking up {endpoint}, which the installer may reach"))?;
            addresses.extend(found);
        }
        Ok(addresses)
    }

    /// Whether the installer needs name lookups: some open endpoint is named, not an address.
    pub fn needs_lookup(&self) -> bool {
        self.open.iter().any(|e| e.host.parse::<IpAddr>().is_err())
    }

    /// What the operator reads when a run was refused a connection to `address` (an address
    /// and port, or an HTTP request's `scheme://host:port`).
    pub fn refusal(&self, address: &str) -> String {
        let declared = |list: &[Endpoint]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
        let mut message = format!("the installer was refused a connection to {address}");
        if self.open.is_empty() && self.closed.is_empty() {
            message
                .push_str(": its bundle declares no outbound hosts (custom[\"io.ferry.wasi\"].allowedOutboundHosts)");
        } else if !self.closed.is_empty() {
            message.push_str(&format!(
                ": it may reach only what its bundle declares and you grant; declared but not granted: {} \
                 (grant one with --allow-outbound HOST[:PORT])",
                declared(&self.closed)
            ));
        } else {
            message.push_str(&format!(": it may reach only {}", declared(&self.open)));
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(custom: serde_json::Value, required: bool) -> BundleDoc {
        let mut bundle = serde_json::json!({
            "schemaVersion": "v1.2.0", "name": "b", "version": "1.0.0",
            "invocationImages": [{"imageType": "wasm", "image": "installer.wasm"}],
            "custom": { EXTENSION: custom },
        });
        if required {
            bundle["requiredExtensions"] = serde_json::json!([EXTENSION]);
        }
        serde_json::from_value(bundle).unwrap()
    }

    #[test]
    fn declarations_are_read_with_default_ports_and_refused_with_their_path() {
        let endpoints = declared(&doc(
            serde_json::json!({"allowedOutboundHosts": ["https://API.example.com", "http://127.0.0.1:8080", "tcp://[::1]:5432"]}),
            true,
        ))
        .unwrap();
        let shown: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, ["https://api.example.com:443", "http://127.0.0.1:8080", "tcp://::1:5432"]);

        let refused = [
            (
                serde_json::json!({"allowedOutboundHosts": ["api.example.com"]}),
                true,
                "[0]: \"api.example.com\" is not SCHEME",
            ),
            (serde_json::json!({"allowedOutboundHosts": ["ftp://a:21"]}), true, "the scheme is http, https or tcp"),
            (serde_json::json!({"allowedOutboundHosts": ["tcp://db"]}), true, "a tcp endpoint needs a port"),
            (serde_json::json!({"allowedOutboundHosts": ["https://*.example.com"]}), true, "not wildcards"),
            (serde_json::json!({"allowedOutboundHosts": ["https://a:99999"]}), true, "port \"99999\""),
            (serde_json::json!({"allowedOutboundHost": []}), true, "expected {\"allowedOutboundHosts\""),
            (serde_json::json!({"allowedOutboundHosts": []}), false, "does not list \"io.ferry.wasi\""),
        ];
        for (custom, required, says) in refused {
            let doc = doc(custom, required);
            let err = format!("{:#}", declared(&doc).unwrap_err());
            assert!(err.contains(says), "{err}");
            let (path, message) = problem(&doc).unwrap();
            assert!(path.starts_with("$.custom[\"io.ferry.wasi\"]") && !path.contains(' '), "{path}");
            assert_eq!(format!("{path}{}{message}", &err[path.len()..err.len() - message.len()]), err);
        }
    }

    #[test]
    fn only_what_is_both_declared_and_granted_is_open() {
        let declared: Vec<Endpoint> =
            ["https://api.example.com:443", "http://127.0.0.1:8080", "tcp://db.internal:5432"]
                .iter()
                .map(|t| parse_endpoint(t).unwrap())
                .collect();
        let grants: Vec<Grant> = ["API.example.com", "127.0.0.1:9999", "evil.example:443"]
            .iter()
            .map(|g| Grant::parse(g).unwrap())
            .collect();
        let network = Network::decide(&declared, &grants);
        let open: Vec<String> = network.open.iter().map(|e| e.to_string()).collect();
        assert_eq!(open, ["https://api.example.com:443"]);
        let closed: Vec<String> = network.closed.iter().map(|e| e.to_string()).collect();
        assert_eq!(closed, ["http://127.0.0.1:8080", "tcp://db.internal:5432"]);
        assert_eq!(network.unused, ["127.0.0.1:9999", "evil.example:443"]);
        assert!(network.needs_lookup());
        let refusal = network.refusal("10.0.0.1:80");
        assert!(refusal.contains("10.0.0.1:80") && refusal.contains("--allow-outbound"), "{refusal}");
        assert!(Grant::parse("a/b").is_err());
    }
}
