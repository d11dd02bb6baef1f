//! Where each image of a bundle goes, decided before any byte moves and without any IO: the
//! destinations the operator gave (`--to`, `--map`) parsed once, every image named under them
//! (docs/relocation.md), two images landing on one name with different content refused, and a
//! `--map` key that names no image refused.

use crate::bundle::Location;
use crate::oci::Digest;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A directory destination is written `file:///absolute/path`.
const FILE_SCHEME: &str = "file://";

/// Where the operator lets images go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Repositories under `host[:port][/path]` of a registry.
    Registry(String),
    /// OCI layouts (and files) under a directory.
    Directory(PathBuf),
}

impl Destination {
    /// `REGISTRY[/PREFIX]` (no scheme, no trailing slash) or `file:///DIRECTORY`; `flag` names
    /// where the text came from, for the error.
    pub fn parse(text: &str, flag: &str) -> Result<Self> {
        if let Some(path) = text.strip_prefix(FILE_SCHEME) {
            if !path.starts_with('/') {
                bail!(
                    "{flag} {text:?}: a directory destination is file:// and an absolute path, such as file:///srv/site"
                );
            }
            return Ok(Destination::Directory(PathBuf::from(path)));
        }
        if text.starts_with('/') || text.starts_with("./") || text.starts_with("../") {
            bail!("{flag} {text:?} looks like a path; a directory destination is written file:///ABSOLUTE/PATH");
        }
        let prefix = text.trim_end_matches('/');
        if prefix.is_empty() || prefix.contains("://") {
            bail!("{flag} {text:?}: give REGISTRY[/PREFIX], such as registry.example:5000/site, or file:///DIRECTORY");
        }
        Ok(Destination::Registry(prefix.to_owned()))
    }
}

/// The operator's destinations: `--to` for every image `--map` does not name.
#[derive(Clone, Debug, Default)]
pub struct Destinations {
    pub to: Option<Destination>,
    /// By original reference or image key: a registry with the repository to use, or a
    /// directory the image goes into as it is.
    pub map: BTreeMap<String, (Destination, String)>,
    /// Registry images go by digest only, their tags left behind: many images pushed into one
    /// repository (a published bundle's) would otherwise fight over their tags.
    pub by_digest: bool,
}

impl Destinations {
    pub fn parse(to: Option<&str>, map: &BTreeMap<String, String>) -> Result<Self> {
        let to = to.map(|to| Destination::parse(to, "--to")).transpose()?;
        let map = map
            .iter()
            .map(|(image, text)| {
                let target = match Destination::parse(text, "--map destination")? {
                    Destination::Registry(name) => match name.split_once('/') {
                        Some((registry, repository)) => {
                            (Destination::Registry(registry.to_owned()), repository.to_owned())
                        }
                        None => bail!("--map: {text:?} for image {image} names no repository (REGISTRY/REPOSITORY)"),
                    },
                    directory => (directory, String::new()),
                };
                Ok((image.clone(), target))
            })
            .collect::<Result<_>>()?;
        Ok(Destinations { to, map, by_digest: false })
    }
}

/// An image as planning needs it.
pub struct Image<'a> {
    pub key: &'a str,
    pub reference: &'a str,
    pub location: Location,
    /// The digest of its stored root.
    pub digest: &'a Digest,
}

/// Where one image goes: a repository (or, in a directory, a subdirectory) under a destination,
/// keeping the tag its reference had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub destination: Destination,
    pub repository: String,
    pub tag: Option<String>,
}

/// Every image's target, in the order given. `bundle` is the bundle's name, which names the
/// repositories of images that are files or URLs rather than registry images.
pub fn plan(bundle: &str, images: &[Image], destinations: &Destinations) -> Result<Vec<Target>> {
    let mut names: BTreeMap<String, (&str, &Digest)> = BTreeMap::new();
    let mut targets = Vec::new();
    for image in images {
        let (repository, tag) = match image.location {
            Location::Registry if destinations.by_digest => (repository_and_tag(image.reference)?.0, None),
            Location::Registry => repository_and_tag(image.reference)?,
            Location::Url | Location::Path => (repository_for_file(bundle, image.key), None),
        };
        let mapped = destinations.map.get(image.reference).or_else(|| destinations.map.get(image.key));
        let target = match (mapped, &destinations.to) {
            (Some((destination, mapped_repository)), _) => {
                Target { destination: destination.clone(), repository: mapped_repository.clone(), tag }
            }
            (None, Some(to)) => Target { destination: to.clone(), repository, tag },
            (None, None) => bail!("image {} ({}) is not in --map, and there is no --to", image.key, image.reference),
        };
        let full = format!("{}:{}", name_of(&target), target.tag.clone().unwrap_or_else(|| image.digest.to_string()));
        if let Some((other, digest)) = names.get(&full)
            && *digest != image.digest
        {
            bail!("images {other} and {} would both be relocated to {full}, with different content", image.key);
        }
        names.insert(full, (image.key, image.digest));
        targets.push(target);
    }
    if let Some(unknown) =
        destinations.map.keys().find(|k| !images.iter().any(|i| i.key == k.as_str() || i.reference == k.as_str()))
    {
        bail!("--map names {unknown:?}, which is neither an image reference nor an image key of the bundle");
    }
    Ok(targets)
}

