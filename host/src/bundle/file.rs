//! What a file handed to ferry as a bundle is, told from its first bytes, so that a wrong kind
//! of file gets a sentence saying what it seems to be rather than a tar or JSON library's error.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::Path;

/// The kinds of file ferry takes where it takes a bundle.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// A bundle.json (or any JSON document, which validation then judges).
    Json,
    /// A clear-signed bundle (`bundle.cnab`): JSON inside an OpenPGP clear-signed message.
    ClearSigned,
    /// A thick bundle: a tar, plain or compressed with gzip or zstd.
    Thick,
}

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";
const CLEAR_SIGNED: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE: &str = "-----BEGIN PGP SIGNATURE-----";

/// Tells what the file at `path` is, or says what it seems to be when ferry cannot read it.
pub fn identify(path: &Path) -> Result<Kind> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .take(512)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    kind_of(&head).with_context(|| format!("{} is not a bundle", path.display()))
}

/// Refuses, for a command that reads only thick bundles, a bundle.json or anything else that is
/// not a tar, with a sentence saying what it is.
pub fn expect_thick(path: &Path) -> Result<()> {
    match identify(path)? {
        Kind::Thick => Ok(()),
        Kind::Json | Kind::ClearSigned => bail!(
            "{} is a bundle.json (JSON), not a thick bundle; `ferry export` makes a thick bundle of it",
            path.display()
        ),
    }
}

/// Refuses, for a command that changes a bundle.json, a file that is not JSON.
pub fn expect_json(path: &Path) -> Result<()> {
    match identify(path)? {
        Kind::Json => Ok(()),
        Kind::ClearSigned => {
            bail!("{} is a clear-signed bundle; its signature would not survive a change", path.display())
        }
        Kind::Thick => bail!("{} is a tar archive, not a bundle.json", path.display()),
    }
}

fn kind_of(head: &[u8]) -> Result<Kind> {
    let text = head.strip_prefix(UTF8_BOM).unwrap_or(head);
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if head.starts_with(UTF8_BOM) && first.is_some_and(|b| b"{[".contains(b)) {
        bail!(
            "it is JSON that starts with a byte-order mark, which JSON text must not have (RFC 8259 §8.1); \
             save it as UTF-8 without a BOM"
        );
    }
    if matches!(first, Some(b'{' | b'[')) {
        return Ok(Kind::Json);
    }
    if text.starts_with(CLEAR_SIGNED) {
        return Ok(Kind::ClearSigned);
    }
    if crate::archive::is_compressed_magic(head) || is_tar(head) {
        return Ok(Kind::Thick);
    }
    if head.is_empty() {
        bail!("it is empty");
    }
    if head.starts_with(b"PK\x03\x04") {
        bail!("it is a zip archive; a thick bundle is a tar (.tar, .tgz or .tar.zst)");
    }
    if std::str::from_utf8(head).is_ok() {
        bail!("it is text, but neither JSON nor a clear-signed bundle");
    }
    bail!("it is neither JSON nor a thick bundle (a tar, plain, gzip or zstd)")
}

/// A tar header: `ustar` at offset 257 (POSIX and GNU archives both write it).
fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

/// The JSON inside a clear-signed bundle, unchecked: ferry does not verify the signature.
pub fn clear_signed_json(bytes: &[u8]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(bytes).context("a clear-signed bundle is text")?;
    // The armor header lines (`Hash: SHA256`) end at the first empty line; the signature follows
    // the JSON. Dash-escaped lines ("- -...") are unescaped as RFC 4880 §7.1 says.
    let body = text.split_once("\n\n").or_else(|| text.split_once("\r\n\r\n")).map(|(_, b)| b);
    let body = body.context("the clear-signed message has no body")?;
    let json = body.split_once(SIGNATURE).map(|(json, _)| json).context("the clear-signed message has no signature")?;
    let unescaped: Vec<&str> = json.lines().map(|l| l.strip_prefix("- ").unwrap_or(l)).collect();
    Ok(unescaped.join("\n").trim_end().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_apart_by_their_first_bytes() {
        assert_eq!(kind_of(b"  {\"name\": 1}").unwrap(), Kind::Json);
        assert_eq!(kind_of(b"[1, 2]").unwrap(), Kind::Json);
        assert_eq!(kind_of(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{}").unwrap(), Kind::ClearSigned);
        assert_eq!(kind_of(&[0x1f, 0x8b, 8, 0]).unwrap(), Kind::Thick);
        assert_eq!(kind_of(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0]).unwrap(), Kind::Thick);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(kind_of(&tar).unwrap(), Kind::Thick);
        for (head, says) in [
            (&b"\xef\xbb\xbf{}"[..], "byte-order mark"),
            (b"", "empty"),
            (b"PK\x03\x04....", "zip"),
            (b"hello", "text"),
            (&[0u8, 159, 146, 150][..], "neither JSON nor a thick bundle"),
        ] {
            let err = kind_of(head).unwrap_err().to_string();
            assert!(err.contains(says), "{head:?}: {err}");
        }
    }

    #[test]
    fn the_json_of_a_clear_signed_bundle_is_read_without_its_signature() {
        let signed = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{\"name\":\"x\"}\n- --dashes\n\
                      -----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        assert_eq!(clear_signed_json(signed.as_bytes()).unwrap(), b"{\"name\":\"x\"}\n--dashes");
    }
}
