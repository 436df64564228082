//! The operations as a control panel asks for them — backup, restore, migrate, list backups,
//! import, the log, run, drill, and the lifecycle's install, configure, enable/disable — one
//! module each, with a typed request and a typed result, called by both front ends: the
//! CLI (`aps-controller backup …`) and the HTTP adapter (`aps-controller serve`).
//!
//! The service decides; the front ends word. A refusal names the request's fields as a
//! [`Field`], never as a CLI flag or a JSON key, and each front end says it its own way through
//! [`Wording`] (`--force` for the CLI, `"force": true` for HTTP).

pub mod backup;
pub mod backups;
pub mod configure;
pub mod drill;
pub mod enable;
pub mod import;
pub mod install;
pub mod log;
pub mod migrate;
pub mod new_instance;
pub mod remove;
pub mod restore;
pub mod run;
pub mod status;
pub mod upgrade;
pub mod verify;

use aps_controller::Controller;
use aps_controller::ErrorKind;
use aps_controller::error::{OperationError, Override};

use camino::Utf8PathBuf;

use crate::context::PanelError;
use crate::problem::Problem;
use crate::store::{Refusal, Unsupported};

/// A field of a request, as a refusal names it. Several spellings of one field exist because
/// the CLI names some flags with their value (`--to FILE`) in some sentences only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The instance the request is about (the CLI's `NAME` argument).
    Instance,
    To,
    /// `to`, where the sentence names the value too (`--to FILE`).
    ToFile,
    Force,
    Timeout,
    Compression,
    Recipients,
    DryRun,
    From,
    /// `from`, where the sentence names the value too (`--from FILE`).
    FromFile,
    Latest,
    Snapshot,
    /// `snapshot`, where the sentence names the value too (`--snapshot ID`).
    SnapshotId,
    Identity,
    NoSafetySnapshot,
    /// `identity`, where the sentence names the value too (`--identity FILE`).
    IdentityFile,
    FromOtherInstance,
    /// Registration: overwrite an instance of the same name.
    Replace,
    /// Registration: do not try the databases' logins.
    NoConnect,
    ToInstance,
    Keep,
    /// A drill's staging instance.
    Staging,
    /// An instance named by an option (`run`'s and `verify`'s `--instance`).
    InstanceOption,
    /// A backup file named by itself (`verify FILE`).
    File,
    /// Install: the package folder or `.app.zip`.
    Package,
    /// Install: the new instance's name.
    Name,
    /// Install: the base URL.
    BaseUrl,
    /// Install: the root url-mapping's folder.
    WebRoot,
    /// Install: the account the instance's work runs as.
    User,
    /// Install: one `ID=VALUE` setting.
    Setting,
    /// Install: the settings file.
    SettingsFile,
    /// Install: one `ID=SERVER` or `ID=existing:FILE` database.
    Database,
    /// Remove: the record only, files and databases kept.
    KeepData,
    /// Remove: without the final backup.
    NoFinalBackup,
    /// Migrate: the new instance the source is installed and copied into.
    ToNew,
    /// Restore: the new instance the backup's package is installed into before the restore.
    AsNew,
    /// Restore onto a new instance: the package to install, named by an option.
    PackageOption,
}

/// How a front end names a request's fields.
pub trait Wording {
    fn field(&self, field: Field) -> &'static str;
}

/// A message whose field names are left to the front end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

impl From<&str> for Piece {
    fn from(text: &str) -> Self {
        Piece::Text(text.to_owned())
    }
}

impl From<String> for Piece {
    fn from(text: String) -> Self {
        Piece::Text(text)
    }
}

impl From<Field> for Piece {
    fn from(field: Field) -> Self {
        Piece::Field(field)
    }
}

/// `words![Field::Force, " replaces an existing ", Field::To, " file"]`.
macro_rules! words {
    ($($piece:expr),+ $(,)?) => {
        $crate::service::Words::from_pieces(vec![$($piece.into()),+])
    };
}
pub(crate) use words;

