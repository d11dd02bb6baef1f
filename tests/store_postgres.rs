//! The installation stores: the behaviour both must have, on SQLite and on PostgreSQL; and the
//! PostgreSQL store against a real server: Debian's PostgreSQL, started by each
//! test with `initdb` and `pg_ctl` in a temporary directory, as the unprivileged `postgres` user
//! when the tests run as root, on a free loopback port, with password authentication over TCP.

mod common;

use common::site::{Site, ok};
use common::{ferry_command, text};
use ferry::install::claim::{self, Claim, ClaimResult, OutputRecord, Status};
use ferry::install::store::{Postgres, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "pg-s3cret";

/// A PostgreSQL server of its own, stopped on drop.
struct PgServer {
    port: u16,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgServer {
    fn start() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        if as_root() {
            let status = Command::new("chown").arg("postgres:").arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown of {} to postgres failed", dir.path().display());
        }
        let data = dir.path().join("data");
        let pwfile = dir.path().join("password");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if as_root() {
            Command::new("chown").arg("postgres:").arg(&pwfile).status().unwrap();
        }
        // Local (socket) connections are trusted, so that createdb needs no password; TCP ones,
        // the ones ferry makes, need the password.
        run(
            dir.path(),
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "ferry",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                path(&pwfile),
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.path().display());
        let log = dir.path().join("log");
        run(dir.path(), "pg_ctl", &["-D", path(&data), "-o", &options, "-l", path(&log), "-w", "start"]);
        let server = PgServer { port, data, _dir: dir };
        let socket_dir = server._dir.path().display().to_string();
        run(server._dir.path(), "createdb", &["-h", &socket_dir, "-p", &port.to_string(), "-U", "ferry", "ferry"]);
        server
    }

    fn url(&self) -> String {
        format!("postgres://ferry:{PASSWORD}@127.0.0.1:{}/ferry", self.port)
    }

    fn open(&self) -> Postgres {
        Postgres::open(&self.url()).unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let dir = self._dir.path().to_owned();
        let _ = command(&dir, "pg_ctl").args(["-D", path(&self.data), "-m", "fast", "stop"]).output();
    }
}

fn as_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Debian's newest PostgreSQL: /usr/lib/postgresql/VERSION/bin.
fn bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL in /usr/lib/postgresql (scripts/setup installs it)")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("bin/initdb").exists())
        .collect();
    versions.sort_by_key(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok()));
    versions.last().expect("a PostgreSQL with initdb (scripts/setup installs it)").join("bin").join(program)
}

/// A PostgreSQL program, as the `postgres` user when the tests run as root: PostgreSQL refuses
/// to run as root.
fn command(dir: &Path, program: &str) -> Command {
    let mut command = if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin(program));
        c
    } else {
        Command::new(bin(program))
    };
    command.current_dir(dir).env_remove("PGPASSWORD");
    command
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = command(dir, program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
}

fn claim(installation: &str, action: &str, revision: &str) -> Claim {
    Claim {
        id: claim::new_id(),
        installation: installation.into(),
        revision: revision.into(),
        action: action.into(),
        bundle: json!({ "name": "shop", "version": "1.0.0" }),
        bundle_reference: None,
        created: claim::now(),
        parameters: BTreeMap::from([("port".into(), json!(8080))]),
    }
}

fn result(claim: &Claim, status: Status) -> ClaimResult {
    ClaimResult {
        id: claim::new_id(),
        claim_id: claim.id.clone(),
        created: claim::now(),
        status,
        message: None,
        outputs: BTreeMap::from([("url".into(), OutputRecord { content_digest: "sha256:00".into() })]),
    }
}

