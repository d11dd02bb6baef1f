//! A bundle as a command is given it, opened once: bundle.json read and validated by the one
//! parser, a thick bundle's layout indexed (in place, or a compressed bundle's reachable blobs
//! copied out). The shipped-driver loader and the command both work from this, so no command
//! reads a bundle twice or through two readers.

use crate::archive::InPlace;
use crate::bundle::Bundle;
use crate::cleanup::TempDir;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Opened {
    pub path: PathBuf,
    pub bundle: Bundle,
    pub form: Form,
    /// Where a compressed bundle's blobs were copied; removed with this, or on SIGINT/SIGTERM.
    _scratch: Option<TempDir>,
}

pub enum Form {
    /// A bundle.json: its images and shipped drivers are where its author put them.
    Json,
    /// A thick bundle: its images and shipped drivers are in its layout.
    Thick(Arc<InPlace>),
}

impl Opened {
    /// Opens the bundle.json (or clear-signed bundle) or thick bundle at `path`; a compressed
    /// thick bundle's blobs go into a new directory in `scratch`.
    pub fn open(path: &Path, scratch: &Path) -> Result<Self> {
        if Bundle::is_json_file(path)? {
            return Ok(Opened { path: path.to_owned(), bundle: Bundle::read(path)?, form: Form::Json, _scratch: None });
        }
        let dir = TempDir::new_in(scratch, ".ferry-bundle-")?;
        let stored = InPlace::open(path, dir.path())?;
        let bundle = Bundle::from_bytes(stored.bundle_json.clone(), &format!("{}: bundle.json", path.display()))?;
        Ok(Opened { path: path.to_owned(), bundle, form: Form::Thick(Arc::new(stored)), _scratch: Some(dir) })
    }

    /// The directory of a bundle.json, against which its relative image paths are read.
    pub fn dir(&self) -> &Path {
        crate::files::parent_of(&self.path)
    }

    /// The layout of a thick bundle, or an error saying this command needs one.
    pub fn thick(&self) -> Result<&Arc<InPlace>> {
        match &self.form {
            Form::Thick(stored) => Ok(stored),
            Form::Json => anyhow::bail!("{} is a bundle.json; this needs a thick bundle", self.path.display()),
        }
    }
}