impl Words {
    fn from_pieces(pieces: Vec<Piece>) -> Self {
        Words(pieces)
    }

    pub(crate) fn push_text(&mut self, text: &str) {
        self.0.push(Piece::from(text));
    }

    pub(crate) fn push_field(&mut self, field: Field) {
        self.0.push(Piece::Field(field));
    }

    /// The message in a front end's words.
    pub fn say(&self, wording: &dyn Wording) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Field(f) => wording.field(*f),
            })
            .collect()
    }
}

/// The fields by the request structs' own names, for `Display` (logs, tests).
struct Neutral;

impl Wording for Neutral {
    fn field(&self, field: Field) -> &'static str {
        match field {
            Field::Instance => "instance",
            Field::To | Field::ToFile => "to",
            Field::Force => "force",
            Field::Timeout => "timeout",
            Field::Compression => "compression",
            Field::Recipients => "recipients",
            Field::DryRun => "dry_run",
            Field::From | Field::FromFile => "from",
            Field::Latest => "latest",
            Field::Snapshot | Field::SnapshotId => "snapshot",
            Field::Identity | Field::IdentityFile => "identity",
            Field::Replace => "replace",
            Field::NoSafetySnapshot => "no_safety_snapshot",
            Field::NoConnect => "no_connect",
            Field::FromOtherInstance => "from_other_instance",
            Field::ToInstance => "to_instance",
            Field::Keep => "keep",
            Field::Staging => "staging",
            Field::InstanceOption => "instance",
            Field::File => "file",
            Field::Package => "package",
            Field::Name => "name",
            Field::BaseUrl => "base_url",
            Field::WebRoot => "web_root",
            Field::User => "user",
            Field::Setting => "settings",
            Field::SettingsFile => "settings_file",
            Field::Database => "databases",
            Field::KeepData => "keep_data",
            Field::NoFinalBackup => "no_final_backup",
            Field::ToNew => "to_new",
            Field::AsNew => "as_new",
            Field::PackageOption => "package",
        }
    }
}

/// The request field that is the controller's override: a front end spells the override as
/// it names the field.
impl From<Override> for Field {
    fn from(o: Override) -> Self {
        match o {
            Override::Force => Field::Force,
            Override::Replace => Field::Replace,
            Override::NoConnect => Field::NoConnect,
            Override::IdentityFile => Field::IdentityFile,
            Override::FromOtherInstance => Field::FromOtherInstance,
            Override::Instance => Field::InstanceOption,
            Override::Name => Field::Name,
            Override::User => Field::User,
            Override::Setting => Field::Setting,
            Override::SettingsFile => Field::SettingsFile,
            Override::Database => Field::Database,
            Override::KeepData => Field::KeepData,
        }
    }
}

/// Runs `f` with the controller's overrides spelled as `wording` names their fields: an error
/// of the controller or the registry formatted inside says `--force` for the CLI,
/// `"force": true` for HTTP (and the Rust API's name, `force`, outside).
pub fn worded<T>(wording: &dyn Wording, f: impl FnOnce() -> T) -> T {
    aps_controller::error::spelled(&|o| wording.field(o.into()), f)
}

impl From<Field> for Words {
    fn from(field: Field) -> Self {
        Words(vec![Piece::Field(field)])
    }
}

impl From<&str> for Words {
    fn from(text: &str) -> Self {
        Words(vec![Piece::from(text)])
    }
}

impl std::fmt::Display for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.say(&Neutral))
    }
}

