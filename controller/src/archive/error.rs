//! Errors of the archive module. Each names the archive, the part and the local path involved,
//! so the control panel's message is enough to act on.

use std::io;

use camino::Utf8PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    // --- writing -------------------------------------------------------------------------
    #[error("invalid part name {name:?}: {reason}")]
    InvalidPartName { name: String, reason: &'static str },

    #[error("the archive already holds a part named {name:?}")]
    DuplicatePart { name: String },

    #[error("invalid age recipient {recipient:?}: {reason}")]
    InvalidRecipient { recipient: String, reason: String },

    #[error("cannot read {path} for part {part:?}: {source}")]
    ReadSource {
        part: String,
        path: Utf8PathBuf,
        source: io::Error,
    },

    #[error("{path} changed while it was being archived (part {part:?}): {detail}")]
    SourceChanged {
        part: String,
        path: String,
        detail: String,
    },

    #[error(
        "instance {instance:?}: {path} crosses [limits] {limit} = {max} of controller.toml ({reached} by then); nothing was kept"
    )]
    WalkLimit {
        instance: String,
        limit: &'static str,
        max: u64,
        path: Utf8PathBuf,
        reached: String,
    },

    #[error(
        "instance {instance:?}: {path} is a hard link ({links} links) owned by uid {owner}, not by the instance's account (uid {account}); refusing to read it into a backup (remove the link, or give the file to the account)"
    )]
    ForeignHardLink {
        instance: String,
        path: Utf8PathBuf,
        links: u64,
        owner: u32,
        account: u32,
    },

    #[error("cannot write the archive (part {part:?}): {source}")]
    WriteArchive { part: String, source: io::Error },

    /// A path nested deeper than a restore can hold open (`tree::MAX_DEPTH`): refused at
    /// backup time rather than made into a backup that cannot be restored.
    #[error(
        "{path} lies {depth} names deep in part {part:?}; the controller backs up and restores at most {max} levels (docs/security.md, \"Deep and long paths\"), so it refuses to make a backup it could not restore: move it higher up"
    )]
    TooDeep {
        part: String,
        path: String,
        depth: usize,
        max: usize,
    },

    #[error("the archive writer failed earlier and cannot be used again")]
    WriterPoisoned,

    // --- reading -------------------------------------------------------------------------
    #[error("cannot open {archive}: {source}")]
    Open {
        archive: Utf8PathBuf,
        source: io::Error,
    },

    #[error("{archive} is not an aps-controller backup (no age, zstd, gzip or tar header)")]
    NotAnArchive { archive: Utf8PathBuf },

    #[error(
        "{archive} is encrypted: give an age identity file to read it ({}: the \
         AGE-SECRET-KEY-… file `aps-controller key generate` made)",
        crate::overrides::Override::IdentityFile
    )]
    IdentityRequired { archive: Utf8PathBuf },

    #[error("cannot use age identity file {identity}: {reason}")]
    IdentityFile {
        identity: Utf8PathBuf,
        reason: String,
    },

    #[error("{archive} is not encrypted to any identity in {identity}")]
    WrongIdentity {
        archive: Utf8PathBuf,
        identity: Utf8PathBuf,
    },

    #[error("cannot decrypt {archive}: {reason}")]
    Decrypt {
        archive: Utf8PathBuf,
        reason: String,
    },

    #[error(
        "{archive} uses backup format version {found}; this controller reads up to {supported}"
    )]
    UnsupportedVersion {
        archive: Utf8PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{archive} is truncated{}: {detail}", in_part(part))]
    Truncated {
        archive: Utf8PathBuf,
        part: Option<String>,
        detail: String,
    },

    #[error("{archive} is corrupt{}: {detail}", in_part(part))]
    Corrupt {
        archive: Utf8PathBuf,
        part: Option<String>,
        detail: String,
    },

    #[error("{archive}: unexpected entry {entry:?}: {reason}")]
    UnexpectedEntry {
        archive: Utf8PathBuf,
        entry: String,
        reason: String,
    },

    #[error("{archive}: entry {entry:?} would escape its folder: {reason}")]
    UnsafePath {
        archive: Utf8PathBuf,
        entry: String,
        reason: &'static str,
    },

    #[error("{archive}: invalid manifest: {reason}")]
    ManifestInvalid {
        archive: Utf8PathBuf,
        reason: String,
    },

    #[error("{archive}: part {part:?} is listed in the manifest but missing from the archive")]
    MissingPart { archive: Utf8PathBuf, part: String },

    #[error("{archive}: entry {entry:?} is not listed in the manifest")]
    ExtraPart { archive: Utf8PathBuf, entry: String },

    #[error("{archive}: part {part:?} has {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        archive: Utf8PathBuf,
        part: String,
        expected: u64,
        actual: u64,
    },

    #[error("{archive}: part {part:?} has SHA-256 {actual}, the manifest says {expected}")]
    HashMismatch {
        archive: Utf8PathBuf,
        part: String,
        expected: String,
        actual: String,
    },

    #[error("{archive}: part {part:?} has {actual} {what}, the manifest says {expected}")]
    CountMismatch {
        archive: Utf8PathBuf,
        part: String,
        what: &'static str,
        expected: u64,
        actual: u64,
    },

    /// The archive is intact but nothing shows this controller made it: no tag, a tag of
    /// another key, or a tag that does not match (kind `untrusted-backup`).
    #[error(
        "{archive} is not a backup this controller made: {reason}; if you know where it comes from, accept it with `aps-controller backup import {archive}`"
    )]
    Untrusted {
        archive: Utf8PathBuf,
        reason: String,
    },

    #[error("{archive} holds no part named {part:?}")]
    NoSuchPart { archive: Utf8PathBuf, part: String },

    // --- extracting ----------------------------------------------------------------------
    #[error("cannot extract part {part:?} of {archive} to {path}: {source}")]
    Extract {
        archive: Utf8PathBuf,
        part: String,
        path: String,
        source: io::Error,
    },
}

fn in_part(part: &Option<String>) -> String {
    match part {
        Some(p) => format!(" in part {p:?}"),
        None => String::new(),
    }
}

impl ArchiveError {
    /// The part the error is about, when there is one.
    pub fn part(&self) -> Option<&str> {
        use ArchiveError::*;
        match self {
            ReadSource { part, .. }
            | TooDeep { part, .. }
            | SourceChanged { part, .. }
            | WriteArchive { part, .. }
            | MissingPart { part, .. }
            | SizeMismatch { part, .. }
            | HashMismatch { part, .. }
            | CountMismatch { part, .. }
            | NoSuchPart { part, .. }
            | Extract { part, .. } => Some(part),
            Truncated { part, .. } | Corrupt { part, .. } => part.as_deref(),
            _ => None,
        }
    }
}
