//! The classes of failure the control panel tells apart: `kind` in JSON and the exit code.

use serde::Serialize;

/// The class of a failure, as the control panel sees it (`kind` in JSON, and the exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    InstanceNotFound,
    InvalidPackage,
    InterpreterMissing,
    DestinationRefused,
    ScriptFailed,
    TimedOut,
    Busy,
    ResourceFailed,
    InvalidBackup,
    /// A backup file this controller did not make (no or a wrong authentication tag).
    UntrustedBackup,
    /// A disk or quota filled up (ENOSPC, EDQUOT, EFBIG) during the operation.
    NoSpace,
    /// The tenant's work would run as root (or an account that cannot be used).
    AccountRefused,
    /// A path outside the folders the HTTP adapter was allowed to touch.
    PathNotAllowed,
    /// SIGINT, SIGTERM or SIGHUP stopped the operation; it was rolled back.
    Interrupted,
    /// A restore failed and putting the instance back failed too: it needs a person, with the
    /// safety snapshot the message names.
    RollbackFailed,
    /// An install's package asks for what this host lacks (an interpreter, a PHP version or
    /// extension, a database server, free space); nothing was made.
    RequirementUnmet,
    /// An install's settings are missing or invalid for the package; nothing was made.
    InvalidSettings,
    /// An install names an instance that is already registered; nothing was made.
    InstanceExists,
    /// A conformance run ended with a step that failed (`aps-controller conformance`): the
    /// package, not the host, is at fault; the report says which step and why.
    ConformanceFailed,
    /// `status --max-age`: an instance has no good backup younger than the age given.
    Stale,
    /// The remote store (an S3 bucket) did not serve the request: no connection, no answer in
    /// time, or server errors after the configured retries. Nothing half-made was kept; the
    /// next run catches up.
    RemoteUnreachable,
    /// The command was given bad arguments or input; nothing ran.
    Usage,
    Internal,
}

impl ErrorKind {
    /// Every kind, in the README's order.
    pub const ALL: [ErrorKind; 23] = [
        ErrorKind::InstanceNotFound,
        ErrorKind::InvalidPackage,
        ErrorKind::InterpreterMissing,
        ErrorKind::DestinationRefused,
        ErrorKind::ScriptFailed,
        ErrorKind::TimedOut,
        ErrorKind::Busy,
        ErrorKind::ResourceFailed,
        ErrorKind::InvalidBackup,
        ErrorKind::UntrustedBackup,
        ErrorKind::NoSpace,
        ErrorKind::AccountRefused,
        ErrorKind::PathNotAllowed,
        ErrorKind::RollbackFailed,
        ErrorKind::RequirementUnmet,
        ErrorKind::InvalidSettings,
        ErrorKind::InstanceExists,
        ErrorKind::ConformanceFailed,
        ErrorKind::Stale,
        ErrorKind::RemoteUnreachable,
        ErrorKind::Interrupted,
        ErrorKind::Usage,
        ErrorKind::Internal,
    ];

    /// The kind named `name` ([`ErrorKind::as_str`]), if there is one.
    pub fn named(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InstanceNotFound => "instance-not-found",
            ErrorKind::InvalidPackage => "invalid-package",
            ErrorKind::InterpreterMissing => "interpreter-missing",
            ErrorKind::DestinationRefused => "destination-refused",
            ErrorKind::ScriptFailed => "script-failed",
            ErrorKind::TimedOut => "timed-out",
            ErrorKind::Busy => "busy",
            ErrorKind::ResourceFailed => "resource-failed",
            ErrorKind::InvalidBackup => "invalid-backup",
            ErrorKind::UntrustedBackup => "untrusted-backup",
            ErrorKind::NoSpace => "no-space",
            ErrorKind::AccountRefused => "account-refused",
            ErrorKind::PathNotAllowed => "path-not-allowed",
            ErrorKind::RollbackFailed => "rollback-failed",
            ErrorKind::RequirementUnmet => "requirement-unmet",
            ErrorKind::InvalidSettings => "invalid-settings",
            ErrorKind::InstanceExists => "instance-exists",
            ErrorKind::ConformanceFailed => "conformance-failed",
            ErrorKind::Stale => "stale",
            ErrorKind::RemoteUnreachable => "remote-unreachable",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Usage => "usage",
            ErrorKind::Internal => "internal",
        }
    }

    /// The documented exit code of the CLI for this kind (README, "Exit codes").
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::InstanceNotFound => 4,
            ErrorKind::InvalidPackage => 10,
            ErrorKind::InterpreterMissing => 11,
            ErrorKind::DestinationRefused => 12,
            ErrorKind::ScriptFailed => 13,
            ErrorKind::TimedOut => 14,
            ErrorKind::Busy => 15,
            ErrorKind::ResourceFailed => 16,
            ErrorKind::InvalidBackup => 17,
            ErrorKind::UntrustedBackup => 18,
            ErrorKind::NoSpace => 19,
            ErrorKind::AccountRefused => 20,
            ErrorKind::PathNotAllowed => 21,
            ErrorKind::RollbackFailed => 22,
            ErrorKind::RequirementUnmet => 23,
            ErrorKind::InvalidSettings => 24,
            ErrorKind::InstanceExists => 25,
            ErrorKind::ConformanceFailed => 26,
            ErrorKind::Stale => 27,
            ErrorKind::RemoteUnreachable => 28,
            // 128 + SIGINT; the CLI answers 143 (128 + SIGTERM) when SIGTERM stopped it.
            ErrorKind::Interrupted => 130,
            ErrorKind::Usage => 2,
        }
    }
}
