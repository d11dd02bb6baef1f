//! The operator's grant: where a relocation may write (a directory or a registry prefix, cut
//! down to one image's place), and the checks on every name a driver hands the host for it:
//! destinations, file names inside them, repositories and tags.

use super::destination::DestinationHandle;
use super::dry_run::{DryRun, Tally};
use super::host::{HostError, HostResult};
use crate::oci::{self, Layout};
use crate::registry::Registry;
use oci_client::Reference;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where the operator allows a relocation to write: a directory or a registry prefix, and,
/// once an image's relocation starts, only that image's own place in it.
#[derive(Clone)]
pub struct DestinationGrant {
    to: Granted,
    /// The one destination (and what lies below it) this operation may open.
    place: Option<String>,
    /// A dry run's grant: destinations are looked at, not written to; what would be sent is
    /// counted here.
    dry_run: Option<Arc<Tally>>,
}

#[derive(Clone)]
enum Granted {
    /// A directory; destinations are OCI layouts in it or below it.
    Directory(PathBuf),
    /// Repositories under `prefix` (`host[:port][/path]`) of a registry; `jobs` uploads at once.
    Registry { registry: Arc<Registry>, prefix: String, jobs: usize },
}

/// A repository path: lowercase alphanumerics separated by `.`, `_`, `__`, `-` and `/`.
fn valid_repository(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.as_bytes()[0].is_ascii_alphanumeric()
        })
}

/// Repository `relative` under `prefix` (`host[:port][/path]`).
pub fn repository_under(prefix: &str, relative: &str) -> Reference {
    let (host, path) = prefix.split_once('/').unwrap_or((prefix, ""));
    let repository = if path.is_empty() { relative.to_owned() } else { format!("{path}/{relative}") };
    Reference::with_tag(host.to_owned(), repository, "latest".to_owned())
}

impl DestinationGrant {
    pub fn directory(root: PathBuf) -> Self {
        DestinationGrant { to: Granted::Directory(root), place: None, dry_run: None }
    }

    pub fn registry(registry: Arc<Registry>, prefix: String, jobs: usize) -> Self {
        DestinationGrant { to: Granted::Registry { registry, prefix, jobs }, place: None, dry_run: None }
    }

    /// This grant for a dry run: the driver relocates as it would, into destinations that
    /// answer what they hold but take nothing; `tally` counts what they would have taken.
    pub fn dry_run(self, tally: Arc<Tally>) -> Self {
        DestinationGrant { dry_run: Some(tally), ..self }
    }

    /// This grant cut down to `place` and what lies below it: one image's relocation cannot
    /// open another image's destination.
    pub(super) fn narrowed(&self, place: &str) -> Self {
        DestinationGrant { to: self.to.clone(), place: Some(place.to_owned()), dry_run: self.dry_run.clone() }
    }

    /// Opens `relative` (empty: the grant itself) as a destination, refusing anything outside.
    pub(super) fn open(&self, relative: &str) -> HostResult<DestinationHandle> {
        if let Some(place) = self.place.as_deref().filter(|p| !p.is_empty()) {
            let below = relative.strip_prefix(place).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if !below {
                return Err(HostError::denied(format!(
                    "destination {relative:?} is not this image's place {place:?} in the grant"
                )));
            }
        }
        match &self.to {
            Granted::Directory(root) => {
                let path = Path::new(relative);
                if !crate::files::stays_inside(path) {
                    return Err(HostError::denied(format!(
                        "destination {relative:?} is outside the granted directory {}",
                        root.display()
                    )));
                }
                let display = if relative.is_empty() { root.clone() } else { root.join(path) };
                if let Some(tally) = &self.dry_run {
                    return Ok(DestinationHandle::DryRun(DryRun::directory(display, tally.clone())));
                }
                std::fs::create_dir_all(root).map_err(HostError::failed)?;
                let dir = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())
                    .map_err(HostError::failed)?;
                let layout = Layout::create_beneath(&dir, path, display)
                    .map_err(|e| HostError::denied(format!("destination {relative:?}: {e:#}")))?;
                Ok(DestinationHandle::Directory(Arc::new(layout)))
            }
            Granted::Registry { registry, prefix, jobs } => {
                if !valid_repository(relative) {
                    return Err(HostError::denied(format!(
                        "destination {relative:?} is not a repository under the granted prefix {prefix}"
                    )));
                }
                let target = repository_under(prefix, relative);
                if let Some(tally) = &self.dry_run {
                    return Ok(DestinationHandle::DryRun(DryRun::registry(registry.clone(), target, tally.clone())));
                }
                Ok(DestinationHandle::Registry { registry: registry.clone(), target, jobs: *jobs })
            }
        }
    }
}

