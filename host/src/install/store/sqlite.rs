//! The default store: one SQLite file. Locks are `flock`s on files beside it, one per
//! installation, so that the kernel frees them with the process that held them.

use super::{Action, Installation, Store};
use crate::install::claim::{Claim, ClaimResult, Status};
use anyhow::{Context, Result};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Each entry migrates the schema from its index to the next version.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE installations (
        name TEXT PRIMARY KEY,
        bundle_name TEXT NOT NULL,
        bundle_version TEXT NOT NULL,
        revision TEXT NOT NULL,
        last_action TEXT NOT NULL,
        status TEXT,
        modified TEXT NOT NULL,
        uninstalled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE claims (
        id TEXT PRIMARY KEY,
        installation TEXT NOT NULL,
        document TEXT NOT NULL
    );
    CREATE INDEX claims_by_installation ON claims (installation, id);
    CREATE TABLE results (
        id TEXT PRIMARY KEY,
        claim_id TEXT NOT NULL REFERENCES claims (id),
        document TEXT NOT NULL
    );
    CREATE INDEX results_by_claim ON results (claim_id, id);
    CREATE TABLE outputs (
        result_id TEXT NOT NULL REFERENCES results (id),
        installation TEXT NOT NULL,
        name TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (result_id, name)
    );
    CREATE INDEX outputs_by_installation ON outputs (installation, name, result_id);
"#];

/// How long a store another process is writing is waited for.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Sqlite {
    path: PathBuf,
    db: Connection,
    locks: HashMap<String, File>,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {} for the installation store", parent.display()))?;
        }
        let db = Connection::open(path).map_err(|e| explain(path, "opening", e.into()))?;
        // Another ferry writing at the same moment is waited for, briefly: ferry's writes take
        // milliseconds, so a store busy for longer is held by something else.
        db.busy_timeout(BUSY_TIMEOUT)?;
        let mut store = Sqlite { path: path.to_owned(), db, locks: HashMap::new() };
        let migrated = store.migrate();
        migrated.map_err(|e| explain(path, "opening", e))?;
        Ok(store)
    }

    fn named<T>(&self, outcome: Result<T>, what: &str) -> Result<T> {
        outcome.map_err(|e| explain(&self.path, what, e))
    }

    fn migrate(&mut self) -> Result<()> {
        let newer = |version: u32| {
            anyhow::anyhow!(
                "its schema version {version} is newer than this ferry's ({}); use a newer ferry",
                MIGRATIONS.len()
            )
        };
        let version: u32 = self.db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version as usize >= MIGRATIONS.len() {
            return if version as usize > MIGRATIONS.len() { Err(newer(version)) } else { Ok(()) };
        }
        // Two ferries opening a new store at once: the write lock is taken before the version is
        // read again, so the second finds the first's work done instead of doing it twice.
        let tx = self.db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version as usize > MIGRATIONS.len() {
            return Err(newer(version));
        }
        for migration in MIGRATIONS.iter().skip(version as usize) {
            tx.execute_batch(migration)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as u32)?;
        tx.commit()?;
        Ok(())
    }

    fn lock_path(&self, installation: &str) -> PathBuf {
        let mut dir = self.path.clone().into_os_string();
        dir.push(".locks");
        let name = hex::encode(&Sha256::digest(installation.as_bytes())[..16]);
        PathBuf::from(dir).join(name)
    }
}

/// What went wrong with the store file, in the operator's terms: busy (held by another process)
/// or not usable (damaged, or not a ferry store), naming the file either way.
fn explain(path: &Path, what: &str, error: anyhow::Error) -> anyhow::Error {
    let code = error.chain().find_map(|e| e.downcast_ref::<rusqlite::Error>()).and_then(|e| e.sqlite_error_code());
    let path = path.display();
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => error.context(format!(
            "{what} the installation store {path}: another process kept it locked for over {} s \
             (another ferry writing, or a program holding a transaction open on it)",
            BUSY_TIMEOUT.as_secs()
        )),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            error.context(format!("{what} the installation store {path}: the file is damaged, or not a ferry store"))
        }
        _ => error.context(format!("{what} the installation store {path}")),
    }
}

fn installation_row(row: &rusqlite::Row) -> rusqlite::Result<Installation> {
    let status: Option<String> = row.get(5)?;
    Ok(Installation {
        name: row.get(0)?,
        bundle_name: row.get(1)?,
        bundle_version: row.get(2)?,
        revision: row.get(3)?,
        last_action: row.get(4)?,
        status: status.as_deref().and_then(Status::parse),
        modified: row.get(6)?,
        uninstalled: row.get::<_, i64>(7)? != 0,
    })
}

const INSTALLATION_COLUMNS: &str =
    "name, bundle_name, bundle_version, revision, last_action, status, modified, uninstalled";

fn installation(db: &Connection, name: &str) -> Result<Option<Installation>> {
    let sql = format!("SELECT {INSTALLATION_COLUMNS} FROM installations WHERE name = ?1");
    Ok(db.query_row(&sql, [name], installation_row).optional()?)
}

