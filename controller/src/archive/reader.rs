//! Reading an archive: one streaming pass checks every part against the manifest (verify);
//! restore runs that pass first, then a second pass that extracts, re-checking as it goes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use super::codec::{open_source, read_error};
use super::tag::{ArchiveTag, ManifestSeal, TagKey};
use super::tree::{CopyError, TreeReader, TreeStats, copy_hashing, extract_err};
use super::{
    ArchiveError, FORMAT_NAME, FORMAT_VERSION, HEADER_ENTRY, MANIFEST_ENTRY, Manifest,
    ManifestHeader, PartKind, TAG_ENTRY, check_part_name,
};

/// Largest header or manifest entry read into memory (a manifest is a few KiB).
const MAX_JSON: u64 = 16 * 1024 * 1024;

/// Checks every part of the archive at `path` against its manifest in one streaming pass:
/// sizes, SHA-256, folder/file/symlink counts, order, nothing missing, nothing extra, and the
/// integrity of the compression and encryption layers. Returns the manifest. It does not
/// check who made the file: [`verify_trusted`] does.
pub fn verify(path: &Utf8Path, identity: Option<&Utf8Path>) -> Result<Manifest, ArchiveError> {
    let file = File::open(path).map_err(|e| ArchiveError::Open {
        archive: path.to_owned(),
        source: e,
    })?;
    verify_reader(file, path, identity)
}

/// [`verify`] for any stream; `label` names it in errors.
pub fn verify_reader<R: Read + Send + 'static>(
    input: R,
    label: &Utf8Path,
    identity: Option<&Utf8Path>,
) -> Result<Manifest, ArchiveError> {
    let stream = open_source(Box::new(input), label, identity)?;
    scan(stream, label, &Targets::default()).map(|(m, _)| m)
}

/// [`verify`], then the archive's tag checked against `key` (or, failing that, `trusted`
/// says the manifest was imported): [`ArchiveError::Untrusted`] otherwise. Returns the
/// manifest and what the archive says of its authenticity.
pub fn verify_trusted(
    path: &Utf8Path,
    identity: Option<&Utf8Path>,
    key: &TagKey,
    trusted: &dyn Fn(&ManifestSeal) -> bool,
) -> Result<(Manifest, ManifestSeal), ArchiveError> {
    let file = File::open(path).map_err(|e| ArchiveError::Open {
        archive: path.to_owned(),
        source: e,
    })?;
    let stream = open_source(Box::new(file), path, identity)?;
    let (manifest, seal) = scan(stream, path, &Targets::default())?;
    check_trust(path, &seal, key, trusted)?;
    Ok((manifest, seal))
}

pub(crate) fn check_trust(
    path: &Utf8Path,
    seal: &ManifestSeal,
    key: &TagKey,
    trusted: &dyn Fn(&ManifestSeal) -> bool,
) -> Result<(), ArchiveError> {
    match seal.check(key) {
        Ok(()) => Ok(()),
        Err(_) if trusted(seal) => Ok(()),
        Err(reason) => Err(ArchiveError::Untrusted {
            archive: path.to_owned(),
            reason,
        }),
    }
}

/// Where restore puts parts, by mapping URL and by part name.
#[derive(Debug, Clone, Default)]
pub struct ExtractPlan {
    web_dirs: BTreeMap<String, Utf8PathBuf>,
    files: BTreeMap<String, Utf8PathBuf>,
    owner: Option<crate::account::Account>,
}

impl ExtractPlan {
    pub fn new() -> Self {
        Self::default()
    }

    /// Extract the web folder of `mapping_url` into `dest` (created if missing).
    pub fn web_dir(mut self, mapping_url: &str, dest: impl Into<Utf8PathBuf>) -> Self {
        self.web_dirs.insert(mapping_url.to_owned(), dest.into());
        self
    }

    /// Give every file, folder and symlink created in web folders to `owner` (`None`: they
    /// stay the controller's).
    pub fn owner(mut self, owner: Option<&crate::account::Account>) -> Self {
        self.owner = owner.cloned();
        self
    }

