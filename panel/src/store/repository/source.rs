//! What the engine reads for one backup: the instance's web files, database dumps, backup-script
//! file and manifest, as a rustic `ReadSource`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aps_controller::account::Account;
use aps_controller::database::Database;
use camino::Utf8PathBuf;
use rustic_core::{
    ErrorKind, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
    repofile::{Metadata, Node, NodeType},
};

use crate::store::repository::dump::{DumpJob, DumpReader, Watched};
use crate::store::repository::manifest::{DumpSlot, Ledger, ManifestMaker};
use crate::store::repository::seen::WalkDigest;
use crate::store::repository::web::{Offered, WalkBudget, WebFile, WebWalk};
use crate::store::repository::{BackupInput, Problems, SCRIPT_PART};

/// The instance as one source: its dumps, the manifest, then its web folders, in path order
/// (the engine builds trees from a sorted stream). Web folders are walked by descriptor
/// ([`crate::store::repository::web`]), never through a symlink: the engine's own local source walks
/// and opens by path, which a tenant swapping a folder for a symlink could redirect.
pub(super) struct InstanceSource {
    pub(super) dumps: Vec<(String, Database)>,
    /// The walk of each web folder, opened before anything runs (a refused web root stops the
    /// backup before any dump); taken by `entries`.
    pub(super) web: Mutex<Vec<WebWalk>>,
    /// The digest of each web folder's walk, in the order of `web`, set when it has ended.
    pub(super) digests: Vec<WalkDigest>,
    pub(super) account: Option<Account>,
    pub(super) dump_timeout: Duration,
    pub(super) problems: Problems,
    pub(super) ledger: Arc<Ledger>,
    pub(super) manifest: Arc<ManifestMaker>,
    /// The backup-script's file and its size.
    pub(super) script: Option<(Utf8PathBuf, u64)>,
    /// Files offered (dumps, manifest, web files and links); the snapshot must hold as many.
    pub(super) offered: Offered,
}

impl InstanceSource {
    pub(super) fn new(
        input: &BackupInput<'_>,
        roots: &[(String, &String, &Utf8PathBuf)],
        problems: &Problems,
        ledger: &Arc<Ledger>,
        manifest: &Arc<ManifestMaker>,
        budget: Arc<WalkBudget>,
    ) -> RusticResult<Self> {
        let offered = Offered::default();
        // The dumps, manifest.json, manifest.tag and the script's file.
        for _ in 0..input.databases.len() + 2 + usize::from(input.script.is_some()) {
            offered.add();
        }
        let mut web = Vec::new();
        for (name, _, dir) in roots {
            let walk = WebWalk::open(
                dir,
                Path::new("/web").join(name),
                offered.clone(),
                Arc::clone(&budget),
            )
            .map_err(|e| {
                problems.push(e.to_string());
                rustic_io("cannot open a web folder", e.into_io())
            })?;
            web.push(walk);
        }
        let digests = web.iter().map(WebWalk::digest).collect();
        Ok(InstanceSource {
            digests,
            dumps: input
                .databases
                .iter()
                .map(|(id, db)| (id.clone(), db.clone()))
                .collect(),
            web: Mutex::new(web),
            account: input.account.cloned(),
            dump_timeout: input.dump_timeout,
            problems: problems.clone(),
            ledger: Arc::clone(ledger),
            manifest: Arc::clone(manifest),
            script: input.script.as_ref().map(|s| (s.file.to_owned(), s.size)),
            offered,
        })
    }
}

/// How the engine opens one entry.
pub(super) enum EntryOpen {
    Web {
        file: WebFile,
        problems: Problems,
    },
    Dump(Box<DumpJob>),
    Manifest {
        maker: Arc<ManifestMaker>,
        tag: bool,
    },
    /// The backup-script's file, in the controller's private work folder.
    Script(Utf8PathBuf),
}

pub(super) fn rustic_io(guidance: &'static str, e: io::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::InputOutput, guidance, e)
}

