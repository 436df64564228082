//! A package folder checked against its `APP-LIST.xml`: every listed file present with its
//! size and SHA-256, nothing unlisted, no symlink.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Location, codes};
use crate::limits::Limits;
use crate::listing::{LIST_FILE, ListEntry, ListingError, parse_app_list};
use crate::package::{PackageError, io_err, read_bounded};
use crate::xml;

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
    // Each entry's fate but its digest first, in listing order; the digests then in parallel;
    // the findings last, in listing order again, so the report does not depend on timing.
    enum Fate {
        Duplicate,
        Missing,
        Size(u64),
        Digest(usize),
    }
    let mut seen = std::collections::HashSet::new();
    let mut to_hash = Vec::new();
    let fates: Vec<Fate> = entries
        .iter()
        .map(|e| {
            if !seen.insert(e.name.as_str()) {
                return Fate::Duplicate;
            }
            match on_disk.remove(&e.name) {
                None => Fate::Missing,
                Some(actual) if actual != e.size => Fate::Size(actual),
                Some(_) => {
                    to_hash.push(root.join(&e.name));
                    Fate::Digest(to_hash.len() - 1)
                }
            }
        })
        .collect();
    let mut digests = crate::digest::sha256_files(&to_hash);
    for (e, fate) in entries.iter().zip(fates) {
        match fate {
            Fate::Duplicate => diagnostics.push(Diagnostic::error(
                codes::LISTING_INVALID_ENTRY,
                at(e),
                format!(
                    "{} is listed more than once; expected one entry per file",
                    e.name
                ),
            )),
            Fate::Missing => {
                diagnostics.push(Diagnostic::error(
                    codes::LISTING_FILE_MISSING,
                    at(e),
                    format!("{} is listed but not in the package", e.name),
                ));
                report.missing.push(e.name.clone());
            }
            Fate::Size(actual) => {
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
            }
            Fate::Digest(i) => {
                let path = &to_hash[i];
                let digest =
                    std::mem::replace(&mut digests[i], Ok(String::new())).map_err(io_err(path))?;
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
                } else {
                    report.verified += 1;
                }
            }
        }
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
