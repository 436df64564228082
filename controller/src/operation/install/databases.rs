//! The install's databases: each `db` requirement's database, taken as given (`existing:`,
//! never dropped by an undo) or created on a server of controller.toml, its drop journaled
//! under the names chosen before the create.

use super::DatabaseMade;
use super::plan::Plan;
use crate::controller::{Controller, Operation};
use crate::database::provision::{self, ProvisionSpec};
use crate::error::{OperationError, Step};
use crate::journal::UndoAction;

/// Creates the databases the plan names, records them in the instance to be, and reports
/// every database the instance uses.
pub(super) fn provide(
    ctl: &Controller,
    plan: &mut Plan,
    op: &mut Operation,
) -> Result<Vec<DatabaseMade>, OperationError> {
    for (id, server) in plan.to_create.clone() {
        ctl.check_cancel(Step::CreateDatabases)?;
        let fail = |source: provision::ProvisionError| OperationError::Provision {
            step: Step::CreateDatabases,
            db_id: id.clone(),
            source,
        };
        let server = ctl.config().database_server(&server).map_err(fail)?;
        let spec = ProvisionSpec {
            instance: &plan.instance.name,
            requirement: &id,
        };
        let names = provision::choose_names(server, spec).map_err(fail)?;
        op.add_undo(
            UndoAction::DropDatabase(names.clone()),
            Step::CreateDatabases,
        )?;
        let made = provision::create_named(server, &names).map_err(fail)?;
        if let Some(installed) = plan.instance.installed.as_mut() {
            installed.created_databases.insert(id.clone(), names);
        }
        plan.instance.databases.insert(id.clone(), made.database);
        plan.created_databases.push(id);
    }
    Ok(plan.databases_report())
}
