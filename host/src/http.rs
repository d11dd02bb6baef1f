//! http(s) sources: an image whose `image` is a URL is downloaded by the host before its driver
//! runs, so that drivers never touch the network and their deadline covers only their own work.

use anyhow::{Context, Result};
use futures_util::StreamExt;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

/// Attempts per download; 5xx answers and broken connections are tried again.
const ATTEMPTS: u32 = 4;

/// Downloads `url` into a new file at `path`; returns its size.
pub fn download(url: &str, path: &Path) -> Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(15)).build()?;
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match runtime.block_on(attempt_download(&client, url, path)) {
            Ok(size) => return Ok(size),
            Err(Failure::Retry(_)) if attempt < ATTEMPTS => {
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(Failure::Retry(e) | Failure::Final(e)) => return Err(e.context(format!("downloading {url}"))),
        }
    }
}

enum Failure {
    Retry(anyhow::Error),
    Final(anyhow::Error),
}

async fn attempt_download(client: &reqwest::Client, url: &str, path: &Path) -> Result<u64, Failure> {
    let response = client.get(url).send().await.map_err(|e| Failure::Retry(e.into()))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Failure::Retry(anyhow::anyhow!("the server answered {status}")));
    }
    if !status.is_success() {
        return Err(Failure::Final(anyhow::anyhow!("the server answered {status}")));
    }
    let write = |path: &Path| -> Result<BufWriter<std::fs::File>> {
        Ok(BufWriter::with_capacity(1 << 20, std::fs::File::create(path).with_context(|| path.display().to_string())?))
    };
    let mut out = write(path).map_err(Failure::Final)?;
    let mut body = response.bytes_stream();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Failure::Retry(e.into()))?;
        out.write_all(&chunk).map_err(|e| Failure::Final(e.into()))?;
        size += chunk.len() as u64;
    }
    out.flush().map_err(|e| Failure::Final(e.into()))?;
    Ok(size)
}
