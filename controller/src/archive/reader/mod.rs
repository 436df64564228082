//! Reading an archive: one streaming pass checks every part against the manifest (verify);
//! restore runs that pass first, then a second pass that extracts, re-checking as it goes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use camino::{Utf8Path, Utf8PathBuf};

use super::codec::open_source;
use super::tag::{ManifestSeal, TagKey};
use super::{ArchiveError, Manifest, PartKind};

mod checks;
mod scan;

pub(crate) use self::checks::url_below;
use self::scan::*;

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