/// What every store must keep: actions in order, the installation as its last action left it,
/// uninstalled ones only with `all`, names in byte order, output values byte for byte; a store
/// opened again (`open`) migrates nothing twice.
fn keeps_actions(open: &dyn Fn() -> Box<dyn Store>) {
    let mut store = open();
    let install = claim("prod", "install", "r1");
    store.add_claim(&install).unwrap();
    store.add_result(&install, &result(&install, Status::Running), &BTreeMap::new()).unwrap();
    let done = result(&install, Status::Succeeded);
    let binary = vec![0u8, 255, 10, 0];
    store
        .add_result(
            &install,
            &done,
            &BTreeMap::from([("url".into(), b"http://a".to_vec()), ("raw".into(), binary.clone())]),
        )
        .unwrap();
    let uninstall = claim("prod", "uninstall", "r2");
    store.add_claim(&uninstall).unwrap();
    assert_eq!(store.installation("prod").unwrap().unwrap().status, None);
    store.add_result(&uninstall, &result(&uninstall, Status::Succeeded), &BTreeMap::new()).unwrap();
    let other = claim("Other", "install", "r3");
    store.add_claim(&other).unwrap();

    let history = store.history("prod").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].result.as_ref().unwrap(), &done);
    assert_eq!(history[1].claim, uninstall);
    let names: Vec<String> = store.list(false).unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["Other"], "an uninstalled installation is listed only with --all");
    let listed = store.list(true).unwrap();
    assert_eq!(listed.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["Other", "prod"], "bytewise order");
    assert_eq!((listed[1].last_action.as_str(), listed[1].uninstalled), ("uninstall", true));
    assert_eq!(store.output("prod", "url").unwrap().unwrap(), b"http://a");
    assert_eq!(store.output("prod", "raw").unwrap().unwrap(), binary, "values are kept byte for byte");
    assert_eq!(store.output("prod", "other").unwrap(), None);
    drop(store);
    // Reopening runs no migration twice.
    assert_eq!(open().history("prod").unwrap().len(), 2);
}

#[test]
fn actions_are_kept_in_order_and_the_installation_follows_the_last() {
    let server = PgServer::start();
    keeps_actions(&|| Box::new(server.open()));
}

#[test]
fn the_sqlite_store_keeps_actions_as_the_postgres_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/ferry.db");
    keeps_actions(&|| ferry::install::store::open(Some(path.to_str().unwrap())).unwrap());
}