/// `name` as a relative path that stays inside the destination and takes none of the names the
/// layout keeps for itself (a disk named `index.json` would replace the layout's index).
pub(super) fn inside<'a>(what: &str, name: &'a str) -> HostResult<&'a Path> {
    let path = Path::new(name);
    if name.is_empty() || !crate::files::stays_inside(path) {
        return Err(HostError::denied(format!("{what} {name:?} is outside the destination")));
    }
    let first = path.components().find(|c| matches!(c, Component::Normal(_))).and_then(|c| c.as_os_str().to_str());
    let first = first.unwrap_or_default();
    if oci::is_reserved_name(first)
        || path.components().any(|c| c.as_os_str().to_string_lossy().starts_with(".partial"))
    {
        return Err(HostError::denied(format!("{what} {name:?} is a name the destination layout reserves")));
    }
    Ok(path)
}

/// OCI's tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (so `.` and `..` are not tags).
pub(super) fn check_tag(tag: &Option<String>) -> HostResult<()> {
    let Some(t) = tag else { return Ok(()) };
    let first_ok = t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || t.len() > 128 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(HostError::invalid(format!("{t:?} is not a valid tag")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inside_a_destination_stay_inside_and_leave_the_layouts_own_alone() {
        for ok in ["disk.qcow2", "site/index.html", "./disk.raw"] {
            assert!(inside("file name", ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("", "outside"),
            ("../x", "outside"),
            ("/etc/passwd", "outside"),
            ("index.json", "reserves"),
            ("./index.json", "reserves"),
            ("blobs/sha256/abc", "reserves"),
            ("oci-layout", "reserves"),
            (".ferry-made", "reserves"),
            ("a/.partial-1-2", "reserves"),
        ] {
            let err = match inside("file name", bad).unwrap_err() {
                HostError::Guest(e) => format!("{e:?}"),
                HostError::Trap(e) => e.to_string(),
            };
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn tags_and_repositories_follow_the_distribution_grammar() {
        for ok in ["1.0", "latest", "_x", "v1.2.3-rc.1"] {
            assert!(check_tag(&Some(ok.into())).is_ok(), "{ok}");
        }
        for bad in [".", "..", "...", "-x", "", "a/b", &"x".repeat(129)] {
            assert!(check_tag(&Some(bad.into())).is_err(), "{bad}");
        }
        for ok in ["app", "team/app", "a.b/c_d/e-f", "a__b"] {
            assert!(valid_repository(ok), "{ok}");
        }
        for bad in ["", "App", "/app", "app/", "-app", "team//app"] {
            assert!(!valid_repository(bad), "{bad}");
        }
        let at = repository_under("site.example:5000/mirror", "team/app");
        assert_eq!((at.registry(), at.repository()), ("site.example:5000", "mirror/team/app"));
    }

    #[test]
    fn a_narrowed_grant_opens_only_its_place_and_below() {
        let dir = tempfile::tempdir().unwrap();
        let grant = DestinationGrant::directory(dir.path().join("site")).narrowed("web/app");
        for ok in ["web/app", "web/app/sub"] {
            assert!(grant.open(ok).is_ok(), "{ok}");
        }
        for bad in ["web/other", "web/apple", "web", "../x"] {
            assert!(grant.open(bad).is_err(), "{bad}");
        }
        assert!(!dir.path().join("site/web/other").exists());
    }
}
