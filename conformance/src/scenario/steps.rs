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
