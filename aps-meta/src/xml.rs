//! Shared XML reading: safe parsing options, positions and element paths for messages.

use crate::diagnostic::Location;
use crate::limits::Limits;
use roxmltree::{Document, Node, ParsingOptions};

pub(crate) const APS_NS: &str = "http://apstandard.com/ns/1";
pub(crate) const APS2_NS: &str = "http://aps-standard.org/ns/2";
pub(crate) const PHP_NS: &str = "http://apstandard.com/ns/1/php";
pub(crate) const DB_NS: &str = "http://apstandard.com/ns/1/db";
pub(crate) const MAIL_NS: &str = "http://apstandard.com/ns/1/mail";
pub(crate) const APACHE_NS: &str = "http://apstandard.com/ns/1/apache";
pub(crate) const PERL_NS: &str = "http://apstandard.com/ns/1/perl";
pub(crate) const DNS_NS: &str = "http://apstandard.com/ns/1/dns";
pub(crate) const LICENSING_NS: &str = "http://apstandard.com/ns/1/licensing";
pub(crate) const ASPNET_NS: &str = "http://apstandard.com/ns/1/aspnet";
pub(crate) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Why a document could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XmlReadError {
    NotUtf8 {
        line: u32,
        column: u32,
    },
    Dtd {
        line: u32,
        column: u32,
    },
    NotWellFormed {
        line: u32,
        column: u32,
        message: String,
    },
    TooManyNodes {
        limit: u32,
    },
    /// Elements nested deeper than `Limits::max_xml_depth`, at the first element too deep.
    TooDeep {
        line: u32,
        column: u32,
        limit: u32,
    },
}

/// Bytes to text: UTF-8 only (every real package is), a leading BOM dropped.
pub(crate) fn decode(bytes: &[u8]) -> Result<&str, XmlReadError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col(&bytes[..e.valid_up_to()]);
        XmlReadError::NotUtf8 { line, column }
    })
}

/// 1-based line and column (in characters) of the end of `prefix`.
pub(crate) fn line_col(prefix: &[u8]) -> (u32, u32) {
    let line = prefix.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let last = prefix
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&prefix[last..]).chars().count() as u32 + 1;
    (line, col)
}

/// Parses with DTDs refused: no entity is ever declared, so none is expanded (billion laughs,
/// external entities); only the five predefined entities and character references remain.
/// Element nesting is bounded too (see `Limits::max_xml_depth`): roxmltree itself is iterative,
/// but our model builder recurses.
pub(crate) fn parse<'i>(text: &'i str, limits: &Limits) -> Result<Document<'i>, XmlReadError> {
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_xml_nodes,
        entity_resolver: None,
    };
    let doc = Document::parse_with_options(text, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => {
            // roxmltree reports 1:1 here; point at the DOCTYPE itself.
            let at = text.find("<!DOCTYPE").unwrap_or(0);
            let (line, column) = line_col(&text.as_bytes()[..at]);
            XmlReadError::Dtd { line, column }
        }
        roxmltree::Error::NodesLimitReached => XmlReadError::TooManyNodes {
            limit: limits.max_xml_nodes,
        },
        other => {
            let pos = other.pos();
            XmlReadError::NotWellFormed {
                line: pos.row,
                column: pos.col,
                message: other.to_string(),
            }
        }
    })?;
    check_depth(&doc, limits.max_xml_depth)?;
    Ok(doc)
}

/// One iterative walk in document order (no recursion, no allocation, whatever the depth):
/// down to the first child, else to the next sibling, else back up. Only elements have
/// children, so the depth of an element is its number of element ancestors plus one.
fn check_depth(doc: &Document, limit: u32) -> Result<(), XmlReadError> {
    let too_deep = |n: Node| {
        let (line, column) = pos_of(n);
        Err(XmlReadError::TooDeep {
            line,
            column,
            limit,
        })
    };
    let mut node = doc.root();
    let mut depth = 0u32;
    loop {
        if let Some(child) = node.first_child() {
            node = child;
            depth += 1;
        } else {
            loop {
                if let Some(next) = node.next_sibling() {
                    node = next;
                    break;
                }
                match node.parent() {
                    Some(parent) if depth > 1 => {
                        node = parent;
                        depth -= 1;
                    }
                    _ => return Ok(()),
                }
            }
        }
        if depth > limit && node.is_element() {
            return too_deep(node);
        }
    }
}

