//! The difference of two captures: one item per thing that differs, named so that a person
//! finds it (the folder's url path and the file below it; the database id and the table).

use std::fmt;

use serde::Serialize;

use super::Capture;
use super::files::{FileKind, FileState, Owner};
use super::tables::{Column, TableState};

/// One thing that differs between two captures (`before` → `after`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "what")]
pub enum Difference {
    /// A web folder captured before is not in the second capture.
    FolderMissing {
        folder: String,
    },
    /// A web folder only the second capture has.
    FolderAdded {
        folder: String,
    },
    FileMissing {
        folder: String,
        path: String,
    },
    FileAdded {
        folder: String,
        path: String,
    },
    /// A file became a folder, a folder a symlink…
    FileKind {
        folder: String,
        path: String,
        before: FileKind,
        after: FileKind,
    },
    FileContent {
        folder: String,
        path: String,
        before_size: Option<u64>,
        after_size: Option<u64>,
    },
    FileMode {
        folder: String,
        path: String,
        before: u32,
        after: u32,
    },
    FileOwner {
        folder: String,
        path: String,
        before: Owner,
        after: Owner,
    },
    SymlinkTarget {
        folder: String,
        path: String,
        before: Option<String>,
        after: Option<String>,
    },
    DatabaseMissing {
        database: String,
    },
    DatabaseAdded {
        database: String,
    },
    TableMissing {
        database: String,
        table: String,
    },
    TableAdded {
        database: String,
        table: String,
    },
    /// Columns (names, types, nullability, defaults) or table/view kind differ.
    TableSchema {
        database: String,
        table: String,
        before: Vec<String>,
        after: Vec<String>,
    },
    ViewDefinition {
        database: String,
        table: String,
    },
    TableRowCount {
        database: String,
        table: String,
        before: u64,
        after: u64,
    },
    /// As many rows, other content.
    TableRows {
        database: String,
        table: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = |folder: &str, path: &str| {
            if path.is_empty() {
                format!("web folder {folder}")
            } else {
                format!("file {path} of web folder {folder}")
            }
        };
        match self {
            Difference::FolderMissing { folder } => write!(f, "web folder {folder} is missing"),
            Difference::FolderAdded { folder } => write!(f, "web folder {folder} is new"),
            Difference::FileMissing { folder, path } => {
                write!(f, "{} is missing", file(folder, path))
            }
            Difference::FileAdded { folder, path } => write!(f, "{} is new", file(folder, path)),
            Difference::FileKind {
                folder,
                path,
                before,
                after,
            } => write!(
                f,
                "{} was a {before:?} and is a {after:?}",
                file(folder, path)
            ),
            Difference::FileContent {
                folder,
                path,
                before_size,
                after_size,
            } => {
                write!(f, "{}: content differs", file(folder, path))?;
                match (before_size, after_size) {
                    (Some(b), Some(a)) if a != b => write!(f, " ({b} bytes before, {a} after)"),
                    _ => Ok(()),
                }
            }
            Difference::FileMode {
                folder,
                path,
                before,
                after,
            } => write!(
                f,
                "{}: mode {before:04o} became {after:04o}",
                file(folder, path)
            ),
            Difference::FileOwner {
                folder,
                path,
                before,
                after,
            } => write!(
                f,
                "{}: owner {} became {}",
                file(folder, path),
                owner(before),
                owner(after)
            ),
            Difference::SymlinkTarget { folder, path, .. } => {
                write!(f, "{}: symlink target differs", file(folder, path))
            }
            Difference::DatabaseMissing { database } => {
                write!(f, "database {database} is missing")
            }
            Difference::DatabaseAdded { database } => write!(f, "database {database} is new"),
            Difference::TableMissing { database, table } => {
                write!(f, "table {table} of database {database} is missing")
            }
            Difference::TableAdded { database, table } => {
                write!(f, "table {table} of database {database} is new")
            }
            Difference::TableSchema {
                database,
                table,
                before,
                after,
            } => write!(
                f,
                "schema of table {table} of database {database} differs: ({}) became ({})",
                before.join(", "),
                after.join(", ")
            ),
            Difference::ViewDefinition { database, table } => {
                write!(
                    f,
                    "definition of view {table} of database {database} differs"
                )
            }
            Difference::TableRowCount {
                database,
                table,
                before,
                after,
            } => write!(
                f,
                "table {table} of database {database}: {before} rows became {after}"
            ),
            Difference::TableRows { database, table } => write!(
                f,
                "table {table} of database {database}: rows differ (same count)"
            ),
        }
    }
}

