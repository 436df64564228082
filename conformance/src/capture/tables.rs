//! The databases' part of a capture: every table's and view's columns, every view's
//! definition, every table's rows (each value hex-encoded, NULL apart, sorted, checksummed),
//! read through the server's own client as an account of its own
//! (`database::query_as_own_account`): names and values come back hex-encoded, so whatever a
//! tenant put into them cannot break the reading.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use aps_controller::database::{Database, DbKind, query_as_own_account};

use crate::error::ConformanceError;

/// A table or a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Table,
    View,
}

/// One column, as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// The server's type (`varchar(64)`, `character varying(64)`, `bytea`).
    pub data_type: String,
    pub nullable: bool,
    /// The default expression, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// One table or view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    pub kind: TableKind,
    pub columns: Vec<Column>,
    /// A view's definition as the server prints it (the database's own name taken out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// Tables: rows; views: 0 (their rows are their tables').
    pub rows: u64,
    /// SHA-256 of the sorted rows, each row its values hex-encoded (`N` for NULL).
    pub rows_sha256: String,
}

/// One database: table name (`schema.table` outside PostgreSQL's `public`) → state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseState {
    /// Its name on its server.
    pub name: String,
    pub tables: BTreeMap<String, TableState>,
}

/// A table as listed: its schema (PostgreSQL) and name.
struct Listed {
    schema: String,
    name: String,
    kind: TableKind,
}

pub(super) fn capture_database(
    db: &Database,
    timeout: Duration,
) -> Result<DatabaseState, ConformanceError> {
    let sql = match db.kind {
        DbKind::Mysql => MYSQL_META,
        DbKind::Postgresql => POSTGRES_META,
    };
    let meta = query_as_own_account(db, sql, timeout)
        .map_err(ConformanceError::database("read the tables of", &db.name))?;
    let bad = |detail: String| ConformanceError::DatabaseAnswer {
        action: "read the tables of",
        database: db.name.clone(),
        detail,
    };
    let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
    let mut columns: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    let mut definitions: BTreeMap<String, String> = BTreeMap::new();
    for line in meta.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let text = |i: usize| -> Result<String, ConformanceError> {
            let field = f
                .get(i)
                .ok_or_else(|| bad(format!("short line `{line}`")))?;
            unhex(field).ok_or_else(|| bad(format!("`{field}` is not hex-encoded UTF-8")))
        };
        let key = |schema: &str, name: &str| table_key(db.kind, schema, name);
        match f.first().copied() {
            Some("T") if f.len() == 4 => {
                let (schema, name) = (text(1)?, text(2)?);
                let kind = if f[3] == "VIEW" {
                    TableKind::View
                } else {
                    TableKind::Table
                };
                listed.insert(key(&schema, &name), Listed { schema, name, kind });
            }
            Some("C") if f.len() == 7 => {
                let k = key(&text(1)?, &text(2)?);
                columns.entry(k).or_default().push(Column {
                    name: text(3)?,
                    data_type: text(4)?,
                    nullable: f[5] == "YES",
                    default: if f[6] == "N" { None } else { Some(text(6)?) },
                });
            }
            Some("V") if f.len() == 4 => {
                let definition = text(3)?.replace(&format!("`{}`.", db.name), "");
                definitions.insert(key(&text(1)?, &text(2)?), definition);
            }
            _ => return Err(bad(format!("unexpected line `{line}`"))),
        }
    }

    // One query for every table's rows; each line starts with the table's index.
    let keys: Vec<&String> = listed
        .iter()
        .filter(|(_, t)| t.kind == TableKind::Table)
        .map(|(k, _)| k)
        .collect();
    let mut rows: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
    if !keys.is_empty() {
        let mut sql = String::new();
        for (i, key) in keys.iter().enumerate() {
            let table = &listed[*key];
            let cols = columns.get(*key).map(Vec::as_slice).unwrap_or(&[]);
            sql.push_str(&rows_query(db.kind, i, table, cols));
        }
        let out = query_as_own_account(db, &sql, timeout)
            .map_err(ConformanceError::database("read the rows of", &db.name))?;
        for line in out.lines().filter(|l| !l.is_empty()) {
            let (index, row) = line
                .split_once(':')
                .and_then(|(i, r)| Some((i.parse::<usize>().ok()?, r)))
                .filter(|(i, _)| *i < rows.len())
                .ok_or_else(|| ConformanceError::DatabaseAnswer {
                    action: "read the rows of",
                    database: db.name.clone(),
                    detail: format!("unexpected line `{line}`"),
                })?;
            rows[index].push(row.to_owned());
        }
    }
    let mut row_sets: BTreeMap<&String, Vec<String>> = keys.into_iter().zip(rows).collect();

    let mut tables = BTreeMap::new();
    for (key, table) in &listed {
        let mut these = row_sets.remove(key).unwrap_or_default();
        these.sort();
        let mut sha = Sha256::new();
        for row in &these {
            sha.update(row.as_bytes());
            sha.update(b"\n");
        }
        tables.insert(
            key.clone(),
            TableState {
                kind: table.kind,
                columns: columns.remove(key).unwrap_or_default(),
                definition: definitions.remove(key),
                rows: these.len() as u64,
                rows_sha256: hex::encode(sha.finalize()),
            },
        );
    }
    Ok(DatabaseState {
        name: db.name.clone(),
        tables,
    })
}

