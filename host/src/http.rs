//! http(s) sources: an image whose `image` is a URL is downloaded by the host before its driver
//! runs, so that drivers never touch the network and their deadline covers only their own work.
//! What bundle.json declares about the file is enforced while it arrives: a server that sends
//! more than `size` is cut off one chunk past it.

use crate::oci::{Digest, HashingWriter};
use crate::registry::Registry;
use crate::registry::network::{Cause, Peer};
use crate::transfer::{Pace, Stop};
use anyhow::{Context, Result, anyhow};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

/// Attempts per download; 5xx answers, broken connections and stalls are tried again; a refused
/// connection, an unknown host or a certificate fails at once.
const ATTEMPTS: u32 = 4;

/// What bundle.json says a downloaded file is (its `size` and `contentDigest`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Expected<'a> {
    pub size: Option<u64>,
    pub digest: Option<&'a Digest>,
}

/// Downloads `url` into a new file at `path`, checking it against `expected` as it arrives;
/// returns its size. No byte for `registry`'s stall timeout fails the attempt; the server is
/// reached with the TLS settings the operator gave for it.
pub fn download(url: &str, path: &Path, expected: Expected, registry: &Registry) -> Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = registry.web_client(&host_of(url))?;
    let pace = Pace { stall: registry.stall_timeout(), deadline: None };
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match runtime.block_on(attempt_download(&client, url, path, expected, &pace)) {
            Ok(size) => return Ok(size),
            Err(Failure::Retry(e)) if attempt < ATTEMPTS => {
                registry.notice(&format!(
                    "retrying in {:.1}s (attempt {} of {ATTEMPTS}): downloading {url}: {e:#}",
                    delay.as_secs_f64(),
                    attempt + 1
                ));
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

/// `host[:port]` of `url`, to name the server in messages.
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

async fn attempt_download(
    client: &reqwest::Client,
    url: &str,
    path: &Path,
    expected: Expected<'_>,
    pace: &Pace,
) -> Result<u64, Failure> {
    let host = host_of(url);
    let transient = |stop: Stop| match stop {
        Stop::Broken(e) => match Cause::of(&e) {
            cause if cause.is_transient() => Failure::Retry(anyhow!(cause.describe(&host, Peer::Url))),
            cause => Failure::Final(anyhow!(cause.describe(&host, Peer::Url))),
        },
        Stop::Stalled(_) => Failure::Retry(anyhow!(stop.describe(&host))),
        Stop::TooLarge(max) => {
            Failure::Final(anyhow!("{host} sent more than the {max} bytes bundle.json's size declares"))
        }
        Stop::Overdue | Stop::Sink(_) => Failure::Final(anyhow!(stop.describe(&host))),
    };
    let response = pace.send(client.get(url)).await.map_err(transient)?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Failure::Retry(anyhow!("the server answered {status}")));
    }
    if !status.is_success() {
        return Err(Failure::Final(anyhow!("the server answered {status}")));
    }
    let file = std::fs::File::create(path).with_context(|| path.display().to_string()).map_err(Failure::Final)?;
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let max = expected.size.unwrap_or(u64::MAX);
    let size = pace.body(response, max, &mut |chunk| out.write_all(chunk)).await.map_err(transient)?;
    let (digest, _, buffered) = out.finish();
    buffered.into_inner().map_err(|e| Failure::Final(e.into_error().into()))?;
    if let Some(declared) = expected.size.filter(|declared| *declared != size) {
        return Err(Failure::Final(anyhow!("{host} sent {size} bytes; bundle.json says size {declared}")));
    }
    if let Some(declared) = expected.digest.filter(|declared| **declared != digest) {
        return Err(Failure::Final(anyhow!(
            "{host} sent content with digest {digest}; bundle.json says contentDigest {declared}"
        )));
    }
    Ok(size)
}
