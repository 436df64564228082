//! The controller's own backup file, written when a package has no backup-script or its
//! backup-script lacks `sufficient` (docs/backup-format.md). The layout is specified in
//! `docs/backup-format.md` (format version [`FORMAT_VERSION`]) so other tools can read it.
//!
//! In short: a POSIX tar stream, optionally compressed (zstd, gzip) and optionally encrypted to
//! age recipients, holding `header.json` first, then the parts (`files/<name>` for the script's
//! backup file and database dumps, `web/<n>/…` for each web folder), then `manifest.json` with
//! the size and SHA-256 of every part, then (format version 2) `manifest.tag`, an HMAC-SHA-256
//! of the manifest under the controller's key ([`TagKey`]), which is how restore knows the
//! controller made the file. Everything is streamed; readers detect every layer by its
//! magic bytes. [`verify`] checks it all in one pass; [`ArchiveReader`] verifies before it
//! extracts anything.
//!
//! This module knows nothing of instances, scripts or databases: callers hand it paths.

mod codec;
mod dirfd;
mod error;
mod manifest;
mod prefetch;
pub(crate) mod reader;
mod tag;
mod tree;
mod writer;

pub(crate) use reader::url_below;

pub use codec::{
    ArchiveOptions, Compression, check_age_header, check_recipients, decrypt_file, encrypt_file,
    is_encrypted,
};
pub use dirfd::{
    empty_dir_at, open_dir_beneath, open_dir_nofollow, open_or_create_dir, open_walked_dir,
    pending_names, remove_at, remove_dir_all_nofollow,
};
pub use error::ArchiveError;
pub use manifest::{FORMAT_NAME, FORMAT_VERSION, Manifest, ManifestHeader, PartInfo, PartKind};
pub use reader::{ArchiveReader, ExtractPlan, verify, verify_reader, verify_trusted};
pub use tag::{ArchiveTag, ManifestSeal, TAG_ALGORITHM, TAG_KEY_LEN, TagKey};
pub use tree::{
    HoleAwareFile, MAX_DEPTH, TreeStats, WalkCount, WalkPolicy, capture_tree,
    capture_tree_counting, capture_tree_to, capture_tree_with, restore_tree, restore_tree_from,
};
pub use writer::{ArchiveWriter, WebPart};

/// First entry: the [`ManifestHeader`] alone, so readers can refuse a newer format early.
pub const HEADER_ENTRY: &str = "header.json";
/// After the parts: the [`Manifest`].
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Last entry (format version 2): the [`ArchiveTag`] of the manifest.
pub const TAG_ENTRY: &str = "manifest.tag";

/// Part names become tar entry names `files/<name>`: keep them short and unsurprising.
fn check_part_name(name: &str) -> Result<(), ArchiveError> {
    let bad = |reason| {
        Err(ArchiveError::InvalidPartName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 100 {
        return bad("must be 1 to 100 bytes long");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}
