//! A script's stdout read as the standard's output XML: `configure-output` (configuration and
//! verification scripts with `structured-output`).
//!
//! Namespaces are matched by URI, never by prefix. DTDs are refused (no entity expansion from
//! a script's output). Choices: stdout that is empty or only whitespace is "nothing reported"
//! (scripts print nothing on success); `<choice>` elements inside a returned setting and
//! elements of other namespaces are ignored; a `setting-id` or `system` that is empty counts
//! as absent (real writers emit `setting-id=""`).

use roxmltree::{Document, Node, ParsingOptions, TextPos};

/// `configure-output` namespace.
pub const CONFIGURE_OUTPUT_NS: &str = "http://apstandard.com/ns/1/configure-output";

/// How many bytes of the output an error quotes.
const HEAD_LEN: usize = 200;
/// Bounds memory on hostile output; real outputs hold a few dozen nodes.
const NODES_LIMIT: u32 = 100_000;

/// What a configuration or verification script reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StructuredOutput {
    pub errors: Vec<ScriptError>,
    /// Values the script computed: setting id → values (several for a `list` setting), in
    /// document order.
    pub settings: Vec<(String, Vec<String>)>,
}

/// One `errors/error`: an invalid value, for the user (`message`) and the logs (`system`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub id: Option<String>,
    pub setting_id: Option<String>,
    pub message: String,
    pub system: Option<String>,
}

/// Why a script's output could not be read. Every variant quotes the start of the output so
/// that the person reading the error sees what the script actually printed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutputError {
    #[error("script output is not UTF-8 (invalid byte at offset {offset}); it starts with: {head}")]
    NotUtf8 { offset: usize, head: String },
    #[error(
        "script output is not well-formed XML at {line}:{column}: {reason}; it starts with: {head}"
    )]
    Malformed {
        line: u32,
        column: u32,
        reason: String,
        head: String,
    },
    #[error(
        "script output root is {found}, expected <{expected_name}> in namespace {expected_ns}; \
         it starts with: {head}"
    )]
    WrongRoot {
        found: String,
        expected_name: &'static str,
        expected_ns: &'static str,
        head: String,
    },
    #[error("script output at {line}:{column}: <{element}> lacks attribute `{attribute}`")]
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
        line: u32,
        column: u32,
    },
}

