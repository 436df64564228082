//! The authentication tag: an HMAC-SHA-256, keyed with a secret only the controller (or a
//! fleet of controllers sharing it) holds, over the exact bytes of `manifest.json`. The
//! manifest names every part's SHA-256, size and counts, and the reader checks every part
//! against it, so a valid tag vouches for the whole archive. Anyone can compute SHA-256; only
//! the key's holder can compute the tag: that is what tells our backups from crafted ones.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Prefix of the HMAC input for an archive's manifest, so that a tag made for one purpose
/// (a script backup's record, say) never passes for another.
const ARCHIVE_DOMAIN: &[u8] = b"aps-controller archive manifest v2\n";
/// Prefix of the key id's HMAC input.
const KEY_ID_DOMAIN: &[u8] = b"aps-controller key id\n";

/// Length of a key in bytes (any length works for HMAC; ours are made this long).
pub const TAG_KEY_LEN: usize = 32;

/// A secret key for tags. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TagKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TagKey({})", self.id())
    }
}

impl TagKey {
    /// A key from its secret bytes (at least 16; ours are [`TAG_KEY_LEN`]).
    pub fn new(secret: Vec<u8>) -> Option<Self> {
        (secret.len() >= 16).then_some(TagKey { secret })
    }

    fn mac(&self, domain: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(domain);
        mac
    }

    /// A short public name of the key (16 hex digits, derived by HMAC so it reveals nothing
    /// of the secret): an archive says which key tagged it, so a refusal can tell "made with
    /// another key" from "altered".
    pub fn id(&self) -> String {
        let tag = self.mac(KEY_ID_DOMAIN).finalize().into_bytes();
        hex::encode(&tag[..8])
    }

    /// The tag of an archive whose `manifest.json` entry holds `manifest` (its exact bytes).
    pub fn archive_tag(&self, manifest: &[u8]) -> Vec<u8> {
        let mut mac = self.mac(ARCHIVE_DOMAIN);
        mac.update(manifest);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `tag` is the tag of `manifest`, compared in constant time.
    pub fn check_archive_tag(&self, manifest: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac(ARCHIVE_DOMAIN);
        mac.update(manifest);
        mac.verify_slice(tag).is_ok()
    }

    /// HMAC-SHA-256 over `fields` under `domain` (each field length-prefixed, so no two lists
    /// of fields give the same input): for records the controller keeps of other files.
    pub fn record_tag(&self, domain: &str, fields: &[&[u8]]) -> String {
        hex::encode(self.record_mac(domain, fields).finalize().into_bytes())
    }

    /// Whether `tag_hex` is [`record_tag`](Self::record_tag) of `fields`, in constant time.
    pub fn check_record_tag(&self, domain: &str, fields: &[&[u8]], tag_hex: &str) -> bool {
        let Ok(tag) = hex::decode(tag_hex) else {
            return false;
        };
        self.record_mac(domain, fields).verify_slice(&tag).is_ok()
    }

    fn record_mac(&self, domain: &str, fields: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.mac(b"aps-controller record\n");
        for field in std::iter::once(&domain.as_bytes()).chain(fields) {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac
    }
}

/// The `manifest.tag` entry: which key made the tag, and the tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveTag {
    /// Always `hmac-sha256`.
    pub algorithm: String,
    /// [`TagKey::id`] of the key that made it.
    pub key_id: String,
    /// Lowercase hex HMAC-SHA-256 (see [`TagKey::archive_tag`]).
    pub tag: String,
}

/// The `algorithm` of every tag this controller writes.
pub const TAG_ALGORITHM: &str = "hmac-sha256";

impl ArchiveTag {
    pub fn new(key: &TagKey, manifest: &[u8]) -> Self {
        ArchiveTag {
            algorithm: TAG_ALGORITHM.to_owned(),
            key_id: key.id(),
            tag: hex::encode(key.archive_tag(manifest)),
        }
    }
}

/// What an archive says about its own authenticity, as read (not yet checked against a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSeal {
    /// SHA-256 of the `manifest.json` entry's bytes (what an import record names).
    pub manifest_sha256: String,
    /// The exact bytes of `manifest.json`.
    pub(crate) manifest_bytes: Vec<u8>,
    /// The tag entry, if the archive has one (format version 2).
    pub tag: Option<ArchiveTag>,
}

impl ManifestSeal {
    pub(crate) fn new(manifest_bytes: Vec<u8>, tag: Option<ArchiveTag>) -> Self {
        ManifestSeal {
            manifest_sha256: hex::encode(Sha256::digest(&manifest_bytes)),
            manifest_bytes,
            tag,
        }
    }

    /// `Ok(())` when the tag is `key`'s tag of the manifest; otherwise why not, in words.
    pub fn check(&self, key: &TagKey) -> Result<(), String> {
        let Some(tag) = &self.tag else {
            return Err("it carries no authentication tag (not made by this controller, or by one before format version 2)".into());
        };
        if tag.algorithm != TAG_ALGORITHM {
            return Err(format!(
                "its tag uses {:?}, not {TAG_ALGORITHM}",
                tag.algorithm
            ));
        }
        let ok =
            hex::decode(&tag.tag).is_ok_and(|t| key.check_archive_tag(&self.manifest_bytes, &t));
        if ok {
            return Ok(());
        }
        if tag.key_id != key.id() {
            Err(format!(
                "its tag was made with key {} but this controller's key is {} (made by another controller)",
                tag.key_id,
                key.id()
            ))
        } else {
            Err("its tag does not match its manifest (altered after it was made)".into())
        }
    }
}
