//! wasi:http for an installer: each outgoing request goes out only when its scheme, host and
//! port are an endpoint the bundle declares and the operator grants; anything else is answered
//! `HTTP-request-denied` and remembered for the operator.

use super::Refusals;
use super::outbound::Endpoint;
use std::future::Future;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub struct Grant {
    open: Vec<Endpoint>,
    refusals: Refusals,
}

impl Grant {
    pub fn new(open: &[Endpoint], refusals: &Refusals) -> Self {
        Grant { open: open.iter().filter(|e| e.scheme != "tcp").cloned().collect(), refusals: refusals.clone() }
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
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Sent))
        })
    }
}
