//! Text for a person's terminal. Much of what the CLI prints comes from tenants: a script's
//! stderr, names and versions in a backup's header, messages recorded in the journal, values
//! of an INSTANCE.toml or an APP-META.xml. A terminal acts on control characters in it
//! (`ESC [8m` hides what follows, `ESC ]` sets the title, `\r` overwrites a line) and shows
//! Unicode bidi overrides reordered, so every text printer of the CLI passes its text through
//! here and the admin sees such characters spelled out (`\x1b`, `\u202e`) instead. JSON lines
//! pass through too: serde_json escapes the C0 controls itself, and the rest is escaped in
//! JSON's own notation, so they stay valid JSON with the same value.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a terminal would act on `c` rather than show it: C0 controls and DEL, C1 controls
/// (U+0080–U+009F: 8-bit CSI and OSC), and the marks that reorder or isolate text (bidi
/// embeddings and overrides U+202A–U+202E, isolates U+2066–U+2069, and the implicit marks
/// LRM, RLM and ALM, which can move text as well).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
}

/// C0 controls as `\x1b`; DEL, C1 and bidi controls (all below U+10000) as `\u202e`. JSON
/// text holds no raw C0 control (serde_json escapes them) and `\u202e` is JSON's own escape,
/// so a JSON line passed through here stays valid JSON with the same value.
fn push_escaped(out: &mut String, c: char) {
    if (c as u32) < 0x20 {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else {
        let _ = write!(out, "\\u{:04x}", c as u32);
    }
}

/// One field for one line: every unsafe character escaped, line breaks and tabs included (a
/// value that brought its own line break could fake a line of the printer's).
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_except(text, |_| false)
}

/// A whole text whose line breaks (and tabs: column separators) the printer put there itself,
/// or an excerpt whose lines are shown as lines (a script's stderr): each line escaped, the
/// `\n` between them kept. A `\r` is escaped, so no line can overwrite another.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_except(text, |c| c == '\n' || c == '\t')
}

fn escape_except(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !keep(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `println!` that escapes (and survives a closed stdout, `… | head`: the work is done by then
/// and the exit code must still say how it went, instead of a panic).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            $crate::terminal::escape_lines(&text)
        );
    }};
}
pub(crate) use outln;

/// `eprintln!` that escapes.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            $crate::terminal::escape_lines(&text)
        );
    }};
}
pub(crate) use errln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_spelled_out() {
        assert_eq!(
            escape("a\u{1b}[8mb\rc\u{0}\u{7f}\u{9b}"),
            "a\\x1b[8mb\\x0dc\\x00\\u007f\\u009b"
        );
        assert_eq!(escape("x\u{202e}y\u{2066}z"), "x\\u202ey\\u2066z");
        assert_eq!(escape("one\ntwo\tthree"), "one\\x0atwo\\x09three");
    }

    #[test]
    fn lines_keep_their_breaks_but_not_carriage_returns() {
        assert_eq!(
            escape_lines("first \u{1b}]0;x\u{7}\nsecond\r\nthird\tcol"),
            "first \\x1b]0;x\\x07\nsecond\\x0d\nthird\tcol"
        );
    }

    #[test]
    fn plain_text_is_unchanged_and_not_copied() {
        let text = "blog 1.2-3 (made 2026-01-01T00:00:00Z) — café ✓";
        assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Whatever comes in, nothing a terminal acts on goes out, and text without such
        /// characters goes out as it came.
        #[test]
        fn nothing_unsafe_gets_through(text in proptest::prelude::any::<String>()) {
            let escaped = escape(&text);
            proptest::prop_assert!(!escaped.chars().any(is_unsafe));
            let lines = escape_lines(&text);
            proptest::prop_assert!(
                !lines.chars().any(|c| is_unsafe(c) && c != '\n' && c != '\t')
            );
            proptest::prop_assert_eq!(lines.matches('\n').count(), text.matches('\n').count());
            if !text.chars().any(is_unsafe) {
                proptest::prop_assert_eq!(escaped.as_ref(), text.as_str());
            }
            // A JSON line (no raw C0 controls in it) stays JSON of the same value.
            let line = serde_json::to_string(&text).unwrap();
            let back: String = serde_json::from_str(&escape_lines(&line)).unwrap();
            proptest::prop_assert_eq!(back, text);
        }
    }
}
