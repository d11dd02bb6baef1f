//! Rewriting the image references in a chart archive's values files, and packing it again
//! reproducibly: same entries in the same order, same names and modes, owner 0, mtime 0.

use crate::references::Rewriter;
use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use std::io::{self, Read};
use tar::{Archive, Builder, Entry, Header};

/// What a chart may unpack to, subcharts included: helm's own default limit.
pub const MAX_UNPACKED: u64 = 100 << 20;
/// How deep packaged subcharts (`charts/*.tgz`) may nest.
const MAX_DEPTH: usize = 8;

pub struct Rewritten {
    /// The chart packed again.
    pub bytes: Vec<u8>,
    /// How many references were rewritten.
    pub references: usize,
}

/// Rewrites the references in every values.yaml of chart archive `tgz`: the chart's own, its
/// subcharts' (`charts/NAME/values.yaml`, at any depth) and those inside packaged subcharts
/// (`charts/NAME.tgz`, which are packed again only when something in them changed).
pub fn rewrite_chart(tgz: &[u8], rewriter: &Rewriter) -> io::Result<Rewritten> {
    let mut budget = MAX_UNPACKED;
    rewrite_archive(tgz, rewriter, &mut budget, 0)
}

fn rewrite_archive(tgz: &[u8], rewriter: &Rewriter, budget: &mut u64, depth: usize) -> io::Result<Rewritten> {
    let mut archive = Archive::new(GzDecoder::new(tgz));
    let mut builder = Builder::new(GzBuilder::new().mtime(0).write(Vec::new(), Compression::default()));
    let mut references = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|e| invalid(format!("entry name {:?} is not UTF-8", String::from_utf8_lossy(e.as_bytes()))))?;
        *budget = budget
            .checked_sub(entry.size())
            .ok_or_else(|| invalid(format!("the chart unpacks to more than {} MiB", MAX_UNPACKED >> 20)))?;
        let mut header = normalized_header(&entry, &name)?;
        let data = match role(&name) {
            Role::Values if header.entry_type().is_file() => {
                let (data, count) = rewriter.rewrite(&read_all(&mut entry)?);
                references += count;
                data
            }
            Role::PackagedSubchart if header.entry_type().is_file() => {
                if depth == MAX_DEPTH {
                    return Err(invalid(format!("{name}: subcharts nest more than {MAX_DEPTH} deep")));
                }
                let data = read_all(&mut entry)?;
                let nested = rewrite_archive(&data, rewriter, budget, depth + 1)
                    .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))?;
                references += nested.references;
                if nested.references > 0 { nested.bytes } else { data }
            }
            _ => {
                builder.append_data(&mut header, &name, entry)?;
                continue;
            }
        };
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, &name, data.as_slice())?;
    }
    let bytes = builder.into_inner()?.finish()?;
    Ok(Rewritten { bytes, references })
}

#[derive(Debug, PartialEq)]
enum Role {
    Values,
    PackagedSubchart,
    Other,
}

/// What `name` (`CHART/...`) is: the chart's or a subchart's values.yaml, a packaged subchart, or
/// anything else. Subcharts live in `charts/NAME/` or as `charts/NAME.tgz`, at any depth.
fn role(name: &str) -> Role {
    let parts: Vec<&str> = name.strip_prefix("./").unwrap_or(name).split('/').skip(1).collect();
    let mut rest = parts.as_slice();
    loop {
        match rest {
            ["values.yaml"] => return Role::Values,
            ["charts", file] if file.ends_with(".tgz") => return Role::PackagedSubchart,
            ["charts", _, inner @ ..] if !inner.is_empty() => rest = inner,
            _ => return Role::Other,
        }
    }
}

/// A header with the entry's type, size and mode, and nothing that varies between packings.
/// Charts hold files and directories; anything else is refused.
fn normalized_header<R: Read>(entry: &Entry<R>, name: &str) -> io::Result<Header> {
    let kind = entry.header().entry_type();
    if !kind.is_file() && !kind.is_dir() {
        return Err(invalid(format!("{name}: a chart holds only files and directories, not {kind:?}")));
    }
    let mut header = Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(entry.header().mode()?);
    header.set_size(entry.size());
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    Ok(header)
}

