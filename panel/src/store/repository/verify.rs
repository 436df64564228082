//! `verify` of the repository store: the engine's check of the repository's structure (config,
//! keys, indexes, every snapshot's trees, pack sizes), plus reading pack files back and
//! checking each against its id (a hash of its content) and the index — a random sample by
//! default, or all of them.

use rustic_core::{CheckOptions, ReadSubsetOption};
use serde::Serialize;

use crate::store::repository::{RepositoryError, RepositoryStore};

/// How much pack data `verify` reads back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadData {
    /// Structure only.
    None,
    /// `10%`, `1/7` (the 1st of 7 disjoint parts), `500MiB`: a random (or the given) subset.
    Sample(String),
    All,
}

impl ReadData {
    /// The default sample: a tenth of the packs, chosen at random each time.
    pub const DEFAULT_SAMPLE: &str = "10%";

    fn subset(&self) -> Result<Option<ReadSubsetOption>, String> {
        match self {
            ReadData::None => Ok(None),
            ReadData::All => Ok(Some(ReadSubsetOption::All)),
            ReadData::Sample(s) => s
                .parse::<ReadSubsetOption>()
                .map(Some)
                .map_err(|e| format!("--read-sample {s:?}: {}", e.display_log())),
        }
    }

    /// Checks a `--read-sample` value before anything runs.
    pub fn parse_sample(s: &str) -> Result<ReadData, String> {
        if s == "none" {
            return Ok(ReadData::None);
        }
        let r = ReadData::Sample(s.to_owned());
        r.subset().map(|_| r)
    }
}

/// What the check found: errors mean damage (data that cannot be read back whole).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub repository: String,
    pub read_data: ReadData,
    pub snapshots: usize,
    /// Findings that mean data is damaged or missing.
    pub errors: Vec<String>,
    /// Findings that do not (e.g. a pack left by an interrupted backup, which no snapshot uses).
    pub warnings: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl RepositoryStore {
    /// Checks the repository; damage is reported in the report (errors), not as an `Err`,
    /// which is kept for a check that could not run at all.
    pub fn verify(&self, read: &ReadData) -> Result<VerifyReport, RepositoryError> {
        let subset = read.subset().map_err(|message| RepositoryError::Engine {
            repository: self.describe(),
            message,
        })?;
        let mut opts = CheckOptions::default().read_data(subset.is_some());
        if let Some(subset) = subset {
            opts = opts.read_data_subset(subset);
        }
        let snapshots = self.repo.get_all_snapshots().map_err(self.err())?.len();
        let results = self.repo.check(opts).map_err(self.err())?;
        let mut report = VerifyReport {
            repository: self.describe(),
            read_data: read.clone(),
            snapshots,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        for (level, finding) in &results.0 {
            // The level's type is not exported by the engine; its Debug name is `Warn`/`Error`.
            if format!("{level:?}") == "Warn" {
                report.warnings.push(finding.to_string());
            } else {
                report.errors.push(finding.to_string());
            }
        }
        if report.errors.is_empty() && results.is_ok().is_err() {
            report
                .errors
                .push("the engine's check found errors it did not describe".to_owned());
        }
        Ok(report)
    }
}
