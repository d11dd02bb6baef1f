//! A CNAB installer built for `wasm32-wasip2` (docs/wasi-installers.md). ferry runs it in its
//! own sandbox with the CNAB runtime contract: the action and installation in the environment,
//! parameters as environment variables, the credential as a file, the relocation mapping at
//! /cnab/app/relocation-mapping.json, and outputs written to /cnab/app/outputs. It calls the
//! endpoint its `endpoint` parameter names, which its bundle must declare and the operator grant.

use std::io::{Read, Write};
use std::net::TcpStream;

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

/// POSTs `body` to `url` (`http://HOST:PORT/PATH`) over a plain TCP connection (wasi:sockets)
/// and returns the response body; anything but 200 is an error.
fn post(url: &str, body: &str, token: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// endpoints"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = TcpStream::connect(authority).map_err(|e| format!("connecting to {authority}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("sending to {authority}: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("reading from {authority}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("{url}: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("{url} answered {status}"));
    }
    Ok(body.to_owned())
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
