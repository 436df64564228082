//! Why the journal could not be written or read.

use std::io;

use camino::{Utf8Path, Utf8PathBuf};

/// The journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("operation journal {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
}

impl JournalError {
    pub(super) fn io(path: &Utf8Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
        move |source| JournalError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