/// Parses a configuration/verification script's stdout as `configure-output`.
pub fn parse_configure_output(stdout: &[u8]) -> Result<StructuredOutput, OutputError> {
    let Some(text) = prepare(stdout)? else {
        return Ok(StructuredOutput::default());
    };
    let parsed = parse_doc(text, stdout)?;
    let root = checked_root(&parsed.doc, "output", CONFIGURE_OUTPUT_NS, stdout)?;
    let mut out = StructuredOutput::default();
    for section in children(root, CONFIGURE_OUTPUT_NS) {
        match section.tag_name().name() {
            "errors" => {
                for e in children(section, CONFIGURE_OUTPUT_NS)
                    .filter(|n| n.has_tag_name((CONFIGURE_OUTPUT_NS, "error")))
                {
                    out.errors.push(ScriptError {
                        id: non_empty(e.attribute("id")),
                        setting_id: non_empty(e.attribute("setting-id")),
                        message: child_text(e, "message")
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                        system: non_empty(child_text(e, "system").as_deref().map(str::trim)),
                    });
                }
            }
            "settings" => {
                for s in children(section, CONFIGURE_OUTPUT_NS)
                    .filter(|n| n.has_tag_name((CONFIGURE_OUTPUT_NS, "setting")))
                {
                    let id = required_attribute(&parsed, s, "setting", "id")?;
                    // Values are data: kept exactly, an empty `<value/>` included.
                    let values = children(s, CONFIGURE_OUTPUT_NS)
                        .filter(|n| n.has_tag_name((CONFIGURE_OUTPUT_NS, "value")))
                        .map(text_of)
                        .collect();
                    out.settings.push((id, values));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// UTF-8 text without a BOM, or `None` when there is nothing but whitespace.
fn prepare(stdout: &[u8]) -> Result<Option<&str>, OutputError> {
    let text = std::str::from_utf8(stdout).map_err(|e| OutputError::NotUtf8 {
        offset: e.valid_up_to(),
        head: head(stdout),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    Ok((!text.trim().is_empty()).then_some(text))
}

/// A parsed document and how much leading whitespace was cut before it, so that positions
/// are reported in the script's own output.
struct Parsed<'i> {
    doc: Document<'i>,
    skipped: &'i str,
}

impl Parsed<'_> {
    fn pos(&self, pos: TextPos) -> (u32, u32) {
        shift(self.skipped, pos)
    }
}

/// Line:column in the whole output for a position in the text after `skipped`.
fn shift(skipped: &str, pos: TextPos) -> (u32, u32) {
    let lines = skipped.matches('\n').count() as u32;
    let col = if pos.row == 1 {
        let tail = skipped.rsplit('\n').next().unwrap_or("");
        pos.col + tail.chars().count() as u32
    } else {
        pos.col
    };
    (pos.row + lines, col)
}

fn parse_doc<'i>(text: &'i str, stdout: &[u8]) -> Result<Parsed<'i>, OutputError> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    };
    // Whitespace before the XML declaration (a PHP include's stray newline) makes the
    // declaration illegal; it carries nothing, so it is cut.
    let trimmed = text.trim_start();
    let skipped = &text[..text.len() - trimmed.len()];
    match Document::parse_with_options(trimmed, options) {
        Ok(doc) => Ok(Parsed { doc, skipped }),
        Err(e) => {
            let (line, column) = shift(skipped, e.pos());
            Err(OutputError::Malformed {
                line,
                column,
                reason: e.to_string(),
                head: head(stdout),
            })
        }
    }
}

fn checked_root<'a, 'i>(
    doc: &'a Document<'i>,
    name: &'static str,
    ns: &'static str,
    stdout: &[u8],
) -> Result<Node<'a, 'i>, OutputError> {
    let root = doc.root_element();
    if root.has_tag_name((ns, name)) {
        return Ok(root);
    }
    let tag = root.tag_name();
    let found = match tag.namespace() {
        Some(found_ns) => format!("<{}> in namespace {found_ns}", tag.name()),
        None => format!("<{}> without namespace", tag.name()),
    };
    Err(OutputError::WrongRoot {
        found,
        expected_name: name,
        expected_ns: ns,
        head: head(stdout),
    })
}

fn children<'a, 'i>(node: Node<'a, 'i>, ns: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(move |n| n.is_element() && n.tag_name().namespace() == Some(ns))
}

/// The concatenated text of an element (text and CDATA children).
fn text_of(node: Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

fn child_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|n| n.has_tag_name((CONFIGURE_OUTPUT_NS, name)))
        .map(text_of)
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

fn required_attribute(
    parsed: &Parsed<'_>,
    node: Node<'_, '_>,
    element: &'static str,
    attribute: &'static str,
) -> Result<String, OutputError> {
    node.attribute(attribute).map(str::to_owned).ok_or_else(|| {
        let (line, column) = parsed.pos(parsed.doc.text_pos_at(node.range().start));
        OutputError::MissingAttribute {
            element,
            attribute,
            line,
            column,
        }
    })
}

/// The first bytes of the output, lossily decoded, for error messages.
fn head(stdout: &[u8]) -> String {
    let cut = &stdout[..stdout.len().min(HEAD_LEN)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if stdout.len() > HEAD_LEN {
        s.push('…');
    }
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As PHP's XMLWriter writes it (indent on, one space), the shape every real writer uses.
    const ERRORS_FROM_XMLWRITER: &str = r#"<?xml version="1.0"?>
<output xmlns="http://apstandard.com/ns/1/configure-output">
 <errors>
  <error id="0" setting-id="admin_password">
   <message>Password is too short</message>
   <system>strlen(admin_password) = 3 &lt; 8</system>
  </error>
  <error id="1" setting-id="">
   <message>Cannot reach the licence server</message>
   <system></system>
  </error>
 </errors>
</output>
"#;

    #[test]
    fn reads_errors_as_real_scripts_write_them() {
        let out = parse_configure_output(ERRORS_FROM_XMLWRITER.as_bytes()).unwrap();
        assert_eq!(
            out.errors,
            vec![
                ScriptError {
                    id: Some("0".into()),
                    setting_id: Some("admin_password".into()),
                    message: "Password is too short".into(),
                    system: Some("strlen(admin_password) = 3 < 8".into()),
                },
                ScriptError {
                    id: Some("1".into()),
                    setting_id: None,
                    message: "Cannot reach the licence server".into(),
                    system: None,
                },
            ]
        );
        assert!(out.settings.is_empty());
    }

    #[test]
    fn reads_settings_with_list_values_and_empty_values() {
        let xml = r#"<?xml version="1.0"?>
<output xmlns="http://apstandard.com/ns/1/configure-output">
 <settings>
  <setting id="provisioned_domains">
   <value>example.test</value>
   <value>www.example.test</value>
  </setting>
  <setting id="api_token"><value><![CDATA[a<b&c]]></value></setting>
  <setting id="note"><value/></setting>
  <setting id="locale"><choice id="en"><name>English</name></choice></setting>
 </settings>
</output>"#;
        let out = parse_configure_output(xml.as_bytes()).unwrap();
        assert_eq!(
            out.settings,
            vec![
                (
                    "provisioned_domains".into(),
                    vec!["example.test".into(), "www.example.test".into()]
                ),
                ("api_token".into(), vec!["a<b&c".into()]),
                ("note".into(), vec![String::new()]),
                ("locale".into(), vec![]),
            ]
        );
        assert!(out.errors.is_empty());
    }

    #[test]
    fn namespace_is_matched_by_uri_not_prefix() {
        let xml = r#"<co:output xmlns:co="http://apstandard.com/ns/1/configure-output"
            xmlns:x="urn:other">
  <co:errors><co:error id="0" setting-id="s"><co:message>m</co:message></co:error></co:errors>
  <x:errors><x:error id="9"><x:message>ignored</x:message></x:error></x:errors>
</co:output>"#;
        let out = parse_configure_output(xml.as_bytes()).unwrap();
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].message, "m");

        let no_ns = r#"<output><errors/></output>"#;
        let err = parse_configure_output(no_ns.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, OutputError::WrongRoot { found, .. } if found == "<output> without namespace"),
            "{err}"
        );
        let wrong_ns = r#"<p:output xmlns:p="http://apstandard.com/ns/1/resource-output"/>"#;
        let err = parse_configure_output(wrong_ns.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("resource-output"), "{err}");
    }

    #[test]
    fn empty_output_reports_nothing() {
        assert_eq!(
            parse_configure_output(b"").unwrap(),
            StructuredOutput::default()
        );
        assert_eq!(
            parse_configure_output(b" \n\t").unwrap(),
            StructuredOutput::default()
        );
    }

    #[test]
    fn leading_whitespace_and_bom_are_tolerated() {
        let xml = "\u{feff}\n\n<?xml version=\"1.0\"?>\n<output xmlns=\"http://apstandard.com/ns/1/configure-output\"/>";
        assert_eq!(
            parse_configure_output(xml.as_bytes()).unwrap(),
            StructuredOutput::default()
        );
    }

    #[test]
    fn malformed_output_names_line_column_and_quotes_the_start() {
        // PHP warnings printed to stdout before the XML are the usual cause.
        let out = "PHP Warning:  Undefined variable $x in configure on line 3\n<output/>";
        let err = parse_configure_output(out.as_bytes()).unwrap_err();
        let OutputError::Malformed {
            line, column, head, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (1, 1));
        assert!(head.contains("PHP Warning:"), "{head}");

        let unclosed = "\n\n<output xmlns=\"http://apstandard.com/ns/1/configure-output\">\n<errors>\n</output>";
        let err = parse_configure_output(unclosed.as_bytes()).unwrap_err();
        let OutputError::Malformed { line, .. } = &err else {
            panic!("{err:?}")
        };
        // Counted in the script's output, leading blank lines included.
        assert_eq!(*line, 5, "{err}");
        assert!(err.to_string().contains("5:"), "{err}");
    }

    #[test]
    fn long_output_is_quoted_truncated() {
        let out = format!("not xml {}", "x".repeat(1000));
        let err = parse_configure_output(out.as_bytes()).unwrap_err();
        let OutputError::Malformed { head, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(head.chars().count() < 220 && head.contains('…'), "{head}");
    }

    #[test]
    fn dtd_is_refused() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE output [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>
<output xmlns="http://apstandard.com/ns/1/configure-output"><errors><error><message>&b;</message></error></errors></output>"#;
        let err = parse_configure_output(xml.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, OutputError::Malformed { reason, .. } if reason.contains("DTD")),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_output_is_an_error_with_the_offset() {
        let err = parse_configure_output(b"<output>\xff</output>").unwrap_err();
        assert!(
            matches!(err, OutputError::NotUtf8 { offset: 8, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn setting_without_id_is_an_error_with_position() {
        let xml = "<output xmlns=\"http://apstandard.com/ns/1/configure-output\">\n<settings>\n  <setting><value>1</value></setting>\n</settings></output>";
        let err = parse_configure_output(xml.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            OutputError::MissingAttribute {
                element: "setting",
                attribute: "id",
                line: 3,
                column: 3,
            }
        );
    }
}
