//! The migration round: a second sandbox instance of the same package, the instance under
//! test migrated into it, and the two compared.
//!
//! The compare is per url-mapping path and per database id (the copy's folders and database
//! names are its own), with each side's account as the owner. One kind of difference is the
//! copy's own and not a fault: a file's content or mode, or a table's rows, that the copy
//! holds exactly as its own install left them (a configuration file the package's restore
//! wrote again from the copy's own settings and databases). What the seed put there never
//! counts as the copy's own.

use aps_controller::operation::MigrateRequest;

use super::sandboxed::{self, Sandboxed};
use super::steps;
use super::{Context, StepFailure};
use crate::capture::{Capture, Difference, diff};
use crate::sandbox::Ending;
use crate::seed;

pub(super) fn migrate_round(cx: &mut Context<'_>) {
    let Some(source) = cx.instance.clone() else {
        let why = "the install failed: there is no instance to migrate";
        for step in [
            steps::MIGRATE,
            steps::COMPARE_MIGRATE,
            steps::MIGRATE_REMOVE,
        ] {
            cx.skip(step, why);
        }
        return;
    };
    let mut target: Option<Sandboxed> = None;
    let own = cx.step(steps::MIGRATE, |cx| {
        let path = cx.package.clone();
        let package = sandboxed::package(cx, &path)?;
        let settings = sandboxed::settings_for(cx, &package, &cx.options.settings)?;
        let copy = target.insert(sandboxed::install(
            cx,
            steps::MIGRATE,
            (&path, &package),
            settings,
        )?);
        let own = sandboxed::capture(cx, &copy.name, copy.sandbox.account().uid)?;
        let mut request = MigrateRequest::new(source.as_str(), copy.name.as_str());
        request.timeout = cx.options.timeout;
        let script = package.backup_script_name();
        cx.operate(steps::MIGRATE, &script, Some("§8.10"), |c| {
            c.migrate(&request)
        })?;
        Ok(own)
    });
    match (own, &target) {
        (Some(own), Some(copy)) => {
            cx.step(steps::COMPARE_MIGRATE, |cx| {
                let original = sandboxed::capture(cx, &source, cx.sandbox.account().uid)?;
                let migrated = sandboxed::capture(cx, &copy.name, copy.sandbox.account().uid)?;
                sandboxed::compared(
                    migration_differences(&original, &own, &migrated),
                    "the migrated copy differs from the original",
                    "§8.10",
                )
            });
        }
        _ => cx.skip(steps::COMPARE_MIGRATE, "the migration failed"),
    }
    match target {
        Some(copy) => remove_row(cx, steps::MIGRATE_REMOVE, copy),
        None => cx.skip(steps::MIGRATE_REMOVE, "no copy was made"),
    }
}

/// The row that removes an extra instance and its sandbox; under `keep`, a skipped row that
/// says where they are.
pub(super) fn remove_row(cx: &mut Context<'_>, step: &str, extra: Sandboxed) {
    if !cx.options.sandbox.keep {
        cx.step(step, move |cx| sandboxed::finish(cx, step, extra));
        return;
    }
    let instance = extra.name.clone();
    match extra.sandbox.finish() {
        Ok(Ending::Kept {
            name,
            home,
            web_root,
        }) => cx.skip(
            step,
            format!(
                "kept (--keep): the instance `{instance}` of the sandbox account `{name}`, \
                 home {home}, web root {web_root}"
            ),
        ),
        ended => {
            cx.step(step, move |_| ended.map(|_| ()).map_err(StepFailure::from));
        }
    }
}

/// What differs between the original and its migrated copy, leaving out what the copy holds
/// exactly as its own install (`own`, captured before the migration) left it.
fn migration_differences(original: &Capture, own: &Capture, migrated: &Capture) -> Vec<Difference> {
    let own_differences = diff(own, migrated);
    diff(original, migrated)
        .into_iter()
        .filter(|d| {
            let Some(key) = content_key(d) else {
                return true;
            };
            is_seeded(d)
                || own_differences
                    .iter()
                    .any(|o| item_key(o) == Some(key.clone()))
        })
        .collect()
}

