//! The names of the scenario's steps, as the report, the JUnit test cases and the failing
//! fixture packages name them.

pub const PACKAGE_CHECK: &str = "package check";
pub const INSTALL: &str = "install";
pub const SEED: &str = "seed";
pub const BACKUP: &str = "backup";
pub const DAMAGE: &str = "damage";
pub const RESTORE: &str = "restore";
pub const COMPARE_RESTORE: &str = "compare after restore";
pub const CONFIGURE: &str = "configure";
pub const DISABLE: &str = "disable";
pub const ENABLE: &str = "enable";
pub const MIGRATE: &str = "migrate";
pub const COMPARE_MIGRATE: &str = "compare after migrate";
/// `upgrade from VERSION-RELEASE`: install the old package, seed, upgrade, compare.
pub fn upgrade_from(version: &str) -> String {
    format!("upgrade from {version}")
}
pub const FAULT_BACKUP: &str = "backup interrupted";
pub const FAULT_RESTORE: &str = "restore interrupted";
pub const REMOVE: &str = "remove";
/// Only when the end of the run could not remove what it made (instances, databases, the
/// sandbox): what is left, for a person to remove.
pub const CLEANUP: &str = "clean up";
/// Only when the run itself failed (a bug, not the package): what stopped it.
pub const INTERNAL: &str = "internal error";
/// The migration's target instance and its sandbox removed (skipped with where, under `keep`).
pub const MIGRATE_REMOVE: &str = "remove the migrated copy";
/// The rows of one `--upgrade-from` package, `upgrade from VERSION-RELEASE: PHASE`, in order.
pub fn upgrade_phase(version: &str, phase: UpgradePhase) -> String {
    format!("{}: {}", upgrade_from(version), phase.as_str())
}

/// The phases of an upgrade round, one row each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradePhase {
    /// The old package checked (same application, older), installed in a sandbox of its own
    /// and seeded.
    Install,
    /// The instance upgraded to the package under test.
    Upgrade,
    /// The seeded data compared with its state before the upgrade.
    Compare,
    /// The instance and its sandbox removed (skipped with where, under `keep`).
    Remove,
}

impl UpgradePhase {
    pub const ALL: [UpgradePhase; 4] = [
        UpgradePhase::Install,
        UpgradePhase::Upgrade,
        UpgradePhase::Compare,
        UpgradePhase::Remove,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpgradePhase::Install => "install",
            UpgradePhase::Upgrade => "upgrade",
            UpgradePhase::Compare => "compare",
            UpgradePhase::Remove => "remove",
        }
    }
}
