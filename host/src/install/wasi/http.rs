//! wasi:http for an installer: each outgoing request goes out only when its scheme, host and
//! port are an endpoint the bundle declares and the operator grants; anything else is answered
//! `HTTP-request-denied` and remembered for the operator. What goes out is sent by ferry's own
//! HTTP client, so HTTPS trusts what ferry trusts (the system's CAs, `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`): an air-gapped site's own CA, not a list compiled into ferry.

use super::Refusals;
use super::outbound::Endpoint;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use std::future::Future;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// How long a connection may take when the guest sets no timeout of its own.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Grant {
    open: Vec<Endpoint>,
    refusals: Refusals,
    /// Made for the first request that is let out: loading the trusted certificates costs more
    /// than a run that makes no request.
    client: std::sync::OnceLock<reqwest::Client>,
}

impl Grant {
    pub fn new(open: &[Endpoint], refusals: &Refusals) -> Self {
        let open = open.iter().filter(|e| e.scheme != "tcp").cloned().collect();
        Grant { open, refusals: refusals.clone(), client: std::sync::OnceLock::new() }
    }

    fn client(&self) -> Result<reqwest::Client, Error> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let made = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::InternalError(Some(format!("{e:#}"))))?;
        Ok(self.client.get_or_init(|| made).clone())
    }

    /// The request's `scheme://host:port`, if the grant lets it out.
    fn check(&self, uri: &http::Uri) -> Result<(), String> {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
        let open = self.open.iter().any(|e| e.scheme == scheme && e.host == host && e.port == port);
        if open { Ok(()) } else { Err(format!("{scheme}://{host}:{port}")) }
    }
}

type Sent = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for Grant {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_error: Sent,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, Sent), Error>> + Send> {
        if let Err(endpoint) = self.check(request.uri()) {
            self.refusals.lock().unwrap().insert(endpoint);
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Box::new(async { Err(e) }),
        };
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let mut outgoing = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(reqwest::Body::wrap_stream(http_body_util::BodyDataStream::new(body)));
            if let Some(timeout) = options.and_then(|o| o.first_byte_timeout) {
                outgoing = outgoing.timeout(timeout);
            }
            let response = outgoing.send().await.map_err(failure)?;
            let mut answer = http::Response::builder().status(response.status()).version(response.version());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().clone());
            }
            let frames = response.bytes_stream().map(|chunk| chunk.map(http_body::Frame::data).map_err(failure));
            let body = http_body_util::StreamBody::new(frames).boxed_unsync();
            let answer = answer.body(body).map_err(|e| Error::InternalError(Some(e.to_string())))?;
            Ok((answer, Box::new(async { Ok(()) }) as Sent))
        })
    }
}

/// What the guest is told when the request could not be sent or answered, by the cause ferry's
/// registry access finds in the same errors.
fn failure(e: reqwest::Error) -> Error {
    use crate::registry::network::Cause;
    if e.is_timeout() {
        return Error::ConnectionTimeout;
    }
    match Cause::of(&e) {
        Cause::Refused => Error::ConnectionRefused,
        Cause::UnknownHost(_) => Error::DnsError { rcode: None, info_code: None },
        Cause::UntrustedCertificate | Cause::BadCertificate(_) => Error::TlsCertificateError,
        Cause::NotTls => Error::TlsProtocolError,
        Cause::ConnectTimeout => Error::ConnectionTimeout,
        Cause::Other(why) => Error::InternalError(Some(why)),
    }
}
