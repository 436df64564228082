//! The archive store: each backup is an archive file the controller writes into the local
//! folder ([`super::local`]) under the standard name, then retention of that instance and, when
//! panel.toml has a `[remote]`, a checked copy off the machine ([`super::s3`]).

use aps_controller::{Controller, ErrorKind};

use super::files::{ArchiveFiles, list_backups, newest_good};
use super::{
    AfterBackup, DrillBackup, Found, Listing, Made, ManualBackup, Outcome, ReadData, Refusal,
    RunRetention, Staged, Step, Store, StoreCx, Unsupported, VerifyFailure, VerifyReport, Wanted,
};
use crate::clock::Clock;
use crate::error::PanelError;
use crate::manual::{self, ManualRequest};
use crate::naming::BackupName;
use crate::periodicity::Periodicity;
use crate::problem::Problem;
use crate::prune::{PruneFailure, Pruned, prune_files, prune_store};
use crate::web_dirs::{inside_web_dir_message, web_dir_containing};

/// The archive store (`[store] kind = "archive"`, or `store = "folder"`, or nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveStore;

impl Store for ArchiveStore {
    fn describe(&self, cx: &StoreCx<'_>) -> String {
        cx.local.describe()
    }

    fn manual_writes_archive(&self) -> bool {
        true
    }

    /// The manual plan: the standard name with the request's periodicity (manual or final),
    /// reserved in the folder,
    /// then the controller's archive (or only its plan).
    fn manual_backup(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        request: &ManualBackup<'_>,
    ) -> Result<Outcome, Refusal> {
        let instance = ctl
            .store()
            .get(request.instance)
            .map_err(|e| Refusal::InstanceNotFound(e.to_string()))?;
        let folder = cx.local.instance_dir(request.instance);
        if let Some((mapping, dir)) = web_dir_containing(&folder, &instance.web_dirs) {
            return Err(Refusal::Refused {
                kind: ErrorKind::DestinationRefused,
                step: Some("3.1-check-destination"),
                message: inside_web_dir_message(
                    "the backup store (panel.toml `store`)",
                    &folder,
                    &mapping,
                    &dir,
                ),
            });
        }
        let plan = manual::plan(
            cx.local,
            cx.config.archive_choice(),
            &ManualRequest {
                instance: request.instance.to_owned(),
                kind: request.kind,
                to: None,
                compression: request.compression,
                recipients: request.recipients.clone(),
            },
            jiff::Timestamp::now(),
        )?;
        manual::carry_out(
            ctl,
            cx.local,
            request.instance,
            plan,
            (false, request.timeout, request.dry_run),
        )
    }

    fn check_wanted(&self, wanted: &Wanted<'_>) -> Result<(), Unsupported> {
        if wanted.id.is_some() || wanted.migration {
            return Err(Unsupported::Snapshots {
                store_is: "the archive store",
            });
        }
        Ok(())
    }

    /// Its newest good file (there are no ids here: [`Store::check_wanted`] refused one).
    fn take(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        id: Option<&str>,
    ) -> Result<Staged, Refusal> {
        if id.is_some() {
            // Refused before by `check_wanted`; `find` says why.
            let found = self.find(cx, instance, id)?;
            return Ok(self.stage(cx, ctl, instance, &found)?);
        }
        manual::latest(cx.local, instance)
            .map(Staged::file)
            .map_err(|e| Refusal::Panel {
                error: Box::new(e),
                hint: Some(format!(
                    "`aps-controller backups {instance}` lists its backups"
                )),
            })
    }

    fn backup(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        periodicity: Periodicity,
        clock: &dyn Clock,
    ) -> Result<Made, Problem> {
        let name = BackupName::new(
            instance,
            periodicity,
            clock.now(),
            cx.config.archive_format(),
        );
        // A store inside the instance's own web folder: refused, as `backup` refuses it.
        let store_file = cx.local.instance_dir(instance).join(name.file_name());
        let dirs = ctl.store().get(instance).map(|i| i.web_dirs).map_err(|e| {
            crate::engine::EngineError::Instances {
                message: e.to_string(),
            }
            .problem()
        })?;
        if let Some((mapping, dir)) = web_dir_containing(&store_file, &dirs) {
            return Err(Problem::new(
                ErrorKind::DestinationRefused,
                Some("3.1-check-destination"),
                inside_web_dir_message(
                    "the backup store (panel.toml `store`)",
                    cx.local.root(),
                    &mapping,
                    &dir,
                ),
            ));
        }
        // Held until the backup is written, so a second run in the same second takes `.2`.
        let reserved = cx.local.reserve(&name).map_err(|e| e.problem())?;
        crate::engine::backup(ctl, instance, &reserved.path, &cx.config.archive_choice())
            .map(Made::File)
            .map_err(|e| e.problem())
    }