/// Why an operation of the service did not happen, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The service itself refused or failed (a request that cannot run, an unknown instance, a
    /// backup that could not be recorded): `message` names the request's fields.
    #[error("{message}")]
    Refused {
        kind: ErrorKind,
        step: Option<&'static str>,
        message: Words,
        /// What to do next, when there is one command that shows it.
        hint: Option<String>,
    },
    /// The controller's operation failed. `allowed_by` names the request field that lets the
    /// refused operation run (`force` over an existing file, `from_other_instance` for another
    /// instance's backup); the error's message names it as the front end spells it when
    /// formatted inside [`worded`].
    #[error("{error}")]
    Operation {
        error: Box<OperationError>,
        allowed_by: Option<Field>,
    },
    /// A failure inside the panel (the repository store, the engine), as its report shows it.
    #[error("{problem}")]
    Problem {
        problem: Problem,
        hint: Option<String>,
    },
    /// An archive that could not be verified (damaged, unreadable, no identity).
    #[error("{file}: {error}")]
    Unverified {
        file: Utf8PathBuf,
        error: Box<PanelError>,
    },
    /// The store's own check could not run (`repository`: the repository it concerns).
    #[error("{problem}")]
    Unchecked {
        problem: Problem,
        repository: Option<String>,
    },
    /// The repository store is damaged: every finding.
    #[error("repository {repository} is damaged: {}", .errors.join("; "))]
    Damaged {
        repository: String,
        errors: Vec<String>,
        warnings: Vec<String>,
    },
    /// panel.toml or the store.
    #[error("{error}")]
    Panel {
        error: Box<PanelError>,
        hint: Option<String>,
    },
}

impl ServiceError {
    pub(crate) fn usage(message: Words) -> Self {
        ServiceError::Refused {
            kind: ErrorKind::Usage,
            step: None,
            message,
            hint: None,
        }
    }

    pub(crate) fn operation(error: OperationError) -> Self {
        ServiceError::Operation {
            allowed_by: error.allowed_by().map(Field::from),
            error: Box::new(error),
        }
    }

    pub(crate) fn with_hint(mut self, text: String) -> Self {
        match &mut self {
            ServiceError::Refused { hint, .. }
            | ServiceError::Problem { hint, .. }
            | ServiceError::Panel { hint, .. } => *hint = Some(text),
            ServiceError::Operation { .. }
            | ServiceError::Unverified { .. }
            | ServiceError::Unchecked { .. }
            | ServiceError::Damaged { .. } => {}
        }
        self
    }
}

impl From<PanelError> for ServiceError {
    fn from(error: PanelError) -> Self {
        ServiceError::Panel {
            error: Box::new(error),
            hint: None,
        }
    }
}

impl From<Problem> for ServiceError {
    fn from(problem: Problem) -> Self {
        ServiceError::Problem {
            problem,
            hint: None,
        }
    }
}

impl From<Refusal> for ServiceError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unsupported(u) => unsupported(u),
            Refusal::InstanceNotFound(what) => not_found(what),
            Refusal::Refused {
                kind,
                step,
                message,
            } => ServiceError::Refused {
                kind,
                step,
                message: words![message],
                hint: None,
            },
            Refusal::Operation(error) => ServiceError::operation(*error),
            Refusal::Problem { problem, hint } => ServiceError::Problem { problem, hint },
            Refusal::Panel { error, hint } => ServiceError::Panel { error, hint },
        }
    }
}

/// What a store does not take, with the request's fields named around the store's words (a
/// migration words a snapshot its own way, `migrate.rs`).
pub(crate) fn unsupported(u: Unsupported) -> ServiceError {
    ServiceError::usage(match u {
        Unsupported::ArchiveOption { dry_run, store_is } => {
            let mut message = if dry_run {
                words![Field::DryRun]
            } else {
                words![Field::Compression, "/", Field::Recipients]
            };
            message.push_text(&format!(
                " applies to archive files; panel.toml's store is {store_is} (give "
            ));
            message.push_field(Field::ToFile);
            message.push_text(" for an archive)");
            message
        }
        Unsupported::Snapshots { store_is } => words![
            Field::Snapshot,
            format!(
                " names a snapshot of the repository store, but panel.toml's store is \
                 {store_is}: give "
            ),
            Field::FromFile,
            " or ",
            Field::Latest
        ],
        Unsupported::Identity { backup_is } => words![
            Field::Identity,
            format!(" decrypts archive files; {backup_is} needs none")
        ],
    })
}

