//! `APP-LIST.xml`: parse the listing into entries (name, size, SHA-256); the folder is checked
//! against them in `listing_verify`. APP-LIST.xml does not list itself. Entries are matched by
//! namespace URI (`<ns2:files>` roots are common).

use crate::diagnostic::{Diagnostic, Location, codes};
use crate::limits::Limits;
use crate::xml;
use serde::Serialize;

pub const LIST_FILE: &str = "APP-LIST.xml";

/// One `file` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// Root-relative, `/`-separated.
    pub name: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    pub line: u32,
    pub column: u32,
    /// `/files/file[12]`, for messages.
    pub element_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    #[error("{file}: no such file; expected the package contents listing")]
    Absent { file: String },
    #[error("{file}: {size} bytes, more than the {limit}-byte limit (Limits::max_list_bytes)")]
    TooLarge { file: String, size: u64, limit: u64 },
    #[error("{file}:{line}:{column}: not valid UTF-8; expected an UTF-8 encoded listing")]
    NotUtf8 {
        file: String,
        line: u32,
        column: u32,
    },
    #[error("{file}:{line}:{column}: a document type declaration is refused; expected plain XML")]
    DtdRefused {
        file: String,
        line: u32,
        column: u32,
    },
    #[error("{file}:{line}:{column}: not well-formed XML: {message}")]
    NotWellFormed {
        file: String,
        line: u32,
        column: u32,
        message: String,
    },
    #[error("{file}: more than {limit} XML nodes (Limits::max_xml_nodes)")]
    TooManyNodes { file: String, limit: u32 },
    #[error(
        "{file}:{line}:{column}: elements nested more than {limit} deep (Limits::max_xml_depth); expected <files> holding <file> entries"
    )]
    TooDeep {
        file: String,
        line: u32,
        column: u32,
        limit: u32,
    },
    #[error(
        "{file}:{line}:{column}: root element is <{found}>; expected <files xmlns=\"http://apstandard.com/ns/1\">"
    )]
    NotAListing {
        file: String,
        line: u32,
        column: u32,
        found: String,
    },
}

xml::read_errors_as!(ListingError);

impl ListingError {
    pub fn code(&self) -> &'static str {
        match self {
            ListingError::Absent { .. } => codes::LISTING_ABSENT,
            ListingError::TooLarge { .. } | ListingError::TooManyNodes { .. } => {
                codes::XML_TOO_LARGE
            }
            ListingError::NotUtf8 { .. } => codes::XML_NOT_UTF8,
            ListingError::TooDeep { .. } => codes::XML_TOO_DEEP,
            ListingError::DtdRefused { .. } => codes::XML_DTD_REFUSED,
            ListingError::NotWellFormed { .. } | ListingError::NotAListing { .. } => {
                codes::LISTING_NOT_WELL_FORMED
            }
        }
    }

    pub fn to_diagnostic(&self) -> Diagnostic {
        let (file, line, column) = match self {
            ListingError::Absent { file }
            | ListingError::TooLarge { file, .. }
            | ListingError::TooManyNodes { file, .. } => (file, None, None),
            ListingError::NotUtf8 { file, line, column }
            | ListingError::DtdRefused { file, line, column }
            | ListingError::TooDeep {
                file, line, column, ..
            }
            | ListingError::NotWellFormed {
                file, line, column, ..
            }
            | ListingError::NotAListing {
                file, line, column, ..
            } => (file, Some(*line), Some(*column)),
        };
        let full = self.to_string();
        let prefix = match (line, column) {
            (Some(l), Some(c)) => format!("{file}:{l}:{c}: "),
            _ => format!("{file}: "),
        };
        let message = full.strip_prefix(&prefix).unwrap_or(&full).to_string();
        Diagnostic::error(
            self.code(),
            Location {
                file: file.clone(),
                line,
                column,
                element_path: None,
            },
            message,
        )
    }
}

