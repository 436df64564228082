//! `backups NAME` over a store of archive files: its entries, newest first (they live beside
//! the listing they are made from, in [`crate::store::files`]).

pub use crate::store::files::{BackupEntry, list_backups, newest_good};
