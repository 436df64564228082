//! The PostgreSQL dump scanner against psql itself (issue 19): generated dumps mix the
//! constructs where a scanner and psql may disagree (COPY variants and their data, `\.`,
//! comments nested and not, dollar quotes, string literals with E'' and
//! standard_conforming_strings, routine bodies, parentheses, psql's meta-commands). Whenever
//! the scanner accepts a dump, the real psql (without `\restrict`, as psql 15 before 15.14
//! runs) loads it into a real database and must not have run any meta-command: each one in
//! the mix leaves a trace if it runs (a marker file, a written file, a table).
//!
//! A short run is part of the test suite; a longer one:
//!
//! ```sh
//! APS_PSQL_FUZZ_CASES=5000 cargo nextest run --test psql_fuzz
//! ```
//!
//! Every failure found is kept as a case of `a_copy_psql_does_not_read_data_for_is_refused`
//! or beside it in controller/src/database/psql_scan.rs.

use std::io::Write;
use std::process::{Command, Stdio};

use aps_controller::database::{self, DbKind};
use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use test_support::database::{TestDatabase, TestServers};

/// The pieces dumps are made of. `{M}` becomes a marker path: a meta-command that runs leaves
/// a file there (or, for `\gexec`, the table `gexec_ran`).
const PIECES: &[&str] = &[
    "CREATE TABLE public.stdin (n int);\n",
    "COPY (SELECT FROM stdin) TO STDOUT;\n",
    "COPY public.t (a) FROM stdin;\n",
    "COPY public.t (a) FROM stdin;",
    "COPY public.t FROM stdin;\n",
    "COPY public.t (a) FROM stdin WITH (FORMAT csv);\n",
    "copy public.t (a) from stdin;\n",
    "COPY public.t (a) TO STDOUT;\n",
    "\\.\n",
    "\\.",
    "x\ty\n",
    "/*",
    "*/",
    "/*/",
    "-- ",
    "--",
    "$$",
    "$a$",
    "$1",
    "'",
    "E'",
    "e'",
    "\\'",
    "''",
    "\\\\",
    "\"",
    "U&'",
    "X'",
    "SET standard_conforming_strings = off;\n",
    "SET standard_conforming_strings = on;\n",
    "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql BEGIN ATOMIC ",
    "CREATE OR REPLACE PROCEDURE public.p() LANGUAGE sql BEGIN ATOMIC ",
    "SELECT 1; ",
    "END;\n",
    "CASE WHEN true THEN 1 END",
    "BEGIN",
    "(",
    ")",
    ";",
    ";\n",
    "\n",
    " ",
    "SELECT ",
    "1",
    "1begin",
    ":x",
    "::text",
    "\\! touch {M}/bang\n",
    "\\! touch {M}/bang ",
    "\\o {M}/o\n",
    "\\copy (SELECT 1) to '{M}/copy'\n",
    "\\w {M}/w\n",
    "SELECT 'CREATE TABLE public.gexec_ran ()' \\gexec\n",
    "\\restrict k\n",
    "\\unrestrict k\n",
];

/// The seeds: the issue's attack and its neighbours, checked before the generated ones.
const SEEDS: &[&str] = &[
    "CREATE TABLE public.stdin (n int);\nCOPY (SELECT FROM stdin) TO STDOUT;\n/*\n\\.\n*/\n\\! touch {M}/bang\n",
    "COPY public.t (a) FROM stdin;\n\\! touch {M}/bang\n\\.\n\\! touch {M}/bang\n",
    "SET standard_conforming_strings = off;\nSELECT 'a\\'' \\! touch {M}/bang\n';\n",
    "SELECT $a$ $$ \\ $a$ \\! touch {M}/bang\n;\n",
    "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;\nCOPY public.t (a) FROM stdin;\n\\! touch {M}/bang\n\\.\nEND;\n",
    "SELECT (1;\nCOPY public.t (a) FROM stdin;\n\\! touch {M}/bang\n\\.\n);\n",
    "SELECT 1 /* /* */ \\! touch {M}/bang\n*/;\n",
];

struct Psql {
    db: TestDatabase,
    dir: Utf8PathBuf,
    markers: Utf8PathBuf,
}

impl Psql {
    fn command(&self) -> Command {
        let db = self.db.database();
        let mut cmd = Command::new("psql");
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("PGHOST", &db.host)
            .env("PGPORT", db.port.to_string())
            .env("PGUSER", &db.login)
            .env("PGDATABASE", &db.name)
            .env("PGPASSWORD", db.password.expose())
            .current_dir(&self.dir);
        cmd
    }

    /// The scanner's verdict on `dump`; when it accepts, psql loads it as `load` does
    /// (ON_ERROR_STOP, one transaction, on stdin), and what ran is returned.
    fn check(&self, dump: &str) -> Result<(), String> {
        let dump = dump.replace("{M}", self.markers.as_str());
        let setup = "CREATE TABLE public.t (a text);\n";
        let full = format!("{setup}{dump}");
        let verdict = database::scan_postgres_dump(full.as_bytes(), false).unwrap();
        if verdict.is_err() {
            return Ok(());
        }
        let mut child = self
            .command()
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run psql");
        // psql may stop reading early (an error): a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(full.as_bytes());
        child.wait().unwrap();
        let ran: Vec<String> = std::fs::read_dir(&self.markers)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let gexec = database::query(
            self.db.database(),
            "SELECT count(*) FROM pg_class WHERE relname = 'gexec_ran';",
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        // Clean for the next case, whatever this one committed.
        database::query(
            self.db.database(),
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        if !ran.is_empty() || gexec.trim() != "0" {
            return Err(format!(
                "the scanner accepted, psql ran a meta-command (files {ran:?}, gexec table {}):\n{full}",
                gexec.trim()
            ));
        }
        Ok(())
    }
}

fn psql() -> Option<(Psql, tempfile::TempDir)> {
    let db = TestServers::from_env()?.create_database(DbKind::Postgresql, "psqlfuzz");
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
    let markers = dir.join("markers");
    std::fs::create_dir(&markers).unwrap();
    Some((Psql { db, dir, markers }, tmp))
}

#[test]
fn scanner_accepts_nothing_psql_runs_a_meta_command_in() {
    let Some((psql, _tmp)) = psql() else {
        return;
    };
    for seed in SEEDS {
        psql.check(seed).unwrap_or_else(|e| panic!("{e}"));
    }
    let cases = std::env::var("APS_PSQL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    });
    let piece = proptest::sample::select(PIECES);
    let dump = proptest::collection::vec(piece, 1..16).prop_map(|p| p.concat());
    runner
        .run(&dump, |dump| {
            psql.check(&dump).map_err(TestCaseError::fail)?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
