//! A chart's metadata: read from Chart.yaml, stored as the config blob `helm push` writes.

use serde::{Deserialize, Serialize};
use yaml_rust2::{Yaml, YamlLoader};

/// The fields of Chart.yaml this driver keeps, in the order helm writes them in a chart's config.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
}

impl Metadata {
    /// Parses Chart.yaml; `name` and `version` are required.
    pub fn from_chart_yaml(text: &str) -> Result<Self, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("Chart.yaml is not YAML: {e}"))?;
        let chart = match docs.first() {
            Some(chart @ Yaml::Hash(_)) => chart,
            _ => return Err("Chart.yaml is not a mapping".into()),
        };
        let required = |key: &str| scalar(&chart[key]).ok_or_else(|| format!("Chart.yaml has no {key}"));
        Ok(Metadata {
            name: required("name")?,
            version: required("version")?,
            description: scalar(&chart["description"]),
            api_version: scalar(&chart["apiVersion"]),
            app_version: scalar(&chart["appVersion"]),
            r#type: scalar(&chart["type"]),
        })
    }

    /// Parses a stored config blob (helm's has more fields; they are ignored).
    pub fn from_config(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("the chart's config is not chart metadata: {e}"))
    }

    pub fn config_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serializes")
    }

    /// The chart version as an OCI tag, as helm makes it: `+` (not allowed in a tag) becomes `_`,
    /// and so does anything else outside `[A-Za-z0-9._-]`; `v` goes before a version starting with
    /// `.` or `-`.
    pub fn tag(&self) -> String {
        ferry_driver_sdk::names::tag_for(&self.version, "v")
    }
}

/// A non-empty scalar as text: YAML reads `version: 1.0` as a number, helm as the string "1.0".
fn scalar(value: &Yaml) -> Option<String> {
    let text = match value {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// The name of the chart's own Chart.yaml among a chart archive's regular files: exactly one
/// top-level directory must hold one (subcharts' are deeper).
pub fn chart_yaml_name<'a>(files: impl IntoIterator<Item = &'a str>) -> Result<&'a str, String> {
    let mut found = files.into_iter().filter(|name| {
        let name = name.strip_prefix("./").unwrap_or(name);
        matches!(name.split_once('/'), Some((dir, "Chart.yaml")) if !dir.is_empty())
    });
    match (found.next(), found.next()) {
        (Some(name), None) => Ok(name),
        (None, _) => Err("no <chart>/Chart.yaml in the archive".into()),
        (Some(a), Some(b)) => Err(format!("more than one chart in the archive ({a}, {b})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART_YAML: &str = "\
# A comment
apiVersion: v2
name: shop
description: The shop's web front
type: application
version: 1.2.3+build.4
appVersion: 1.0
keywords: [shop]
";

    #[test]
    fn chart_yaml_to_config_json() {
        let metadata = Metadata::from_chart_yaml(CHART_YAML).unwrap();
        assert_eq!(
            String::from_utf8(metadata.config_json()).unwrap(),
            r#"{"name":"shop","version":"1.2.3+build.4","description":"The shop's web front","apiVersion":"v2","appVersion":"1.0","type":"application"}"#
        );
        assert_eq!(Metadata::from_config(&metadata.config_json()).unwrap(), metadata);
    }

    #[test]
    fn optional_fields_are_left_out() {
        let metadata = Metadata::from_chart_yaml("name: a\nversion: 2\n").unwrap();
        assert_eq!(String::from_utf8(metadata.config_json()).unwrap(), r#"{"name":"a","version":"2"}"#);
    }

    #[test]
    fn name_and_version_are_required() {
        assert_eq!(Metadata::from_chart_yaml("name: a\n").unwrap_err(), "Chart.yaml has no version");
        assert_eq!(Metadata::from_chart_yaml("version: 1.0.0\nname: ''\n").unwrap_err(), "Chart.yaml has no name");
        assert_eq!(Metadata::from_chart_yaml("- a\n").unwrap_err(), "Chart.yaml is not a mapping");
        assert!(Metadata::from_chart_yaml("name: [a\n").unwrap_err().starts_with("Chart.yaml is not YAML"));
    }

    #[test]
    fn helm_config_with_more_fields() {
        let config = br#"{"name":"nginx","home":"https://x","version":"15.0.0","apiVersion":"v2","dependencies":[]}"#;
        let metadata = Metadata::from_config(config).unwrap();
        assert_eq!((metadata.name.as_str(), metadata.version.as_str()), ("nginx", "15.0.0"));
    }

    #[test]
    fn tags() {
        let tag = |version: &str| Metadata::from_chart_yaml(&format!("name: a\nversion: '{version}'\n")).unwrap().tag();
        assert_eq!(tag("1.2.3"), "1.2.3");
        assert_eq!(tag("1.2.3+build.4"), "1.2.3_build.4");
        assert_eq!(tag("1.0.0-rc.1"), "1.0.0-rc.1");
        assert_eq!(tag("-1 ~x"), "v-1__x");
        assert_eq!(tag(&"9".repeat(200)).len(), 128);
    }

    #[test]
    fn finds_the_charts_own_chart_yaml() {
        let files = ["shop/Chart.yaml", "shop/values.yaml", "shop/charts/db/Chart.yaml"];
        assert_eq!(chart_yaml_name(files), Ok("shop/Chart.yaml"));
        assert_eq!(chart_yaml_name(["./shop/Chart.yaml"]), Ok("./shop/Chart.yaml"));
        assert!(chart_yaml_name(["Chart.yaml", "shop/charts/db/Chart.yaml"]).is_err());
        assert!(chart_yaml_name(["a/Chart.yaml", "b/Chart.yaml"]).unwrap_err().contains("more than one chart"));
    }
}
