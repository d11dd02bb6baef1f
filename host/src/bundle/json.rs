//! The one way ferry parses the JSON documents a bundle carries (bundle.json, relocation
//! mappings): a key that appears twice in an object is refused. serde_json keeps the last of
//! them, another tool may keep the first, so a duplicate would let two readers see two bundles.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// `bytes` parsed as `T`, after refusing any object with a repeated key (the error names its
/// JSON path).
pub fn from_slice_strict<T: de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    check_duplicate_keys(bytes)?;
    Ok(serde_json::from_slice(bytes)?)
}

/// Refuses a document in which an object names a key twice; the error names the key's JSON
/// path. Syntax errors are reported as serde_json reports them.
pub fn check_duplicate_keys(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    Unique { path: "$".into() }.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// Walks a value, remembering where it is so that a duplicate is reported with its path.
struct Unique {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}{}", self.path, super::validate::key(&key));
            if !keys.insert(key) {
                return Err(de::Error::custom(format!("{path} appears twice in one object")));
            }
            map.next_value_seed(Unique { path })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(Unique { path: format!("{}[{i}]", self.path) })?.is_some() {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_refused_with_its_path() {
        let err = check_duplicate_keys(br#"{"a": {"images": {}, "b": [1, {"x": 1, "x": 2}]}}"#).unwrap_err();
        assert!(err.to_string().contains("$.a.b[1].x appears twice"), "{err}");
        let err = check_duplicate_keys(br#"{"images": {}, "images": {"x": 1}}"#).unwrap_err();
        assert!(err.to_string().contains("$.images appears twice"), "{err}");
        check_duplicate_keys(br#"{"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}, {"x": 2}]}"#).unwrap();
        assert!(check_duplicate_keys(b"{} trailing").is_err());
    }
}
