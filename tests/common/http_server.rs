//! A plain HTTP server for the tests of images given by URL.

use std::path::{Path, PathBuf};

/// `python3 -m http.server` on a free loopback port, serving `dir`; killed on drop.
pub struct HttpServer {
    pub host: String,
    child: std::process::Child,
    log: PathBuf,
}

impl HttpServer {
    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let host = format!("127.0.0.1:{port}");
        // The access log goes to stderr; kept in a file beside the served directory.
        let log = dir.with_extension("log");
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(std::time::Instant::now() < deadline, "the HTTP server did not start on {host}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        HttpServer { host, child, log }
    }

    /// GET requests answered so far.
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().matches("\"GET ").count()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
