//! `verify` of the repository store: the engine's check of the repository's structure (config,
//! keys, indexes, every snapshot's trees, pack sizes), plus reading pack files back and
//! checking each against its id (a hash of its content) and the index — a random sample by
//! default, or all of them.

use rustic_core::CheckOptions;

use crate::store::repository::{RepositoryError, RepositoryStore};
use crate::store::verify::{ReadData, VerifyReport};

impl RepositoryStore {
    /// The engine's structure check (indexes, packs, trees); `read_data` also reads and
    /// verifies every pack.
    pub fn check(&self, read_data: bool) -> Result<(), RepositoryError> {
        let opts = CheckOptions::default().read_data(read_data);
        let results = self.repo.check(opts).map_err(self.err())?;
        results.is_ok().map_err(self.err())
    }

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