/// `/application/service/settings/setting[3]`: local names, with a 1-based index among
/// same-named element siblings where there is more than one.
pub(crate) fn element_path(node: Node) -> String {
    let mut parts = Vec::new();
    for n in node.ancestors().filter(|n| n.is_element()) {
        let name = n.tag_name().name();
        let same = |s: &Node| s.is_element() && s.tag_name().name() == name;
        let before = n.prev_siblings().skip(1).filter(same).count();
        let after = n.next_siblings().skip(1).filter(same).count();
        if before + after > 0 {
            parts.push(format!("{name}[{}]", before + 1));
        } else {
            parts.push(name.to_string());
        }
    }
    parts.reverse();
    let mut s = String::new();
    for p in parts {
        s.push('/');
        s.push_str(&p);
    }
    s
}

pub(crate) fn pos_of(node: Node) -> (u32, u32) {
    let p = node.document().text_pos_at(node.range().start);
    (p.row, p.col)
}

/// Lines and columns of nodes asked for in document order, each counted on from the one
/// before: `text_pos_at` counts from the start of the text every time, which made a listing
/// of 30,000 entries quadratic (seconds of an install). Gives what [`pos_of`] gives.
pub(crate) struct PosCursor<'t> {
    text: &'t str,
    /// Byte offset counted up to, the line it is on, and the characters before it on that
    /// line.
    at: usize,
    row: u32,
    col_chars: u32,
}

impl<'t> PosCursor<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        PosCursor {
            text,
            at: 0,
            row: 1,
            col_chars: 0,
        }
    }

    /// `(line, column)` of `node`, 1-based, as [`pos_of`].
    pub(crate) fn pos_of(&mut self, node: Node) -> (u32, u32) {
        self.pos_at(node.range().start)
    }

    fn pos_at(&mut self, pos: usize) -> (u32, u32) {
        let pos = pos.min(self.text.len());
        if pos < self.at {
            // Asked out of order: count again from the start (correct, only slower).
            *self = PosCursor::new(self.text);
        }
        let seg = &self.text.as_bytes()[self.at..pos];
        match seg.iter().rposition(|b| *b == b'\n') {
            Some(last) => {
                self.row += seg.iter().filter(|b| **b == b'\n').count() as u32;
                self.col_chars = count_chars(&seg[last + 1..]);
            }
            None => self.col_chars += count_chars(seg),
        }
        self.at = pos;
        (self.row, self.col_chars + 1)
    }
}

/// Characters in UTF-8 bytes (a node starts on a character boundary).
fn count_chars(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|b| (**b & 0xC0) != 0x80).count() as u32
}

pub(crate) fn location(file: &str, node: Node) -> Location {
    let (line, column) = pos_of(node);
    Location {
        file: file.to_string(),
        line: Some(line),
        column: Some(column),
        element_path: Some(element_path(node)),
    }
}

/// Direct text content, trimmed (comments between text pieces are skipped).
pub(crate) fn text(node: Node) -> String {
    text_as(node)
}

/// [`text`] into any owned string type: the per-setting values are `CompactString`s.
pub(crate) fn text_as<T: for<'a> From<&'a str> + From<String>>(node: Node) -> T {
    let mut texts = node
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text());
    let Some(first) = texts.next() else {
        return T::from("");
    };
    // Nearly every value is one text node: converted once, already trimmed.
    let Some(second) = texts.next() else {
        return T::from(first.trim());
    };
    // Text split by comments or CDATA: joined, then trimmed as a whole.
    let mut out = String::from(first);
    out.push_str(second);
    texts.for_each(|t| out.push_str(t));
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        T::from(out)
    } else {
        T::from(trimmed)
    }
}