    fn after_backup(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        made: &Made,
        clock: &dyn Clock,
    ) -> AfterBackup {
        let mut after = AfterBackup::default();
        let Made::File(report) = made else {
            return after;
        };
        // Retention only after a successful backup, so a run of failures never thins the store.
        match prune_store(cx.local, Some(instance), cx.policy, clock.now(), false) {
            Ok(p) => after.pruned.extend(p.removed),
            Err(e) => after.failed = Some((Step::Prune, e.problem())),
        }
        let Some(remote) = cx.remote else {
            return after;
        };
        let file_name = report.file.file_name().unwrap_or_default();
        let key = format!("{instance}/{file_name}");
        // In the history that `aps-controller log` shows; a journal that cannot be written
        // does not stop the copy (the backup before it would have failed already).
        let logged = ctl
            .journal()
            .begin(aps_controller::journal::OperationKind::Upload, instance)
            .ok();
        let uploaded = remote.upload(&report.file, &key, &report.sha256);
        if let Some(entry) = logged {
            let _ = match &uploaded {
                Ok(u) => entry.finish_ok_saying(Some(&format!(
                    "{}{} ({})",
                    remote.describe(),
                    u.key,
                    aps_controller::error::human_bytes(u.size)
                ))),
                Err(e) => entry.finish_failed(&e.to_string()),
            };
        }
        match uploaded {
            Ok(u) => {
                after.upload = Some(u);
                // The remote is pruned only once it holds this backup.
                match prune_store(remote, Some(instance), cx.policy, clock.now(), false) {
                    Ok(p) => after
                        .pruned
                        .extend(p.removed.into_iter().map(|k| format!("remote:{k}"))),
                    Err(e) if after.failed.is_none() => {
                        after.failed = Some((Step::Prune, e.problem()))
                    }
                    Err(_) => {}
                }
            }
            Err(e) => {
                after.failed = Some((
                    Step::Upload,
                    Problem::new(ErrorKind::ResourceFailed, None, e.to_string()),
                ))
            }
        }
        after
    }

    fn after_run(
        &self,
        _cx: &StoreCx<'_>,
        _succeeded: &[String],
        _now: jiff::Timestamp,
    ) -> Option<RunRetention> {
        None
    }

    fn list(&self, cx: &StoreCx<'_>, instance: &str) -> Result<Listing, Problem> {
        Ok(Listing {
            store: cx.local.describe(),
            snapshots: None,
            archives: list_backups(cx.local, instance).map_err(|e| e.problem())?,
        })
    }

    fn find(&self, cx: &StoreCx<'_>, instance: &str, id: Option<&str>) -> Result<Found, Problem> {
        if id.is_some() {
            return Err(Problem::new(
                ErrorKind::Usage,
                None,
                "a snapshot names a backup of the repository store, but panel.toml's store is \
                 the archive store",
            ));
        }
        match newest_good(cx.local, instance).map_err(|e| e.problem())? {
            Some(newest) => Ok(Found::File(cx.local.path_of(&newest))),
            None => Err(Problem::new(
                ErrorKind::Usage,
                None,
                PanelError::NoBackup {
                    instance: instance.to_owned(),
                    store: cx.local.root().to_string(),
                }
                .to_string(),
            )),
        }
    }

    fn stage(
        &self,
        _cx: &StoreCx<'_>,
        _ctl: &Controller,
        _instance: &str,
        found: &Found,
    ) -> Result<Staged, Problem> {
        match found {
            Found::File(path) => Ok(Staged::file(path.clone())),
            Found::Snapshot(_) => Err(Problem::new(
                ErrorKind::Internal,
                None,
                "the archive store holds no snapshots",
            )),
        }
    }

    fn prune(
        &self,
        cx: &StoreCx<'_>,
        now: jiff::Timestamp,
        dry_run: bool,
    ) -> Result<Pruned, PruneFailure> {
        Ok(Pruned {
            stores: prune_files(cx.local, cx.remote, cx.policy, now, dry_run)?,
            repository: None,
        })
    }

    fn verify(&self, cx: &StoreCx<'_>, _read: &ReadData) -> Result<VerifyReport, VerifyFailure> {
        Err(VerifyFailure {
            problem: Problem::new(
                ErrorKind::Usage,
                None,
                format!(
                    "{}/panel.toml does not choose the repository store: add [store] kind = \
                     \"repository\"",
                    cx.state_dir
                ),
            ),
            repository: None,
        })
    }

    fn drill_backup(
        &self,
        cx: &StoreCx<'_>,
        instance: &str,
    ) -> Result<Option<DrillBackup>, PanelError> {
        Ok(newest_good(cx.local, instance)?.map(|newest| {
            let path = cx.local.path_of(&newest);
            DrillBackup {
                shown: path.to_string(),
                found: Found::File(path),
                store: "local",
            }
        }))
    }
}
