//! `aps_controller`: the controller of the Application Packaging Standard — it keeps installed
//! instances and backs them up, restores and migrates them by running the package's own
//! backup-script, rolling back whatever it did when anything fails.
//!
//! It knows nothing of the command line or of the control panel's scheduling: the `aps-panel`
//! crate and the `aps-controller` binary sit on top of it.

// `OperationError` carries what a person needs to act (step, paths, the script's stderr tail)
// and is returned once per operation that runs processes for seconds; its size does not matter.
#![allow(clippy::result_large_err)]

pub mod account;
pub mod archive;
pub mod backup_key;
pub mod cancel;
pub mod config;
pub mod controller;
pub mod database;
pub mod destination;
pub mod digest;
pub mod durable;
pub mod environment;
pub mod error;
pub mod estimate;
pub mod interpreter;
pub mod journal;
pub mod lifecycle;
pub mod lock;
pub mod operation;
pub mod paths;
mod process;
pub mod progress;
pub mod registry;
pub mod runner;
pub mod secret;
pub mod structured_output;

pub use controller::{Controller, ControllerConfig};
pub use error::{ErrorKind, OperationError, Step};
