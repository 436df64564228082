//! One backup of an instance as one snapshot: the engine run over the instance's source, every
//! problem collected, the file count checked, a failed snapshot removed.

use std::collections::BTreeMap;
use std::io::{self};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use aps_controller::archive::{PartInfo, PartKind};
use camino::Utf8PathBuf;
use rustic_core::{BackupOptions, ParentOptions, SnapshotOptions, StringList};

use crate::store::repository::manifest::{
    CachedPart, CachedStats, Ledger, ManifestMaker, PartCache,
};
use crate::store::repository::snapshots::info_of;
use crate::store::repository::source::InstanceSource;
use crate::store::repository::state::tree_state;
use crate::store::repository::web::WalkBudget;
use crate::store::repository::{
    BackupInput, Problems, RepositoryError, RepositoryStore, SCRIPT_PART, SUFFICIENT_SCRIPT_PART,
    SnapshotInfo, TAG_INSTANCE, TAG_PACKAGE, TAG_PERIODICITY, TAG_RELEASE, TAG_VERSION,
    encode_url_path,
};

impl RepositoryStore {
    /// Backs `input` up as one snapshot. Any file that could not be read, any walk error, any
    /// dump that failed and a web folder that changed while it was backed up fail the whole
    /// backup, and its snapshot is removed again.
    pub fn backup(&self, input: &BackupInput<'_>) -> Result<SnapshotInfo, RepositoryError> {
        // restic's shared lock: no prune removes data while this backup may reuse it.
        let _lock = self.lock(crate::store::repository::lock::LockKind::Shared)?;
        let problems = Problems::default();
        let roots = web_roots(input.web_dirs);
        let mut policy = input.walk.clone();
        if policy.account_uid.is_none() {
            policy.account_uid = input.account.map(|a| a.uid);
        }
        // The engine chunks and hashes every byte of a sparse file: the manifest describes it
        // as the regular file the engine stores (and a restore streams back), and its size is
        // what it costs.
        policy.holes_as_data = true;
        // The bounds first, on every web folder together, by the walk that takes their state
        // (metadata only): nothing is read, dumped or written when they are crossed. Sizes,
        // not data, count here: the engine reads a sparse file's holes as zeros.
        let mut counted = aps_controller::archive::WalkCount::default();
        let mut before = Vec::new();
        for (_, _, dir) in &roots {
            let state = tree_state(dir, Some((&policy, &mut counted)))
                .map_err(|e| self.incomplete(input.instance, vec![e.message(dir)]))?;
            before.push(state);
        }
        // The manifest's web parts, by the archive's own code (by descriptor, as an archive
        // backup reads them, under the same bounds).
        let mut manifest_count = aps_controller::archive::WalkCount::default();
        let mut web_parts = Vec::new();
        let cached = input
            .cache
            .map(|dir| PartCache::load(dir, input.instance))
            .unwrap_or_default();
        let mut cache = PartCache::default();
        for (n, ((_, url, dir), state)) in roots.iter().zip(&before).enumerate() {
            // "2": a sparse file is described as a regular file since then; an entry cached
            // before (described as an archive's sparse entry) is not taken.
            let key = format!("2 {url} {dir}");
            let state_hex = hex::encode(state);
            // An unchanged tree (every entry's inode, size, mtime and ctime to the
            // nanosecond, and every name) has the part it had: it is not read again.
            let stats = match cached.parts.get(&key) {
                Some(c) if c.state == state_hex => c.stats.clone(),
                _ => {
                    let t = aps_controller::archive::capture_tree_counting(
                        dir,
                        io::sink(),
                        &policy,
                        &mut manifest_count,
                    )
                    .map_err(|e| self.incomplete(input.instance, vec![e.to_string()]))?;
                    CachedStats {
                        size: t.bytes,
                        sha256: t.sha256,
                        files: t.files,
                        dirs: t.dirs,
                        symlinks: t.symlinks,
                    }
                }
            };
            cache.parts.insert(
                key,
                CachedPart {
                    state: state_hex,
                    stats: stats.clone(),
                },
            );
            let part = format!("web/{n}");
            web_parts.push(PartInfo {
                entry: format!("{part}/"),
                name: part,
                kind: PartKind::WebDir {
                    mapping_url: (*url).clone(),
                },
                size: stats.size,
                sha256: stats.sha256,
                file_count: Some(stats.files),
                dir_count: Some(stats.dirs),
                symlink_count: Some(stats.symlinks),
            });
        }
        let ledger = Arc::new(Ledger::new(input.databases.len()));
        let manifest = Arc::new(ManifestMaker {
            ledger: Arc::clone(&ledger),
            header: input.header.clone(),
            databases: input
                .databases
                .iter()
                .map(|(id, db)| (id.clone(), db.kind.as_str().to_owned()))
                .collect(),
            web_parts,
            script_part: input.script.as_ref().map(|s| {
                let name = if s.sufficient {
                    SUFFICIENT_SCRIPT_PART
                } else {
                    SCRIPT_PART
                };
                PartInfo::file(name, PartKind::ScriptBackup, s.size, s.sha256.to_owned())
            }),
            key: input.key.clone(),
            made: OnceLock::new(),
        });
        let budget = WalkBudget::new(policy);
        let source = InstanceSource::new(input, &roots, &problems, &ledger, &manifest, budget)
            .map_err(self.err())?;
        let offered = source.offered.clone();
        let walked = source.digests.clone();
        let stop = crate::store::repository::cancel::token();
        let source =
            crate::store::repository::cancel::Cancellable::new(source, stop.clone(), &problems);

        let mut snap = SnapshotOptions::default()
            .to_snapshot()
            .map_err(self.err())?;
        snap.label = input.instance.to_owned();
        snap.hostname = self.host();
        let mut tags = StringList::default();
        tags.add(format!("{TAG_INSTANCE}{}", input.instance));
        tags.add(format!("{TAG_PERIODICITY}{}", input.periodicity));
        if let Some(p) = &input.package {
            tags.add(format!("{TAG_PACKAGE}{}", p.id));
            tags.add(format!("{TAG_VERSION}{}", p.version));
            tags.add(format!("{TAG_RELEASE}{}", p.release));
        }
        snap.tags = tags;
        // The parent lets the engine skip unchanged web files; streamed nodes never match it
        // (see `InstanceSource::entries`).
        let opts = BackupOptions::default().parent_opts(self.parent_of(input, &cached));
        let repo = self.indexed()?;
        let result = repo.archive(&opts, &source, snap, &[PathBuf::from("/")]);
        drop(source);

        if let Some(signal) = stop.signal() {
            if let Ok(snap) = &result {
                // Saved by the engine after the stop, from a source cut short: not a backup.
                let _ = self.repo.delete_snapshots(&[snap.id]);
            }
            return Err(RepositoryError::Interrupted {
                instance: input.instance.to_owned(),
                repository: self.describe(),
                signal,
            });
        }
        let snap = match result {
            Ok(snap) => snap,
            Err(e) if crate::store::repository::backend::is_unreachable(&e) => {
                // The engine saves the snapshot last: a store that stopped answering left none.
                return Err(self.err()(e));
            }
            Err(e) => {
                let mut problems = problems.take();
                problems.push(e.display_log());
                return Err(self.incomplete(input.instance, problems));
            }
        };
        let mut problems = problems.take();
        let saved = snap.summary.as_ref().map_or(0, |s| s.total_files_processed);
        let offered = offered.get();
        if problems.is_empty() && saved != offered {
            problems.push(format!(
                "the snapshot holds {saved} files where {offered} were offered"
            ));
        }
        if problems.is_empty() && manifest.made.get().is_none() {
            problems.push("the snapshot's manifest was not written".to_owned());
        }
        // The engine's walk saw the tree the manifest describes (every entry's metadata as
        // the walk before took it), and each file it read was still that file at its end
        // (`CheckedFile`): the snapshot holds what the manifest says. A change after the walk
        // passed an entry is in neither, and the next backup takes it.
        for (((_, url, dir), state), walked) in roots.iter().zip(&before).zip(&walked) {
            match walked.get() {
                Some(seen) if seen == *state => {}
                Some(_) => problems.push(format!(
                    "web folder {url} ({dir}) changed while it was backed up (a file, folder or \
                     link was written, added, removed or renamed); run the backup again"
                )),
                None if problems.is_empty() => problems.push(format!(
                    "the walk of web folder {url} ({dir}) did not reach its end"
                )),
                None => {}
            }
        }
        if !problems.is_empty() {
            if let Err(e) = self.repo.delete_snapshots(&[snap.id]) {
                problems.push(format!(
                    "removing the incomplete snapshot {} failed too: {}",
                    snap.id,
                    e.display_log()
                ));
            }
            return Err(self.incomplete(input.instance, problems));
        }
        let id = String::from(&*snap.id.to_hex());
        self.made(input.instance, &id);
        if let Some(dir) = input.cache {
            cache.parent = Some(id);
            // Only a speed-up: a cache that cannot be written makes the next backup read all.
            let _ = cache.save(dir, input.instance);
        }
        Ok(info_of(&snap).expect("a snapshot made here carries the instance tag"))
    }

