//! Textual rewriting of image references, so that a values file keeps its comments and layout.

/// Rewrites whole image references, original → relocated.
pub struct Rewriter {
    /// Longest original first, so that `a/b:10` is tried before `a/b:1`.
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Rewriter {
    /// Pairs with an empty original, or that would change nothing, are left out.
    pub fn new(mapping: &[(String, String)]) -> Self {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = mapping
            .iter()
            .filter(|(original, relocated)| !original.is_empty() && original != relocated)
            .map(|(original, relocated)| (original.clone().into_bytes(), relocated.clone().into_bytes()))
            .collect();
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b)));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Rewriter { pairs }
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// `text` with every whole original reference replaced, and how many were. A match counts only
    /// when neither the byte before nor the byte after it could continue a reference; every other
    /// byte is copied as it is.
    pub fn rewrite(&self, text: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(text.len());
        let mut count = 0;
        let mut i = 0;
        while i < text.len() {
            let starts_reference = i == 0 || !continues_reference(text[i - 1]);
            match self.pairs.iter().find(|(original, _)| starts_reference && self.matches_at(text, i, original)) {
                Some((original, relocated)) => {
                    out.extend_from_slice(relocated);
                    i += original.len();
                    count += 1;
                }
                None => {
                    out.push(text[i]);
                    i += 1;
                }
            }
        }
        (out, count)
    }

    fn matches_at(&self, text: &[u8], at: usize, original: &[u8]) -> bool {
        text[at..].starts_with(original) && text.get(at + original.len()).is_none_or(|&b| !continues_reference(b))
    }
}

/// A byte that may appear inside an image reference (`registry:5000/repo/name:tag@sha256:hex`).
fn continues_reference(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b".-_:/@".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(mapping: &[(&str, &str)], text: &str) -> (String, usize) {
        let mapping: Vec<(String, String)> = mapping.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let (out, count) = Rewriter::new(&mapping).rewrite(text.as_bytes());
        (String::from_utf8(out).unwrap(), count)
    }

    #[test]
    fn a_prefix_does_not_clobber_a_longer_reference() {
        let mapping = [("a/b:1", "x/b:1"), ("a/b:10", "x/b:10-new")];
        let (out, count) = rewrite(&mapping, "one: a/b:1\nten: a/b:10\n");
        assert_eq!(out, "one: x/b:1\nten: x/b:10-new\n");
        assert_eq!(count, 2);
        // Only the shorter one mapped: a/b:10 is not a match for it.
        let (out, count) = rewrite(&mapping[..1], "ten: a/b:10\n");
        assert_eq!((out.as_str(), count), ("ten: a/b:10\n", 0));
    }

    #[test]
    fn a_reference_at_the_end_of_the_text() {
        assert_eq!(rewrite(&[("r/web:1.0", "s/web:1.0")], "image: r/web:1.0"), ("image: s/web:1.0".into(), 1));
    }

    #[test]
    fn quoted_references() {
        let (out, count) = rewrite(&[("r/web:1.0", "s/web:1.0")], "a: \"r/web:1.0\"\nb: 'r/web:1.0'\n");
        assert_eq!(out, "a: \"s/web:1.0\"\nb: 's/web:1.0'\n");
        assert_eq!(count, 2);
    }

    #[test]
    fn digest_references() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let original = format!("reg:5000/shop/web@{digest}");
        let relocated = format!("site:5000/shop/web@{digest}");
        let (out, count) = rewrite(&[(&original, &relocated)], &format!("image: {original} # pinned\n"));
        assert_eq!(out, format!("image: {relocated} # pinned\n"));
        assert_eq!(count, 1);
        // A tag-less original is not rewritten inside a digest reference.
        let (out, count) = rewrite(&[("reg:5000/shop/web", "site/web")], &format!("image: {original}\n"));
        assert_eq!((out, count), (format!("image: {original}\n"), 0));
    }

    #[test]
    fn only_whole_references() {
        let mapping = [("shop/web:1.0", "site/web:1.0")];
        for text in ["x: reg/shop/web:1.0\n", "x: shop/web:1.0.1\n", "x: shop/web:1.0-rc\n", "x: myshop/web:1.0\n"] {
            assert_eq!(rewrite(&mapping, text), (text.to_string(), 0), "{text}");
        }
    }

    #[test]
    fn replaced_text_is_not_scanned_again() {
        let (out, count) = rewrite(&[("a/b:1", "a/b:1-x"), ("a/b:1-x", "never")], "i: a/b:1\n");
        assert_eq!((out.as_str(), count), ("i: a/b:1-x\n", 1));
    }

    #[test]
    fn other_bytes_are_untouched() {
        let text = b"# comment \xff\xfe not utf-8\r\nimage:   r/web:1.0   # trailing\r\n";
        let mapping = vec![("r/web:1.0".to_string(), "s/web:2.0".to_string())];
        let (out, count) = Rewriter::new(&mapping).rewrite(text);
        assert_eq!(out, b"# comment \xff\xfe not utf-8\r\nimage:   s/web:2.0   # trailing\r\n");
        assert_eq!(count, 1);
    }

    #[test]
    fn identity_and_empty_pairs_are_ignored() {
        let rewriter = Rewriter::new(&[("".into(), "x".into()), ("a:1".into(), "a:1".into())]);
        assert!(rewriter.is_empty());
        assert_eq!(rewriter.rewrite(b"a:1"), (b"a:1".to_vec(), 0));
    }
}
