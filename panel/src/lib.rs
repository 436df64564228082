//! `aps-panel`: the control panel's part of the APS backup scenario — when to back up and where
//! to (periodicities, backup stores, retention, off-machine copies, restore drills) — on top of
//! the controller, which does the how. It knows nothing of XML or of scripts.
//!
//! Each operation is one module with an options struct and one entry function returning a
//! serialisable report (`run`, `prune`, `listing`, `drill`); the CLI only maps arguments and
//! prints. The store panel.toml chose is one [`store::Store`], whatever its kind. Both front
//! ends (the CLI and the HTTP adapter) call [`service`], one typed request and result per
//! operation. Periodic runs reach the controller through [`engine`]; the service's manual
//! operations and the stores call it directly (an instance's record, account and lock, the
//! journal, `Controller::backup`/`migrate`).

pub mod clock;
pub mod config;
pub mod context;
pub mod drill;
pub mod engine;
pub mod error;
pub mod listing;
pub mod manual;
pub mod naming;
pub mod notify;
pub mod periodicity;
pub mod problem;
pub mod progress;
pub mod prune;
pub mod retention;
pub mod run;
#[cfg(feature = "repository")]
pub mod service;
pub mod status;
pub mod store;
pub mod web_dirs;

pub use clock::{Clock, FixedClock, SystemClock};
pub use config::PanelConfig;
pub use context::{Panel, PanelError};
pub use engine::Engine;
pub use naming::{ArchiveFormat, BackupName, Compression};
pub use periodicity::Periodicity;
pub use retention::{KeepReason, KeepRules, RetentionPlan, RetentionPolicy, plan_retention};
pub use store::{ArchiveFiles, BackupStatus, LocalStore, Store, StoreError, StoredFile};