    /// The parent of `input`'s snapshot: the one its last backup made, as the cache remembers
    /// it, read alone; else the newest snapshot of the instance as this store knows it (every
    /// snapshot file read once, for the first backup that needs it: the engine's own search
    /// reads them all for each backup, one file per backup of every instance), or none.
    fn parent_of(&self, input: &BackupInput<'_>, cached: &PartCache) -> ParentOptions {
        // The snapshot `id`, read alone, if it is still there and is this instance's (another
        // one's nodes at the same paths would not describe these files).
        let still = |id: &str| {
            let snap = self.repo.get_snapshot_from_str(id, |_| true).ok()?;
            (snap.label == input.instance
                && info_of(&snap).is_some_and(|i| i.instance == input.instance))
            .then(|| String::from(&*snap.id.to_hex()))
        };
        if let Some(id) = cached.parent.as_deref().and_then(still) {
            return ParentOptions::default().parents(vec![id]);
        }
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        // A second reading when the one known was forgotten since (a prune of another run).
        for fresh in [newest.is_none(), true] {
            if fresh {
                match self.snapshots(None) {
                    // Older to newer: the last one of each instance stays.
                    Ok(all) => {
                        *newest = Some(all.into_iter().map(|s| (s.instance, s.id)).collect())
                    }
                    // Left to the engine's own search.
                    Err(_) => return ParentOptions::default(),
                }
            }
            match newest.as_ref().and_then(|n| n.get(input.instance)) {
                // No snapshot of the instance: every file is read.
                None => return ParentOptions::default().force(true),
                Some(id) => {
                    if let Some(id) = still(id) {
                        return ParentOptions::default().parents(vec![id]);
                    }
                }
            }
        }
        ParentOptions::default()
    }

    /// Remembers `snap` as the newest snapshot of `instance`, for the next backup's parent.
    fn made(&self, instance: &str, snap: &str) {
        if let Some(newest) = self
            .newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            newest.insert(instance.to_owned(), snap.to_owned());
        }
    }

    pub(super) fn incomplete(&self, instance: &str, problems: Vec<String>) -> RepositoryError {
        RepositoryError::Incomplete {
            instance: instance.to_owned(),
            repository: self.describe(),
            problems,
        }
    }
}

/// The web folders a snapshot holds, as (snapshot name, URL path, folder), sorted by the
/// snapshot name (the order the snapshot's tree needs): every mapping's folder but those
/// inside another one (stored once, with the outer one, as the archive store does).
pub(super) fn web_roots(
    dirs: &BTreeMap<String, Utf8PathBuf>,
) -> Vec<(String, &String, &Utf8PathBuf)> {
    let mut roots: Vec<_> = dirs
        .iter()
        .filter(|(url, dir)| {
            !dirs.iter().any(|(other_url, other)| {
                other_url != *url && dir.starts_with(other) && *dir != other
            })
        })
        .map(|(url, dir)| (encode_url_path(url), url, dir))
        .collect();
    roots.sort();
    roots
}
