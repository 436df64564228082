//! SHA-256 of files, as every record of ours spells it (lowercase hex): one function for the
//! controller and the package checks, kept in `aps-meta` (the lower crate).

pub use aps_meta::digest::{sha256_file, sha256_reader};
