//! The checks of an archive that need more than one entry: part order, nested mappings, and
//! the manifest against what the pass observed.

use std::collections::{BTreeMap, HashSet};

use camino::Utf8Path;

use crate::archive::{ArchiveError, FORMAT_NAME, HEADER_ENTRY, Manifest, ManifestHeader, PartKind};

use super::scan::*;

/// The parts must appear in the manifest's order: a reader restoring them in archive order
/// then does what the manifest (and its tag) says, in that order.
pub(in crate::archive) fn check_order(
    archive: &Utf8Path,
    manifest: &Manifest,
    order: &[String],
) -> Result<(), ArchiveError> {
    let listed = manifest.parts.iter().map(|p| p.entry.as_str());
    if !listed.eq(order.iter().map(String::as_str)) {
        return Err(ArchiveError::ManifestInvalid {
            archive: archive.to_owned(),
            reason: format!(
                "the parts appear in the order {} but the manifest lists {}",
                order.join(", "),
                manifest
                    .parts
                    .iter()
                    .map(|p| p.entry.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(())
}

/// A web part of a mapping below another mapping (`/media` below `/`) may be restored into a
/// folder inside the parent's folder: refused when the parent's part holds a symlink (or a
/// file) at that place or at any folder above it, which the nested part would be written
/// through.
pub(in crate::archive) fn check_nested(
    archive: &Utf8Path,
    manifest: &Manifest,
    non_folders: &NonFolders,
) -> Result<(), ArchiveError> {
    let web: Vec<(&str, &str)> = manifest
        .parts
        .iter()
        .filter_map(|p| match &p.kind {
            PartKind::WebDir { mapping_url } => Some((mapping_url.as_str(), p.entry.as_str())),
            _ => None,
        })
        .collect();
    for (url, entry) in &web {
        for (parent_url, parent_entry) in &web {
            if parent_entry == entry {
                continue;
            }
            let Some(rel) = url_below(url, parent_url) else {
                continue;
            };
            let mut place = String::new();
            for component in rel.split('/') {
                if !place.is_empty() {
                    place.push('/');
                }
                place.push_str(component);
                if non_folders.holds(parent_entry, place.as_bytes()) {
                    return Err(ArchiveError::UnsafePath {
                        archive: archive.to_owned(),
                        entry: format!("{parent_entry}{place}"),
                        reason: "it is not a folder, yet the part of a nested mapping would be restored through it",
                    });
                }
            }
        }
    }
    Ok(())
}

/// `url` relative to mapping URL `parent` when it lies strictly below it (`/a/b` below `/a`
/// → `a/b`'s last part `b`; below `/` → `a/b`). Empty, `.` and `..` components never match.
pub(crate) fn url_below<'a>(url: &'a str, parent: &str) -> Option<&'a str> {
    let parent = parent.trim_end_matches('/');
    let rest = url.strip_prefix(parent)?.strip_prefix('/')?;
    let rest = rest.trim_matches('/');
    (!rest.is_empty()
        && !rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".."))
    .then_some(rest)
}

pub(in crate::archive) fn check_manifest(
    archive: &Utf8Path,
    header: &ManifestHeader,
    manifest: &Manifest,
    observed: &BTreeMap<String, Observed>,
) -> Result<(), ArchiveError> {
    let invalid = |reason: String| ArchiveError::ManifestInvalid {
        archive: archive.to_owned(),
        reason,
    };
    if manifest.format != FORMAT_NAME {
        return Err(invalid(format!(
            "format is {:?}, not {FORMAT_NAME:?}",
            manifest.format
        )));
    }
    if &manifest.header != header {
        return Err(invalid(format!(
            "its header differs from the archive's first entry {HEADER_ENTRY}"
        )));
    }
    let mut names = HashSet::new();
    let mut entries = HashSet::new();
    for part in &manifest.parts {
        if !names.insert(part.name.as_str()) || !entries.insert(part.entry.as_str()) {
            return Err(invalid(format!("part {:?} is listed twice", part.name)));
        }
        let expected_entry = match &part.kind {
            PartKind::WebDir { .. } => format!("{}/", part.name),
            _ => format!("files/{}", part.name),
        };
        if part.entry != expected_entry {
            return Err(invalid(format!(
                "part {:?} names entry {:?}, expected {expected_entry:?}",
                part.name, part.entry
            )));
        }
        let Some(seen) = observed.get(&part.entry) else {
            return Err(ArchiveError::MissingPart {
                archive: archive.to_owned(),
                part: part.name.clone(),
            });
        };
        if seen.size != part.size {
            return Err(ArchiveError::SizeMismatch {
                archive: archive.to_owned(),
                part: part.name.clone(),
                expected: part.size,
                actual: seen.size,
            });
        }
        if seen.sha256 != part.sha256 {
            return Err(ArchiveError::HashMismatch {
                archive: archive.to_owned(),
                part: part.name.clone(),
                expected: part.sha256.clone(),
                actual: seen.sha256.clone(),
            });
        }
        if let Some(tree) = &seen.tree {
            for (what, expected, actual) in [
                ("files", part.file_count, tree.files),
                ("folders", part.dir_count, tree.dirs),
                ("symlinks", part.symlink_count, tree.symlinks),
            ] {
                if let Some(expected) = expected
                    && expected != actual
                {
                    return Err(ArchiveError::CountMismatch {
                        archive: archive.to_owned(),
                        part: part.name.clone(),
                        what,
                        expected,
                        actual,
                    });
                }
            }
        }
    }
    if let Some(extra) = observed.keys().find(|k| !entries.contains(k.as_str())) {
        return Err(ArchiveError::ExtraPart {
            archive: archive.to_owned(),
            entry: extra.clone(),
        });
    }
    Ok(())
}
