//! What the walk of a web folder saw, held against what the engine then gets: the digest of
//! the whole walk (compared with the one taken before the backup, from which the manifest
//! was made) and each file's identity and times (checked again when the engine opens it and
//! when it has read it to its end). Together they prove that the snapshot holds the tree the
//! manifest describes, without walking the site a second time after the backup.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::sync::{Arc, OnceLock};

use aps_controller::archive::HoleAwareFile;
use camino::Utf8PathBuf;
use rustix::fs::Stat;

use crate::store::repository::web::WalkError;

/// What the walk saw of a file that a write or a replacement changes: inode, size, mtime and
/// ctime (to the nanosecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen([i64; 6]);

impl Seen {
    // The stat fields' types differ between architectures: the casts stay.
    #[allow(clippy::unnecessary_cast)]
    pub(super) fn of(st: &Stat) -> Self {
        Seen([
            st.st_ino as i64,
            st.st_size as i64,
            st.st_mtime as i64,
            st.st_mtime_nsec as i64,
            st.st_ctime as i64,
            st.st_ctime_nsec as i64,
        ])
    }
}

/// The digest of a walk of one web folder, as [`crate::store::repository::state::tree_state`]
/// takes it, of every entry as the walk saw it; set when the walk has ended. It differs from
/// the digest taken before the backup when the tree changed in between or during the walk.
#[derive(Debug, Clone, Default)]
pub(super) struct WalkDigest(Arc<OnceLock<[u8; 32]>>);

impl WalkDigest {
    /// `None`: the walk did not reach its end.
    pub fn get(&self) -> Option<[u8; 32]> {
        self.0.get().copied()
    }

    /// Set once, by the walk when it ends.
    pub(super) fn set(&self, digest: [u8; 32]) {
        let _ = self.0.set(digest);
    }
}

/// A web file as the engine reads it: at its end, the file is checked to be still the one the
/// walk saw (a write meanwhile changed its ctime), else the read fails.
pub(super) struct CheckedFile {
    inner: HoleAwareFile,
    /// The same open file, for its `fstat`.
    check: OwnedFd,
    seen: Seen,
    shown: Utf8PathBuf,
}

impl CheckedFile {
    /// `inner` read from the file `check` also has open, which the walk saw as `seen`.
    pub(super) fn new(
        inner: HoleAwareFile,
        check: OwnedFd,
        seen: Seen,
        shown: Utf8PathBuf,
    ) -> Self {
        CheckedFile {
            inner,
            check,
            seen,
            shown,
        }
    }
}