fn list(db: &Connection, all: bool) -> Result<Vec<Installation>> {
    let filter = if all { "" } else { "WHERE uninstalled = 0" };
    let sql = format!("SELECT {INSTALLATION_COLUMNS} FROM installations {filter} ORDER BY name");
    let mut statement = db.prepare(&sql)?;
    let rows = statement.query_map([], installation_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn history(db: &Connection, name: &str) -> Result<Vec<Action>> {
    // The latest result of each claim: ULIDs sort by time.
    let mut statement = db.prepare(
        "SELECT c.document, (SELECT r.document FROM results r WHERE r.claim_id = c.id ORDER BY r.id DESC LIMIT 1)
         FROM claims c WHERE c.installation = ?1 ORDER BY c.id",
    )?;
    let rows = statement.query_map([name], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)))?;
    let mut history = Vec::new();
    for row in rows {
        let (claim, result) = row?;
        let claim = serde_json::from_str(&claim).context("a claim in the store is not a claim")?;
        let result =
            result.map(|r| serde_json::from_str(&r)).transpose().context("a result in the store is not one")?;
        history.push(Action { claim, result });
    }
    Ok(history)
}

fn add_claim(db: &mut Connection, claim: &Claim) -> Result<()> {
    let tx = db.transaction()?;
    tx.execute(
        "INSERT INTO claims (id, installation, document) VALUES (?1, ?2, ?3)",
        params![claim.id, claim.installation, serde_json::to_string(claim)?],
    )?;
    tx.execute(
        "INSERT INTO installations (name, bundle_name, bundle_version, revision, last_action, status, modified)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)
         ON CONFLICT (name) DO UPDATE SET bundle_name = ?2, bundle_version = ?3, revision = ?4,
             last_action = ?5, status = NULL, modified = ?6",
        params![
            claim.installation,
            claim.bundle["name"].as_str().unwrap_or_default(),
            claim.bundle["version"].as_str().unwrap_or_default(),
            claim.revision,
            claim.action,
            claim.created
        ],
    )?;
    tx.commit()?;
    Ok(())
}

fn add_result(
    db: &mut Connection,
    claim: &Claim,
    result: &ClaimResult,
    outputs: &BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    let tx = db.transaction()?;
    tx.execute(
        "INSERT INTO results (id, claim_id, document) VALUES (?1, ?2, ?3)",
        params![result.id, result.claim_id, serde_json::to_string(result)?],
    )?;
    for (name, value) in outputs {
        tx.execute(
            "INSERT INTO outputs (result_id, installation, name, value) VALUES (?1, ?2, ?3, ?4)",
            params![result.id, claim.installation, name, value],
        )?;
    }
    // A succeeded uninstall hides the installation from `list`; a succeeded install brings it back.
    let uninstalled = match (claim.action.as_str(), result.status) {
        ("uninstall", Status::Succeeded) => Some(1),
        ("install", Status::Succeeded) => Some(0),
        _ => None,
    };
    tx.execute(
        "UPDATE installations SET status = ?2, modified = ?3, uninstalled = COALESCE(?4, uninstalled) WHERE name = ?1",
        params![claim.installation, result.status.as_str(), result.created, uninstalled],
    )?;
    tx.commit()?;
    Ok(())
}

fn output(db: &Connection, installation: &str, name: &str) -> Result<Option<Vec<u8>>> {
    Ok(db
        .query_row(
            "SELECT value FROM outputs WHERE installation = ?1 AND name = ?2 ORDER BY result_id DESC LIMIT 1",
            [installation, name],
            |r| r.get(0),
        )
        .optional()?)
}

impl Store for Sqlite {
    fn installation(&mut self, name: &str) -> Result<Option<Installation>> {
        self.named(installation(&self.db, name), "reading an installation in")
    }

    fn list(&mut self, all: bool) -> Result<Vec<Installation>> {
        self.named(list(&self.db, all), "listing installations in")
    }

    fn history(&mut self, name: &str) -> Result<Vec<Action>> {
        self.named(history(&self.db, name), "reading an installation's history in")
    }

    fn add_claim(&mut self, claim: &Claim) -> Result<()> {
        let added = add_claim(&mut self.db, claim);
        self.named(added, "recording a claim in")
    }

    fn add_result(&mut self, claim: &Claim, result: &ClaimResult, outputs: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        let added = add_result(&mut self.db, claim, result, outputs);
        self.named(added, "recording a result in")
    }

    fn output(&mut self, installation: &str, name: &str) -> Result<Option<Vec<u8>>> {
        self.named(output(&self.db, installation, name), "reading an output in")
    }

    fn try_lock(&mut self, installation: &str) -> Result<bool> {
        let path = self.lock_path(installation);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(false);
            }
            return Err(error).with_context(|| format!("locking {}", path.display()));
        }
        self.locks.insert(installation.to_owned(), file);
        Ok(true)
    }

    fn unlock(&mut self, installation: &str) -> Result<()> {
        // Closing the descriptor releases the flock.
        self.locks.remove(installation);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ferries_opening_a_new_store_at_once_all_find_it_ready() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ferry.db");
            let barrier = std::sync::Barrier::new(4);
            std::thread::scope(|scope| {
                let opened: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            Sqlite::open(&path).map(drop).map_err(|e| format!("{e:#}"))
                        })
                    })
                    .collect();
                for handle in opened {
                    assert_eq!(handle.join().unwrap(), Ok(()));
                }
            });
        }
    }

    #[test]
    fn a_lock_is_held_once_across_connections_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        let (mut first, mut second) = (Sqlite::open(&path).unwrap(), Sqlite::open(&path).unwrap());
        assert!(first.try_lock("prod").unwrap());
        assert!(!second.try_lock("prod").unwrap());
        assert!(second.try_lock("staging").unwrap());
        first.unlock("prod").unwrap();
        assert!(second.try_lock("prod").unwrap());
    }

    #[test]
    fn a_file_that_is_not_a_store_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let error = format!("{:#}", Sqlite::open(&path).err().unwrap());
        assert!(
            error.contains(&path.display().to_string()) && error.contains("damaged, or not a ferry store"),
            "{error}"
        );
    }
}
