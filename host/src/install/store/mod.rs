//! Where installations live: every claim, every result, the output values. An embedded SQLite
//! database by default; PostgreSQL when a team shares one.
//!
//! One action runs per installation at a time, across processes: the store's lock is held by the
//! process (a file lock for SQLite, a session advisory lock for PostgreSQL), so a ferry that dies
//! frees it, and the `running` result it leaves behind tells the next command what happened.

mod postgres;
mod sqlite;

use super::claim::{Claim, ClaimResult, Status};
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use postgres::Postgres;
pub use sqlite::Sqlite;

/// What `installations list` shows: the installation as its last action left it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    pub name: String,
    pub bundle_name: String,
    pub bundle_version: String,
    pub revision: String,
    pub last_action: String,
    /// The last action's status; `None` while it has no result yet.
    pub status: Option<Status>,
    pub modified: String,
    /// The last modifying action was an uninstall that succeeded.
    pub uninstalled: bool,
}

/// One action: its claim and its latest result.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub claim: Claim,
    pub result: Option<ClaimResult>,
}

pub trait Store {
    fn installation(&mut self, name: &str) -> Result<Option<Installation>>;
    /// Installations by name; uninstalled ones only with `all`.
    fn list(&mut self, all: bool) -> Result<Vec<Installation>>;
    /// Every action on the installation, oldest first.
    fn history(&mut self, name: &str) -> Result<Vec<Action>>;
    fn add_claim(&mut self, claim: &Claim) -> Result<()>;
    /// A result for `claim`, with the output values when the action ended.
    fn add_result(&mut self, claim: &Claim, result: &ClaimResult, outputs: &BTreeMap<String, Vec<u8>>) -> Result<()>;
    /// The value `name` had when the installation's last action that produced it ended.
    fn output(&mut self, installation: &str, name: &str) -> Result<Option<Vec<u8>>>;
    /// Takes the installation's lock, or says false when another process holds it.
    fn try_lock(&mut self, installation: &str) -> Result<bool>;
    fn unlock(&mut self, installation: &str) -> Result<()>;
}

/// Opens the store `FERRY_STORE`/`--store` names: a `postgres://` URL, or a SQLite file path;
/// without either, `$XDG_DATA_HOME/ferry/ferry.db`.
pub fn open(location: Option<&str>) -> Result<Box<dyn Store>> {
    match location {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Box::new(Postgres::open(url)?))
        }
        Some(path) => Ok(Box::new(Sqlite::open(Path::new(path))?)),
        None => {
            let Some(path) = default_path() else {
                bail!("no place for the installation store: set FERRY_STORE, --store, XDG_DATA_HOME or HOME")
            };
            Ok(Box::new(Sqlite::open(&path)?))
        }
    }
}

/// `$XDG_DATA_HOME/ferry/ferry.db`, else `~/.local/share/ferry/ferry.db`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/share"))
    })?;
    Some(base.join("ferry/ferry.db"))
}

/// An installation name as CNAB allows it (103: Unicode graphic characters and spaces), with
/// bounds ferry adds so the name fits in a container name and a terminal line.
pub fn check_name(name: &str) -> Result<()> {
    const MAX: usize = 200;
    let problem = if name.is_empty() {
        Some("is empty".to_owned())
    } else if name.chars().count() > MAX {
        Some(format!("is longer than {MAX} characters"))
    } else if let Some(c) = name.chars().find(|c| c.is_control() || (c.is_whitespace() && *c != ' ')) {
        Some(format!("holds {c:?}; an installation name is printable characters and spaces"))
    } else if name.starts_with(' ') || name.ends_with(' ') {
        Some("starts or ends with a space".to_owned())
    } else {
        None
    };
    match problem {
        Some(p) => bail!("installation name {:?} {p}", crate::untrusted::clip(name, 80)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_printable_and_bounded() {
        assert!(check_name("shop prod ✓").is_ok());
        for bad in ["", " lead", "tab\there", "new\nline", &"x".repeat(201)] {
            assert!(check_name(bad).is_err(), "{bad:?} passed");
        }
    }
}
