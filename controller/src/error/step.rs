//! The steps of an operation, as an error names where it failed.

use std::fmt;

use serde::Serialize;

/// A step of an operation, numbered as in the controller guide's scenario where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Look the instance up in the registry.
    FindInstance,
    /// Take the per-instance lock.
    Lock,
    /// 1: parse the package's APP-META.xml.
    ParseMetadata,
    /// 1.1: find `//service/provision/backup-script` (and whether it is `sufficient`).
    FindBackupScript,
    /// 1.1: the controller backs up the instance's resources itself.
    BackupResources,
    /// 1.2: resolve the interpreter of `script-language`.
    ResolveInterpreter,
    /// 2: build the environment variables.
    BuildEnvironment,
    /// 3.1: check the destination (backup) or the source file (restore).
    CheckDestination,
    /// Restore: read and verify the backup file before anything changes.
    VerifyBackup,
    /// Restore: take the safety snapshot of the instance.
    SafetySnapshot,
    /// Restore: put the web folders and databases back from the backup.
    RestoreResources,
    /// 3.2: run the backup script (`backup` or `restore`).
    RunScript,
    /// Verify: find `//service/provision/verification-script` and check its file.
    FindVerificationScript,
    /// Verify: run the verification-script against the instance as it stands.
    RunVerificationScript,
    /// 3.3: write the result in place and report.
    Finish,
    /// Putting the instance back after a failed restore.
    Rollback,
    /// Install: the package checked as `package check` checks it, the name and account.
    CheckPackage,
    /// Install: the package's requirements against this host (before anything is made).
    CheckRequirements,
    /// Install: the settings resolved and validated against the package's types.
    ResolveSettings,
    /// Install: the web root checked (a folder, empty unless forced, nothing followed).
    CheckWebRoot,
    /// Install: the root url-mapping's files unpacked into the web root.
    DeployFiles,
    /// Install: the databases created (or the existing ones taken).
    CreateDatabases,
    /// Install: `configure install` run as the instance's account.
    RunConfigure,
    /// Install: the instance recorded in the registry, last.
    RecordInstance,
    /// Configure: the changed settings checked against the package (nothing run yet).
    ConfigureSettings,
    /// Configure: `configure configure` run as the instance's account.
    ConfigureScript,
    /// Configure: the new settings recorded, once the script succeeded.
    ConfigureRecord,
    /// Enable/disable: the package's `status-control` checked (nothing run yet).
    StatusControl,
    /// Enable/disable: `configure enable` or `configure disable` run as the instance's account.
    StatusScript,
    /// Enable/disable: the new status recorded, once the script succeeded.
    StatusRecord,
    /// Upgrade: the new package, its rule, requirements and settings checked.
    UpgradeCheck,
    /// Upgrade: the new files staged beside the web root and swapped in.
    UpgradeFiles,
    /// Upgrade: `configure upgrade OLD_VERSION OLD_RELEASE` run as the instance's account.
    UpgradeConfigure,
    /// Upgrade: the record updated (package, settings).
    UpgradeRecord,
    /// Remove: `configure remove` run as the instance's account (nothing deleted yet).
    RemoveConfigure,
    /// Remove: the install's files, the databases it created and the record taken away.
    RemoveData,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::FindInstance => "find-instance",
            Step::Lock => "lock",
            Step::ParseMetadata => "1-parse-metadata",
            Step::FindBackupScript => "1.1-find-backup-script",
            Step::BackupResources => "1.1-backup-resources",
            Step::ResolveInterpreter => "1.2-resolve-interpreter",
            Step::BuildEnvironment => "2-build-environment",
            Step::CheckDestination => "3.1-check-destination",
            Step::VerifyBackup => "verify-backup",
            Step::SafetySnapshot => "safety-snapshot",
            Step::RestoreResources => "restore-resources",
            Step::RunScript => "3.2-run-script",
            Step::FindVerificationScript => "find-verification-script",
            Step::RunVerificationScript => "run-verification-script",
            Step::Finish => "3.3-finish",
            Step::Rollback => "rollback",
            Step::CheckPackage => "install-check-package",
            Step::CheckRequirements => "install-requirements",
            Step::ResolveSettings => "install-settings",
            Step::CheckWebRoot => "install-web-root",
            Step::DeployFiles => "install-files",
            Step::CreateDatabases => "install-databases",
            Step::RunConfigure => "install-configure",
            Step::RecordInstance => "install-record",
            Step::ConfigureSettings => "configure-settings",
            Step::ConfigureScript => "configure-script",
            Step::ConfigureRecord => "configure-record",
            Step::StatusControl => "status-control",
            Step::StatusScript => "status-script",
            Step::StatusRecord => "status-record",
            Step::UpgradeCheck => "upgrade-check",
            Step::UpgradeFiles => "upgrade-files",
            Step::UpgradeConfigure => "upgrade-configure",
            Step::UpgradeRecord => "upgrade-record",
            Step::RemoveConfigure => "remove-configure",
            Step::RemoveData => "remove-data",
        }
    }
}

impl Step {
    /// Which package script a script failure at this step is about, for messages.
    pub(super) fn script_role(self) -> &'static str {
        match self {
            Step::FindVerificationScript | Step::RunVerificationScript => "verification script",
            Step::RunConfigure
            | Step::ConfigureScript
            | Step::StatusScript
            | Step::UpgradeConfigure
            | Step::RemoveConfigure => "configuration script",
            _ => "backup script",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
