//! A store a team shares: one PostgreSQL database. Locks are session-level advisory locks, so
//! the server frees them when the connection of the ferry that held one closes.

use super::{Action, Installation, Store};
use crate::install::claim::{Claim, ClaimResult, Status};
use anyhow::{Context, Result, anyhow, bail};
use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, NoTls, Row};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// Each entry migrates the schema from its index to the next version. Identifiers and names sort
/// bytewise (`COLLATE "C"`), as in SQLite: ULIDs then sort by time whatever the database's locale.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE installations (
        name TEXT COLLATE "C" PRIMARY KEY,
        bundle_name TEXT NOT NULL,
        bundle_version TEXT NOT NULL,
        revision TEXT NOT NULL,
        last_action TEXT NOT NULL,
        status TEXT,
        modified TEXT NOT NULL,
        uninstalled BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE TABLE claims (
        id TEXT COLLATE "C" PRIMARY KEY,
        installation TEXT COLLATE "C" NOT NULL,
        document TEXT NOT NULL
    );
    CREATE INDEX claims_by_installation ON claims (installation, id);
    CREATE TABLE results (
        id TEXT COLLATE "C" PRIMARY KEY,
        claim_id TEXT COLLATE "C" NOT NULL REFERENCES claims (id),
        document TEXT NOT NULL
    );
    CREATE INDEX results_by_claim ON results (claim_id, id);
    CREATE TABLE outputs (
        result_id TEXT COLLATE "C" NOT NULL REFERENCES results (id),
        installation TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (result_id, name)
    );
    CREATE INDEX outputs_by_installation ON outputs (installation, name, result_id);
"#];

/// The advisory lock (two-key form, a space apart from the installations' one-key locks) that
/// makes two ferries opening a new database migrate it one after the other.
const MIGRATION_LOCK: (i32, i32) = (0x6665_7272, 1);

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Postgres {
    server: String,
    db: Client,
}

impl Postgres {
    /// Connects to the store a `postgres://` URL names. The password comes from the URL, else
    /// from `PGPASSWORD`; it appears in no message.
    pub fn open(url: &str) -> Result<Self> {
        let mut config: Config = url.parse().map_err(|e: postgres::Error| {
            // The parser's message names the option at fault, never its value.
            anyhow!("the store URL is not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DATABASE")
        })?;
        let server = server_name(&config);
        if config.get_ssl_mode() == SslMode::Require {
            bail!(
                "the store URL asks for sslmode=require, but ferry does not speak TLS to PostgreSQL \
                 (server {server}); reach it over a trusted network, its Unix socket or a tunnel"
            );
        }
        if config.get_password().is_none()
            && let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty())
        {
            config.password(password.as_encoded_bytes());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let db = config.connect(NoTls).map_err(|e| connect_error(&e, &config, &server))?;
        let mut store = Postgres { server, db };
        store.migrate().with_context(|| format!("the installation store {} cannot be used", store.server))?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let known = MIGRATIONS.len() as i32;
        // The common case reads one row and writes nothing, so a user that may not create
        // tables can use a store someone else migrated.
        if schema_version(&mut self.db)? == Some(known) {
            return Ok(());
        }
        let mut tx = self.db.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1])?;
        let version = match schema_version(&mut tx)? {
            Some(version) => version,
            None => {
                tx.batch_execute(
                    "CREATE TABLE ferry_schema (version INTEGER NOT NULL); INSERT INTO ferry_schema VALUES (0)",
                )?;
                0
            }
        };
        if version > known {
            bail!("its schema version {version} is newer than this ferry's ({known}); use a newer ferry");
        }
        for migration in &MIGRATIONS[version.max(0) as usize..] {
            tx.batch_execute(migration)?;
        }
        tx.execute("UPDATE ferry_schema SET version = $1", &[&known])?;
        tx.commit()?;
        Ok(())
    }

    /// Every query's error names the server: a store can fail long after it was opened.
    fn failed(&self, what: &'static str) -> impl FnOnce(postgres::Error) -> anyhow::Error + '_ {
        move |e| anyhow!("{what} in the installation store {}: {}", self.server, describe(&e))
    }
}

