//! The snapshot's manifest, made as the parts are read: the cached web-folder hashes, the dumps'
//! ledger and the maker of `manifest.json` and its tag.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use aps_controller::archive::{
    ArchiveTag, FORMAT_NAME, Manifest, ManifestHeader, PartInfo, PartKind, TagKey,
};
use camino::Utf8Path;

/// The manifest entries of an instance's web folders at its last backup, each with the
/// [`tree_state`] it was computed for, keyed by URL path and folder.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct PartCache {
    pub(super) parts: BTreeMap<String, CachedPart>,
    /// The snapshot this backup made (64 hex digits): the next backup's parent, found without
    /// reading every snapshot file of the repository.
    #[serde(default)]
    pub(super) parent: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct CachedPart {
    pub(super) state: String,
    pub(super) stats: CachedStats,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct CachedStats {
    pub(super) size: u64,
    pub(super) sha256: String,
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) symlinks: u64,
}

impl PartCache {
    /// The cache of `instance`; empty when there is none or it cannot be read.
    pub(super) fn load(dir: &Utf8Path, instance: &str) -> Self {
        std::fs::read(dir.join(format!("{instance}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Written to a temporary file (0600, in a 0700 folder) and renamed into place.
    pub(super) fn save(&self, dir: &Utf8Path, instance: &str) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".cache-")
            .tempfile_in(dir)?;
        tmp.write_all(&serde_json::to_vec(self).expect("a cache serialises"))?;
        tmp.persist(dir.join(format!("{instance}.json")))
            .map_err(|e| e.error)?;
        Ok(())
    }
}

/// The dumps of one backup: how many are still running, and the size and SHA-256 of each
/// that completed. The manifest waits for all of them.
pub(super) struct Ledger {
    pub(super) state: Mutex<LedgerState>,
    pub(super) done: Condvar,
}

pub(super) struct LedgerState {
    pub(super) pending: usize,
    pub(super) dumps: BTreeMap<String, (u64, String)>,
    pub(super) failed: Vec<String>,
}

impl Ledger {
    pub(super) fn new(pending: usize) -> Self {
        Ledger {
            state: Mutex::new(LedgerState {
                pending,
                dumps: BTreeMap::new(),
                failed: Vec::new(),
            }),
            done: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn finish(&self, id: &str, result: Result<(u64, String), String>) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(1);
        match result {
            Ok(done) => {
                state.dumps.insert(id.to_owned(), done);
            }
            Err(e) => state.failed.push(e),
        }
        self.done.notify_all();
    }
}

/// One dump's place in the [`Ledger`]: reported exactly once, as failed if it is dropped
/// before it finished (the engine gave up on it).
pub(super) struct DumpSlot {
    pub(super) ledger: Arc<Ledger>,
    pub(super) id: String,
    pub(super) reported: bool,
}

impl DumpSlot {
    pub(super) fn finish(&mut self, result: Result<(u64, String), String>) {
        if !self.reported {
            self.reported = true;
            self.ledger.finish(&self.id, result);
        }
    }
}

impl Drop for DumpSlot {
    fn drop(&mut self) {
        self.finish(Err(format!(
            "the dump of database {} was abandoned",
            self.id
        )));
    }
}

/// `manifest.json` and `manifest.tag` of a snapshot, made once every dump has completed (the
/// engine opens them after the dumps: they sort after `/databases`).
pub(super) struct ManifestMaker {
    pub(super) ledger: Arc<Ledger>,
    pub(super) header: ManifestHeader,
    /// Requirement id → `mysql` / `postgresql`.
    pub(super) databases: BTreeMap<String, String>,
    pub(super) web_parts: Vec<PartInfo>,
    /// The backup-script's file, last as in an archive.
    pub(super) script_part: Option<PartInfo>,
    pub(super) key: TagKey,
    pub(super) made: OnceLock<(Vec<u8>, Vec<u8>)>,
}

impl ManifestMaker {
    pub(super) fn get(&self) -> Result<&(Vec<u8>, Vec<u8>), String> {
        if let Some(made) = self.made.get() {
            return Ok(made);
        }
        let mut state = self.ledger.lock();
        while state.pending > 0 {
            state = self
                .ledger
                .done
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if !state.failed.is_empty() {
            return Err(format!(
                "no manifest without every dump: {}",
                state.failed.join("; ")
            ));
        }
        // As an archive backup lists them: the dumps, then the web folders.
        let mut parts = Vec::new();
        for (id, kind) in &self.databases {
            let Some((size, sha256)) = state.dumps.get(id) else {
                return Err(format!("the dump of database {id} did not complete"));
            };
            let kind = PartKind::DatabaseDump {
                db_id: id.clone(),
                kind: kind.clone(),
                row_counts: None,
            };
            let name = aps_controller::operation::dump_part_name(id);
            parts.push(PartInfo::file(&name, kind, *size, sha256.clone()));
        }
        parts.extend(self.web_parts.iter().cloned());
        parts.extend(self.script_part.iter().cloned());
        drop(state);
        let manifest = Manifest {
            format: FORMAT_NAME.to_owned(),
            header: self.header.clone(),
            parts,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        let tag = serde_json::to_vec_pretty(&ArchiveTag::new(&self.key, &json))
            .expect("a tag serialises");
        Ok(self.made.get_or_init(|| (json, tag)))
    }
}
