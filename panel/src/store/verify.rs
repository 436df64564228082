//! What `verify` of a store reads back and what it found, whatever the store's kind.

use rustic_core::ReadSubsetOption;
use serde::Serialize;

use crate::problem::Problem;

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

    /// The engine's subset of packs to read back.
    pub(crate) fn subset(&self) -> Result<Option<ReadSubsetOption>, String> {
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

/// Why `verify` of a store failed: the problem, and the repository it concerns.
#[derive(Debug)]
pub struct VerifyFailure {
    pub problem: Problem,
    pub repository: Option<String>,
}
