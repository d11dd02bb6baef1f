//! A CNAB installer built for `wasm32-wasip2` (docs/wasi-installers.md). ferry runs it in its
//! own sandbox with the CNAB runtime contract: the action and installation in the environment,
//! parameters as environment variables, the credential as a file, the relocation mapping at
//! /cnab/app/relocation-mapping.json, and outputs written to /cnab/app/outputs. It calls the
//! endpoint its `endpoint` parameter names, which its bundle must declare and the operator grant.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

fn main() {
    if let Err(e) = run() {
        eprintln!("wasi-installer: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let action = var("CNAB_ACTION")?;
    let installation = var("CNAB_INSTALLATION_NAME")?;
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
    let token = read("/cnab/app/credentials/token")?;
    // Present when the bundle's images were relocated; its keys are the original references.
    let relocated = std::fs::read_to_string("/cnab/app/relocation-mapping.json")
        .map(|mapping| mapping.matches("\":").count())
        .unwrap_or(0);
    println!("{action} {installation}: {greeting} ({relocated} relocated images in the mapping)");

    let answer = match std::env::var("ENDPOINT").ok().filter(|e| !e.is_empty()) {
        Some(url) => post(&url, &format!("{action} {installation}"), token.trim())?,
        None => "no endpoint given".into(),
    };
    println!("the endpoint answered: {answer}");
    write("/cnab/app/outputs/greeting", &format!("{greeting}, {installation}"))?;
    write("/cnab/app/outputs/answer", &answer)?;
    Ok(())
}

/// POSTs `body` to `url` (`http://` or `https://`) through wasi:http and returns the response
/// body; anything but 200 is an error.
fn post(url: &str, body: &str, token: &str) -> Result<String, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("{url}: only http:// and https:// endpoints")),
    };
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let headers = Fields::from_list(&[
        ("authorization".to_owned(), format!("Bearer {token}").into_bytes()),
        ("content-type".to_owned(), b"text/plain".to_vec()),
        ("content-length".to_owned(), body.len().to_string().into_bytes()),
    ])
    .map_err(|e| fail(url, "headers", e))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|e| fail(url, "method", e))?;
    request.set_scheme(Some(&scheme)).map_err(|e| fail(url, "scheme", e))?;
    request.set_authority(Some(authority)).map_err(|e| fail(url, "authority", e))?;
    request.set_path_with_query(Some(&path)).map_err(|e| fail(url, "path", e))?;
    let outgoing = request.body().map_err(|e| fail(url, "body", e))?;
    {
        let stream = outgoing.write().map_err(|e| fail(url, "body stream", e))?;
        stream.blocking_write_and_flush(body.as_bytes()).map_err(|e| fail(url, "sending", e))?;
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| fail(url, "sending", e))?;
    let answer = outgoing_handler::handle(request, None).map_err(|e| fail(url, "request", e))?;
    answer.subscribe().block();
    let response = answer
        .get()
        .ok_or_else(|| format!("{url}: no response"))?
        .map_err(|e| fail(url, "response", e))?
        .map_err(|e| fail(url, "response", e))?;
    let status = response.status();
    let incoming = response.consume().map_err(|e| fail(url, "response body", e))?;
    let mut received = Vec::new();
    {
        let stream = incoming.stream().map_err(|e| fail(url, "response body", e))?;
        loop {
            match stream.blocking_read(64 << 10) {
                Ok(chunk) => received.extend(chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(fail(url, "reading", e)),
            }
        }
    }
    if status != 200 {
        return Err(format!("{url} answered {status}"));
    }
    Ok(String::from_utf8_lossy(&received).into_owned())
}

fn fail(url: &str, what: &str, e: impl std::fmt::Debug) -> String {
    format!("{url}: {what}: {e:?}")
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set: is this running under a CNAB runtime?"))
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn write(path: &str, content: &str) -> Result<(), String> {
    std::fs::write(path, content).map_err(|e| format!("{path}: {e}"))
}
