//! `aps_conformance`: the pieces a package's conformance run is built from, each usable alone
//! and each checked by the controller rather than by the package (docs/conformance.md):
//!
//! - [`sandbox`]: a throwaway tenant account with its home and web root, removed at the end
//!   (or kept and named), and the leftovers of a crashed run found and removed by the next;
//! - [`seed`]: a marker file in every writable web folder and awkward rows (binary, non-ASCII,
//!   quotes, backslashes, NULLs, empty strings) and a view in every database; and the
//!   [`seed::damage`] a restore must undo;
//! - [`capture`]: an instance's state (every file's content hash and mode, every table's
//!   schema and rows) and the [`capture::diff`] of two captures, naming what differs;
//! - [`findings`]: what a script left that it should not have (processes, files outside the
//!   instance's folders);
//! - [`report`]: the typed report, its JSON, terminal table and JUnit XML.
//!
//! [`scenario::run`] strings them together into a package's whole life.

pub mod capture;
pub mod error;
pub mod findings;
pub mod kept;
pub mod report;
pub mod sandbox;
pub mod scenario;
pub mod seed;

pub use error::ConformanceError;
pub use scenario::{RunOptions, run};
