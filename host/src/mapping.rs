//! The CNAB relocation mapping (CNAB Core 103): original image reference → relocated reference.
//! One type reads it (strictly: a repeated key is refused), looks it up, and writes it.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelocationMapping(BTreeMap<String, String>);

impl RelocationMapping {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        RelocationMapping(pairs.into_iter().collect())
    }

    /// A relocation-mapping.json document; anything but a JSON object of strings is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::bundle::json::from_slice_strict(bytes)
            .map(RelocationMapping)
            .context("a relocation mapping is a JSON object from image reference to relocated reference")
    }

    pub fn get(&self, original: &str) -> Option<&str> {
        self.0.get(original).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The document, indented, with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(&self.0).expect("strings serialize");
        json.push(b'\n');
        json
    }

    /// Writes the document to `path` through a temporary file beside it, so that a mapping
    /// that exists is always complete.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut tmp = crate::files::temporary_beside(path)?;
        tmp.write_all(&self.to_json()).with_context(|| format!("writing {}", path.display()))?;
        crate::files::persist(tmp, path)
    }
}

impl serde::Serialize for RelocationMapping {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}
