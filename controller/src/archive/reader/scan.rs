//! The pass both verify and extract make over an archive: every entry read once, checked
//! against the manifest as it streams by, and written to its target when there is one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::OpenOptionsExt;

use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use crate::archive::codec::read_error;
use crate::archive::tag::{ArchiveTag, ManifestSeal};
use crate::archive::tree::{CopyError, TreeReader, TreeStats, copy_hashing, extract_err};
use crate::archive::{
    ArchiveError, FORMAT_VERSION, HEADER_ENTRY, MANIFEST_ENTRY, Manifest, ManifestHeader,
    TAG_ENTRY, check_part_name,
};

use super::checks::*;

/// Largest header or manifest entry read into memory (a manifest is a few KiB).
pub(in crate::archive) const MAX_JSON: u64 = 16 * 1024 * 1024;

/// Destinations resolved to archive entries.
#[derive(Default)]
pub(in crate::archive) struct Targets {
    /// `web/<n>/` → destination folder.
    pub(in crate::archive) web: HashMap<String, Utf8PathBuf>,
    /// `files/<name>` → destination file.
    pub(in crate::archive) files: HashMap<String, Utf8PathBuf>,
    /// Owner of what is created in web folders.
    pub(in crate::archive) owner: Option<crate::account::Account>,
}

pub(in crate::archive) struct Observed {
    pub(in crate::archive) size: u64,
    pub(in crate::archive) sha256: String,
    pub(in crate::archive) tree: Option<TreeStats>,
}

pub(in crate::archive) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(in crate::archive) fn read_json<T: serde::de::DeserializeOwned, R: Read>(
    entry: &mut tar::Entry<'_, R>,
    archive: &Utf8Path,
    what: &str,
) -> Result<T, ArchiveError> {
    read_json_bytes(entry, archive, what).map(|(v, _)| v)
}

/// [`read_json`], also returning the entry's exact bytes (the manifest's, for its tag).
pub(in crate::archive) fn read_json_bytes<T: serde::de::DeserializeOwned, R: Read>(
    entry: &mut tar::Entry<'_, R>,
    archive: &Utf8Path,
    what: &str,
) -> Result<(T, Vec<u8>), ArchiveError> {
    if entry.header().entry_type() != tar::EntryType::Regular || entry.size() > MAX_JSON {
        return Err(ArchiveError::ManifestInvalid {
            archive: archive.to_owned(),
            reason: format!("{what} is not a regular file of at most {MAX_JSON} bytes"),
        });
    }
    let mut buf = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut buf)
        .map_err(|e| read_error(archive, Some(what), e))?;
    if buf.len() as u64 != entry.size() {
        return Err(ArchiveError::Truncated {
            archive: archive.to_owned(),
            part: Some(what.to_owned()),
            detail: format!("{what} ends after {} of {} bytes", buf.len(), entry.size()),
        });
    }
    let value = serde_json::from_slice(&buf).map_err(|e| ArchiveError::ManifestInvalid {
        archive: archive.to_owned(),
        reason: format!("{what}: {e}"),
    })?;
    Ok((value, buf))
}

/// Splits `web/<n>/<rel>` into (`web/<n>/`, rel).
pub(in crate::archive) fn web_entry(path: &[u8]) -> Option<(String, &[u8])> {
    let rest = path.strip_prefix(b"web/")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 6 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let after = &rest[digits..];
    let rel = match after {
        [] => after,
        [b'/', rel @ ..] => rel,
        _ => return None,
    };
    Some((format!("web/{}/", lossy(&rest[..digits])), rel))
}

/// Where each web folder holds something other than a folder: hashes of those paths (a
/// keyed hash, so a crafted archive cannot aim for a collision; one would only cause a
/// refusal). Enough to refuse a nested mapping's part that would be written through a
/// symlink (or over a file) of its parent's part, without keeping every path in memory.
#[derive(Default)]
pub(in crate::archive) struct NonFolders {
    pub(in crate::archive) hasher: std::collections::hash_map::RandomState,
    pub(in crate::archive) by_prefix: HashMap<String, HashSet<u64>>,
}

impl NonFolders {
    pub(in crate::archive) fn add(&mut self, prefix: &str, rel: &[u8]) {
        let h = self.hasher.hash_one(trim_slashes(rel));
        self.by_prefix
            .entry(prefix.to_owned())
            .or_default()
            .insert(h);
    }

    pub(in crate::archive) fn holds(&self, prefix: &str, rel: &[u8]) -> bool {
        let h = self.hasher.hash_one(trim_slashes(rel));
        self.by_prefix.get(prefix).is_some_and(|s| s.contains(&h))
    }
}

