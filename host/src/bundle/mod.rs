//! bundle.json: the CNAB Core 1.2 model, and validation of its structure and of the spec's prose.
//!
//! A [`Bundle`] keeps the exact bytes it was read from: they are what gets signed and what a
//! thick bundle carries.

mod definitions;
pub mod file;
pub mod json;
mod model;
mod structure;
mod suggest;
mod validate;

pub use model::*;
pub use validate::{Problem, Rule, key, validate, warnings};

use anyhow::{Context, Result, bail};
use std::path::Path;

/// The largest bundle.json ferry reads; real ones are kilobytes.
pub const MAX_BUNDLE_JSON: u64 = 16 << 20;

/// A bundle.json: its exact bytes and what they say.
#[derive(Clone, Debug)]
pub struct Bundle {
    bytes: Vec<u8>,
    pub doc: BundleDoc,
}

impl Bundle {
    /// Parses and validates `bytes`; every problem is listed with its JSON path.
    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Self> {
        if bytes.len() as u64 > MAX_BUNDLE_JSON {
            bail!("{origin}: {} bytes is more than the {MAX_BUNDLE_JSON} bytes allowed for a bundle.json", bytes.len());
        }
        let problems = validate(&bytes);
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            bail!("{origin} is not a valid CNAB bundle:\n{}", list.join("\n"));
        }
        let doc = serde_json::from_slice(&bytes).with_context(|| origin.to_owned())?;
        Ok(Bundle { bytes, doc })
    }

    /// Whether the file at `path` is a bundle.json (JSON, or clear-signed JSON) rather than a
    /// thick bundle (a tar); a file that is neither is an error saying what it seems to be.
    pub fn is_json_file(path: &Path) -> Result<bool> {
        Ok(file::identify(path)? != file::Kind::Thick)
    }

    /// A bundle.json, or the JSON inside a clear-signed `bundle.cnab` (its signature unchecked).
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_bytes(Self::read_json(path)?, &path.display().to_string())
    }

    /// The bytes of a bundle.json file, or of the JSON a clear-signed one holds, capped.
    pub fn read_json(path: &Path) -> Result<Vec<u8>> {
        let kind = file::identify(path)?;
        let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_BUNDLE_JSON + 1), &mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() as u64 > MAX_BUNDLE_JSON {
            bail!("{}: more than the {MAX_BUNDLE_JSON} bytes allowed for a bundle.json", path.display());
        }
        match kind {
            file::Kind::ClearSigned => file::clear_signed_json(&bytes).with_context(|| path.display().to_string()),
            _ => Ok(bytes),
        }
    }

    /// The bytes exactly as given.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Every image, invocation images first (`invocationImages[N]`), then `images` by key.
    pub fn all_images(&self) -> Vec<(String, &ImageSpec)> {
        let invocation =
            self.doc.invocation_images.iter().enumerate().map(|(i, img)| (format!("invocationImages[{i}]"), img));
        let images = self.doc.images.iter().flatten().map(|(k, img)| (k.clone(), img));
        invocation.chain(images).collect()
    }
}
