//! Whether a tarball is safe to extract: every entry lands inside the directory it is extracted
//! into, and no link in it points outside that directory.
//!
//! Names are judged as written, the way an extractor resolves them: `..` may not climb above the
//! root, link targets may not lead outside it, and no path may pass through one of the archive's
//! symbolic links (a link to a directory would make every other check meaningless).

use ferry_driver_sdk::{TarEntry, TarEntryKind};
use std::collections::{HashMap, HashSet};

#[derive(Debug, PartialEq, Eq)]
pub struct Counts {
    pub entries: u64,
    /// Bytes of the regular files.
    pub size: u64,
}

/// Checks every entry; the error names the first unsafe one.
pub fn check(entries: &[TarEntry]) -> Result<Counts, String> {
    // First the cleaned names, to know duplicates and where the symbolic links are.
    let mut cleaned = Vec::with_capacity(entries.len());
    let mut by_path: HashMap<String, (usize, TarEntryKind)> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let name = &entry.name;
        if name.starts_with('/') {
            return Err(format!("{name:?} is an absolute path"));
        }
        if entry.kind == TarEntryKind::Other {
            return Err(format!("{name:?} is a device, a fifo or another special file"));
        }
        let path = resolve(&[], name, &HashSet::new()).map_err(|why| format!("{name:?} {why}"))?.join("/");
        if path.is_empty() && entry.kind != TarEntryKind::Directory {
            return Err(format!("{name:?} names the archive's root, and is not a directory"));
        }
        if !path.is_empty()
            && let Some((first, _)) = by_path.insert(path.clone(), (i, entry.kind))
        {
            return Err(format!("{:?} and {name:?} are the same entry", entries[first].name));
        }
        cleaned.push(path);
    }
    let symlinks: HashSet<&str> = entries
        .iter()
        .zip(&cleaned)
        .filter(|(e, _)| e.kind == TarEntryKind::Symlink)
        .map(|(_, p)| p.as_str())
        .collect();

    let mut counts = Counts { entries: entries.len() as u64, size: 0 };
    for (i, (entry, path)) in entries.iter().zip(&cleaned).enumerate() {
        let name = &entry.name;
        resolve(&[], name, &symlinks).map_err(|why| format!("{name:?} {why}"))?;
        match entry.kind {
            TarEntryKind::File => counts.size = counts.size.saturating_add(entry.size),
            TarEntryKind::Symlink => {
                let target = link_target(entry)?;
                let parent: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
                let parent = &parent[..parent.len().saturating_sub(1)];
                resolve(parent, target, &symlinks)
                    .map_err(|why| format!("{name:?} links to {target:?}, which {why}"))?;
            }
            TarEntryKind::Hardlink => {
                let target = link_target(entry)?;
                let target_path = resolve(&[], target, &symlinks)
                    .map_err(|why| format!("{name:?} is a hard link to {target:?}, which {why}"))?
                    .join("/");
                match by_path.get(&target_path) {
                    Some((j, kind)) if *j < i && *kind != TarEntryKind::Directory => {}
                    _ => return Err(format!("{name:?} is a hard link to {target:?}, not a file before it")),
                }
            }
            TarEntryKind::Directory | TarEntryKind::Other => {}
        }
    }
    Ok(counts)
}

/// A link's target; absolute and empty targets are refused.
fn link_target(entry: &TarEntry) -> Result<&str, String> {
    match entry.link.as_deref() {
        Some(target) if target.starts_with('/') => {
            Err(format!("{:?} links to the absolute path {target:?}", entry.name))
        }
        Some(target) if !target.is_empty() => Ok(target),
        _ => Err(format!("{:?} is a link without a target", entry.name)),
    }
}

