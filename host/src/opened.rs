//! A bundle as a command is given it, opened once: bundle.json read and validated by the one
//! parser, a thick bundle's layout indexed (in place, or a compressed bundle's reachable blobs
//! copied out; a gzip of stored blocks is read in place), or a published bundle's index read and
//! pinned by digest. The shipped-driver loader and the command both work from this, so no command
//! reads a bundle twice or through two readers.

use crate::archive::InPlace;
use crate::bundle::{Bundle, ImageSpec};
use crate::driver::Origin;
use crate::published::Published;
use crate::registry::Registry;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Opened {
    pub path: PathBuf,
    pub bundle: Bundle,
    pub form: Form,
}

pub enum Form {
    /// A bundle.json: its images and shipped drivers are where its author put them.
    Json,
    /// A thick bundle: its images and shipped drivers are in its layout.
    Thick(Arc<InPlace>),
    /// A bundle published in a registry: its images and shipped drivers are in its repository.
    Published(Arc<Published>),
}

impl Opened {
    /// Opens the bundle.json (or clear-signed bundle) or thick bundle at `path`; a compressed
    /// thick bundle's blobs go into a new directory in `scratch`, removed with this or on
    /// SIGINT/SIGTERM.
    pub fn open(path: &Path, scratch: &Path) -> Result<Self> {
        if Bundle::is_json_file(path)? {
            return Ok(Opened { path: path.to_owned(), bundle: Bundle::read(path)?, form: Form::Json });
        }
        let stored = InPlace::open(path, scratch)?;
        let bundle = Bundle::from_bytes(stored.bundle_json.clone(), &format!("{}: bundle.json", path.display()))?;
        Ok(Opened { path: path.to_owned(), bundle, form: Form::Thick(Arc::new(stored)) })
    }

    /// The file `argument` names, or, when there is no such file and it reads as
    /// `REGISTRY/REPOSITORY[:TAG|@DIGEST]`, the bundle published there, read from `registry`
    /// once and pinned by digest (its `path` is then that pinned reference).
    pub fn open_argument(argument: &Path, scratch: &Path, registry: &Registry) -> Result<Self> {
        let text = argument.to_string_lossy();
        if std::fs::symlink_metadata(argument).is_ok() || !crate::published::is_reference(&text) {
            return Self::open(argument, scratch);
        }
        Self::published(&text, registry)
    }

    /// The bundle published at `reference`, read from `registry` and pinned by digest.
    pub fn published(reference: &str, registry: &Registry) -> Result<Self> {
        let (bundle, published) = crate::published::open(registry, reference)?;
        let path = PathBuf::from(&published.reference);
        Ok(Opened { path, bundle, form: Form::Published(Arc::new(published)) })
    }

    /// Where image `key` (`spec`) is read from: for a published bundle, its repository; else
    /// as bundle.json says (see [`crate::images::origin`]), downloads going into `scratch`.
    pub fn origin(&self, key: &str, spec: &ImageSpec, registry: &Arc<Registry>, scratch: &Path) -> Result<Origin> {
        match &self.form {
            Form::Published(published) => {
                Ok(Origin::Registry { registry: registry.clone(), reference: published.image(key)? })
            }
            Form::Json | Form::Thick(_) => crate::images::origin(key, spec, self.dir(), registry, scratch),
        }
    }

    /// The directory of a bundle.json, against which its relative image paths are read.
    pub fn dir(&self) -> &Path {
        crate::files::parent_of(&self.path)
    }

    /// The layout of a thick bundle, or an error saying this command needs one.
    pub fn thick(&self) -> Result<&Arc<InPlace>> {
        match &self.form {
            Form::Thick(stored) => Ok(stored),
            Form::Json => bail!("{} is a bundle.json; this needs a thick bundle", self.path.display()),
            Form::Published(_) => bail!(
                "{} is a published bundle; this needs a thick bundle: `ferry pull {} -o BUNDLE.tgz` makes one",
                self.path.display(),
                self.path.display()
            ),
        }
    }
}
