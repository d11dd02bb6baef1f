//! Outputs as the engine hands them back: a tar of /cnab/app/outputs, read with every name and
//! size checked, since the run tool wrote it.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Read;

/// The directory outputs must be in (101 §Outputs).
pub const OUTPUTS_DIR: &str = "/cnab/app/outputs/";

/// The values of `wanted` (name → path under /cnab/app/outputs) found in `archive`, a tar whose
/// top directory is `outputs`. Anything else in it is ignored; links are not followed.
pub fn read_archive(archive: &[u8], wanted: &BTreeMap<String, String>, cap: u64) -> Result<BTreeMap<String, Vec<u8>>> {
    let by_path: BTreeMap<String, &String> =
        wanted.iter().map(|(name, path)| (format!("outputs/{}", &path[OUTPUTS_DIR.len()..]), name)).collect();
    let mut found = BTreeMap::new();
    let mut entries = tar::Archive::new(archive);
    for entry in entries.entries().context("reading the outputs archive")? {
        let mut entry = entry.context("reading the outputs archive")?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
        let Some(name) = by_path.get(&path) else { continue };
        if entry.header().entry_type() != tar::EntryType::Regular {
            bail!("output {name:?} ({}) is not a regular file", wanted[*name]);
        }
        if entry.size() > cap {
            bail!("output {name:?} is {} bytes, more than the {cap} an output may hold (--output-limit)", entry.size());
        }
        let mut value = Vec::new();
        entry.by_ref().take(cap + 1).read_to_end(&mut value)?;
        found.insert((*name).clone(), value);
    }
    Ok(found)
}

/// Whether `path` names a file below where it is joined exactly as written: no empty, `.` or
/// `..` component (the runtime matches paths as strings, so `a//b` and `./a` are refused rather
/// than normalized).
pub fn plain_relative(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Where an output may be declared: a file inside /cnab/app/outputs, with no `..` or `.`
/// component that could lead elsewhere.
pub fn check_path(name: &str, path: &str) -> Result<()> {
    let inside = path.strip_prefix(OUTPUTS_DIR).is_some_and(plain_relative);
    if !inside {
        bail!("output {name:?}: its path {path:?} is not a file inside {OUTPUTS_DIR}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn declared_outputs_are_read_and_capped() {
        let wanted = BTreeMap::from([("url".to_owned(), "/cnab/app/outputs/url".to_owned())]);
        let tar = archive(&[("outputs/url", b"http://shop"), ("outputs/other", b"x")]);
        assert_eq!(read_archive(&tar, &wanted, 64).unwrap()["url"], b"http://shop");
        let error = read_archive(&tar, &wanted, 4).unwrap_err().to_string();
        assert!(error.contains("\"url\"") && error.contains("more than the 4"), "{error}");
    }

    #[test]
    fn an_output_path_must_stay_inside_the_outputs_directory() {
        assert!(check_path("a", "/cnab/app/outputs/a").is_ok());
        assert!(check_path("a", "/cnab/app/outputs/sub/a").is_ok());
        for bad in [
            "/cnab/app/outputs/../run",
            "/cnab/app/outputs/",
            "/etc/passwd",
            "/cnab/app/outputs//a",
            "/cnab/app/outputs/./a",
        ] {
            assert!(check_path("a", bad).is_err(), "{bad}");
        }
    }
}
