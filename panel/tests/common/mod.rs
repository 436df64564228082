//! What the repository store's tests share: a manifest header and a backup key.

use aps_controller::archive::{ManifestHeader, TagKey};

/// The manifest header of a backup of the test instance `blog`.
pub fn header() -> ManifestHeader {
    ManifestHeader::new("http://example.org/blog", "Blog", "1.2", "3", "1.2", "blog")
}

/// A backup key (every byte 7).
pub fn key() -> TagKey {
    TagKey::new(vec![7; 32]).unwrap()
}