/// The file or table a content difference is about (content, mode, symlink target, rows);
/// `None` for every other kind, which is never the copy's own.
fn content_key(d: &Difference) -> Option<(String, String)> {
    match d {
        Difference::FileContent { .. }
        | Difference::FileMode { .. }
        | Difference::SymlinkTarget { .. }
        | Difference::TableRows { .. }
        | Difference::TableRowCount { .. } => item_key(d),
        _ => None,
    }
}

/// The folder and path, or database and table, any difference is about.
fn item_key(d: &Difference) -> Option<(String, String)> {
    match d {
        Difference::FileMissing { folder, path }
        | Difference::FileAdded { folder, path }
        | Difference::FileKind { folder, path, .. }
        | Difference::FileContent { folder, path, .. }
        | Difference::FileMode { folder, path, .. }
        | Difference::FileOwner { folder, path, .. }
        | Difference::SymlinkTarget { folder, path, .. } => {
            Some((format!("folder {folder}"), path.clone()))
        }
        Difference::TableMissing { database, table }
        | Difference::TableAdded { database, table }
        | Difference::TableSchema {
            database, table, ..
        }
        | Difference::ViewDefinition { database, table }
        | Difference::TableRowCount {
            database, table, ..
        }
        | Difference::TableRows { database, table } => {
            Some((format!("database {database}"), table.clone()))
        }
        Difference::FolderMissing { .. }
        | Difference::FolderAdded { .. }
        | Difference::DatabaseMissing { .. }
        | Difference::DatabaseAdded { .. } => None,
    }
}

/// Whether a difference is about something the seed made: a marker file, a seed table or
/// view (after any table prefix).
pub(super) fn is_seeded(d: &Difference) -> bool {
    match item_key(d) {
        Some((kind, name)) if kind.starts_with("folder ") => {
            name.rsplit('/').next() == Some(seed::MARKER_NAME)
        }
        Some((_, table)) => [seed::SEED_TABLE, seed::EXTRA_TABLE, seed::SEED_VIEW]
            .iter()
            .any(|t| table.ends_with(t)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::capture::{FileKind, FileState, FolderState, Owner};

    fn file(content: &str) -> FileState {
        FileState {
            kind: FileKind::File,
            mode: 0o644,
            owner: Owner::Account,
            size: Some(content.len() as u64),
            sha256: Some(content.to_owned()),
            target: None,
        }
    }

    /// A capture of the root folder holding `files` (name → content).
    fn capture(files: &[(&str, &str)]) -> Capture {
        let entries = files
            .iter()
            .map(|(name, content)| (name.to_string(), file(content)))
            .collect();
        let folder = FolderState {
            path: "/srv/www".into(),
            entries,
        };
        Capture {
            folders: BTreeMap::from([("/".to_owned(), folder)]),
            databases: BTreeMap::new(),
        }
    }

    #[test]
    fn only_what_the_copy_holds_as_its_own_install_left_it_is_not_a_difference() {
        let marker = seed::MARKER_NAME;
        let original = capture(&[("config.php", "db=a"), ("data.txt", "x"), (marker, "m")]);
        let own = capture(&[
            ("config.php", "db=b"),
            ("data.txt", "fresh"),
            (marker, "other"),
        ]);
        // The copy's config is its own; the data file and the marker came across.
        let migrated = capture(&[("config.php", "db=b"), ("data.txt", "x"), (marker, "m")]);
        assert_eq!(migration_differences(&original, &own, &migrated), vec![]);
        // The rule's limit, said in the docs: a file of the copy's own install that the
        // migration left as it was reads as the copy's own too.
        let stale = capture(&[("config.php", "db=b"), ("data.txt", "fresh"), (marker, "m")]);
        assert_eq!(migration_differences(&original, &own, &stale), vec![]);
        // A file the copy lacks is never its own, nor is a marker that differs, even when the
        // copy's install left it so.
        let lost = capture(&[("config.php", "db=b"), (marker, "other")]);
        let found = migration_differences(&original, &own, &lost);
        assert!(
            found.contains(&Difference::FileMissing {
                folder: "/".into(),
                path: "data.txt".into()
            }),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|d| matches!(d, Difference::FileContent { path, .. } if path == marker)),
            "{found:?}"
        );
    }
}