/// The store's schema version; `None` in a database ferry has not set up.
fn schema_version(db: &mut impl GenericClient) -> Result<Option<i32>, postgres::Error> {
    let exists: bool = db.query_one("SELECT to_regclass('ferry_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(None);
    }
    Ok(db.query_opt("SELECT version FROM ferry_schema", &[])?.map(|row| row.get(0)))
}

/// `host:port/database` for messages: what the operator needs to find the server, and never the
/// password.
fn server_name(config: &Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) if host.contains(':') => format!("[{host}]:{port}"),
        Some(Host::Tcp(host)) => format!("{host}:{port}"),
        Some(Host::Unix(dir)) => format!("{}/.s.PGSQL.{port}", dir.display()),
        None => match config.get_hostaddrs().first() {
            Some(address) => format!("{address}:{port}"),
            None => "(no host)".to_owned(),
        },
    };
    format!("{host}/{}", config.get_dbname().unwrap_or("(default database)"))
}

/// What went wrong connecting, in the operator's terms.
fn connect_error(error: &postgres::Error, config: &Config, server: &str) -> anyhow::Error {
    let user = config.get_user().unwrap_or("(your login name)");
    let database = config.get_dbname().unwrap_or(user);
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_CATALOG_NAME {
            return anyhow!(
                "PostgreSQL server {server} has no database {database:?}; create it (createdb) or name another"
            );
        }
        if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return anyhow!(
                "PostgreSQL server {server} refused user {user:?}: {} (the password comes from the store URL or PGPASSWORD)",
                db.message()
            );
        }
    }
    let io = std::error::Error::source(error).and_then(|s| s.downcast_ref::<std::io::Error>());
    match io.map(|e| e.kind()) {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            anyhow!("cannot reach PostgreSQL server {server}: connection refused (is it running and listening there?)")
        }
        _ if error.to_string().contains("timeout") => {
            anyhow!("cannot reach PostgreSQL server {server}: no answer within the connect timeout")
        }
        _ if describe(error).contains("password missing") => anyhow!(
            "PostgreSQL server {server} asks user {user:?} for a password: give it in the store URL or PGPASSWORD"
        ),
        _ => anyhow!("cannot connect to PostgreSQL server {server}: {}", describe(error)),
    }
}

