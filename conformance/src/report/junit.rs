//! JUnit XML of a report, in the shape CI systems read (the common JUnit schema): `testsuites`
//! holding one `testsuite` per package, one `testcase` per step with a `failure` or `skipped`
//! child, script output in `system-out`/`system-err`, the findings in the suite's
//! `system-out`.

use std::fmt::Write;

use super::{Outcome, Report};

pub(super) fn render(report: &Report) -> String {
    let c = report.counts();
    let secs = |ms: u64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let suite = esc(&report.package);
    let classname = esc(&format!("aps-conformance.{}", report.package));
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"aps-conformance\" tests=\"{}\" failures=\"{}\" errors=\"0\" \
         skipped=\"{}\" time=\"{}\">",
        report.rows.len(),
        c.failed,
        c.skipped,
        secs(report.duration_ms)
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" \
         time=\"{}\">",
        report.rows.len(),
        c.failed,
        c.skipped,
        secs(report.duration_ms)
    );
    for row in &report.rows {
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"{classname}\" time=\"{}\"",
            esc(&row.step),
            secs(row.duration_ms)
        );
        let has_body =
            !matches!(row.outcome, Outcome::Pass) || row.stdout.is_some() || row.stderr.is_some();
        if !has_body {
            x.push_str("/>\n");
            continue;
        }
        x.push_str(">\n");
        match &row.outcome {
            Outcome::Pass => {}
            Outcome::Fail { why, section } => {
                let kind = section.as_deref().unwrap_or("conformance");
                let mut body = why.clone();
                for d in &row.differences {
                    body.push_str(&format!("\n- {d}"));
                }
                let _ = writeln!(
                    x,
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    esc(why),
                    esc(kind),
                    esc(&body)
                );
            }
            Outcome::Skipped { why } => {
                let _ = writeln!(x, "      <skipped message=\"{}\"/>", esc(why));
            }
        }
        if let Some(out) = &row.stdout {
            let _ = writeln!(x, "      <system-out>{}</system-out>", esc(out));
        }
        if let Some(err) = &row.stderr {
            let _ = writeln!(x, "      <system-err>{}</system-err>", esc(err));
        }
        x.push_str("    </testcase>\n");
    }
    if !report.findings.is_empty() {
        let mut text = String::from("findings:");
        for f in &report.findings {
            text.push_str(&format!("\n- {}", f.line()));
        }
        let _ = writeln!(x, "    <system-out>{}</system-out>", esc(&text));
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// `text` as XML character data or attribute value: markup escaped, and the characters XML
/// 1.0 cannot hold at all (most control characters, lone surrogates cannot occur in a `str`)
/// written as `\u{XX}`, so a script's raw output never makes the file invalid.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup_and_characters_xml_cannot_hold() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(esc("bell\u{7}\tok\n"), "bell\\u{7}\tok\n");
        assert_eq!(esc("\u{ffff}"), "\\u{ffff}");
    }
}
