//! SHA-256 of files, as every record of ours spells it (lowercase hex): backups, dumps, the
//! packages kept in the state folder, the files an APP-LIST.xml names.

use std::io::{self, Read};

use camino::Utf8Path;
use sha2::{Digest, Sha256};

/// Size and SHA-256 of everything `reader` yields, streamed (backups can be large).
pub fn sha256_reader(reader: &mut impl Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = io::copy(reader, &mut hasher)?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// Size and SHA-256 of the file at `path`.
pub fn sha256_file(path: &Utf8Path) -> io::Result<(u64, String)> {
    sha256_reader(&mut std::fs::File::open(path)?)
}