/// Is this a build-template placeholder such as `__VERSION__`, `{VERSION}`, `%PRODUCT_VERSION%`
/// or `@VERSION@`? Checked without regex: it runs on many values per file.
pub(crate) fn find_placeholder(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let is_name = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let (open, close): (&[u8], &[u8]) = match b[i] {
            b'_' if b.get(i + 1) == Some(&b'_') => (b"__", b"__"),
            b'{' => (b"{", b"}"),
            b'%' => (b"%", b"%"),
            b'@' => (b"@", b"@"),
            _ => {
                i += 1;
                continue;
            }
        };
        let start = i + open.len();
        let mut j = start;
        while j < b.len() && is_name(b[j]) && !(close == b"__" && b[j..].starts_with(b"__")) {
            j += 1;
        }
        if j > start && b[start].is_ascii_uppercase() && b[j..].starts_with(close) {
            return Some(&s[i..j + close.len()]);
        }
        i += 1;
    }
    None
}

/// `from_read(file, error)` for an error enum that has the variants `NotUtf8`, `DtdRefused`,
/// `NotWellFormed`, `TooManyNodes` and `TooDeep`, each naming the `file`: one mapping of
/// [`XmlReadError`] for every XML file the crate reads.
macro_rules! read_errors_as {
    ($error:ident) => {
        impl $error {
            pub(crate) fn from_read(file: &str, e: $crate::xml::XmlReadError) -> Self {
                use $crate::xml::XmlReadError;
                let file = file.to_string();
                match e {
                    XmlReadError::NotUtf8 { line, column } => {
                        $error::NotUtf8 { file, line, column }
                    }
                    XmlReadError::Dtd { line, column } => $error::DtdRefused { file, line, column },
                    XmlReadError::NotWellFormed {
                        line,
                        column,
                        message,
                    } => $error::NotWellFormed {
                        file,
                        line,
                        column,
                        message,
                    },
                    XmlReadError::TooManyNodes { limit } => $error::TooManyNodes { file, limit },
                    XmlReadError::TooDeep {
                        line,
                        column,
                        limit,
                    } => $error::TooDeep {
                        file,
                        line,
                        column,
                        limit,
                    },
                }
            }
        }
    };
}
pub(crate) use read_errors_as;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found() {
        assert_eq!(find_placeholder("__VERSION__"), Some("__VERSION__"));
        assert_eq!(find_placeholder("v{VERSION}"), Some("{VERSION}"));
        assert_eq!(
            find_placeholder("%PRODUCT_VERSION%"),
            Some("%PRODUCT_VERSION%")
        );
        assert_eq!(find_placeholder("@VERSION@"), Some("@VERSION@"));
        assert_eq!(find_placeholder("1.2.3"), None);
        assert_eq!(find_placeholder("100% {ok}"), None);
        assert_eq!(find_placeholder("a__b"), None);
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col(b""), (1, 1));
        assert_eq!(line_col(b"ab\ncd"), (2, 3));
        assert_eq!(line_col("é".as_bytes()), (1, 2));
    }

    #[test]
    fn cursor_positions_match_text_pos_at() {
        let text = "<a>\n  <b/><c x='é'/>\r\n\t<b>\n<d/>grüße<e/></b></a>";
        let doc = Document::parse(text).unwrap();
        let mut cursor = PosCursor::new(doc.input_text());
        let nodes: Vec<Node> = doc.descendants().filter(|n| n.is_element()).collect();
        for n in &nodes {
            assert_eq!(cursor.pos_of(*n), pos_of(*n), "{:?}", n.tag_name());
        }
        // Out of order it starts again and still agrees.
        assert_eq!(cursor.pos_of(nodes[1]), pos_of(nodes[1]));
    }

    #[test]
    fn element_paths_index_only_repeated_names() {
        let doc = Document::parse("<a><b/><c/><b><d/></b></a>").unwrap();
        let d = doc.descendants().find(|n| n.has_tag_name("d")).unwrap();
        assert_eq!(element_path(d), "/a/b[2]/d");
    }
}
