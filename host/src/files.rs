//! Files ferry writes for the operator (thick bundles, relocation mappings, bundle.json): each
//! written to a temporary file beside its final name and renamed there when complete, with the
//! mode the user would get from any other tool: the existing file's when one is replaced, else
//! what the umask allows (a temporary file is created 0600, which would hide the result from
//! the rest of a team).

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The directory `path` is in (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Whether `path` is relative and stays where it is joined: no root, no `..`.
pub fn stays_inside(path: &Path) -> bool {
    path.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
}

/// A temporary file beside `path`, to be given its name by [`persist`].
pub fn temporary_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".ferry-")
        .suffix(".partial")
        .tempfile_in(parent_of(path))
        .with_context(|| format!("creating a temporary file beside {}", path.display()))
}

/// Renames the finished `tmp` to `path`, with the mode described above.
pub fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    let mode = match std::fs::metadata(path) {
        Ok(existing) => existing.permissions().mode() & 0o7777,
        Err(_) => 0o666 & !umask(),
    };
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The process's umask, read without changing it (`umask(2)` can only be read by setting it,
/// which would race with other threads creating files).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_owned())))
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.json");
        let mut tmp = temporary_beside(&new).unwrap();
        tmp.write_all(b"{}").unwrap();
        persist(tmp, &new).unwrap();
        let mode = std::fs::metadata(&new).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask(), "{mode:o}");

        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o640)).unwrap();
        let tmp = temporary_beside(&new).unwrap();
        persist(tmp, &new).unwrap();
        assert_eq!(std::fs::metadata(&new).unwrap().permissions().mode() & 0o777, 0o640);
    }
}
