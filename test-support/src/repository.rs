//! What the repository store's tests share: a manifest header and a backup key, generated
//! file contents, a tree's record, and a small table of notes in a test database.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::database::TestDatabase;
use aps_controller::database::{self, Database};
use camino::Utf8Path;

pub const TIMEOUT: Duration = Duration::from_secs(60);

use aps_controller::archive::{ManifestHeader, TagKey};

/// The manifest header of a backup of the test instance `blog`.
pub fn header() -> ManifestHeader {
    ManifestHeader::new("http://example.org/blog", "Blog", "1.2", "3", "1.2", "blog")
}

/// A backup key (every byte 7).
pub fn key() -> TagKey {
    TagKey::new(vec![7; 32]).unwrap()
}

/// Deterministic, poorly compressible content of 1–33 KiB.
pub fn body(seed: u32, generation: u32) -> Vec<u8> {
    let len = 1024 + (seed as usize * 7919) % (32 * 1024);
    let mut x = u64::from(seed) * 2_654_435_761 + u64::from(generation) * 97 + 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Relative path → what is there: a file's bytes, a link's target, or a folder.
pub fn tree(dir: &Utf8Path) -> BTreeMap<String, String> {
    fn walk(base: &Utf8Path, dir: &Utf8Path, out: &mut BTreeMap<String, String>) {
        for entry in dir.read_dir_utf8().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(base).unwrap().to_string();
            let meta = std::fs::symlink_metadata(path).unwrap();
            if meta.is_symlink() {
                out.insert(
                    rel,
                    format!("link {}", std::fs::read_link(path).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel, "dir".to_owned());
                walk(base, path, out);
            } else {
                out.insert(rel, hex::encode(std::fs::read(path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn rows(db: &Database) -> String {
    database::query(db, "SELECT id, body FROM notes ORDER BY id", TIMEOUT).unwrap()
}

pub fn fill(db: &TestDatabase) {
    database::query(
        db,
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT NOT NULL)",
        TIMEOUT,
    )
    .unwrap();
    let values: Vec<String> = (0..100).map(|i| format!("({i}, 'note {i}')")).collect();
    database::query(
        db,
        &format!("INSERT INTO notes VALUES {}", values.join(",")),
        TIMEOUT,
    )
    .unwrap();
}

/// Runs the Debian `restic` tool (scripts/ci/install-deps.sh installs it) on repository `repo`
/// (a folder or an `s3:` URL) with `password_file` and `env`, and returns its stdout; a
/// failure fails the test with restic's output.
pub fn restic(repo: &str, password_file: &Utf8Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let restic = ["/usr/bin/restic", "/usr/local/bin/restic"]
        .into_iter()
        .find(|p| Utf8Path::new(p).exists())
        .expect("restic is not installed: scripts/ci/install-deps.sh installs it");
    let out = std::process::Command::new(restic)
        .envs(env.iter().copied())
        .args(["--no-cache", "-r", repo, "--password-file"])
        .arg(password_file.as_str())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