    /// Extract file part `name` to the file `dest` (replaced if it exists, never followed).
    pub fn file(mut self, name: &str, dest: impl Into<Utf8PathBuf>) -> Self {
        self.files.insert(name.to_owned(), dest.into());
        self
    }
}

/// Destinations resolved to archive entries.
#[derive(Default)]
struct Targets {
    /// `web/<n>/` → destination folder.
    web: HashMap<String, Utf8PathBuf>,
    /// `files/<name>` → destination file.
    files: HashMap<String, Utf8PathBuf>,
    /// Owner of what is created in web folders.
    owner: Option<crate::account::Account>,
}

/// An archive opened for restore: already verified in full when `open` returns.
pub struct ArchiveReader {
    path: Utf8PathBuf,
    identity: Option<Utf8PathBuf>,
    /// Held open so the extraction pass reads the very file that was verified, even if the
    /// path is replaced meanwhile.
    file: File,
    manifest: Manifest,
    seal: ManifestSeal,
}

impl ArchiveReader {
    /// Opens and verifies the archive (a full pass) and checks that `key` tagged it, or that
    /// `trusted` accepts its manifest (an imported archive); nothing is written. An archive
    /// that passes neither is [`ArchiveError::Untrusted`].
    pub fn open_trusted(
        path: &Utf8Path,
        identity: Option<&Utf8Path>,
        key: &TagKey,
        trusted: &dyn Fn(&ManifestSeal) -> bool,
    ) -> Result<Self, ArchiveError> {
        let reader = Self::open(path, identity)?;
        check_trust(path, &reader.seal, key, trusted)?;
        Ok(reader)
    }

    /// Opens and verifies the archive (a full pass); nothing is written. Whoever made it:
    /// for the controller's own private files (a safety snapshot); anything else goes through
    /// [`open_trusted`](Self::open_trusted).
    pub fn open(path: &Utf8Path, identity: Option<&Utf8Path>) -> Result<Self, ArchiveError> {
        let open_err = |e| ArchiveError::Open {
            archive: path.to_owned(),
            source: e,
        };
        let file = File::open(path).map_err(open_err)?;
        let pass = file.try_clone().map_err(open_err)?;
        let stream = open_source(Box::new(crate::cancel::Guarded::new(pass)), path, identity)?;
        let (manifest, seal) = scan(stream, path, &Targets::default())?;
        Ok(ArchiveReader {
            path: path.to_owned(),
            identity: identity.map(ToOwned::to_owned),
            file,
            manifest,
            seal,
        })
    }

