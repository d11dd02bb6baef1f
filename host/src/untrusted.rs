//! Text ferry did not write itself (a driver's words, a bundle's names), made safe to print: a
//! driver must not be able to move the cursor, set the window title, write the clipboard (OSC 52)
//! or fake a line of ferry's own output.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character written as an escape (`\n`, `\u{1b}`, ...), and the
/// Unicode marks that reorder or hide text (bidi overrides and isolates) too.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => write!(out, "\\u{{{:x}}}", c as u32).expect("writing to a String"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`escape`], but keeps line breaks: for ferry's own multi-line messages that quote
/// untrusted text which was escaped where it entered.
pub fn escape_keeping_lines(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

/// Whether `text` holds anything [`escape`] would change.
pub fn has_control(text: &str) -> bool {
    text.chars().any(needs_escape)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` bytes of `text` (cut at a character boundary), saying how much was cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}... ({} more bytes)", &text[..end], text.len() - end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped_and_plain_text_is_kept() {
        assert_eq!(escape("plain text: ü, 日本"), "plain text: ü, 日本");
        assert_eq!(escape("\x1b]0;pwned\x07title"), "\\u{1b}]0;pwned\\u{7}title");
        assert_eq!(escape("a\nferry: fake line\r"), "a\\nferry: fake line\\r");
        assert_eq!(escape("\u{9b}2J \u{202e}txt.exe"), "\\u{9b}2J \\u{202e}txt.exe");
        assert_eq!(escape_keeping_lines("one\x1b[2J\ntwo"), "one\\u{1b}[2J\ntwo");
        assert!(has_control("\x7f") && !has_control("tab-free"));
    }

    #[test]
    fn clipping_says_how_much_was_cut() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é... (4 more bytes)");
    }
}
