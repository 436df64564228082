//! SHA-256 of files, as every record of ours spells it (lowercase hex): backups, dumps, the
//! packages kept in the state folder, the files an APP-LIST.xml names.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use camino::{Utf8Path, Utf8PathBuf};
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

/// Threads hashing a list of files at most: a package check shares the host with its sites.
const HASH_THREADS: usize = 4;
/// Read size of [`sha256_files`]: few reads per file, one buffer per thread.
const HASH_BUF: usize = 256 * 1024;

/// SHA-256 of each file of `paths`, in their order, read by a few threads at once (a package
/// of 30,000 small files waits on the disk and on hashing by turns when read one by one).
/// A symlink is not followed: it fails with the error of `O_NOFOLLOW`.
pub fn sha256_files(paths: &[Utf8PathBuf]) -> Vec<io::Result<String>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(HASH_THREADS)
        .min(paths.len().div_ceil(64))
        .max(1);
    let next = AtomicUsize::new(0);
    let work = || {
        let mut buf = vec![0u8; HASH_BUF];
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = paths.get(i) else {
                return done;
            };
            done.push((i, sha256_nofollow(path, &mut buf)));
        }
    };
    let mut out: Vec<Option<io::Result<String>>> = Vec::new();
    out.resize_with(paths.len(), || None);
    let parts: Vec<Vec<(usize, io::Result<String>)>> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut parts = vec![work()];
        parts.extend(
            helpers
                .into_iter()
                .map(|h| h.join().expect("hashing thread panicked")),
        );
        parts
    });
    for (i, r) in parts.into_iter().flatten() {
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.expect("every index hashed once"))
        .collect()
}

fn sha256_nofollow(path: &Utf8Path, buf: &mut [u8]) -> io::Result<String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut hasher = Sha256::new();
    loop {
        match file.read(buf) {
            Ok(0) => return Ok(hex::encode(hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