fn owner(o: &Owner) -> String {
    match o {
        Owner::Account => "the instance's account".into(),
        Owner::Uid(uid) => format!("uid {uid}"),
    }
}

/// Everything that differs from `before` to `after`, in a stable order (folders, then
/// databases; names sorted). Empty when the instance holds the same state.
pub fn diff(before: &Capture, after: &Capture) -> Vec<Difference> {
    let mut out = Vec::new();
    for (folder, b) in &before.folders {
        let Some(a) = after.folders.get(folder) else {
            out.push(Difference::FolderMissing {
                folder: folder.clone(),
            });
            continue;
        };
        for (path, be) in &b.entries {
            match a.entries.get(path) {
                None => out.push(Difference::FileMissing {
                    folder: folder.clone(),
                    path: path.clone(),
                }),
                Some(ae) => file_diff(folder, path, be, ae, &mut out),
            }
        }
        for path in a.entries.keys().filter(|p| !b.entries.contains_key(*p)) {
            out.push(Difference::FileAdded {
                folder: folder.clone(),
                path: path.clone(),
            });
        }
    }
    for folder in after
        .folders
        .keys()
        .filter(|f| !before.folders.contains_key(*f))
    {
        out.push(Difference::FolderAdded {
            folder: folder.clone(),
        });
    }
    for (database, b) in &before.databases {
        let Some(a) = after.databases.get(database) else {
            out.push(Difference::DatabaseMissing {
                database: database.clone(),
            });
            continue;
        };
        for (table, bt) in &b.tables {
            match a.tables.get(table) {
                None => out.push(Difference::TableMissing {
                    database: database.clone(),
                    table: table.clone(),
                }),
                Some(at) => table_diff(database, table, bt, at, &mut out),
            }
        }
        for table in a.tables.keys().filter(|t| !b.tables.contains_key(*t)) {
            out.push(Difference::TableAdded {
                database: database.clone(),
                table: table.clone(),
            });
        }
    }
    for database in after
        .databases
        .keys()
        .filter(|d| !before.databases.contains_key(*d))
    {
        out.push(Difference::DatabaseAdded {
            database: database.clone(),
        });
    }
    out
}

fn file_diff(folder: &str, path: &str, b: &FileState, a: &FileState, out: &mut Vec<Difference>) {
    let (folder, path) = (folder.to_owned(), path.to_owned());
    if b.kind != a.kind {
        out.push(Difference::FileKind {
            folder,
            path,
            before: b.kind,
            after: a.kind,
        });
        return;
    }
    if b.sha256 != a.sha256 || b.size != a.size {
        out.push(Difference::FileContent {
            folder: folder.clone(),
            path: path.clone(),
            before_size: b.size,
            after_size: a.size,
        });
    }
    if b.target != a.target {
        out.push(Difference::SymlinkTarget {
            folder: folder.clone(),
            path: path.clone(),
            before: b.target.clone(),
            after: a.target.clone(),
        });
    }
    // A symlink's own mode means nothing on Linux.
    if b.mode != a.mode && b.kind != FileKind::Symlink {
        out.push(Difference::FileMode {
            folder: folder.clone(),
            path: path.clone(),
            before: b.mode,
            after: a.mode,
        });
    }
    if b.owner != a.owner {
        out.push(Difference::FileOwner {
            folder,
            path,
            before: b.owner,
            after: a.owner,
        });
    }
}

fn table_diff(
    database: &str,
    table: &str,
    b: &TableState,
    a: &TableState,
    out: &mut Vec<Difference>,
) {
    let (database, table) = (database.to_owned(), table.to_owned());
    if b.kind != a.kind || b.columns != a.columns {
        let describe = |t: &TableState| -> Vec<String> {
            let mut cols: Vec<String> = t.columns.iter().map(column).collect();
            if t.kind == super::TableKind::View {
                cols.insert(0, "view".into());
            }
            cols
        };
        out.push(Difference::TableSchema {
            database: database.clone(),
            table: table.clone(),
            before: describe(b),
            after: describe(a),
        });
    }
    if b.definition != a.definition {
        out.push(Difference::ViewDefinition {
            database: database.clone(),
            table: table.clone(),
        });
    }
    if b.rows != a.rows {
        out.push(Difference::TableRowCount {
            database,
            table,
            before: b.rows,
            after: a.rows,
        });
    } else if b.rows_sha256 != a.rows_sha256 {
        out.push(Difference::TableRows { database, table });
    }
}

fn column(c: &Column) -> String {
    let mut s = format!("{} {}", c.name, c.data_type);
    if !c.nullable {
        s.push_str(" not null");
    }
    if let Some(d) = &c.default {
        s.push_str(&format!(" default {d}"));
    }
    s
}