/// The error with its cause: the postgres crate's own text is only "db error" or the like.
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// The advisory lock key of an installation: the first 8 bytes of the SHA-256 of its name, stable
/// across ferry versions and machines.
pub fn lock_key(installation: &str) -> i64 {
    let digest = Sha256::digest(installation.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn installation_row(row: &Row) -> Installation {
    let status: Option<String> = row.get(5);
    Installation {
        name: row.get(0),
        bundle_name: row.get(1),
        bundle_version: row.get(2),
        revision: row.get(3),
        last_action: row.get(4),
        status: status.as_deref().and_then(Status::parse),
        modified: row.get(6),
        uninstalled: row.get(7),
    }
}

const INSTALLATION_COLUMNS: &str =
    "name, bundle_name, bundle_version, revision, last_action, status, modified, uninstalled";

impl Store for Postgres {
    fn installation(&mut self, name: &str) -> Result<Option<Installation>> {
        let sql = format!("SELECT {INSTALLATION_COLUMNS} FROM installations WHERE name = $1");
        let row = self.db.query_opt(&sql, &[&name]);
        Ok(row.map_err(self.failed("reading an installation"))?.as_ref().map(installation_row))
    }

    fn list(&mut self, all: bool) -> Result<Vec<Installation>> {
        let filter = if all { "" } else { "WHERE NOT uninstalled" };
        let sql = format!("SELECT {INSTALLATION_COLUMNS} FROM installations {filter} ORDER BY name");
        let rows = self.db.query(&sql, &[]);
        Ok(rows.map_err(self.failed("listing installations"))?.iter().map(installation_row).collect())
    }

    fn history(&mut self, name: &str) -> Result<Vec<Action>> {
        // The latest result of each claim: ULIDs sort by time.
        let rows = self.db.query(
            "SELECT c.document, (SELECT r.document FROM results r WHERE r.claim_id = c.id ORDER BY r.id DESC LIMIT 1)
             FROM claims c WHERE c.installation = $1 ORDER BY c.id",
            &[&name],
        );
        let mut history = Vec::new();
        for row in rows.map_err(self.failed("reading an installation's history"))? {
            let (claim, result): (String, Option<String>) = (row.get(0), row.get(1));
            let claim = serde_json::from_str(&claim).context("a claim in the store is not a claim")?;
            let result =
                result.map(|r| serde_json::from_str(&r)).transpose().context("a result in the store is not one")?;
            history.push(Action { claim, result });
        }
        Ok(history)
    }

    fn add_claim(&mut self, claim: &Claim) -> Result<()> {
        let document = serde_json::to_string(claim)?;
        let bundle_name = claim.bundle["name"].as_str().unwrap_or_default();
        let bundle_version = claim.bundle["version"].as_str().unwrap_or_default();
        let server = self.server.clone();
        let mut write = || -> Result<(), postgres::Error> {
            let mut tx = self.db.transaction()?;
            tx.execute(
                "INSERT INTO claims (id, installation, document) VALUES ($1, $2, $3)",
                &[&claim.id, &claim.installation, &document],
            )?;
            tx.execute(
                "INSERT INTO installations (name, bundle_name, bundle_version, revision, last_action, status, modified)
                 VALUES ($1, $2, $3, $4, $5, NULL, $6)
                 ON CONFLICT (name) DO UPDATE SET bundle_name = $2, bundle_version = $3, revision = $4,
                     last_action = $5, status = NULL, modified = $6",
                &[&claim.installation, &bundle_name, &bundle_version, &claim.revision, &claim.action, &claim.created],
            )?;
            tx.commit()
        };
        write()
            .map_err(|e| anyhow!("recording claim {} in the installation store {server}: {}", claim.id, describe(&e)))
    }

    fn add_result(&mut self, claim: &Claim, result: &ClaimResult, outputs: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        let document = serde_json::to_string(result)?;
        // A succeeded uninstall hides the installation from `list`; a succeeded install brings it back.
        let uninstalled = match (claim.action.as_str(), result.status) {
            ("uninstall", Status::Succeeded) => Some(true),
            ("install", Status::Succeeded) => Some(false),
            _ => None,
        };
        let server = self.server.clone();
        let mut write = || -> Result<(), postgres::Error> {
            let mut tx = self.db.transaction()?;
            tx.execute(
                "INSERT INTO results (id, claim_id, document) VALUES ($1, $2, $3)",
                &[&result.id, &result.claim_id, &document],
            )?;
            for (name, value) in outputs {
                tx.execute(
                    "INSERT INTO outputs (result_id, installation, name, value) VALUES ($1, $2, $3, $4)",
                    &[&result.id, &claim.installation, name, value],
                )?;
            }
            tx.execute(
                "UPDATE installations SET status = $2, modified = $3, uninstalled = COALESCE($4, uninstalled)
                 WHERE name = $1",
                &[&claim.installation, &result.status.as_str(), &result.created, &uninstalled],
            )?;
            tx.commit()
        };
        write()
            .map_err(|e| anyhow!("recording result {} in the installation store {server}: {}", result.id, describe(&e)))
    }

    fn output(&mut self, installation: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let row = self.db.query_opt(
            "SELECT value FROM outputs WHERE installation = $1 AND name = $2 ORDER BY result_id DESC LIMIT 1",
            &[&installation, &name],
        );
        Ok(row.map_err(self.failed("reading an output"))?.map(|r| r.get(0)))
    }

    fn try_lock(&mut self, installation: &str) -> Result<bool> {
        let row = self.db.query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key(installation)]);
        Ok(row.map_err(self.failed("locking an installation"))?.get(0))
    }

    fn unlock(&mut self, installation: &str) -> Result<()> {
        let row = self.db.query_one("SELECT pg_advisory_unlock($1)", &[&lock_key(installation)]);
        row.map_err(self.failed("unlocking an installation"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_server_and_never_the_password() {
        let config: Config = "postgres://ferry:s3cret@db.example:6543/installs".parse().unwrap();
        assert_eq!(server_name(&config), "db.example:6543/installs");
        let config: Config = "postgresql://[::1]/ferry".parse().unwrap();
        assert_eq!(server_name(&config), "[::1]:5432/ferry");
    }

    #[test]
    fn lock_keys_are_stable() {
        // The first 8 bytes of sha256("prod"): ferries of every version must agree on them.
        assert_eq!(lock_key("prod") as u64, 0x6754_af96_32a2_745e);
        assert_ne!(lock_key("prod"), lock_key("staging"));
    }
}
