//! MySQL/MariaDB: `mysqldump` / `mysql`, and the SQL to empty a database and count its rows.

use std::collections::BTreeMap;

use camino::Utf8Path;

use super::client::{self, Deadline, Target};
use super::engine::{AdminStep, CheckedDump, DbEngine, Failure};
use super::{Database, DatabaseError, DbKind};
use crate::runner::ProcessSpec;

/// MySQL and MariaDB (one engine: the same tools, SQL and variables).
pub(super) struct Mysql;

impl DbEngine for Mysql {
    fn kind(&self) -> DbKind {
        DbKind::Mysql
    }

    fn type_name(&self) -> &'static str {
        "mysql"
    }

    fn human_name(&self) -> &'static str {
        "MySQL/MariaDB"
    }

    fn server_types(&self) -> &'static [&'static str] {
        // MariaDB is served by the same tools and variables as MySQL.
        &["mysql", "mariadb"]
    }

    fn default_port(&self) -> u16 {
        3306
    }

    fn client_programs(&self) -> &'static [&'static str] {
        // MariaDB's own names first: MariaDB 11 prints a deprecation warning for the `mysql*`
        // names; Oracle MySQL only has those.
        &["mariadb", "mysql"]
    }

    fn dump_programs(&self) -> &'static [&'static str] {
        &["mariadb-dump", "mysqldump"]
    }

    fn connect(&self, spec: ProcessSpec, db: &Database) -> ProcessSpec {
        spec
            // Must come first; keeps /etc/mysql/*.cnf from changing what the tools do.
            .arg("--no-defaults")
            .arg(format!("--host={}", db.host))
            .arg(format!("--port={}", db.port))
            .arg(format!("--user={}", db.login))
            .arg("--default-character-set=utf8mb4")
            .env("MYSQL_PWD", db.password.expose())
    }

    fn query_spec(&self, db: &Database) -> Result<ProcessSpec, DatabaseError> {
        let program = self.find_client()?;
        Ok(client::spec(db, &program)
            .args(["--batch", "--skip-column-names", "--connect-timeout=15"])
            .arg(db_arg(db)?))
    }

    fn classify(&self, lower: &str) -> Option<Failure> {
        let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
        // 1045: bad login/password; 1044: the login may not use this database.
        if any(&["error 1045", "error: 1045", "error 1044", "error: 1044"]) {
            Some(Failure::Authentication)
        } else if any(&["error 1049", "error: 1049"]) {
            Some(Failure::NoSuchDatabase)
        } else if any(&[
            "can't connect to",
            "unknown server host",
            "unknown mysql server host",
            "reading initial communication packet",
        ]) {
            Some(Failure::Unreachable)
        } else {
            None
        }
    }

    fn dump_spec(&self, db: &Database) -> Result<(ProcessSpec, String), DatabaseError> {
        dump_spec(db)
    }

    fn check_dump(&self, _from: &Utf8Path) -> Result<CheckedDump, DatabaseError> {
        // The client obeys no client command from a dump (`--binary-mode`, see `load`).
        Ok(CheckedDump::default())
    }

    fn load(
        &self,
        db: &Database,
        from: &Utf8Path,
        _checked: CheckedDump,
        deadline: &Deadline,
    ) -> Result<(), DatabaseError> {
        load(db, from, deadline)
    }

    fn wipe(&self, db: &Database, deadline: &Deadline) -> Result<(), DatabaseError> {
        wipe(db, deadline)
    }

    fn row_counts(
        &self,
        db: &Database,
        deadline: &Deadline,
    ) -> Result<BTreeMap<String, u64>, DatabaseError> {
        row_counts(db, deadline)
    }

    fn version_query(&self) -> &'static str {
        "SELECT VERSION();"
    }

    fn size_query(&self) -> &'static str {
        "SELECT COALESCE(SUM(data_length), 0) FROM information_schema.tables \
         WHERE table_schema = DATABASE()"
    }

    fn admin_database(&self) -> &'static str {
        // Every login may open it, whatever its grants.
        "information_schema"
    }

    fn max_name_len(&self) -> usize {
        // MySQL's user names (MariaDB takes 80); a database name may have 64.
        32
    }

    fn escape_literal_prefix(&self) -> &'static str {
        ""
    }

    fn exists_query(&self, database: &str, user: &str) -> String {
        format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}), \
             (SELECT COUNT(*) FROM mysql.user WHERE User = {});",
            self.quote_literal(database),
            self.quote_literal(user)
        )
    }

    fn create_steps(&self, database: &str, user: &str, password: &str) -> Vec<AdminStep> {
        let account = account(user);
        vec![
            AdminStep {
                what: format!("create the database {}", quote(database)),
                sql: format!(
                    "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;",
                    quote(database)
                ),
                undo: Some(format!("DROP DATABASE IF EXISTS {};", quote(database))),
            },
            AdminStep {
                what: format!("create the user {account}"),
                sql: format!(
                    "CREATE USER {account} IDENTIFIED BY {};",
                    self.quote_literal(password)
                ),
                undo: Some(format!("DROP USER IF EXISTS {account};")),
            },
            AdminStep {
                what: format!("grant {account} all rights on {}", quote(database)),
                // `_` and `%` in a database-level GRANT are wildcards: unescaped, `a_b` would
                // grant `aXb` too.
                sql: format!(
                    "GRANT ALL PRIVILEGES ON {}.* TO {account};",
                    quote(&grant_pattern(database))
                ),
                undo: None,
            },
        ]
    }

    fn drop_steps(&self, database: &str, user: &str, _user_exists: bool) -> Vec<AdminStep> {
        let account = account(user);
        vec![
            AdminStep {
                what: format!("drop the database {}", quote(database)),
                sql: format!("DROP DATABASE IF EXISTS {};", quote(database)),
                undo: None,
            },
            AdminStep {
                what: format!("drop the user {account}"),
                sql: format!("DROP USER IF EXISTS {account};"),
                undo: None,
            },
        ]
    }
}

