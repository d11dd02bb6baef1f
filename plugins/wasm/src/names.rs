//! The component's file name: what a directory relocation writes, and the title a registry shows.

use ferry_driver_sdk::names::{file_name, repository_name};

/// The name when nothing else gives one.
const FALLBACK: &str = "component.wasm";

/// The file name of a component from a file or URL: the last segment of its path.
pub fn of_location(location: &str) -> String {
    file_name(location).unwrap_or(FALLBACK).to_owned()
}

/// The file name of a component from a registry: the layer's title annotation, else the
/// repository's last segment with `.wasm` (`registry/team/installer:1` → `installer.wasm`).
pub fn of_registry_layer(title: Option<&str>, reference: &str) -> String {
    if let Some(title) = title.and_then(file_name) {
        return title.to_owned();
    }
    repository_name(reference).map_or_else(|| FALLBACK.to_owned(), |name| format!("{name}.wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_files_and_urls() {
        assert_eq!(of_location("installer.wasm"), "installer.wasm");
        assert_eq!(of_location("build/installer.wasm"), "installer.wasm");
        assert_eq!(of_location("https://example.com/dl/installer.wasm?token=x"), "installer.wasm");
        assert_eq!(of_location("https://example.com/dl/"), "component.wasm");
        assert_eq!(of_location("build/.."), "component.wasm");
    }

    #[test]
    fn names_from_registries() {
        for (title, reference, expected) in [
            (Some("app.wasm"), "localhost:5000/team/installer:1", "app.wasm"),
            (Some("../app.wasm"), "localhost:5000/team/installer:1", "app.wasm"),
            (Some("dir/"), "localhost:5000/team/installer:1", "installer.wasm"),
            (Some(""), "localhost:5000/team/installer@sha256:abcd", "installer.wasm"),
            (None, "localhost:5000/team/installer:1@sha256:abcd", "installer.wasm"),
            (None, "installer", "installer.wasm"),
            (None, "localhost:5000/team/..:1", "component.wasm"),
        ] {
            assert_eq!(of_registry_layer(title, reference), expected, "{title:?} {reference}");
        }
    }
}