/// The components of `path` resolved from directory `base`, or why it cannot be: it leaves the
/// root, or it goes on through one of `symlinks`.
fn resolve<'a>(base: &[&'a str], path: &'a str, symlinks: &HashSet<&str>) -> Result<Vec<&'a str>, String> {
    let mut stack = base.to_vec();
    for component in path.split('/').filter(|c| !matches!(*c, "" | ".")) {
        if !stack.is_empty() && symlinks.contains(stack.join("/").as_str()) {
            return Err(format!("goes through the symbolic link {:?}", stack.join("/")));
        }
        if component == ".." {
            stack.pop().ok_or("leaves the archive's root")?;
        } else {
            stack.push(component);
        }
    }
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TarEntryKind::*;

    fn entry(name: &str, kind: TarEntryKind, link: Option<&str>) -> TarEntry {
        let size = if kind == File { 10 } else { 0 };
        TarEntry { name: name.into(), kind, size, link: link.map(Into::into), mode: 0o644 }
    }

    fn file(name: &str) -> TarEntry {
        entry(name, File, None)
    }

    fn dir(name: &str) -> TarEntry {
        entry(name, Directory, None)
    }

    fn symlink(name: &str, target: &str) -> TarEntry {
        entry(name, Symlink, Some(target))
    }

    fn hardlink(name: &str, target: &str) -> TarEntry {
        entry(name, Hardlink, Some(target))
    }

    #[test]
    fn safe_archives() {
        for (case, entries, expected) in [
            ("empty", vec![], (0, 0)),
            ("files and directories", vec![dir("./"), dir("./a/"), file("./a/b"), file("c")], (4, 20)),
            ("dot-dot that stays inside", vec![dir("a/"), file("a/../b")], (2, 10)),
            ("relative symlink", vec![file("a/b"), symlink("a/c", "b"), symlink("d", "a/b")], (3, 10)),
            ("symlink up, still inside", vec![file("top"), symlink("a/b/up", "../../top")], (2, 10)),
            ("symlink to the root", vec![symlink("root", ".")], (1, 0)),
            ("symlink to a symlink", vec![file("f"), symlink("a", "f"), symlink("b", "a")], (3, 10)),
            ("hard link to an earlier file", vec![file("a/f"), hardlink("a/g", "./a/f")], (2, 10)),
        ] {
            let (entries_count, size) = expected;
            assert_eq!(check(&entries), Ok(Counts { entries: entries_count, size }), "{case}");
        }
    }

    #[test]
    fn unsafe_archives() {
        for (case, entries, message) in [
            ("absolute", vec![file("/etc/passwd")], "\"/etc/passwd\" is an absolute path"),
            ("dot-dot out", vec![file("a/../../b")], "\"a/../../b\" leaves the archive's root"),
            ("dot-dot first", vec![file("../b")], "\"../b\" leaves"),
            ("device", vec![entry("dev/null", Other, None)], "\"dev/null\" is a device"),
            ("root as a file", vec![file("./")], "names the archive's root"),
            ("duplicate", vec![file("./a"), file("a")], "\"./a\" and \"a\" are the same entry"),
            ("duplicate directory", vec![dir("a/"), dir("./a")], "are the same entry"),
            ("absolute symlink", vec![symlink("a", "/etc")], "\"a\" links to the absolute path \"/etc\""),
            ("symlink out", vec![symlink("a/b", "../../etc")], "\"a/b\" links to \"../../etc\", which leaves"),
            ("symlink without target", vec![symlink("a", "")], "\"a\" is a link without a target"),
            ("through a symlink", vec![symlink("a", "b"), file("a/x")], "\"a/x\" goes through the symbolic link \"a\""),
            (
                "dot-dot through a symlink",
                vec![symlink("a", "b/c"), file("a/../x")],
                "\"a/../x\" goes through the symbolic link \"a\"",
            ),
            (
                "symlink target through a symlink",
                vec![symlink("a", "."), symlink("b", "a/..")],
                "\"b\" links to \"a/..\", which goes through the symbolic link \"a\"",
            ),
            ("absolute hard link", vec![hardlink("a", "/etc/passwd")], "\"a\" links to the absolute path"),
            ("hard link out", vec![hardlink("a", "../x")], "\"a\" is a hard link to \"../x\", which leaves"),
            ("hard link to nothing", vec![hardlink("a", "b")], "\"a\" is a hard link to \"b\", not a file before it"),
            ("hard link forward", vec![hardlink("a", "b"), file("b")], "not a file before it"),
            ("hard link to a directory", vec![dir("d"), hardlink("a", "d")], "not a file before it"),
        ] {
            let error = check(&entries).expect_err(case);
            assert!(error.contains(message), "{case}: {error:?} does not say {message:?}");
        }
    }
}
