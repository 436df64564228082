//! The backup-script's own file, for a store that keeps it beside its own copy of the
//! instance's resources (the panel's repository store) instead of in an archive.
//!
//! The same rules as for an archive backup: the script is found and its interpreter resolved
//! before any work; it runs with the standard's environment as the instance's account, within
//! the instance's bounds, stopped by the timeout or a signal; its file is taken back into a
//! private work folder of the controller known to the journal, so a controller killed while
//! the script runs leaves nothing behind that the next start does not remove (the script's
//! process group included).

use std::time::Duration;

use aps_meta::model::Script;
use camino::Utf8PathBuf;

use crate::account::Account;
use crate::controller::{Controller, Operation};
use crate::environment::ScriptOperation;
use crate::error::{OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
use crate::journal::OperationKind;
use crate::operation::script_run;
use crate::registry::{Instance, OpenedPackage};

/// A package's backup-script, checked: declared, a file in `scripts/`, its interpreter found.
#[derive(Debug, Clone)]
pub struct BackupScript {
    script: Script,
    interpreter: ResolvedInterpreter,
}

/// What the backup-script wrote as `BACKUP_FILE`, in the controller's private work folder;
/// the folder goes (and the journal entry is closed) when this is dropped.
pub struct ScriptFile {
    pub path: Utf8PathBuf,
    pub size: u64,
    pub sha256: String,
    operation: Option<Operation>,
}

impl std::fmt::Debug for ScriptFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptFile")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        if let Some(operation) = self.operation.take() {
            operation.succeed();
        }
    }
}

impl BackupScript {
    /// The backup-script of `instance`'s package, checked before any work (a missing script
    /// file or interpreter refuses the backup); `None` when the package declares none.
    pub fn find(
        ctl: &Controller,
        instance: &Instance,
        package: &OpenedPackage,
    ) -> Result<Option<Self>, OperationError> {
        Ok(
            script_run::backup_script_with_interpreter(ctl, instance, package)?.map(
                |(script, interpreter)| BackupScript {
                    script,
                    interpreter,
                },
            ),
        )
    }

    /// The script's file name in `scripts/`.
    pub fn name(&self) -> &str {
        &self.script.name
    }

    /// Whether its file alone restores the instance (the controller backs up nothing else).
    pub fn sufficient(&self) -> bool {
        self.script.sufficient
    }

    /// Runs `INTERPRETER SCRIPT backup` for `instance` (as `account`, when given and not the
    /// controller's own) and returns the file it wrote, with its size and SHA-256. On any
    /// failure the work folder is removed and the script's error returned.
    pub fn run(
        &self,
        ctl: &Controller,
        instance: &Instance,
        package: &OpenedPackage,
        account: Option<&Account>,
        timeout: Option<Duration>,
    ) -> Result<ScriptFile, OperationError> {
        let _armed = ctl.arm_cancel();
        ctl.check_cancel(Step::RunScript)?;
        let operation = ctl.begin_operation(
            OperationKind::Backup,
            &instance.name,
            Step::RunScript,
            |_| Vec::new(),
        )?;
        let path = operation.work().join("script-backup");
        ctl.report_part("backup", &instance.name, "script", &self.script.name, None);
        let result = script_run::run_backup_script(
            ctl,
            instance,
            package,
            (&self.script, &self.interpreter),
            ScriptOperation::Backup {
                backup_file: path.clone(),
            },
            timeout,
            operation.work(),
            account,
        )
        .and_then(|()| {
            crate::digest::sha256_file(&path).map_err(OperationError::io(
                Step::RunScript,
                "cannot read the file the backup-script wrote in",
                operation.work(),
            ))
        });
        match result {
            Ok((size, sha256)) => Ok(ScriptFile {
                path,
                size,
                sha256,
                operation: Some(operation),
            }),
            Err(error) => Err(operation.fail(error)),
        }
    }
}