/// The instance-name rule, checked before anything runs (`field` says where the name came
/// from: a request's field, or a front end's own words for an option of its own).
pub fn check_instance_name(field: impl Into<Words>, name: &str) -> Result<(), ServiceError> {
    if crate::naming::is_valid_instance_name(name) {
        return Ok(());
    }
    let mut message = field.into();
    message.push_text(&format!(
        " {name:?} is not an instance name: lowercase letters, digits, '.', '_' and \
             '-', starting with a letter or digit, at most 63 characters \
             (`aps-controller instance list` shows the registered ones)"
    ));
    Err(ServiceError::usage(message))
}

/// A script timeout of 0 seconds is refused by every operation that takes one.
pub(crate) fn check_timeout(timeout_secs: Option<u64>) -> Result<(), ServiceError> {
    if timeout_secs == Some(0) {
        return Err(ServiceError::usage(words![
            Field::Timeout,
            " must be at least 1 second"
        ]));
    }
    Ok(())
}

/// The instance must be registered (exit 4, `instance-not-found`) before its backups or
/// snapshots are looked for.
pub fn require_instance(ctl: &Controller, name: &str) -> Result<(), ServiceError> {
    ctl.store()
        .get(name)
        .map(drop)
        .map_err(|e| not_found(format!("{e}")))
}

pub(crate) fn not_found(what: String) -> ServiceError {
    ServiceError::Refused {
        kind: ErrorKind::InstanceNotFound,
        step: Some("find-instance"),
        message: words![format!(
            "{what}; `aps-controller instance list` shows the registered instances"
        )],
        hint: None,
    }
}

/// Exit 4 with `instance-not-found` for a name that is not registered (the registry's list,
/// for commands that also accept a removed instance's backups).
pub fn require_registered(ctl: &Controller, name: &str) -> Result<(), ServiceError> {
    let registered = ctl.instances().map_err(|e| {
        PanelError::Engine(crate::engine::EngineError::Instances {
            message: e.to_string(),
        })
    })?;
    if registered.iter().any(|r| r.name == name) {
        return Ok(());
    }
    Err(ServiceError::Refused {
        kind: ErrorKind::InstanceNotFound,
        step: None,
        message: words![format!(
            "no registered instance named {name:?}; `aps-controller instance list` shows them"
        )],
        hint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Json;

    impl Wording for Json {
        fn field(&self, field: Field) -> &'static str {
            match field {
                Field::Force => "\"force\": true",
                Field::IdentityFile => "\"identity\": FILE",
                _ => "?",
            }
        }
    }

    #[test]
    fn a_controller_error_is_worded_by_the_front_end() {
        let e = ServiceError::operation(OperationError::Archive {
            step: aps_controller::Step::VerifyBackup,
            source: aps_controller::archive::ArchiveError::IdentityRequired {
                archive: "b.aps.age".into(),
            },
        });
        let ServiceError::Operation { error, allowed_by } = &e else {
            panic!("an operation's error")
        };
        assert_eq!(*allowed_by, Some(Field::IdentityFile));
        let text = worded(&Json, || error.to_string());
        assert!(text.contains("read it (\"identity\": FILE: the"), "{text}");
        assert!(error.to_string().contains("read it (identity: the"), "{e}");
    }

    #[test]
    fn a_refusal_is_worded_by_the_front_end() {
        let e = check_instance_name(Field::Force, "Bad Name").unwrap_err();
        let ServiceError::Refused { message, kind, .. } = e else {
            panic!("a refusal")
        };
        assert_eq!(kind, ErrorKind::Usage);
        assert!(
            message
                .say(&Json)
                .starts_with("\"force\": true \"Bad Name\" is not")
        );
    }
}