    /// An uncompressed, unencrypted archive this process has just written at `path` with
    /// [`ArchiveWriter::finish_sealed`](super::ArchiveWriter::finish_sealed), in a folder only
    /// the controller can write, taken as verified without a second full pass: the writer
    /// hashed every part as it wrote it. Extraction still checks every hash, and that the
    /// manifest and its seal are these, before it finishes.
    pub fn written(
        path: &Utf8Path,
        manifest: Manifest,
        seal: ManifestSeal,
    ) -> Result<Self, ArchiveError> {
        let file = File::open(path).map_err(|e| ArchiveError::Open {
            archive: path.to_owned(),
            source: e,
        })?;
        Ok(ArchiveReader {
            path: path.to_owned(),
            identity: None,
            file,
            manifest,
            seal,
        })
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest's digest and the archive's tag, as read (checked only by
    /// [`open_trusted`](Self::open_trusted)).
    pub fn seal(&self) -> &ManifestSeal {
        &self.seal
    }

    /// Extracts what `plan` names in one pass over the archive, checking every hash again.
    /// A part the manifest does not hold is refused before anything is written.
    pub fn extract(&self, plan: &ExtractPlan) -> Result<(), ArchiveError> {
        let mut targets = Targets {
            owner: plan.owner.clone(),
            ..Targets::default()
        };
        for (url, dest) in &plan.web_dirs {
            let part = self
                .manifest
                .web_dir(url)
                .ok_or_else(|| ArchiveError::NoSuchPart {
                    archive: self.path.clone(),
                    part: url.clone(),
                })?;
            targets.web.insert(part.entry.clone(), dest.clone());
        }
        for (name, dest) in &plan.files {
            let part = self
                .manifest
                .part(name)
                .filter(|p| !matches!(p.kind, PartKind::WebDir { .. }))
                .ok_or_else(|| ArchiveError::NoSuchPart {
                    archive: self.path.clone(),
                    part: name.clone(),
                })?;
            targets.files.insert(part.entry.clone(), dest.clone());
        }
        let open_err = |e| ArchiveError::Open {
            archive: self.path.clone(),
            source: e,
        };
        let mut pass = self.file.try_clone().map_err(open_err)?;
        pass.seek(SeekFrom::Start(0)).map_err(open_err)?;
        let stream = open_source(
            Box::new(crate::cancel::Guarded::new(pass)),
            &self.path,
            self.identity.as_deref(),
        )?;
        let (again, seal) = scan(stream, &self.path, &targets)?;
        if again != self.manifest || seal != self.seal {
            return Err(ArchiveError::ManifestInvalid {
                archive: self.path.clone(),
                reason: "the manifest changed between the verify and extract passes".into(),
            });
        }
        Ok(())
    }

    /// Extracts one web folder into `dest`: contents, modes (files without setuid/setgid,
    /// folders keep setgid), symlinks, empty folders, mtimes. Entries that would escape `dest`
    /// were refused when opening.
    pub fn extract_web_dir(&self, mapping_url: &str, dest: &Utf8Path) -> Result<(), ArchiveError> {
        self.extract(&ExtractPlan::new().web_dir(mapping_url, dest))
    }

    /// Extracts one file part to `dest`.
    pub fn extract_file_part(&self, name: &str, dest: &Utf8Path) -> Result<(), ArchiveError> {
        self.extract(&ExtractPlan::new().file(name, dest))
    }
}

struct Observed {
    size: u64,
    sha256: String,
    tree: Option<TreeStats>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_json<T: serde::de::DeserializeOwned, R: Read>(
    entry: &mut tar::Entry<'_, R>,
    archive: &Utf8Path,
    what: &str,
) -> Result<T, ArchiveError> {
    read_json_bytes(entry, archive, what).map(|(v, _)| v)
}

/// [`read_json`], also returning the entry's exact bytes (the manifest's, for its tag).
fn read_json_bytes<T: serde::de::DeserializeOwned, R: Read>(
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
fn web_entry(path: &[u8]) -> Option<(String, &[u8])> {
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
struct NonFolders {
    hasher: std::collections::hash_map::RandomState,
    by_prefix: HashMap<String, HashSet<u64>>,
}

impl NonFolders {
    fn add(&mut self, prefix: &str, rel: &[u8]) {
        let h = self.hasher.hash_one(trim_slashes(rel));
        self.by_prefix
            .entry(prefix.to_owned())
            .or_default()
            .insert(h);
    }

    fn holds(&self, prefix: &str, rel: &[u8]) -> bool {
        let h = self.hasher.hash_one(trim_slashes(rel));
        self.by_prefix.get(prefix).is_some_and(|s| s.contains(&h))
    }
}

fn trim_slashes(rel: &[u8]) -> &[u8] {
    let mut r = rel;
    while let [rest @ .., b'/'] = r {
        r = rest;
    }
    r
}

/// The pass both verify and extract make. With empty targets nothing is written.
fn scan(
    stream: Box<dyn Read + Send>,
    archive: &Utf8Path,
    targets: &Targets,
) -> Result<(Manifest, ManifestSeal), ArchiveError> {
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

/// The parts must appear in the manifest's order: a reader restoring them in archive order
/// then does what the manifest (and its tag) says, in that order.
fn check_order(
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
fn check_nested(
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

fn extract_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    sha: &mut Sha256,
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

fn check_manifest(
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
