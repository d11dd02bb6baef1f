//! A ferry driver for Helm charts (imageType `helm`), written only against `wit/` and the guest SDK.
//!
//! A chart is stored the way `helm push` stores it, so that helm can pull it from wherever it is
//! relocated: an OCI manifest whose config is the chart's metadata as JSON and whose one layer is
//! the chart's .tgz. A chart names the images it deploys in its values files, so this driver reads
//! the bundle's relocation mapping (`reads_mapping`) and rewrites those references when it
//! relocates the chart; that is the one time chart bytes enter the guest.

mod archive;
mod metadata;
mod references;

use ferry_driver_sdk::artifact::{self, OCI_MANIFEST, TITLE};
use ferry_driver_sdk::{
    Descriptor, Destination, Driver, DriverInfo, Error, Image, Result, Source, SourceKind, Store, Summary,
    TarEntryKind, export_driver, info, warn,
};
use metadata::Metadata;
use references::Rewriter;

const CONFIG_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
const CHART_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The most bytes one `read` returns.
const READ_CHUNK: u32 = 1 << 20;
/// The largest chart `relocate` rewrites in memory (and the host's default cap on one `put-blob`).
const MAX_CHART: u64 = 16 << 20;
/// The largest Chart.yaml or config read.
const MAX_METADATA: u64 = 1 << 20;

struct HelmDriver;

impl Driver for HelmDriver {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "helm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            image_types: vec!["helm".into()],
            reads_mapping: true,
        }
    }

    fn fetch(image: Image, origin: &Source, store: &Store) -> Result<Descriptor> {
        let root = match origin.kind() {
            SourceKind::File | SourceKind::Http => fetch_archive(&image, origin, store)?,
            SourceKind::Registry | SourceKind::Layout => fetch_manifest(&image, origin, store)?,
        };
        store.set_root(&root)?;
        Ok(root)
    }

    fn verify(_image: Image, stored: &Source) -> Result<()> {
        let chart = StoredChart::read(stored)?;
        check_gzip(stored, Some(&chart.manifest.chart.digest))?;
        let in_archive = chart_yaml(stored, Some(&chart.manifest.chart.digest))?;
        if (&in_archive.name, &in_archive.version) != (&chart.metadata.name, &chart.metadata.version) {
            return Err(Error::invalid(format!(
                "the chart's Chart.yaml says {} {}, its config says {} {}",
                in_archive.name, in_archive.version, chart.metadata.name, chart.metadata.version
            )));
        }
        Ok(())
    }

    fn relocate(
        image: Image,
        stored: &Source,
        destination: &Destination,
        mapping: Vec<(String, String)>,
    ) -> Result<String> {
        let chart = StoredChart::read(stored)?;
        let rewriter = Rewriter::new(&mapping);
        let rewritten = if rewriter.is_empty() { None } else { Some(rewrite(stored, &chart, &rewriter)?) };
        let rewritten = rewritten.filter(|rewritten| rewritten.references > 0);
        let references = rewritten.as_ref().map_or(0, |rewritten| rewritten.references);
        info!("{}: rewrote {references} image references in the chart's values", image.key);
        match rewritten {
            Some(rewritten) => push_rewritten(&image, stored, destination, &chart, rewritten.bytes),
            None => destination.copy_artifact(stored, &chart.root, Some(&chart.metadata.tag())),
        }
    }

    fn inspect(_image: Image, stored: &Source) -> Result<Summary> {
        let chart = StoredChart::read(stored)?;
        let Metadata { name, version, app_version, .. } = chart.metadata;
        let mut details = vec![("chart".into(), name), ("version".into(), version)];
        details.extend(app_version.map(|v| ("app-version".into(), v)));
        // Every blob of the stored chart once: its manifest, config and layers.
        let layers: u64 = chart.manifest.layers.iter().map(|l| l.size).sum();
        Ok(Summary {
            size: chart.root.size + chart.manifest.config.size + layers,
            digest: chart.root.digest,
            media_type: chart.root.media_type,
            platforms: Vec::new(),
            details,
        })
    }
}

/// A chart .tgz from a file or URL: its Chart.yaml becomes the config, the archive the layer.
fn fetch_archive(image: &Image, origin: &Source, store: &Store) -> Result<Descriptor> {
    check_gzip(origin, None)?;
    let metadata = chart_yaml(origin, None)?;
    let layer = store.copy_blob(origin, None, CHART_TYPE)?;
    artifact::check_content_digest(image, "chart archive", &layer.digest, None)?;
    let config = store.put_document(CONFIG_TYPE, &metadata.config_json())?;
    let mut manifest = artifact::manifest(None, &config, vec![layer.to_json()]);
    manifest["annotations"] = serde_json::json!({
        TITLE: metadata.name,
        "org.opencontainers.image.version": metadata.version,
    });
    let mut root = store.put_document(OCI_MANIFEST, manifest.to_string().as_bytes())?;
    root.artifact_type = Some(CONFIG_TYPE.into());
    info!(
        "{}: stored chart {} {} ({} bytes) as {}",
        image.key, metadata.name, metadata.version, layer.size, root.digest
    );
    Ok(root)
}

