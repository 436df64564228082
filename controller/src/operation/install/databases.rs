//! The install's databases: each `db` requirement's database, taken as given (`existing:`)
//! or created on a server of controller.toml.

use super::DatabaseMade;
use super::plan::Plan;
use crate::controller::{Controller, Operation};
use crate::error::OperationError;

/// Provides every database the plan names and reports them.
///
/// SEAM(w-engine): a [`super::DatabaseChoice::Server`] is created here through the server's
/// admin connection, its drop registered with the journal (`op.add_undo`) before the create,
/// and its login put into `plan.instance.databases`. Until then the checks refuse it, so only
/// `existing:` databases reach this step.
pub(super) fn provide(
    _ctl: &Controller,
    plan: &mut Plan,
    _op: &mut Operation,
) -> Result<Vec<DatabaseMade>, OperationError> {
    Ok(plan
        .instance
        .databases
        .iter()
        .map(|(id, db)| DatabaseMade {
            id: id.clone(),
            kind: db.kind.as_str(),
            name: db.name.clone(),
            login: db.login.clone(),
            host: db.host.clone(),
            port: db.port,
            created: plan.created_databases.contains(id),
        })
        .collect())
}
