//! PostgreSQL: `pg_dump` / `psql`, and the SQL to empty a database and count its rows.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

use super::client::{self, Deadline, Target};
use super::engine::{AdminStep, CheckedDump, DbEngine, Failure};
use super::{Database, DatabaseError, DbKind};
use crate::runner::ProcessSpec;

/// PostgreSQL.
pub(super) struct Postgresql;

impl DbEngine for Postgresql {
    fn kind(&self) -> DbKind {
        DbKind::Postgresql
    }

    fn type_name(&self) -> &'static str {
        "postgresql"
    }

    fn human_name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn server_types(&self) -> &'static [&'static str] {
        &["postgresql", "postgres", "pgsql"]
    }

    fn default_port(&self) -> u16 {
        5432
    }

    fn client_programs(&self) -> &'static [&'static str] {
        &["psql"]
    }

    fn dump_programs(&self) -> &'static [&'static str] {
        &["pg_dump"]
    }

    /// The newest `/usr/lib/postgresql/N/bin` first: a newer pg_dump dumps older servers,
    /// never the reverse (Debian's wrapper in /usr/bin picks by its own rules).
    fn program_dirs(&self) -> Vec<Utf8PathBuf> {
        let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
            return Vec::new();
        };
        let mut versioned: Vec<(u32, Utf8PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let major: u32 = name.parse().ok()?;
                Some((
                    major,
                    Utf8PathBuf::from(format!("/usr/lib/postgresql/{name}/bin")),
                ))
            })
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        versioned.into_iter().map(|(_, d)| d).collect()
    }

    /// All in the environment: `-d` would parse a name holding `=` as a connection string.
    fn connect(&self, spec: ProcessSpec, db: &Database) -> ProcessSpec {
        spec.env("PGHOST", &db.host)
            .env("PGPORT", db.port.to_string())
            .env("PGUSER", &db.login)
            .env("PGDATABASE", &db.name)
            .env("PGPASSWORD", db.password.expose())
            .env("PGCONNECT_TIMEOUT", "15")
            .env("PGAPPNAME", "aps-controller")
            .env("PGCLIENTENCODING", "UTF8")
    }

    fn query_spec(&self, db: &Database) -> Result<ProcessSpec, DatabaseError> {
        let program = self.find_client()?;
        Ok(client::spec(db, &program).args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            "\t",
            "-P",
            "null=\\N",
        ]))
    }

    fn classify(&self, lower: &str) -> Option<Failure> {
        let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
        if any(&[
            "password authentication failed",
            "no password supplied",
            "pg_hba.conf",
        ]) || (lower.contains("fatal:") && lower.contains("role \""))
        {
            Some(Failure::Authentication)
        } else if lower.contains("fatal:") && lower.contains("database \"") {
            Some(Failure::NoSuchDatabase)
        } else if any(&[
            "connection refused",
            "could not translate host name",
            "timeout expired",
            "no such file or directory",
        ]) && !lower.contains("error:  ")
        {
            Some(Failure::Unreachable)
        } else {
            None
        }
    }

    fn dump_spec(&self, db: &Database) -> Result<(ProcessSpec, String), DatabaseError> {
        dump_spec(db)
    }

    fn check_dump(&self, from: &Utf8Path) -> Result<CheckedDump, DatabaseError> {
        let restricting = psql_restricts()?;
        Ok(CheckedDump {
            copy: Some(check_dump(from, restricting)?),
            restricting,
        })
    }

    fn load(
        &self,
        db: &Database,
        from: &Utf8Path,
        checked: CheckedDump,
        deadline: &Deadline,
    ) -> Result<(), DatabaseError> {
        let Some(copy) = &checked.copy else {
            // check_dump always makes the copy; loading the unchecked dump is never an option.
            return Err(DatabaseError::Io {
                action: "find the checked copy of",
                path: from.to_owned(),
                source: std::io::Error::other("the dump was not checked"),
            });
        };
        let copy = Utf8Path::from_path(copy.path()).ok_or_else(|| DatabaseError::Io {
            action: "use the copy (path is not UTF-8) of",
            path: from.to_owned(),
            source: std::io::Error::other(copy.path().display().to_string()),
        })?;
        load(db, from, copy, checked.restricting, deadline)
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
        "SHOW server_version;"
    }

    fn size_query(&self) -> &'static str {
        "SELECT COALESCE(SUM(pg_relation_size(c.oid)), 0) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%'"
    }

    fn admin_database(&self) -> &'static str {
        "postgres"
    }

    fn max_name_len(&self) -> usize {
        // NAMEDATALEN - 1, in bytes; longer names are cut by the server.
        63
    }

    fn escape_literal_prefix(&self) -> &'static str {
        // An escape string: its meaning does not depend on standard_conforming_strings.
        "E"
    }

    fn exists_query(&self, database: &str, user: &str) -> String {
        format!(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = {}), \
             (SELECT count(*) FROM pg_roles WHERE rolname = {});",
            self.quote_literal(database),
            self.quote_literal(user)
        )
    }

    fn create_steps(&self, database: &str, user: &str, password: &str) -> Vec<AdminStep> {
        let (db, role) = (quote_identifier(database), quote_identifier(user));
        vec![
            AdminStep {
                what: format!("create the role {role}"),
                sql: format!(
                    "CREATE ROLE {role} LOGIN PASSWORD {};",
                    self.quote_literal(password)
                ),
                undo: Some(format!("DROP ROLE IF EXISTS {role};")),
            },
            AdminStep {
                what: format!("create the database {db} owned by {role}"),
                sql: format!(
                    "CREATE DATABASE {db} OWNER {role} ENCODING 'UTF8' TEMPLATE template0;"
                ),
                undo: Some(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE);")),
            },
            AdminStep {
                // By default every role may connect to a new database and make temporary
                // tables in it: another tenant's login among them.
                what: format!("revoke the rights of PUBLIC on the database {db}"),
                sql: format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC;"),
                undo: None,
            },
        ]
    }

    fn drop_steps(&self, database: &str, user: &str, user_exists: bool) -> Vec<AdminStep> {
        let (db, role) = (quote_identifier(database), quote_identifier(user));
        let mut steps = vec![AdminStep {
            what: format!("drop the database {db}"),
            // Ends the sessions still connected to it (PostgreSQL 13 and later).
            sql: format!("DROP DATABASE IF EXISTS {db} WITH (FORCE);"),
            undo: None,
        }];
        if user_exists {
            steps.push(AdminStep {
                // What the role made outside its database (in the maintenance database, or
                // rights granted to it) would keep DROP ROLE from succeeding.
                what: format!("drop the role {role}"),
                sql: format!("DROP OWNED BY {role};\nDROP ROLE IF EXISTS {role};"),
                undo: None,
            });
        }
        steps
    }
}

