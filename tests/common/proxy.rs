//! A fault-injecting HTTP proxy for registry tests: it relays each request to the registry on
//! a fresh connection, and, when told to, answers with an error status or drops the connection
//! half-way through the response instead. It counts what it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and no body.
    Status(u16),
    /// Send half of the registry's response, then close.
    Drop,
}

/// Decides, for the n-th request (from 0) with this request line, whether to inject a fault.
pub type Plan = dyn Fn(usize, &str) -> Option<Fault> + Send + Sync;

/// Each request line the proxy saw, with the fault it injected, if any.
pub type Seen = Vec<(String, Option<Fault>)>;

pub struct FaultyProxy {
    pub host: String,
    pub seen: Arc<Mutex<Seen>>,
}

impl FaultyProxy {
    pub fn start(upstream: &str, plan: Box<Plan>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (upstream, plan, log) = (upstream.to_owned(), Arc::new(plan), seen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let (upstream, plan, log) = (upstream.clone(), plan.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &**plan, &log);
                });
            }
        });
        FaultyProxy { host, seen }
    }

    /// Request lines seen so far that contain `part`.
    pub fn count(&self, part: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|(line, _)| line.contains(part)).count()
    }
}

fn serve(client: TcpStream, upstream: &str, plan: &Plan, log: &Mutex<Seen>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let mut head = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if !lower.starts_with("connection:") {
                head.push(line);
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let request_line = head.first().cloned().unwrap_or_default().trim_end().to_owned();
        let fault = {
            let mut seen = log.lock().unwrap();
            let n = seen.iter().filter(|(l, _)| *l == request_line).count();
            let fault = plan(n, &request_line);
            seen.push((request_line.clone(), fault));
            fault
        };
        if let Some(Fault::Status(code)) = fault {
            write!(client, "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        let mut up = TcpStream::connect(upstream)?;
        for line in &head {
            up.write_all(line.as_bytes())?;
        }
        up.write_all(b"Connection: close\r\n\r\n")?;
        up.write_all(&body)?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        if fault == Some(Fault::Drop) {
            client.write_all(&response[..response.len() / 2])?;
            return Ok(());
        }
        client.write_all(&response)?;
        if String::from_utf8_lossy(&response[..response.len().min(2048)])
            .to_ascii_lowercase()
            .contains("connection: close")
        {
            return Ok(());
        }
    }
}