impl ReadSourceOpen for EntryOpen {
    type Reader = Box<dyn Read + Send>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self {
            EntryOpen::Web { file, problems } => {
                let shown = file.shown.clone();
                match file.open() {
                    Ok(Some(f)) => Ok(Box::new(Watched {
                        inner: f,
                        what: shown.to_string(),
                        problems,
                    })),
                    // Gone, or swapped for a symlink or something else since the walk: left
                    // out (and out of the count), as the archive store leaves it out.
                    Ok(None) => Err(rustic_io(
                        "a web file vanished or was replaced since the walk; left out",
                        io::Error::from(io::ErrorKind::NotFound),
                    )),
                    Err(e) => {
                        problems.push_once(match &e {
                            crate::store::repository::web::WalkError::Io { source, .. } => {
                                format!("cannot open {shown}: {source}")
                            }
                            refused => refused.to_string(),
                        });
                        Err(rustic_io("cannot open a web file", e.into_io()))
                    }
                }
            }
            EntryOpen::Dump(job) => match DumpReader::start(*job) {
                Ok(r) => Ok(Box::new(r)),
                Err((message, problems)) => {
                    problems.push(message.clone());
                    Err(rustic_io(
                        "cannot start a database dump",
                        io::Error::other(message),
                    ))
                }
            },
            EntryOpen::Manifest { maker, tag } => match maker.get() {
                Ok((json, tag_json)) => {
                    let bytes = if tag { tag_json.clone() } else { json.clone() };
                    Ok(Box::new(io::Cursor::new(bytes)))
                }
                Err(message) => Err(rustic_io(
                    "cannot write the snapshot's manifest",
                    io::Error::other(message),
                )),
            },
            EntryOpen::Script(path) => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map(|f| Box::new(f) as Box<dyn Read + Send>)
                .map_err(|e| rustic_io("cannot open the backup-script's file", e)),
        }
    }
}

pub(super) type EntryResult = RusticResult<ReadSourceEntry<EntryOpen>>;

/// A fresh number for a streamed node's inode: no parent node has it.
pub(super) fn fresh_inode() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    u64::from_ne_bytes(bytes) | 1 << 63
}

impl ReadSource for InstanceSource {
    type Open = EntryOpen;
    type Iter = Box<dyn Iterator<Item = EntryResult> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        // Streamed nodes carry the time they are made, to the nanosecond, as mtime and ctime
        // and a fresh inode-like number: the engine compares size, mtime and ctime with the
        // parent snapshot's node, and must never take a stream for unchanged without reading
        // it (their size is 0 until read).
        let streamed = |name: &str| {
            let now = jiff::Timestamp::now();
            let meta = Metadata {
                mode: Some(0o600),
                mtime: Some(now),
                ctime: Some(now),
                inode: fresh_inode(),
                ..Default::default()
            };
            Node::new_node(std::ffi::OsStr::new(name), NodeType::File, meta)
        };
        let mut entries: Vec<EntryResult> = Vec::new();
        for (id, db) in &self.dumps {
            let name = format!("{id}.sql");
            entries.push(Ok(ReadSourceEntry {
                path: Path::new("/databases").join(&name),
                node: streamed(&name),
                open: Some(EntryOpen::Dump(Box::new(DumpJob {
                    id: id.clone(),
                    db: db.clone(),
                    account: self.account.clone(),
                    timeout: self.dump_timeout,
                    problems: self.problems.clone(),
                    slot: DumpSlot {
                        ledger: Arc::clone(&self.ledger),
                        id: id.clone(),
                        reported: false,
                    },
                }))),
            }));
        }
        for (name, tag) in [("manifest.json", false), ("manifest.tag", true)] {
            entries.push(Ok(ReadSourceEntry {
                path: Path::new("/").join(name),
                node: streamed(name),
                open: Some(EntryOpen::Manifest {
                    maker: Arc::clone(&self.manifest),
                    tag,
                }),
            }));
        }
        // "/script-backup" sorts between the manifest and "/web".
        if let Some((path, size)) = &self.script {
            let mut node = streamed(SCRIPT_PART);
            node.meta.size = *size;
            entries.push(Ok(ReadSourceEntry {
                path: Path::new("/").join(SCRIPT_PART),
                node,
                open: Some(EntryOpen::Script(path.clone())),
            }));
        }
        let mut iter: Self::Iter = Box::new(entries.into_iter());
        let walks = std::mem::take(&mut *self.web.lock().unwrap_or_else(|e| e.into_inner()));
        for walk in walks {
            let problems = self.problems.clone();
            let moved = walk.map(move |entry| -> EntryResult {
                let entry = entry.map_err(|e| {
                    problems.push_once(e.to_string());
                    rustic_io("cannot walk a web folder", e.into_io())
                })?;
                let open = entry.file.map(|file| EntryOpen::Web {
                    file,
                    problems: problems.clone(),
                });
                Ok(ReadSourceEntry {
                    path: entry.path,
                    node: entry.node,
                    open,
                })
            });
            iter = Box::new(iter.chain(moved));
        }
        iter
    }
}