/// The key a table is known by: as `database::row_counts` names it.
fn table_key(kind: DbKind, schema: &str, name: &str) -> String {
    match kind {
        DbKind::Postgresql if schema != "public" => format!("{schema}.{name}"),
        _ => name.to_owned(),
    }
}

fn unhex(field: &str) -> Option<String> {
    String::from_utf8(hex::decode(field).ok()?).ok()
}

/// The query of one table's rows: each line `INDEX:` then its values hex-encoded, `N` for
/// NULL, comma-separated.
fn rows_query(kind: DbKind, index: usize, table: &Listed, columns: &[Column]) -> String {
    match kind {
        DbKind::Mysql => {
            let quote = |n: &str| format!("`{}`", n.replace('`', "``"));
            let values = if columns.is_empty() {
                "''".to_owned()
            } else {
                let each: Vec<String> = columns
                    .iter()
                    .map(|c| format!("IFNULL(HEX(CAST({} AS BINARY)),'N')", quote(&c.name)))
                    .collect();
                format!("CONCAT_WS(',',{})", each.join(","))
            };
            format!(
                "SELECT CONCAT('{index}:',{values}) FROM {};\n",
                quote(&table.name)
            )
        }
        DbKind::Postgresql => {
            let quote = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
            let values = if columns.is_empty() {
                "''".to_owned()
            } else {
                let each: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        format!(
                            "COALESCE(encode(convert_to(t.{}::text,'UTF8'),'hex'),'N')",
                            quote(&c.name)
                        )
                    })
                    .collect();
                format!("concat_ws(',',{})", each.join(","))
            };
            format!(
                "SELECT '{index}:' || {values} FROM {}.{} t;\n",
                quote(&table.schema),
                quote(&table.name)
            )
        }
    }
}

/// Tables, columns and views of the current database, MySQL/MariaDB: one line each, `T`, `C`
/// or `V` first, names hex-encoded (the schema field is empty: one database is one schema).
const MYSQL_META: &str = "\
SELECT 'T', '', HEX(TABLE_NAME), IF(TABLE_TYPE = 'VIEW', 'VIEW', 'TABLE')
  FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME;
SELECT 'C', '', HEX(TABLE_NAME), HEX(COLUMN_NAME), HEX(COLUMN_TYPE), IS_NULLABLE,
       IFNULL(HEX(COLUMN_DEFAULT), 'N')
  FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()
  ORDER BY TABLE_NAME, ORDINAL_POSITION;
SELECT 'V', '', HEX(TABLE_NAME), HEX(VIEW_DEFINITION)
  FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME;
";

/// The same for PostgreSQL, from its catalogue (every schema but the system's).
const POSTGRES_META: &str = "\
SELECT 'T', encode(convert_to(n.nspname, 'UTF8'), 'hex'), encode(convert_to(c.relname, 'UTF8'), 'hex'),
       CASE WHEN c.relkind IN ('v', 'm') THEN 'VIEW' ELSE 'TABLE' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  ORDER BY 2, 3;
SELECT 'C', encode(convert_to(n.nspname, 'UTF8'), 'hex'), encode(convert_to(c.relname, 'UTF8'), 'hex'),
       encode(convert_to(a.attname, 'UTF8'), 'hex'),
       encode(convert_to(format_type(a.atttypid, a.atttypmod), 'UTF8'), 'hex'),
       CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END,
       COALESCE(encode(convert_to(pg_get_expr(d.adbin, d.adrelid), 'UTF8'), 'hex'), 'N')
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  ORDER BY n.nspname, c.relname, a.attnum;
SELECT 'V', encode(convert_to(n.nspname, 'UTF8'), 'hex'), encode(convert_to(c.relname, 'UTF8'), 'hex'),
       encode(convert_to(pg_get_viewdef(c.oid), 'UTF8'), 'hex')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('v', 'm')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  ORDER BY 2, 3;
";
