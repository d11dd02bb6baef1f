//! "Did you mean": the known name a misspelt one was probably meant to be.

/// The one name of `known` closest to `name`: the same but for case, or one edit away (two for
/// a name long enough for that to be telling), a swap of neighbours counting as one.
pub fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = name.to_ascii_lowercase();
    if let Some(same) = known.iter().find(|k| k.to_ascii_lowercase() == lower) {
        return Some(same);
    }
    let limit = if name.chars().count() >= 6 { 2 } else { 1 };
    known
        .iter()
        .map(|k| (edits(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edits from `a` to `b`: insertions, deletions, substitutions and swaps of two neighbours
/// (optimal string alignment). Names are short, so the whole table is kept.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_small_typos_find_the_field_and_unrelated_names_find_nothing() {
        let known = ["image", "imageType", "contentDigest", "size", "labels", "mediaType"];
        assert_eq!(closest("imagetype", &known), Some("imageType"));
        assert_eq!(closest("contentDigets", &known), Some("contentDigest"));
        assert_eq!(closest("mediatyp", &known), Some("mediaType"));
        assert_eq!(closest("sise", &known), Some("size"));
        assert_eq!(closest("paht", &["env", "path"]), Some("path"));
        assert_eq!(closest("vendorNotes", &known), None);
        assert_eq!(closest("x", &known), None);
    }
}
