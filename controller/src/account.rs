//! The system account that a tenant's work runs as.
//!
//! The controller runs as root on servers shared by many customers; everything done on an
//! instance's behalf (its package's scripts, the database client tools, reading and writing its
//! web folders) runs as, or is owned by, the instance's own account. This module holds the
//! account as the rest of the controller passes it around: numeric ids, resolved once.

use serde::{Deserialize, Serialize};

/// A resolved system account: what `setgroups`/`setgid`/`setuid` and `fchown` need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The user name, for messages (`uid` is what counts).
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, set with `setgroups` before `setgid`/`setuid`.
    #[serde(default)]
    pub groups: Vec<u32>,
}

impl Account {
    /// The account the controller itself runs as (effective ids, no supplementary groups).
    pub fn current() -> Self {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        Account {
            name: uid.to_string(),
            uid,
            gid,
            groups: Vec::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Whether the controller process runs as root (then tenant work must drop to an account).
pub fn controller_is_root() -> bool {
    rustix::process::geteuid().is_root()
}
