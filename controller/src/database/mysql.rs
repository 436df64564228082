//! MySQL/MariaDB: `mysqldump` / `mysql`, and the SQL to empty a database and count its rows.

use std::collections::BTreeMap;

use camino::Utf8Path;

use super::client::{self, Deadline, Target, Tool, mysql_db_arg};
use super::{Database, DatabaseError};

/// Largest packet the clients accept (the server's `max_allowed_packet` still applies): a
/// row with a large BLOB must not fail the dump or its load on the client side.
const MAX_PACKET: &str = "--max-allowed-packet=1073741824";

/// Writes the dump; returns the program used.
pub(super) fn dump(
    db: &Database,
    out: &Utf8Path,
    deadline: &Deadline,
) -> Result<String, DatabaseError> {
    let program = Tool::MysqlDump.find()?;
    let spec = client::spec(db, &program)
        .args([
            // A consistent InnoDB snapshot without locking the instance's tables.
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            // Binary columns as hex literals: the dump stays valid text whatever they hold.
            "--hex-blob",
            // Dumping tablespaces needs the PROCESS privilege an instance's login lacks.
            "--no-tablespaces",
            // Identical data gives an identical dump.
            "--skip-dump-date",
            MAX_PACKET,
        ])
        .arg(mysql_db_arg(db)?)
        .stdout_to_file(out);
    client::run(db, spec, "dump", deadline, None)?;
    Ok(program.into_string())
}

pub(super) fn load(
    db: &Database,
    from: &Utf8Path,
    deadline: &Deadline,
) -> Result<(), DatabaseError> {
    let program = Tool::MysqlClient.find()?;
    let spec = client::spec(db, &program)
        .args([
            "--batch",
            // Client commands such as `\!` (run a shell command) are not obeyed from a dump.
            "--binary-mode",
            "--connect-timeout=15",
            MAX_PACKET,
        ])
        .arg(mysql_db_arg(db)?)
        .stdin_file(from);
    client::run(db, spec, "load", deadline, Some(from))?;
    Ok(())
}

/// `identifier` quoted for MySQL.
fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

/// The objects of the current database as (kind, name), kind being what follows `DROP`.
fn objects(
    db: &Database,
    deadline: &Deadline,
    action: &'static str,
) -> Result<Vec<(String, String)>, DatabaseError> {
    // HEX() so that names with tabs or newlines survive the client's output format.
    const SQL: &str = "
        SELECT CONCAT(k, ' ', HEX(n)) FROM (
          SELECT 'VIEW' AS k, TABLE_NAME AS n FROM information_schema.TABLES
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'VIEW'
          UNION ALL SELECT 'SEQUENCE', TABLE_NAME FROM information_schema.TABLES
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'SEQUENCE'
          UNION ALL SELECT 'TABLE', TABLE_NAME FROM information_schema.TABLES
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE NOT IN ('VIEW', 'SEQUENCE')
          UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES
            WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION')
          UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS
            WHERE EVENT_SCHEMA = DATABASE()
        ) AS objects;";
    let out = client::query(db, SQL, deadline, action)?;
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (kind, name) =
                line.split_once(' ')
                    .ok_or_else(|| DatabaseError::UnexpectedOutput {
                        action,
                        target: Target::of(db),
                        tool: "mysql".to_owned(),
                        detail: format!("line `{line}` is not `KIND HEXNAME`"),
                    })?;
            Ok((kind.to_owned(), client::unhex(db, "mysql", action, name)?))
        })
        .collect()
}

pub(super) fn wipe(db: &Database, deadline: &Deadline) -> Result<(), DatabaseError> {
    let found = objects(db, deadline, "list the objects of")?;
    if found.is_empty() {
        return Ok(());
    }
    // Views first (they depend on tables); foreign keys would otherwise dictate table order.
    let mut sql = String::from("SET FOREIGN_KEY_CHECKS = 0;\n");
    for pass in [
        "VIEW",
        "TABLE",
        "SEQUENCE",
        "PROCEDURE",
        "FUNCTION",
        "EVENT",
    ] {
        for (kind, name) in found.iter().filter(|(k, _)| k == pass) {
            sql.push_str(&format!("DROP {kind} IF EXISTS {};\n", quote(name)));
        }
    }
    client::query(db, &sql, deadline, "empty")?;
    let left = objects(db, deadline, "list the objects of")?;
    if !left.is_empty() {
        return Err(DatabaseError::NotEmpty {
            target: Target::of(db),
            remaining: left
                .into_iter()
                .map(|(k, n)| format!("{} {}", k.to_lowercase(), quote(&n)))
                .collect(),
        });
    }
    Ok(())
}

pub(super) fn row_counts(
    db: &Database,
    deadline: &Deadline,
) -> Result<BTreeMap<String, u64>, DatabaseError> {
    const ACTION: &str = "count the rows of";
    let tables = client::query(
        db,
        "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE NOT IN ('VIEW', 'SEQUENCE') \
         ORDER BY TABLE_NAME;",
        deadline,
        ACTION,
    )?;
    let tables: Vec<String> = tables
        .lines()
        .filter(|l| !l.is_empty())
        .map(|h| client::unhex(db, "mysql", ACTION, h))
        .collect::<Result<_, _>>()?;
    let mut counts = BTreeMap::new();
    // One client run per batch of tables; an index stands for the name so no string quoting
    // is needed.
    for (batch_no, batch) in tables.chunks(200).enumerate() {
        let sql = batch
            .iter()
            .enumerate()
            .map(|(i, t)| format!("SELECT {i}, COUNT(*) FROM {}", quote(t)))
            .collect::<Vec<_>>()
            .join("\nUNION ALL ")
            + ";";
        let out = client::query(db, &sql, deadline, ACTION)?;
        for line in out.lines().filter(|l| !l.is_empty()) {
            let parsed = line
                .split_once('\t')
                .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<u64>().ok()?)))
                .filter(|(i, _)| *i < batch.len());
            let Some((i, n)) = parsed else {
                return Err(DatabaseError::UnexpectedOutput {
                    action: ACTION,
                    target: Target::of(db),
                    tool: "mysql".to_owned(),
                    detail: format!("line `{line}` of batch {batch_no} is not `INDEX\\tCOUNT`"),
                });
            };
            counts.insert(batch[i].clone(), n);
        }
    }
    Ok(counts)
}