/// Parses a listing. Entries that cannot be used (missing attribute, bad size or digest,
/// unsafe name) are left out and reported as diagnostics.
pub fn parse_app_list(
    xml_text: &str,
    file_label: &str,
    limits: &Limits,
) -> Result<(Vec<ListEntry>, Vec<Diagnostic>), ListingError> {
    if xml_text.len() as u64 > limits.max_list_bytes {
        return Err(ListingError::TooLarge {
            file: file_label.into(),
            size: xml_text.len() as u64,
            limit: limits.max_list_bytes,
        });
    }
    let doc = xml::parse(xml_text, limits).map_err(|e| ListingError::from_read(file_label, e))?;
    let root = doc.root_element();
    let ok_ns = |n: &roxmltree::Node| matches!(n.tag_name().namespace(), Some(xml::APS_NS) | None);
    if root.tag_name().name() != "files" || !ok_ns(&root) {
        let (line, column) = xml::pos_of(root);
        return Err(ListingError::NotAListing {
            file: file_label.into(),
            line,
            column,
            found: match root.tag_name().namespace() {
                Some(ns) => format!("{} xmlns=\"{ns}\"", root.tag_name().name()),
                None => root.tag_name().name().to_string(),
            },
        });
    }
    let mut entries = Vec::new();
    let mut diags = Vec::new();
    // Element paths are counted here rather than by xml::element_path, which walks every
    // sibling: quadratic on listings of thousands of files.
    let is_file = |n: &roxmltree::Node| n.is_element() && n.tag_name().name() == "file";
    let files_total = root.children().filter(is_file).count();
    let root_name = root.tag_name().name();
    let element_path = |index: usize| {
        if files_total > 1 {
            format!("/{root_name}/file[{index}]")
        } else {
            format!("/{root_name}/file")
        }
    };
    let mut positions = xml::PosCursor::new(doc.input_text());
    let mut file_index = 0usize;
    for n in root.children() {
        if is_file(&n) {
            file_index += 1;
        }
        if n.is_text() {
            let t = n.text().unwrap_or_default().trim();
            if let Some(ph) = xml::find_placeholder(t) {
                let (line, column) = positions.pos_of(n);
                diags.push(Diagnostic::warning(
                    codes::PLACEHOLDER_VALUE,
                    Location {
                        file: file_label.into(),
                        line: Some(line),
                        column: Some(column),
                        element_path: Some("/files".into()),
                    },
                    format!("the listing holds the build placeholder `{ph}` instead of <file> entries; expected one <file name= size= sha256=> per packaged file"),
                ));
            }
            continue;
        }
        if !(n.is_element() && n.tag_name().name() == "file" && ok_ns(&n)) {
            continue;
        }
        let (line, column) = positions.pos_of(n);
        let bad = |msg: String| {
            Diagnostic::error(
                codes::LISTING_INVALID_ENTRY,
                Location {
                    file: file_label.into(),
                    line: Some(line),
                    column: Some(column),
                    element_path: Some(element_path(file_index)),
                },
                msg,
            )
        };
        let (Some(name), Some(size), Some(sha)) = (
            n.attribute("name"),
            n.attribute("size"),
            n.attribute("sha256"),
        ) else {
            diags.push(bad(
                "<file> without name, size or sha256; expected all three attributes".into(),
            ));
            continue;
        };
        let Ok(size) = size.trim().parse::<u64>() else {
            diags.push(bad(format!(
                "size {size:?} of {name:?} is not a number of bytes"
            )));
            continue;
        };
        let sha = sha.trim().to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            diags.push(bad(format!(
                "sha256 {sha:?} of {name:?} is not 64 hexadecimal digits"
            )));
            continue;
        }
        let name = name.strip_prefix("./").unwrap_or(name);
        if let Some(reason) = unsafe_relative(name) {
            diags.push(bad(format!(
                "file name {name:?} {reason}; expected a relative path inside the package"
            )));
            continue;
        }
        entries.push(ListEntry {
            name: name.to_string(),
            size,
            sha256: sha,
            line,
            column,
            element_path: element_path(file_index),
        });
    }
    Ok((entries, diags))
}

/// Why a `/`-separated member name would leave the package folder, if it would.
pub(crate) fn unsafe_relative(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Some("is an absolute path");
    }
    if name.len() >= 2 && name.as_bytes()[1] == b':' {
        return Some("starts with a drive letter");
    }
    if name.contains('\0') {
        return Some("contains a NUL byte");
    }
    if name.split(['/', '\\']).any(|c| c == "..") {
        return Some("contains `..`");
    }
    None
}