/// A chart pushed to a registry (or stored in a layout): its manifest is stored as it is.
fn fetch_manifest(image: &Image, origin: &Source, store: &Store) -> Result<Descriptor> {
    let document = origin.manifest(None)?;
    artifact::check_content_digest(image, "chart's manifest", &document.digest, None)?;
    let manifest = HelmManifest::parse(&document.media_type, &document.bytes)?;
    store.copy_blob(origin, Some(&manifest.config.digest), CONFIG_TYPE)?;
    for layer in &manifest.layers {
        store.copy_blob(origin, Some(&layer.digest), &layer.media_type)?;
    }
    let mut root = store.put_document(&document.media_type, &document.bytes)?;
    root.artifact_type = Some(CONFIG_TYPE.into());
    info!("{}: stored chart manifest {} from {}", image.key, root.digest, origin.location());
    Ok(root)
}

/// Helm charts are gzipped tars (`tar-entries` would accept any tar).
fn check_gzip(source: &Source, digest: Option<&str>) -> Result<()> {
    if source.read(digest, 0, 2)? != [0x1f, 0x8b] {
        let what = digest.map_or_else(|| source.location(), str::to_string);
        return Err(Error::invalid(format!("{what} is not a gzipped chart archive")));
    }
    Ok(())
}

/// The chart's own Chart.yaml inside `source`'s archive (blob `digest`, or the source itself).
fn chart_yaml(source: &Source, digest: Option<&str>) -> Result<Metadata> {
    let entries = source.tar_entries(digest)?;
    let files = entries.iter().filter(|e| e.kind == TarEntryKind::File).map(|e| e.name.as_str());
    let name = metadata::chart_yaml_name(files).map_err(Error::invalid)?;
    let file = source.tar_entry(digest, name)?;
    let text = String::from_utf8(read_blob(&file, None, MAX_METADATA)?)
        .map_err(|_| Error::invalid(format!("{name} is not UTF-8")))?;
    Metadata::from_chart_yaml(&text).map_err(|e| Error::invalid(format!("{name}: {e}")))
}

