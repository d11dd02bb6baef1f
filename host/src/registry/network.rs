//! Why a request got no answer, named from its error's chain of causes (reqwest, hyper, rustls,
//! io), so that a registry that is down, a name that does not resolve, an untrusted certificate
//! and a plain-http server each say so at once, and only what may go better next time is retried.

use std::error::Error as StdError;
use std::time::Duration;

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What kept a request from being answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Cause {
    /// Nothing listens on the port.
    Refused,
    /// The host name does not resolve; the resolver's words.
    UnknownHost(String),
    /// The server's certificate chains to no authority ferry trusts (self-signed, a private CA).
    UntrustedCertificate,
    /// Another certificate problem: expired, issued for another name (rustls's words).
    BadCertificate(String),
    /// The TLS handshake was answered with something that is not TLS: a plain-http server.
    NotTls,
    /// No connection within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// Anything else (a reset, a connection closed mid-answer): the innermost cause's words.
    Other(String),
}

/// Who is asked, for the hint a cause comes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A registry, which the operator may name in `--insecure-registry` or `--tls-verify`.
    Registry,
    /// A server of an image URL bundle.json names.
    Url,
}

impl Cause {
    pub fn of(e: &reqwest::Error) -> Cause {
        let mut next: Option<&(dyn StdError + 'static)> = Some(e);
        let mut innermost = e.to_string();
        while let Some(err) = next {
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return Cause::of_tls(tls);
            }
            // hyper-util's connector names a failed lookup so; its error type is private.
            if err.to_string() == "dns error" {
                let mut why = err.source();
                let mut words = String::new();
                while let Some(e) = why {
                    words = e.to_string();
                    why = e.source();
                }
                return Cause::UnknownHost(words);
            }
            innermost = err.to_string();
            next = match err.downcast_ref::<std::io::Error>() {
                Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => return Cause::Refused,
                // An io::Error's source() skips the error it wraps: that one is next.
                Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
                None => err.source(),
            };
        }
        if e.is_connect() && e.is_timeout() {
            return Cause::ConnectTimeout;
        }
        Cause::Other(innermost)
    }

    fn of_tls(e: &rustls::Error) -> Cause {
        use rustls::{CertificateError, Error};
        match e {
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => Cause::UntrustedCertificate,
            Error::InvalidCertificate(_) => Cause::BadCertificate(e.to_string()),
            Error::InvalidMessage(_) => Cause::NotTls,
            other => Cause::Other(other.to_string()),
        }
    }

    /// Whether another try may go better. A refused connection, an unknown name, a certificate
    /// and a protocol mismatch stay what they are; a connection that took 15 s to fail would
    /// take as long again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Cause::Other(_))
    }

    /// What happened reaching `host` (`host[:port]`), and what fixes it.
    pub fn describe(&self, host: &str, peer: Peer) -> String {
        let name = host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(n, _)| n);
        match (self, peer) {
            (Cause::Refused, _) => {
                format!("{host} refused the connection: nothing listens there (is the server running, on that port?)")
            }
            (Cause::UnknownHost(why), _) => format!("unknown host {name}: its name does not resolve (DNS: {why})"),
            (Cause::UntrustedCertificate, Peer::Registry) => format!(
                "the TLS certificate of {host} is not trusted (self-signed, or signed by an unknown authority): \
                 trust its CA with --cert-dir DIR (DIR/*.crt), /etc/containers/certs.d/{host}/ca.crt or \
                 SSL_CERT_FILE, or skip verification with --tls-verify={host}=false"
            ),
            (Cause::UntrustedCertificate, Peer::Url) => format!(
                "the TLS certificate of {host} is not trusted (self-signed, or signed by an unknown authority): \
                 trust its CA with --cert-dir DIR (DIR/*.crt) or SSL_CERT_FILE, or skip verification with \
                 --tls-verify={host}=false"
            ),
            (Cause::BadCertificate(why), _) => {
                format!(
                    "the TLS certificate of {host} is refused: {why} (--tls-verify={host}=false skips verification)"
                )
            }
            (Cause::NotTls, Peer::Registry) => format!(
                "{host} answered the TLS handshake with something that is not TLS: it serves plain http; name it \
                 with --insecure-registry {host}"
            ),
            (Cause::NotTls, Peer::Url) => format!(
                "{host} answered the TLS handshake with something that is not TLS: it serves plain http, and the \
                 URL says https"
            ),
            (Cause::ConnectTimeout, _) => format!(
                "{host} accepted no connection within {}s: the host is down, or a firewall drops the packets",
                CONNECT_TIMEOUT.as_secs()
            ),
            (Cause::Other(why), _) => format!("{host}: {why}"),
        }
    }
}

/// What Go's https servers (docker-registry among them) answer a plain-http request with.
pub const HTTPS_SERVER_ANSWER: &str = "Client sent an HTTP request to an HTTPS server";

/// What to say when `host`, reached over plain http, turns out to serve https.
pub fn speaks_https(host: &str) -> String {
    format!("{host} serves https, but it is reached over plain http: drop it from --insecure-registry")
}