impl Read for CheckedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let st = rustix::fs::fstat(&self.check)?;
            if Seen::of(&st) != self.seen {
                return Err(WalkError::Changed {
                    path: self.shown.clone(),
                }
                .into_io());
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::path::PathBuf;

    use aps_controller::archive::WalkPolicy;

    use super::*;
    use crate::store::repository::state::tree_state;
    use crate::store::repository::web::{Offered, WalkBudget, WebFile, WebWalk};

    /// Folders (one empty), files, a symlink and a FIFO (which no walk opens or stores, but
    /// whose appearance is a change).
    fn tree() -> (tempfile::TempDir, Utf8PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("a/one.php"), "<?php echo 1;").unwrap();
        std::fs::write(root.join("a/b/two.txt"), "two").unwrap();
        std::fs::write(root.join("z.bin"), [7u8; 5000]).unwrap();
        std::os::unix::fs::symlink("a/one.php", root.join("link")).unwrap();
        let fifo = CString::new(root.join("fifo").as_str()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        (tmp, root)
    }

    fn walk(root: &Utf8PathBuf) -> WebWalk {
        WebWalk::open(
            root,
            PathBuf::from("/web/%2F"),
            Offered::default(),
            WalkBudget::new(WalkPolicy::default()),
        )
        .unwrap()
    }

    /// File times come from a coarse clock (a tick of a few milliseconds): a write right after
    /// a `stat` could otherwise leave the times as they were, which no real backup races.
    fn tick() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    fn state(root: &Utf8PathBuf) -> [u8; 32] {
        tree_state(root, None).unwrap_or_else(|e| panic!("{}", e.message(root)))
    }

    /// Walked to its end and taken as the state walk takes it: which file it offers.
    fn walked(root: &Utf8PathBuf, name: &str) -> ([u8; 32], Option<WebFile>) {
        let mut walk = walk(root);
        let digest = walk.digest();
        let mut file = None;
        for entry in walk.by_ref() {
            let entry = entry.unwrap();
            if entry.path.ends_with(name) {
                file = entry.file;
            }
        }
        (digest.get().expect("the walk ended"), file)
    }

    /// The engine's walk digests the tree exactly as the state walk before the backup does:
    /// the same tree gives the same digest, so an unchanged site needs no walk after it.
    #[test]
    fn the_engines_walk_digests_the_tree_as_the_state_walk_does() {
        let (_tmp, root) = tree();
        let mut walk = walk(&root);
        let digest = walk.digest();
        assert_eq!(digest.get(), None, "not before the walk has ended");
        assert!(walk.by_ref().count() > 5);
        assert_eq!(digest.get(), Some(state(&root)));
    }

    /// A change between the state walk and the engine's walk, in each kind of entry, makes the
    /// digests differ.
    #[test]
    fn any_change_before_the_engines_walk_makes_the_digests_differ() {
        type Change = fn(&Utf8PathBuf);
        let changes: [(&str, Change); 5] = [
            ("a file rewritten, same size", |r| {
                std::fs::write(r.join("a/b/two.txt"), "TWO").unwrap()
            }),
            ("a file added", |r| {
                std::fs::write(r.join("empty/new"), "").unwrap()
            }),
            ("a file renamed", |r| {
                std::fs::rename(r.join("a/one.php"), r.join("a/uno.php")).unwrap()
            }),
            ("a link retargeted", |r| {
                std::fs::remove_file(r.join("link")).unwrap();
                std::os::unix::fs::symlink("a/b/two.txt", r.join("link")).unwrap();
            }),
            ("a FIFO removed", |r| {
                std::fs::remove_file(r.join("fifo")).unwrap()
            }),
        ];
        for (what, change) in changes {
            let (_tmp, root) = tree();
            let before = state(&root);
            tick();
            change(&root);
            let (digest, _) = walked(&root, "z.bin");
            assert_ne!(digest, before, "{what}");
        }
    }

    /// A file written after the walk passed it is refused when the engine opens it, and one
    /// written while the engine reads it fails the read at its end: the snapshot never holds
    /// content other than what the walk (and the manifest) saw.
    #[test]
    fn a_file_written_after_the_walk_saw_it_is_not_taken() {
        let (_tmp, root) = tree();
        let (_, file) = walked(&root, "z.bin");
        tick();
        std::fs::write(root.join("z.bin"), [8u8; 5000]).unwrap();
        let Err(e) = file.unwrap().open() else {
            panic!("a file written since the walk was opened")
        };
        assert!(matches!(e, WalkError::Changed { .. }), "{e}");
        assert!(e.to_string().contains("z.bin"), "{e}");

        let (_, file) = walked(&root, "z.bin");
        let mut reader = file.unwrap().open().unwrap().expect("a regular file");
        let mut head = [0u8; 100];
        reader.read_exact(&mut head).unwrap();
        tick();
        std::fs::OpenOptions::new()
            .write(true)
            .open(root.join("z.bin"))
            .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, b"!", 4000))
            .unwrap();
        let e = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("changed while it was backed up"),
            "{e}"
        );

        // Unchanged, it reads whole.
        let (_, file) = walked(&root, "one.php");
        let mut body = String::new();
        file.unwrap()
            .open()
            .unwrap()
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "<?php echo 1;");
    }
}