fn name_of(target: &Target) -> String {
    match &target.destination {
        Destination::Registry(prefix) => format!("{prefix}/{}", target.repository),
        Destination::Directory(dir) => format!("{}/{}", dir.display(), target.repository),
    }
}

/// Where a registry image goes under a prefix: its repository path, with its tag if it had one.
pub fn repository_and_tag(reference: &str) -> Result<(String, Option<String>)> {
    let parsed =
        crate::reference::parse(reference).ok_or_else(|| anyhow::anyhow!("{reference:?} is not an image reference"))?;
    Ok((parsed.repository().to_owned(), parsed.tag().map(str::to_owned)))
}

/// A repository for an image that is a file or URL rather than a registry image:
/// `BUNDLE-NAME/KEY`, in the characters a repository allows.
fn repository_for_file(bundle: &str, key: &str) -> String {
    let part = |s: &str| {
        let cleaned: String =
            s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let parts: Vec<&str> = cleaned.split('-').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() { "image".to_owned() } else { parts.join("-") }
    };
    format!("{}/{}", part(bundle), part(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image<'a>(key: &'a str, reference: &'a str, location: Location, digest: &'a Digest) -> Image<'a> {
        Image { key, reference, location, digest }
    }

    fn to(text: &str) -> Destinations {
        Destinations::parse(Some(text), &BTreeMap::new()).unwrap()
    }

    #[test]
    fn images_keep_their_path_and_tag_under_the_prefix_and_files_are_named_by_bundle_and_key() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let images = [
            image("invocationImages[0]", "source.example:5000/team/app:1.0", Location::Registry, &a),
            image("Disk Image", "disks/root.qcow2", Location::Path, &b),
            image("hub", "nginx", Location::Registry, &b),
        ];
        let targets = plan("My Shop", &images, &to("site.example/mirror/")).unwrap();
        let registry = Destination::Registry("site.example/mirror".into());
        assert_eq!(
            targets,
            [
                Target { destination: registry.clone(), repository: "team/app".into(), tag: Some("1.0".into()) },
                Target { destination: registry.clone(), repository: "my-shop/disk-image".into(), tag: None },
                Target { destination: registry, repository: "library/nginx".into(), tag: Some("latest".into()) },
            ]
        );
        let dir = plan("shop", &images[..1], &to("file:///srv/site")).unwrap();
        assert_eq!(dir[0].destination, Destination::Directory("/srv/site".into()));
        // An invocation image that is a file, as in docs/driver-authors.md.
        let installer = [image("invocationImages[0]", "installer.sh", Location::Path, &a)];
        let targets = plan("my-app", &installer, &to("site.example/site")).unwrap();
        assert_eq!(targets[0].repository, "my-app/invocationimages-0");
    }

    #[test]
    fn two_images_on_one_name_with_different_content_are_refused_the_same_content_is_not() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let clash = [
            image("one", "x.example/team/app:1", Location::Registry, &a),
            image("two", "y.example/team/app:1", Location::Registry, &b),
        ];
        let err = plan("b", &clash, &to("site.example")).unwrap_err().to_string();
        assert!(err.contains("one and two") && err.contains("site.example/team/app:1"), "{err}");
        let same = [
            image("one", "x.example/team/app:1", Location::Registry, &a),
            image("two", "y.example/team/app:1", Location::Registry, &a),
        ];
        assert_eq!(plan("b", &same, &to("site.example")).unwrap().len(), 2);
    }

    #[test]
    fn a_map_sends_images_by_key_or_reference_and_refuses_what_it_does_not_know() {
        let a = Digest::of(b"a");
        let images = [image("web", "x.example/team/web:2", Location::Registry, &a)];
        let map = |key: &str, value: &str| -> BTreeMap<String, String> { [(key.into(), value.into())].into() };
        for key in ["web", "x.example/team/web:2"] {
            let destinations = Destinations::parse(None, &map(key, "site.example/elsewhere/web")).unwrap();
            let targets = plan("b", &images, &destinations).unwrap();
            assert_eq!(targets[0].destination, Destination::Registry("site.example".into()));
            assert_eq!(targets[0].repository, "elsewhere/web");
        }
        let unknown = Destinations::parse(Some("site.example"), &map("nginx", "site.example/x/y")).unwrap();
        let err = plan("b", &images, &unknown).unwrap_err().to_string();
        assert!(err.contains("\"nginx\""), "{err}");
        assert!(Destinations::parse(None, &map("web", "site.example")).is_err(), "a map entry needs a repository");
        let err = plan("b", &images, &Destinations::default()).unwrap_err().to_string();
        assert!(err.contains("no --to"), "{err}");
        let err = Destination::parse("/srv/site", "--to").unwrap_err().to_string();
        assert!(err.contains("file:///"), "{err}");
        for bad in ["https://site.example", "file://relative/dir", "", "./site"] {
            assert!(Destination::parse(bad, "--to").is_err(), "{bad:?}");
        }
    }
}