/// The account of a provisioned user: any client host (the server's own access rules still
/// apply; see docs/databases.md).
fn account(user: &str) -> String {
    format!("{}@'%'", quote(user))
}

/// `database` as a literal pattern of a database-level GRANT (`\`, `_` and `%` escaped).
fn grant_pattern(database: &str) -> String {
    database
        .replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%")
}

/// The database name as the last argument; refused when a tool would take it for an option.
fn db_arg(db: &Database) -> Result<&str, DatabaseError> {
    if db.name.is_empty() || db.name.starts_with('-') {
        return Err(DatabaseError::InvalidName {
            target: Target::of(db),
            why: "a MySQL database name that is empty or starts with `-` cannot be passed to \
                  the client tools",
        });
    }
    Ok(&db.name)
}

/// Largest packet the clients accept (the server's `max_allowed_packet` still applies): a
/// row with a large BLOB must not fail the dump or its load on the client side.
const MAX_PACKET: &str = "--max-allowed-packet=1073741824";

/// The dump command (stdout not yet directed) and the program it runs.
fn dump_spec(db: &Database) -> Result<(ProcessSpec, String), DatabaseError> {
    let program = Mysql.find_dump()?;
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
        .arg(db_arg(db)?);
    Ok((spec, program.into_string()))
}

fn load(db: &Database, from: &Utf8Path, deadline: &Deadline) -> Result<(), DatabaseError> {
    let program = Mysql.find_client()?;
    let copy = without_definers(from)?;
    let copy_path = Utf8Path::from_path(copy.path()).unwrap_or(from);
    let spec = client::spec(db, &program)
        .args([
            "--batch",
            // Client commands such as `\!` or `system` (run a shell command), `tee` (write a
            // file) and `source` are not obeyed from a dump: the client sends them to the
            // server, which refuses them as SQL.
            "--binary-mode",
            // `LOAD DATA LOCAL INFILE '/etc/shadow'` in a dump would make the client, running
            // as the controller's user, read the file into the tenant's table.
            "--local-infile=0",
            "--connect-timeout=15",
            MAX_PACKET,
        ])
        .arg(db_arg(db)?)
        .stdin_file(copy_path);
    client::run(db, spec, "load", deadline, Some(from))?;
    Ok(())
}