/// `name` as a quoted PostgreSQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The dump command (stdout not yet directed) and the program it runs.
fn dump_spec(db: &Database) -> Result<(ProcessSpec, String), DatabaseError> {
    let program = Postgresql.find_dump()?;
    let spec = client::spec(db, &program).args([
        // Plain SQL: loads with psql alone, into a later server version too, and a person
        // can read it. (The custom format's selective/parallel restore is not needed.)
        "--format=plain",
        "--encoding=UTF8",
        // The restored objects belong to whoever loads them (the instance's login, which
        // may be another one after a migration); GRANTs name roles that may not exist.
        "--no-owner",
        "--no-privileges",
        // Objects only a superuser may create; an instance's database has none.
        "--no-publications",
        "--no-subscriptions",
        "--no-security-labels",
        "--no-tablespaces",
    ]);
    Ok((spec, program.into_string()))
}

/// Refuses a dump that is not what pg_dump writes or holds a psql meta-command (see
/// [`super::psql_scan`]); otherwise returns the copy psql is to load, beside the dump (the
/// temp folder may be too small for a large one). `restricting`: psql has `\restrict`
/// ([`psql_restricts`]).
fn check_dump(
    from: &Utf8Path,
    restricting: bool,
) -> Result<tempfile::NamedTempFile, DatabaseError> {
    let copy = super::client::load_copy_beside(from)?;
    let file = std::fs::File::open(from).map_err(DatabaseError::io("read", from))?;
    let reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let writer = std::io::BufWriter::with_capacity(256 * 1024, copy.as_file());
    match super::psql_scan::scan_into(reader, !restricting, writer)
        .map_err(DatabaseError::io("read and copy", from))?
    {
        Ok(()) => Ok(copy),
        Err(refusal) => Err(DatabaseError::UnsafeDump {
            file: from.to_owned(),
            line: refusal.line,
            reason: refusal.reason,
        }),
    }
}