#[test]
fn a_lock_is_held_once_across_connections_and_freed_when_its_connection_closes() {
    let server = PgServer::start();
    let (mut first, mut second) = (server.open(), server.open());
    assert!(first.try_lock("prod").unwrap());
    assert!(!second.try_lock("prod").unwrap());
    assert!(second.try_lock("staging").unwrap());
    first.unlock("prod").unwrap();
    assert!(second.try_lock("prod").unwrap());

    // A ferry that dies closes its connection: the server frees its locks.
    assert!(first.try_lock("qa").unwrap());
    assert!(!second.try_lock("qa").unwrap());
    drop(first);
    // The server ends the closed session's backend on its own time: wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !second.try_lock("qa").unwrap() {
        assert!(Instant::now() < deadline, "the lock of a closed connection was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_store_from_a_newer_ferry_is_refused_and_connection_problems_are_named() {
    let server = PgServer::start();
    drop(server.open());
    let mut admin = postgres::Client::connect(&server.url(), postgres::NoTls).unwrap();
    // A user that may read and write the tables but not create any uses a store set up by another.
    admin
        .batch_execute(&format!(
            "CREATE ROLE operator LOGIN PASSWORD '{PASSWORD}';
             GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO operator"
        ))
        .unwrap();
    let operator = format!("postgres://operator:{PASSWORD}@127.0.0.1:{}/ferry", server.port);
    let mut store = Postgres::open(&operator).unwrap();
    store.add_claim(&claim("prod", "install", "r1")).unwrap();
    assert_eq!(store.list(false).unwrap().len(), 1);
    drop(store);
    admin.execute("UPDATE ferry_schema SET version = 99", &[]).unwrap();
    let error = format!("{:#}", Postgres::open(&server.url()).err().unwrap());
    assert!(error.contains("schema version 99 is newer") && error.contains("127.0.0.1"), "{error}");
    assert!(!error.contains(PASSWORD), "the password was shown: {error}");

    let port = server.port;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cases = [
        (format!("postgres://ferry:{PASSWORD}@127.0.0.1:{closed}/ferry"), "connection refused"),
        (format!("postgres://ferry:{PASSWORD}@127.0.0.1:{port}/nosuch"), "has no database \"nosuch\""),
        (format!("postgres://ferry:wrong-{PASSWORD}@127.0.0.1:{port}/ferry"), "refused user \"ferry\""),
        (format!("postgres://nobody:{PASSWORD}@127.0.0.1:{port}/ferry"), "refused user \"nobody\""),
        (format!("postgres://ferry@127.0.0.1:{port}/ferry"), "asks user \"ferry\" for a password"),
        (format!("postgres://ferry:{PASSWORD}@127.0.0.1:{port}/ferry?port=x"), "not a PostgreSQL URL"),
        (format!("postgres://ferry:{PASSWORD}@127.0.0.1:{port}/ferry?sslmode=require"), "does not speak TLS"),
    ];
    for (url, expected) in cases {
        let error = format!("{:#}", Postgres::open(&url).err().expect(&url));
        assert!(error.contains(expected), "{url}: {error}");
        assert!(!error.contains(PASSWORD), "the password was shown: {error}");
        if !expected.contains("URL") {
            assert!(error.contains("127.0.0.1:"), "the server is not named: {error}");
        }
    }
}

#[test]
fn the_cli_uses_a_postgres_store_and_takes_the_password_from_pgpassword() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let without_password = format!("postgresql://ferry@127.0.0.1:{}/ferry", server.port);
    let list = |store: &str, password: Option<&str>| {
        let mut command = ferry_command(dir.path());
        command.args(["installations", "list", "--store", store, "--format", "json"]).env_remove("PGPASSWORD");
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        command.output().unwrap()
    };
    for out in [list(&server.url(), None), list(&without_password, Some(PASSWORD))] {
        ok(&out);
        assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!([]));
    }
    let refused = list(&without_password, Some("Zq9-nope"));
    assert_eq!(refused.status.code(), Some(1));
    // With --format json the error is JSON on stdout.
    let stderr = text(&refused.stdout) + &text(&refused.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{}/ferry", server.port)) && stderr.contains("refused"), "{stderr}");
    assert!(!stderr.contains("Zq9-nope"), "the password was shown: {stderr}");
}

#[test]
fn an_installation_is_recorded_in_postgres_and_a_killed_ferry_frees_its_lock() {
    let server = PgServer::start();
    let mut site = Site::new();
    site.store = server.url();
    let bundle = site.bundle.to_str().unwrap();
    let inputs = ["--param", "greeting=hi", "--cred", "token=value:x"];
    ok(&site.command(&["install", "prod", bundle]).args(inputs).output().unwrap());
    assert_eq!(site.output("prod", "greeting"), "hi");
    assert_eq!(site.show("prod")["actions"][0]["result"]["status"], "succeeded");

    // A ferry killed mid-action: its connection closes, so the next ferry gets the lock and
    // records the lost action as unknown.
    let mut lost = site.start_running("lost", &inputs);
    let busy = site.command(&["upgrade", "lost"]).args(inputs).output().unwrap();
    assert_eq!(busy.status.code(), Some(1));
    assert!(text(&busy.stderr).contains("is busy"), "{}", text(&busy.stderr));
    lost.kill().unwrap();
    lost.wait().unwrap();
    let claim = site.show("lost")["actions"][0]["claim"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = loop {
        // The server frees the killed ferry's lock once it sees the connection closed.
        let next = site.command(&["upgrade", "lost", "--param", "wait=0"]).args(inputs).output().unwrap();
        if !text(&next.stderr).contains("is busy") || Instant::now() > deadline {
            break next;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text(&next.stderr).contains("never finished; recorded as unknown"), "{}", text(&next.stderr));
    assert_eq!(site.show("lost")["actions"][0]["result"]["status"], "unknown");
    let filter = format!("label=io.ferry.run={claim}");
    let socket = &site.podman.as_ref().expect("a container site").socket;
    let _ = Command::new("podman").args(["--url", socket, "rm", "-f", "--filter", &filter]).output();
}