/// A copy of the dump whose views, triggers, routines and events are defined by
/// `CURRENT_USER` instead of the login that made them: naming another login as DEFINER needs
/// SUPER, which an instance's login lacks, so a dump would not load into another login's
/// database (migration) otherwise. Data lines (`INSERT INTO`, one per line in a dump) are
/// copied untouched; line numbers in the client's errors stay those of the original.
fn without_definers(from: &Utf8Path) -> Result<tempfile::NamedTempFile, DatabaseError> {
    use std::io::{BufRead, BufReader, BufWriter, Write};
    let tmp = client::load_copy_beside(from)?;
    let mut reader =
        BufReader::new(std::fs::File::open(from).map_err(DatabaseError::io("read", from))?);
    let mut writer = BufWriter::new(tmp.as_file());
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(DatabaseError::io("read", from))?;
        if n == 0 {
            break;
        }
        let out = if line.starts_with(b"INSERT INTO ") {
            std::borrow::Cow::Borrowed(&line[..])
        } else {
            strip_definers(&line)
        };
        writer
            .write_all(&out)
            .map_err(DatabaseError::io("write a temporary copy of", from))?;
    }
    writer
        .flush()
        .map_err(DatabaseError::io("write a temporary copy of", from))?;
    drop(writer);
    Ok(tmp)
}

/// Replaces every ``DEFINER=`user`@`host` `` in `line` by `DEFINER=CURRENT_USER`.
fn strip_definers(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const KEY: &[u8] = b"DEFINER=`";
    if !line.windows(KEY.len()).any(|w| w == KEY) {
        return std::borrow::Cow::Borrowed(line);
    }
    // The end of a backquoted identifier starting at `start` (just after its opening `).
    fn ident_end(s: &[u8], mut i: usize) -> Option<usize> {
        while i < s.len() {
            if s[i] == b'`' {
                if s.get(i + 1) == Some(&b'`') {
                    i += 2;
                    continue;
                }
                return Some(i + 1);
            }
            i += 1;
        }
        None
    }
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i..].starts_with(KEY) {
            let user_end = ident_end(line, i + KEY.len());
            let host_end = user_end
                .filter(|&e| line[e..].starts_with(b"@`"))
                .and_then(|e| ident_end(line, e + 2));
            if let Some(end) = host_end {
                out.extend_from_slice(b"DEFINER=CURRENT_USER");
                i = end;
                continue;
            }
        }
        out.push(line[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
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

fn wipe(db: &Database, deadline: &Deadline) -> Result<(), DatabaseError> {
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

fn row_counts(db: &Database, deadline: &Deadline) -> Result<BTreeMap<String, u64>, DatabaseError> {
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

#[cfg(test)]
mod tests {
    use super::{Mysql, grant_pattern, quote, strip_definers};
    use crate::database::DbEngine;

    #[test]
    fn hostile_text_stays_one_identifier_or_literal() {
        assert_eq!(quote("a`b; DROP"), "`a``b; DROP`");
        assert_eq!(Mysql.quote_literal("x' OR '1"), "'x'' OR ''1'");
        assert_eq!(Mysql.quote_literal("a\\'b"), "'a\\\\''b'");
        assert_eq!(grant_pattern("a_b%c\\d"), "a\\_b\\%c\\\\d");
    }

    #[test]
    fn definers_become_current_user() {
        let line = b"/*!50017 DEFINER=`a``b`@`%`*/ /*!50003 x DEFINER=`u`@`localhost` y */\n";
        assert_eq!(
            &*strip_definers(line),
            b"/*!50017 DEFINER=CURRENT_USER*/ /*!50003 x DEFINER=CURRENT_USER y */\n"
        );
        assert_eq!(&*strip_definers(b"no definer here\n"), b"no definer here\n");
    }
}