/// Whether `psql` (`psql (PostgreSQL) 15.18 (Debian …)`) has `\restrict`: 13.22, 14.19, 15.14,
/// 16.10, 17.6 and later.
fn restricts(version_line: &str) -> bool {
    let Some(rest) = version_line.split("(PostgreSQL) ").nth(1) else {
        return false;
    };
    let number = |s: &str| -> Option<u32> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let Some(major) = number(rest) else {
        return false;
    };
    let minor = rest
        .strip_prefix(&major.to_string())
        .and_then(|r| r.strip_prefix('.'))
        .and_then(number);
    match (major, minor) {
        (19.., _) | (18, Some(_)) => true,
        (17, Some(m)) => m >= 6,
        (16, Some(m)) => m >= 10,
        (15, Some(m)) => m >= 14,
        (14, Some(m)) => m >= 19,
        (13, Some(m)) => m >= 22,
        _ => false,
    }
}

/// Whether the psql that loads dumps has `\restrict` (it then refuses every meta-command
/// itself, whatever the scan missed).
fn psql_restricts() -> Result<bool, DatabaseError> {
    let program = Postgresql.find_client()?;
    let out = ProcessSpec::for_tool(program.as_str())
        .arg("--version")
        .timeout(std::time::Duration::from_secs(30))
        .run();
    Ok(out.is_ok_and(|o| restricts(&o.stdout_lossy())))
}

/// Loads `copy`, what [`check_dump`] made of the dump `from` (named in errors).
fn load(
    db: &Database,
    from: &Utf8Path,
    copy: &Utf8Path,
    restricting: bool,
    deadline: &Deadline,
) -> Result<(), DatabaseError> {
    let program = Postgresql.find_client()?;
    let mut spec = client::spec(db, &program).args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        // All or nothing: a dump that fails half-way leaves the database empty.
        "--single-transaction",
    ]);
    if restricting {
        // Before the dump: every meta-command in it is refused by psql itself. The key is
        // random, so the dump cannot hold the `\unrestrict KEY` that would lift it.
        spec = spec.arg("-c").arg(format!("\\restrict {}", random_key()?));
    }
    // Fed by the controller on stdin: psql may run as the instance's account, which
    // cannot open the controller's private work folder.
    let spec = spec.args(["-f", "-"]).stdin_file(copy);
    client::run(db, spec, "load", deadline, Some(from))?;
    Ok(())
}

fn random_key() -> Result<String, DatabaseError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(DatabaseError::io("read", Utf8Path::new("/dev/urandom")))?;
    Ok(hex::encode(bytes))
}

/// Everything a wipe drops, as (pass, DROP statement, label). Schemas other than `public` go
/// whole; in `public` (which the login may not own, so it stays), views before tables before
/// sequences, routines and types. Members of extensions are left to their extension.
const OBJECTS: &str = r#"
SELECT 1 AS pass, format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname) AS stmt,
       'schema ' || quote_ident(n.nspname) AS label
  FROM pg_namespace n
 WHERE n.nspname NOT IN ('public', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                   AND d.objid = n.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE WHEN c.relkind IN ('v', 'm') THEN 2 WHEN c.relkind = 'S' THEN 4 ELSE 3 END,
       format('DROP %s IF EXISTS public.%I CASCADE',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                             ELSE 'TABLE' END, c.relname),
       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'table' END
         || ' public.' || quote_ident(c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype IN ('e', 'i'))
UNION ALL
SELECT 5, format('DROP %s IF EXISTS public.%I(%s) CASCADE',
                 CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE'
                                ELSE 'FUNCTION' END,
                 p.proname, pg_get_function_identity_arguments(p.oid)),
       'routine public.' || quote_ident(p.proname)
         || '(' || pg_get_function_identity_arguments(p.oid) || ')'
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                   AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 6, format('DROP %s IF EXISTS public.%I CASCADE',
                 CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname),
       'type public.' || quote_ident(t.typname)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = 'public'
   AND (t.typtype IN ('e', 'd', 'r')
        OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c
                                         WHERE c.oid = t.typrelid AND c.relkind = 'c')))
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                   AND d.objid = t.oid AND d.deptype = 'e')
"#;

