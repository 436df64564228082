//! `APP-LIST.xml`: parse the listing and verify a package folder against it (every listed file
//! present with its size and SHA-256; unlisted and missing files reported). APP-LIST.xml does
//! not list itself. Entries are matched by namespace URI (`<ns2:files>` roots are common).

use crate::diagnostic::{Diagnostic, Location, codes};
use crate::limits::Limits;
use crate::package::{PackageError, io_err, read_bounded};
use crate::xml::{self, XmlReadError};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

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

    fn from_read(file: &str, e: XmlReadError) -> Self {
        let file = file.to_string();
        match e {
            XmlReadError::NotUtf8 { line, column } => ListingError::NotUtf8 { file, line, column },
            XmlReadError::Dtd { line, column } => ListingError::DtdRefused { file, line, column },
            XmlReadError::NotWellFormed {
                line,
                column,
                message,
            } => ListingError::NotWellFormed {
                file,
                line,
                column,
                message,
            },
            XmlReadError::TooManyNodes { limit } => ListingError::TooManyNodes { file, limit },
            XmlReadError::TooDeep {
                line,
                column,
                limit,
            } => ListingError::TooDeep {
                file,
                line,
                column,
                limit,
            },
        }
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
    let mut file_index = 0usize;
    for n in root.children() {
        if is_file(&n) {
            file_index += 1;
        }
        if n.is_text() {
            let t = n.text().unwrap_or_default().trim();
            if let Some(ph) = xml::find_placeholder(t) {
                let (line, column) = xml::pos_of(n);
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
        let bad = |msg: String| {
            Diagnostic::error(
                codes::LISTING_INVALID_ENTRY,
                xml::location(file_label, n),
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
        let (line, column) = xml::pos_of(n);
        let root_name = root.tag_name().name();
        let element_path = if files_total > 1 {
            format!("/{root_name}/file[{file_index}]")
        } else {
            format!("/{root_name}/file")
        };
        entries.push(ListEntry {
            name: name.to_string(),
            size,
            sha256: sha,
            line,
            column,
            element_path,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeMismatch {
    pub name: String,
    pub listed: u64,
    pub actual: u64,
}

/// Result of [`verify_listing`]. `diagnostics` holds every finding below as a diagnostic too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListingReport {
    pub listed: usize,
    pub verified: usize,
    /// Listed but not in the folder.
    pub missing: Vec<String>,
    /// In the folder but not listed (APP-LIST.xml itself excepted).
    pub unlisted: Vec<String>,
    pub size_mismatches: Vec<SizeMismatch>,
    pub digest_mismatches: Vec<String>,
    /// Symlinks found in the folder (never followed).
    pub symlinks: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl ListingReport {
    /// Every listed file present and intact, nothing unlisted.
    pub fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// Verifies the folder `root` against its `APP-LIST.xml`.
pub fn verify_listing(root: &Utf8Path, limits: &Limits) -> Result<ListingReport, PackageError> {
    let list_path = root.join(LIST_FILE);
    let lerr = |source| PackageError::Listing {
        root: root.to_path_buf(),
        source,
    };
    let bytes = match read_bounded(&list_path, limits.max_list_bytes)? {
        None => {
            return Err(lerr(ListingError::Absent {
                file: LIST_FILE.into(),
            }));
        }
        Some(Err(size)) => {
            return Err(lerr(ListingError::TooLarge {
                file: LIST_FILE.into(),
                size,
                limit: limits.max_list_bytes,
            }));
        }
        Some(Ok(b)) => b,
    };
    let text = xml::decode(&bytes).map_err(|e| lerr(ListingError::from_read(LIST_FILE, e)))?;
    let (entries, mut diagnostics) = parse_app_list(text, LIST_FILE, limits).map_err(lerr)?;

    let mut on_disk = BTreeMap::new();
    let mut symlinks = Vec::new();
    walk(root, root, limits, &mut on_disk, &mut symlinks)?;
    on_disk.remove(LIST_FILE);

    let mut report = ListingReport {
        listed: entries.len(),
        ..Default::default()
    };
    let at = |e: &ListEntry| Location {
        file: LIST_FILE.into(),
        line: Some(e.line),
        column: Some(e.column),
        element_path: Some(e.element_path.clone()),
    };
    let mut seen = std::collections::HashSet::new();
    for e in &entries {
        if !seen.insert(e.name.as_str()) {
            diagnostics.push(Diagnostic::error(
                codes::LISTING_INVALID_ENTRY,
                at(e),
                format!(
                    "{} is listed more than once; expected one entry per file",
                    e.name
                ),
            ));
            continue;
        }
        let Some(actual) = on_disk.remove(&e.name) else {
            diagnostics.push(Diagnostic::error(
                codes::LISTING_FILE_MISSING,
                at(e),
                format!("{} is listed but not in the package", e.name),
            ));
            report.missing.push(e.name.clone());
            continue;
        };
        if actual != e.size {
            diagnostics.push(Diagnostic::error(
                codes::LISTING_SIZE_MISMATCH,
                at(e),
                format!(
                    "{} is {actual} bytes; the listing says {} bytes",
                    e.name, e.size
                ),
            ));
            report.size_mismatches.push(SizeMismatch {
                name: e.name.clone(),
                listed: e.size,
                actual,
            });
            continue;
        }
        let path = root.join(&e.name);
        let digest = sha256_file(&path)?;
        if digest != e.sha256 {
            diagnostics.push(Diagnostic::error(
                codes::LISTING_DIGEST_MISMATCH,
                at(e),
                format!(
                    "{} has SHA-256 {digest}; the listing says {}",
                    e.name, e.sha256
                ),
            ));
            report.digest_mismatches.push(e.name.clone());
            continue;
        }
        report.verified += 1;
    }
    for name in on_disk.keys() {
        diagnostics.push(Diagnostic::warning(
            codes::LISTING_FILE_UNLISTED,
            Location::file(name.clone()),
            format!("{name} is in the package but not in {LIST_FILE}"),
        ));
        report.unlisted.push(name.clone());
    }
    for s in &symlinks {
        diagnostics.push(Diagnostic::error(
            codes::PACKAGE_SYMLINK,
            Location::file(s.clone()),
            format!("{s} is a symlink; packages may not contain symlinks (not followed)"),
        ));
    }
    report.symlinks = symlinks;
    report.diagnostics = diagnostics;
    Ok(report)
}

fn walk(
    root: &Utf8Path,
    dir: &Utf8Path,
    limits: &Limits,
    out: &mut BTreeMap<String, u64>,
    symlinks: &mut Vec<String>,
) -> Result<(), PackageError> {
    let mut entries = Vec::new();
    for ent in dir.read_dir_utf8().map_err(io_err(dir))? {
        entries.push(ent.map_err(io_err(dir))?);
    }
    entries.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for ent in entries {
        let path: Utf8PathBuf = ent.path().to_path_buf();
        let rel = path
            .strip_prefix(root)
            .expect("walked below root")
            .as_str()
            .replace('\\', "/");
        let ft = ent.file_type().map_err(io_err(&path))?;
        if ft.is_symlink() {
            symlinks.push(rel);
        } else if ft.is_dir() {
            walk(root, &path, limits, out, symlinks)?;
        } else {
            if out.len() as u64 >= limits.max_listed_files {
                return Err(PackageError::Io {
                    path: root.to_path_buf(),
                    source: std::io::Error::other(format!(
                        "more than {} files (Limits::max_listed_files)",
                        limits.max_listed_files
                    )),
                });
            }
            let len = ent.metadata().map_err(io_err(&path))?.len();
            out.insert(rel, len);
        }
    }
    Ok(())
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Utf8Path) -> Result<String, PackageError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