fn read_all(entry: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    entry.read_to_end(&mut data)?;
    Ok(data)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "reg:5000/shop/web:1.0.0";
    const INSTALLER: &str = "reg:5000/shop/installer:1.0.0";

    fn rewriter() -> Rewriter {
        Rewriter::new(&[
            (WEB.into(), "site:5000/shop/web:1.0.0@sha256:aa".into()),
            (INSTALLER.into(), "site:5000/shop/installer:1.0.0".into()),
        ])
    }

    /// A gzipped tar of `files` as a packer that records owners and times would write it.
    fn pack(files: &[(&str, &[u8])], mtime: u64) -> Vec<u8> {
        let mut builder = Builder::new(GzBuilder::new().mtime(mtime as u32).write(Vec::new(), Compression::fast()));
        for (name, data) in files {
            let mut header = Header::new_gnu();
            header.set_entry_type(if name.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            header.set_mode(if name.ends_with(".sh") { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            header.set_uid(1000);
            header.set_mtime(mtime);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// (name, mode, uid, mtime, data) of every entry.
    fn unpack(tgz: &[u8]) -> Vec<(String, u32, u64, u64, Vec<u8>)> {
        let mut archive = Archive::new(GzDecoder::new(tgz));
        let entries = archive.entries().unwrap().map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            (
                name,
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.mtime().unwrap(),
                read_all(&mut entry).unwrap(),
            )
        });
        entries.collect()
    }

    fn file<'a>(entries: &'a [(String, u32, u64, u64, Vec<u8>)], name: &str) -> &'a str {
        std::str::from_utf8(&entries.iter().find(|e| e.0 == name).unwrap().4).unwrap()
    }

    fn values(image: &str) -> Vec<u8> {
        format!("# images of the shop\nweb:\n  image: \"{image}\"\nother: {image}-debug\n").into_bytes()
    }

    fn shop(mtime: u64) -> Vec<u8> {
        let long = format!("shop/templates/{}/{}.yaml", "d".repeat(90), "t".repeat(90));
        let longer = format!("shop/templates/{}.yaml", "l".repeat(300));
        pack(
            &[
                ("shop/", b""),
                ("shop/Chart.yaml", b"apiVersion: v2\nname: shop\nversion: 1.0.0\n"),
                ("shop/values.yaml", &values(WEB)),
                ("shop/templates/web.yaml", format!("# {WEB} in a template stays\n").as_bytes()),
                ("shop/hooks/run.sh", b"#!/bin/sh\n"),
                (&long, b"kind: ConfigMap\n"),
                (&longer, b"kind: Secret\n"),
                ("shop/charts/db/Chart.yaml", b"name: db\nversion: 2.0.0\n"),
                ("shop/charts/db/values.yaml", format!("image: {INSTALLER}").as_bytes()),
                ("shop/charts/db/charts/cache/values.yaml", format!("image: {WEB}\n").as_bytes()),
            ],
            mtime,
        )
    }

    #[test]
    fn rewrites_the_values_of_the_chart_and_its_subcharts() {
        let rewritten = rewrite_chart(&shop(1_700_000_000), &rewriter()).unwrap();
        assert_eq!(rewritten.references, 3);
        let entries = unpack(&rewritten.bytes);
        assert_eq!(
            file(&entries, "shop/values.yaml"),
            "# images of the shop\nweb:\n  image: \"site:5000/shop/web:1.0.0@sha256:aa\"\nother: reg:5000/shop/web:1.0.0-debug\n"
        );
        assert_eq!(file(&entries, "shop/charts/db/values.yaml"), "image: site:5000/shop/installer:1.0.0");
        assert_eq!(
            file(&entries, "shop/charts/db/charts/cache/values.yaml"),
            "image: site:5000/shop/web:1.0.0@sha256:aa\n"
        );
    }

    #[test]
    fn untouched_entries_keep_their_order_names_modes_and_bytes() {
        let original = unpack(&shop(1_700_000_000));
        let rewritten = unpack(&rewrite_chart(&shop(1_700_000_000), &rewriter()).unwrap().bytes);
        let names = |entries: &[(String, u32, u64, u64, Vec<u8>)]| -> Vec<(String, u32)> {
            entries.iter().map(|e| (e.0.clone(), e.1)).collect()
        };
        assert_eq!(names(&rewritten), names(&original));
        for (before, after) in original.iter().zip(&rewritten) {
            assert_eq!((after.2, after.3), (0, 0), "{}: owner and mtime are zeroed", after.0);
            if !before.0.ends_with("values.yaml") {
                assert_eq!(before.4, after.4, "{} is byte-identical", before.0);
            }
        }
    }

    #[test]
    fn repacking_is_reproducible() {
        let first = rewrite_chart(&shop(1_700_000_000), &rewriter()).unwrap().bytes;
        let again = rewrite_chart(&shop(1_700_000_000), &rewriter()).unwrap().bytes;
        let other_times = rewrite_chart(&shop(42), &rewriter()).unwrap().bytes;
        assert_eq!(first, again);
        assert_eq!(first, other_times);
        // Its gzip header carries no time either.
        assert_eq!(&first[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn packaged_subcharts_are_rewritten_inside() {
        let db = pack(&[("db/Chart.yaml", b"name: db\nversion: 2.0.0\n"), ("db/values.yaml", &values(INSTALLER))], 7);
        let cache = pack(&[("cache/values.yaml", b"image: nothing/to:change\n")], 7);
        let chart = pack(
            &[
                ("shop/Chart.yaml", b"name: shop\nversion: 1.0.0\n"),
                ("shop/charts/db-2.0.0.tgz", &db),
                ("shop/charts/cache-1.tgz", &cache),
            ],
            7,
        );
        let rewritten = rewrite_chart(&chart, &rewriter()).unwrap();
        assert_eq!(rewritten.references, 1);
        let entries = unpack(&rewritten.bytes);
        let db = unpack(&entries.iter().find(|e| e.0 == "shop/charts/db-2.0.0.tgz").unwrap().4);
        assert!(file(&db, "db/values.yaml").contains("\"site:5000/shop/installer:1.0.0\""));
        assert_eq!(entries.iter().find(|e| e.0 == "shop/charts/cache-1.tgz").unwrap().4, cache, "unchanged: as it was");
    }

    #[test]
    fn the_example_chart() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/shop-chart");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let (chart_yaml, values, template) = (read("Chart.yaml"), read("values.yaml"), read("templates/web.yaml"));
        let files =
            [("shop/Chart.yaml", &chart_yaml), ("shop/values.yaml", &values), ("shop/templates/web.yaml", &template)];
        let metadata = crate::metadata::Metadata::from_chart_yaml(std::str::from_utf8(&chart_yaml).unwrap()).unwrap();
        assert_eq!((metadata.name.as_str(), metadata.tag().as_str()), ("shop", "1.0.0"));
        let rewriter = Rewriter::new(&[
            ("REGISTRY/shop/web:1.0.0".into(), "site/shop/web:1.0.0".into()),
            ("REGISTRY/shop/installer:1.0.0".into(), "site/shop/installer:1.0.0".into()),
        ]);
        let rewritten = rewrite_chart(&pack(&files.map(|(name, data)| (name, data.as_slice())), 0), &rewriter).unwrap();
        assert_eq!(rewritten.references, 2);
        let values = file(&unpack(&rewritten.bytes), "shop/values.yaml").to_string();
        assert!(values.contains("image: site/shop/web:1.0.0\n") && values.contains("\"site/shop/installer:1.0.0\""));
    }

    #[test]
    fn roles() {
        assert_eq!(role("shop/values.yaml"), Role::Values);
        assert_eq!(role("./shop/values.yaml"), Role::Values);
        assert_eq!(role("shop/charts/db/values.yaml"), Role::Values);
        assert_eq!(role("shop/charts/db/charts/x/values.yaml"), Role::Values);
        assert_eq!(role("shop/charts/db-1.0.0.tgz"), Role::PackagedSubchart);
        assert_eq!(role("shop/charts/db/charts/x-1.tgz"), Role::PackagedSubchart);
        for other in
            ["values.yaml", "shop/templates/values.yaml", "shop/charts/values.yaml", "shop/charts/db/x/values.yaml"]
        {
            assert_eq!(role(other), Role::Other, "{other}");
        }
    }

    #[test]
    fn links_are_refused() {
        let mut builder = Builder::new(GzBuilder::new().write(Vec::new(), Compression::fast()));
        let mut header = Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, "shop/values.yaml", "/etc/passwd").unwrap();
        let tgz = builder.into_inner().unwrap().finish().unwrap();
        let error = rewrite_chart(&tgz, &rewriter()).err().unwrap();
        assert!(error.to_string().contains("shop/values.yaml: a chart holds only files and directories"), "{error}");
    }

    #[test]
    fn a_chart_that_unpacks_too_big_is_refused() {
        let error = rewrite_archive(&shop(0), &rewriter(), &mut 100, 0).err().unwrap();
        assert!(error.to_string().contains("unpacks to more than"), "{error}");
    }

    #[test]
    fn not_a_gzip_tar() {
        assert!(rewrite_chart(b"plain text", &rewriter()).is_err());
    }
}