fn leftovers(db: &Database, deadline: &Deadline) -> Result<Vec<String>, DatabaseError> {
    let sql = format!(
        "SELECT encode(convert_to(label, 'UTF8'), 'hex') FROM ({OBJECTS}) o ORDER BY pass, label;"
    );
    let out = client::query(db, &sql, deadline, "list the objects of")?;
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|h| client::unhex(db, "psql", "list the objects of", h))
        .collect()
}

fn wipe(db: &Database, deadline: &Deadline) -> Result<(), DatabaseError> {
    // \gexec runs each DROP as its own statement (and transaction): one transaction dropping
    // thousands of tables could run out of lock table slots.
    let sql = format!(
        "SET client_min_messages = warning;\nSELECT stmt FROM ({OBJECTS}) o ORDER BY pass, stmt \\gexec\n"
    );
    client::query(db, &sql, deadline, "empty")?;
    let left = leftovers(db, deadline)?;
    if !left.is_empty() {
        return Err(DatabaseError::NotEmpty {
            target: Target::of(db),
            remaining: left,
        });
    }
    Ok(())
}

fn row_counts(db: &Database, deadline: &Deadline) -> Result<BTreeMap<String, u64>, DatabaseError> {
    const ACTION: &str = "count the rows of";
    // query_to_xml runs one exact COUNT(*) per table inside this single query, quoting names
    // on the server (%I).
    const SQL: &str = r#"
SELECT encode(convert_to(CASE WHEN n.nspname = 'public' THEN c.relname
                              ELSE n.nspname || '.' || c.relname END, 'UTF8'), 'hex')
       || E'\t' ||
       (xpath('/row/c/text()',
              query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
                           false, true, '')))[1]::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
 ORDER BY 1;"#;
    let out = client::query(db, SQL, deadline, ACTION)?;
    let mut counts = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let Some((name, n)) = line
            .split_once('\t')
            .and_then(|(h, n)| Some((h, n.parse::<u64>().ok()?)))
        else {
            return Err(DatabaseError::UnexpectedOutput {
                action: ACTION,
                target: Target::of(db),
                tool: "psql".to_owned(),
                detail: format!("line `{line}` is not `HEXNAME\\tCOUNT`"),
            });
        };
        counts.insert(client::unhex(db, "psql", ACTION, name)?, n);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::{Postgresql, quote_identifier};
    use crate::database::DbEngine;

    #[test]
    fn hostile_text_stays_one_identifier_or_literal() {
        assert_eq!(quote_identifier("a\"b; DROP"), "\"a\"\"b; DROP\"");
        assert_eq!(Postgresql.quote_literal("x' OR '1"), "E'x'' OR ''1'");
        assert_eq!(Postgresql.quote_literal("a\\'b"), "E'a\\\\''b'");
    }

    #[test]
    fn restrict_is_known_by_version() {
        for (line, has) in [
            ("psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", true),
            ("psql (PostgreSQL) 15.13", false),
            ("psql (PostgreSQL) 17.6", true),
            ("psql (PostgreSQL) 16.9", false),
            ("psql (PostgreSQL) 18.1", true),
            ("psql (PostgreSQL) 18beta1", false),
            ("psql (PostgreSQL) 12.22", false),
            ("nonsense", false),
        ] {
            assert_eq!(super::restricts(line), has, "{line}");
        }
    }
}