/// All of blob `digest` (or of the source itself), refused when over `max` bytes.
fn read_blob(source: &Source, digest: Option<&str>, max: u64) -> Result<Vec<u8>> {
    let size = source.size(digest)?;
    let what = digest.map_or_else(|| source.location(), str::to_string);
    if size > max {
        return Err(Error::unsupported(format!(
            "{what} is {size} bytes; this driver reads at most {max} bytes into memory"
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    while (bytes.len() as u64) < size {
        let chunk = source.read(digest, bytes.len() as u64, READ_CHUNK)?;
        if chunk.is_empty() {
            return Err(Error::invalid(format!("{what} ended after {} of {size} bytes", bytes.len())));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A stored chart: its root, manifest, and metadata from its config.
struct StoredChart {
    root: Descriptor,
    manifest: HelmManifest,
    metadata: Metadata,
}

impl StoredChart {
    fn read(stored: &Source) -> Result<Self> {
        let document = stored.manifest(None)?;
        let manifest = HelmManifest::parse(&document.media_type, &document.bytes)?;
        let config = read_blob(stored, Some(&manifest.config.digest), MAX_METADATA)?;
        let metadata = Metadata::from_config(&config).map_err(Error::invalid)?;
        Ok(StoredChart { root: document.descriptor(), manifest, metadata })
    }
}

/// The parts of a Helm chart's OCI manifest this driver uses.
struct HelmManifest {
    json: serde_json::Value,
    config: Descriptor,
    /// Every layer: the chart, and helm's provenance when it signed the chart.
    layers: Vec<Descriptor>,
    /// The one layer that is the chart's archive.
    chart: Descriptor,
}

impl HelmManifest {
    fn parse(media_type: &str, bytes: &[u8]) -> Result<Self> {
        let invalid = |what: &str| Error::invalid(format!("the chart's manifest {what}"));
        if media_type != OCI_MANIFEST {
            return Err(Error::unsupported(format!("{media_type} is not a Helm chart's manifest")));
        }
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(&format!("is not JSON: {e}")))?;
        let config = Descriptor::from_json(&json["config"]).map_err(|_| invalid("has no config"))?;
        if config.media_type != CONFIG_TYPE {
            return Err(invalid(&format!("has config type {}, not {CONFIG_TYPE}", config.media_type)));
        }
        let layers =
            json["layers"].as_array().into_iter().flatten().map(Descriptor::from_json).collect::<Result<Vec<_>>>();
        let layers = layers.map_err(|_| invalid("has a malformed layer"))?;
        let mut charts = layers.iter().filter(|layer| layer.media_type == CHART_TYPE);
        let chart = match (charts.next(), charts.next()) {
            (Some(chart), None) => chart.clone(),
            _ => return Err(invalid(&format!("must have one {CHART_TYPE} layer"))),
        };
        Ok(HelmManifest { json, config, layers, chart })
    }
}

/// Reads the stored chart and rewrites the references of `rewriter` in its values files.
fn rewrite(stored: &Source, chart: &StoredChart, rewriter: &Rewriter) -> Result<archive::Rewritten> {
    let bytes = read_blob(stored, Some(&chart.manifest.chart.digest), MAX_CHART)?;
    archive::rewrite_chart(&bytes, rewriter)
        .map_err(|e| Error::invalid(format!("chart {}: {e}", chart.manifest.chart.digest)))
}

/// Pushes the rewritten chart, the stored config, and a manifest naming them, tagged with the
/// chart's version. Other layers (helm's provenance) signed the original chart, so they are left out.
fn push_rewritten(
    image: &Image,
    stored: &Source,
    destination: &Destination,
    chart: &StoredChart,
    bytes: Vec<u8>,
) -> Result<String> {
    let layer = destination.put_blob(CHART_TYPE, &bytes)?;
    destination.copy_blob(stored, &chart.manifest.config)?;
    if chart.manifest.layers.len() > 1 {
        warn!("{}: the chart changed, so its provenance layer is not relocated", image.key);
    }
    let mut manifest = chart.manifest.json.clone();
    manifest["layers"] = serde_json::json!([layer.to_json()]);
    destination.put_document(OCI_MANIFEST, manifest.to_string().as_bytes(), Some(&chart.metadata.tag()))
}

export_driver!(HelmDriver);

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Image {
        Image {
            key: "chart".into(),
            reference: "reg/charts/shop:1.0.0".into(),
            image_type: "helm".into(),
            media_type: None,
            content_digest: Some("sha256:1".into()),
            size: None,
            labels: Vec::new(),
        }
    }

    fn manifest(config_type: &str, layer_types: &[&str]) -> Vec<u8> {
        let layers: Vec<_> = layer_types
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({ "mediaType": t, "digest": format!("sha256:{i}"), "size": 10 + i }))
            .collect();
        let config = serde_json::json!({ "mediaType": config_type, "digest": "sha256:c", "size": 5 });
        serde_json::json!({ "schemaVersion": 2, "config": config, "layers": layers }).to_string().into_bytes()
    }

    #[test]
    fn a_helm_push_manifest_with_provenance() {
        let bytes = manifest(CONFIG_TYPE, &["application/vnd.cncf.helm.chart.provenance.v1.prov", CHART_TYPE]);
        let manifest = HelmManifest::parse(OCI_MANIFEST, &bytes).unwrap();
        assert_eq!((manifest.chart.digest.as_str(), manifest.chart.size), ("sha256:1", 11));
        assert_eq!((manifest.config.digest.as_str(), manifest.layers.len()), ("sha256:c", 2));
    }

    #[test]
    fn manifests_that_are_not_a_chart() {
        let error = |media_type: &str, bytes: &[u8]| HelmManifest::parse(media_type, bytes).err().unwrap();
        let oci_config = "application/vnd.oci.image.config.v1+json";
        assert!(matches!(error(OCI_MANIFEST, &manifest(oci_config, &[CHART_TYPE])), Error::InvalidContent(m)
            if m == format!("the chart's manifest has config type {oci_config}, not {CONFIG_TYPE}")));
        assert!(matches!(error(OCI_MANIFEST, &manifest(CONFIG_TYPE, &[])), Error::InvalidContent(m)
            if m.ends_with(&format!("must have one {CHART_TYPE} layer"))));
        assert!(matches!(
            error(OCI_MANIFEST, &manifest(CONFIG_TYPE, &[CHART_TYPE, CHART_TYPE])),
            Error::InvalidContent(_)
        ));
        assert!(matches!(error("application/vnd.oci.image.index.v1+json", b"{}"), Error::Unsupported(_)));
    }

    #[test]
    fn content_digests() {
        let check = |image: &Image, digest: &str| artifact::check_content_digest(image, "chart archive", digest, None);
        assert!(check(&image(), "sha256:1").is_ok());
        let error = check(&image(), "sha256:2").err().unwrap();
        assert_eq!(error.message(), "bundle.json says contentDigest sha256:1, the chart archive is sha256:2");
        assert!(check(&Image { content_digest: None, ..image() }, "sha256:2").is_ok());
    }
}