pub(in crate::archive) fn trim_slashes(rel: &[u8]) -> &[u8] {
    let mut r = rel;
    while let [rest @ .., b'/'] = r {
        r = rest;
    }
    r
}

/// The pass both verify and extract make. With empty targets nothing is written.
pub(in crate::archive) fn scan(
    stream: Box<dyn Read + Send>,
    archive: &Utf8Path,
    targets: &Targets,
) -> Result<(Manifest, ManifestSeal), ArchiveError> {
    // Decryption and decompression run ahead on their own thread, beside the hashing and
    // writing below.
    let stream = crate::archive::prefetch::Prefetch::new(stream)
        .map_err(|e| read_error(archive, None, e))?;
    let mut tar = tar::Archive::new(stream);
    let mut observed: BTreeMap<String, Observed> = BTreeMap::new();
    // Part entries (`files/<name>`, `web/<n>/`) in the order they appear.
    let mut order: Vec<String> = Vec::new();
    let mut non_folders = NonFolders::default();
    let mut buf = Vec::new();
    let header: ManifestHeader;
    let manifest: Manifest;
    let manifest_bytes: Vec<u8>;
    let mut tag: Option<ArchiveTag> = None;
    {
        let mut entries = tar.entries().map_err(|e| read_error(archive, None, e))?;
        let mut next = |part: Option<&str>| match entries.next() {
            None => Ok(None),
            Some(Ok(e)) => Ok(Some(e)),
            Some(Err(e)) => Err(read_error(archive, part, e)),
        };

        let Some(mut first) = next(None)? else {
            return Err(ArchiveError::Truncated {
                archive: archive.to_owned(),
                part: None,
                detail: "the archive is empty".into(),
            });
        };
        if &*first.path_bytes() != HEADER_ENTRY.as_bytes() {
            return Err(ArchiveError::UnexpectedEntry {
                archive: archive.to_owned(),
                entry: lossy(&first.path_bytes()),
                reason: format!("an aps-controller backup starts with {HEADER_ENTRY}"),
            });
        }
        header = read_json(&mut first, archive, HEADER_ENTRY)?;
        if header.format_version > FORMAT_VERSION || header.format_version == 0 {
            return Err(ArchiveError::UnsupportedVersion {
                archive: archive.to_owned(),
                found: header.format_version,
                supported: FORMAT_VERSION,
            });
        }
        drop(first);

        // The web folder being read: (entry prefix, reader). Its entries must be contiguous.
        let mut web: Option<(String, TreeReader)> = None;
        let mut done_web: HashSet<String> = HashSet::new();
        let mut close_web = |web: &mut Option<(String, TreeReader)>,
                             observed: &mut BTreeMap<String, Observed>|
         -> Result<(), ArchiveError> {
            if let Some((prefix, tree)) = web.take() {
                let stats = tree.finish()?;
                observed.insert(
                    prefix.clone(),
                    Observed {
                        size: stats.bytes,
                        sha256: stats.sha256.clone(),
                        tree: Some(stats),
                    },
                );
                done_web.insert(prefix);
            }
            Ok(())
        };
        loop {
            let current = web
                .as_ref()
                .map(|(p, _)| p.trim_end_matches('/').to_owned());
            let Some(mut entry) = next(current.as_deref())? else {
                return Err(ArchiveError::Truncated {
                    archive: archive.to_owned(),
                    part: current,
                    detail: format!("the archive ends before its {MANIFEST_ENTRY}"),
                });
            };
            let path = entry.path_bytes().into_owned();
            if path == MANIFEST_ENTRY.as_bytes() {
                close_web(&mut web, &mut observed)?;
                (manifest, manifest_bytes) = read_json_bytes(&mut entry, archive, MANIFEST_ENTRY)?;
                break;
            }
            if let Some((prefix, rel)) = web_entry(&path) {
                if web.as_ref().is_none_or(|(p, _)| *p != prefix) {
                    close_web(&mut web, &mut observed)?;
                    if observed.contains_key(&prefix) {
                        return Err(ArchiveError::UnexpectedEntry {
                            archive: archive.to_owned(),
                            entry: lossy(&path),
                            reason: "entries of one web folder must be contiguous".into(),
                        });
                    }
                    order.push(prefix.clone());
                    let part = prefix.trim_end_matches('/');
                    let tree = TreeReader::new(
                        archive,
                        part,
                        targets.web.get(&prefix).map(|d| d.as_path()),
                        targets.owner.as_ref(),
                    )?;
                    web = Some((prefix, tree));
                }
                let (prefix, tree) = web.as_mut().expect("set above");
                if entry.header().entry_type() != tar::EntryType::Directory {
                    non_folders.add(prefix, rel);
                }
                tree.entry(&path, rel, &mut entry)?;
                continue;
            }
            close_web(&mut web, &mut observed)?;
            if let Some(name) = path.strip_prefix(b"files/") {
                let name = String::from_utf8(name.to_vec())
                    .ok()
                    .filter(|n| check_part_name(n).is_ok());
                let (Some(name), tar::EntryType::Regular) = (name, entry.header().entry_type())
                else {
                    return Err(ArchiveError::UnexpectedEntry {
                        archive: archive.to_owned(),
                        entry: lossy(&path),
                        reason: "not a regular file with a valid part name".into(),
                    });
                };
                let key = format!("files/{name}");
                if observed.contains_key(&key) {
                    return Err(ArchiveError::UnexpectedEntry {
                        archive: archive.to_owned(),
                        entry: key,
                        reason: "the part appears twice".into(),
                    });
                }
                let size = entry.size();
                let mut sha = Sha256::new();
                let copied = match targets.files.get(&key) {
                    None => copy_hashing(&mut entry, &mut sha, None, &mut buf)
                        .map_err(|e| read_error(archive, Some(&name), e.into_read()))?,
                    Some(dest) => {
                        extract_file(&mut entry, &mut sha, &mut buf, dest, archive, &name)?
                    }
                };
                if copied != size {
                    return Err(ArchiveError::Truncated {
                        archive: archive.to_owned(),
                        part: Some(name),
                        detail: format!("ends after {copied} of {size} bytes"),
                    });
                }
                order.push(key.clone());
                observed.insert(
                    key,
                    Observed {
                        size,
                        sha256: hex::encode(sha.finalize()),
                        tree: None,
                    },
                );
                continue;
            }
            return Err(ArchiveError::UnexpectedEntry {
                archive: archive.to_owned(),
                entry: lossy(&path),
                reason: "not a part of an aps-controller backup".into(),
            });
        }
        drop(done_web);
        let mut after = next(None)?;
        // Format version 2: the manifest's tag, and nothing else, may follow it.
        if header.format_version >= 2
            && let Some(mut entry) = after.take_if(|e| &*e.path_bytes() == TAG_ENTRY.as_bytes())
        {
            if entry.size() > 64 * 1024 {
                return Err(ArchiveError::ManifestInvalid {
                    archive: archive.to_owned(),
                    reason: format!("{TAG_ENTRY} is larger than 64 KiB"),
                });
            }
            tag = Some(read_json(&mut entry, archive, TAG_ENTRY)?);
            drop(entry);
            after = next(None)?;
        }
        if let Some(extra) = after {
            return Err(ArchiveError::UnexpectedEntry {
                archive: archive.to_owned(),
                entry: lossy(&extra.path_bytes()),
                reason: format!("nothing but {TAG_ENTRY} may follow {MANIFEST_ENTRY}"),
            });
        }
    }
    // tar stops at the first zero block, or quietly at end of input: insist on the second
    // zero block so a cut file is never taken for a whole one.
    let mut rest = tar.into_inner();
    let mut end = [0u8; 512];
    match rest.read_exact(&mut end) {
        Ok(()) if end.iter().all(|b| *b == 0) => {}
        Ok(()) => {
            return Err(ArchiveError::Corrupt {
                archive: archive.to_owned(),
                part: None,
                detail: "data where the end-of-archive blocks should be".into(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(ArchiveError::Truncated {
                archive: archive.to_owned(),
                part: None,
                detail: "the end-of-archive blocks after the manifest are missing".into(),
            });
        }
        Err(e) => return Err(read_error(archive, None, e)),
    }
    // Read to the very end so the zstd/gzip checksum and age's final chunk are checked too.
    io::copy(&mut rest, &mut io::sink()).map_err(|e| read_error(archive, None, e))?;

    check_manifest(archive, &header, &manifest, &observed)?;
    check_order(archive, &manifest, &order)?;
    check_nested(archive, &manifest, &non_folders)?;
    Ok((manifest, ManifestSeal::new(manifest_bytes, tag)))
}

pub(in crate::archive) fn extract_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    sha: &mut dyn crate::archive::tree::Feed,
    buf: &mut Vec<u8>,
    dest: &Utf8Path,
    archive: &Utf8Path,
    part: &str,
) -> Result<u64, ArchiveError> {
    let fail = |e| extract_err(archive, part, dest.as_str(), e);
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(dest)
        .map_err(fail)?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let n = match copy_hashing(entry, sha, Some(&mut out), buf) {
        Ok(n) => n,
        Err(CopyError::Write(e)) => return Err(fail(e)),
        Err(CopyError::Read(e)) => return Err(read_error(archive, Some(part), e)),
    };
    out.into_inner().map_err(|e| fail(e.into_error()))?;
    Ok(n)
}
