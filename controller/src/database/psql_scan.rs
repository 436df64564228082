//! The check a PostgreSQL dump passes before psql loads it: it must be what `pg_dump` writes,
//! with no psql meta-command (`\! cmd` runs a shell command as the loading account, `\copy … to`
//! writes files, `\i` reads them).
//!
//! The dump is read with psql's own rules (psql 15–17's lexer, `psqlscan.l`) for where a
//! backslash starts a meta-command: anywhere outside string literals, quoted identifiers,
//! dollar quotes, comments and the data of `COPY … FROM stdin` (which ends at a line `\.`).
//! Any such backslash refuses the whole dump, naming the line. psql only reads data after a
//! COPY the *server* ran, so the scan must never take for data what psql takes for commands,
//! nor the reverse; it therefore accepts COPY only in pg_dump's exact shape, alone on its line,
//! where psql surely starts a statement:
//!
//! ```text
//! COPY public.t (id, "Body") FROM stdin;
//! ```
//!
//! Every other statement whose first word is `copy` (`COPY (SELECT …) TO STDOUT`, options, a
//! COPY inside a `BEGIN ATOMIC` body or after a `;` inside parentheses) is refused. Statements
//! end where psql ends them: at a `;` outside parentheses and outside the `BEGIN … END` of a
//! `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
//!
//! Where psql's reading depends on state the dump itself can change, or on its version, the
//! scan refuses rather than guess:
//! - a standard string literal in which a quote follows an odd run of backslashes (it ends
//!   elsewhere when `standard_conforming_strings` is off, which the dump could set);
//! - a number run into letters (`1begin`, `$1a`, `0x1F`: psql versions split them differently);
//! - a psql variable reference (`:'VAR'`, `:"VAR"`, `:{?VAR}`, `:NAME` with a capital; psql
//!   substitutes its own variables and reads the result again);
//! - a NUL byte (psql's line reading stops at it);
//! - with `ascii_only` (a psql without `\restrict`), any byte above 127 outside COPY data: a
//!   dump can switch the client encoding to one (SJIS, BIG5, GBK) where such a byte hides the
//!   next one from psql's lexer.
//!
//! pg_dump's own output meets all this (its only meta-commands are `\restrict`/`\unrestrict` of
//! newer versions, which are allowed as whole lines: they only restrict).

use std::io::{self, BufRead};

/// Why a dump is refused: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Normal,
    /// `'…'`; `escapes`: an `E'…'` string, where a backslash escapes the next byte.
    Quote {
        escapes: bool,
    },
    /// `"…"`.
    Ident,
    /// `$tag$…$tag$`, holding `$tag$`.
    Dollar(Vec<u8>),
    /// `/* … */`, nested to this depth.
    Comment(u32),
    /// The data lines of `COPY … FROM stdin`, up to a line `\.`.
    CopyData,
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn ident_cont(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// psql's `variable_char`.
fn variable_char(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit()
}

/// At `line[i] == b'$'`, the `$tag$` that starts there, if one does.
fn dollar_tag(line: &[u8], i: usize) -> Option<&[u8]> {
    let mut j = i + 1;
    if j < line.len() && ident_start(line[j]) {
        j += 1;
        while j < line.len() && (ident_start(line[j]) || line[j].is_ascii_digit()) {
            j += 1;
        }
    }
    (line.get(j) == Some(&b'$')).then(|| &line[i..=j])
}

/// `\restrict KEY` / `\unrestrict KEY` alone on a line: what pg_dump 17.6+ writes.
fn is_restrict_line(line: &[u8]) -> bool {
    let text = line.trim_ascii();
    let rest = text
        .strip_prefix(b"\\restrict ")
        .or_else(|| text.strip_prefix(b"\\unrestrict "));
    rest.is_some_and(|k| !k.is_empty() && k.iter().all(u8::is_ascii_alphanumeric))
}

/// One identifier as pg_dump writes it (`fmtId`): lowercase unquoted, or double-quoted on
/// one line. Returns the bytes after it.
fn dump_ident(s: &[u8]) -> Option<&[u8]> {
    match s.first()? {
        b'"' => {
            let mut i = 1;
            loop {
                match s.get(i)? {
                    b'"' if s.get(i + 1) == Some(&b'"') => i += 2,
                    b'"' if i > 1 => return Some(&s[i + 1..]),
                    b'\n' | b'\r' | 0 | b'"' => return None,
                    _ => i += 1,
                }
            }
        }
        b if b.is_ascii_lowercase() || *b == b'_' => {
            let n = s
                .iter()
                .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_')
                .count();
            Some(&s[n..])
        }
        _ => None,
    }
}

/// Whether `line` is exactly pg_dump's `COPY schema.table (col, …) FROM stdin;` (or
/// `COPY schema.table  FROM stdin;` for a table without columns), with its line end.
fn is_dump_copy_line(line: &[u8]) -> bool {
    let parse = || -> Option<()> {
        let mut s = line.strip_prefix(b"COPY ")?;
        s = dump_ident(s)?;
        if let Some(rest) = s.strip_prefix(b".") {
            s = dump_ident(rest)?;
        }
        s = s.strip_prefix(b" ")?;
        if let Some(mut cols) = s.strip_prefix(b"(") {
            loop {
                cols = dump_ident(cols)?;
                if let Some(rest) = cols.strip_prefix(b", ") {
                    cols = rest;
                    continue;
                }
                s = cols.strip_prefix(b") ")?;
                break;
            }
        } else {
            s = s.strip_prefix(b" ")?;
        }
        let end = s.strip_prefix(b"FROM stdin;")?;
        matches!(end, b"\n" | b"\r\n" | b"").then_some(())
    };
    parse().is_some()
}

struct Scanner {
    state: State,
    /// See the module's documentation.
    ascii_only: bool,
    /// psql's `paren_depth`.
    paren: u32,
    /// psql's `begin_depth` (BEGIN … END of a SQL-standard routine body).
    begin: u32,
    /// psql's `identifier_count` and `identifiers` of the current statement.
    idents: usize,
    ident_marks: [u8; 4],
    /// No token since the statement began (file start, a statement-ending `;`, COPY data end).
    statement_empty: bool,
    /// No token since the last `;` at any depth (where the server may start a statement).
    after_semicolon: bool,
}

impl Scanner {
    fn new(ascii_only: bool) -> Self {
        Scanner {
            state: State::Normal,
            ascii_only,
            paren: 0,
            begin: 0,
            idents: 0,
            ident_marks: [0; 4],
            statement_empty: true,
            after_semicolon: true,
        }
    }

    fn end_statement(&mut self) {
        self.paren = 0;
        self.begin = 0;
        self.idents = 0;
        self.ident_marks = [0; 4];
        self.statement_empty = true;
        self.after_semicolon = true;
    }

    /// psql's bookkeeping for an unquoted identifier (psqlscan.l, rule `{identifier}`).
    fn identifier(&mut self, word: &[u8]) {
        let lower = word.to_ascii_lowercase();
        if self.idents == 0 {
            self.ident_marks = [0; 4];
        }
        if matches!(
            &lower[..],
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) && self.idents < self.ident_marks.len()
        {
            self.ident_marks[self.idents] = lower[0];
        }
        self.idents += 1;
        let m = self.ident_marks;
        if m[0] == b'c'
            && (m[1] == b'f'
                || m[1] == b'p'
                || (m[1] == b'o' && m[2] == b'r' && (m[3] == b'f' || m[3] == b'p')))
            && self.paren == 0
        {
            match &lower[..] {
                b"begin" => self.begin += 1,
                b"case" if self.begin >= 1 => self.begin += 1,
                b"end" if self.begin > 0 => self.begin -= 1,
                _ => {}
            }
        }
    }

    /// Scans one line (with its newline, if any).
    fn line(&mut self, line: &[u8]) -> Result<(), String> {
        if line.contains(&0) {
            return Err("a NUL byte: psql stops reading a line at it".into());
        }
        if self.state == State::CopyData {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if body == b"\\." {
                self.state = State::Normal;
                self.end_statement();
            }
            return Ok(());
        }
        if self.ascii_only && !line.is_ascii() {
            return Err(
                "a byte above 127 outside COPY data: this psql has no `\\restrict`, and \
                 the dump could switch to a client encoding in which such a byte hides the next \
                 one from psql"
                    .into(),
            );
        }
        if self.state == State::Normal && self.statement_empty && is_restrict_line(line) {
            return Ok(());
        }
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            match &mut self.state {
                State::Normal => {
                    // psql 16+ and the server also take \v for a space.
                    if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C) {
                        i += 1;
                        continue;
                    }
                    if b < 0x20 || b == 0x7F {
                        return Err("a control character outside quotes".into());
                    }
                    if line[i..].starts_with(b"--") {
                        return Ok(());
                    }
                    if line[i..].starts_with(b"/*") {
                        self.state = State::Comment(1);
                        i += 2;
                        continue;
                    }
                    // Everything below is a token.
                    let first_after_semicolon = self.after_semicolon;
                    let at_statement_start = self.statement_empty;
                    self.after_semicolon = false;
                    self.statement_empty = false;
                    let next = line.get(i + 1).copied();
                    match b {
                        b'\\' => {
                            return Err(
                                "a psql meta-command (a backslash outside quotes, comments and COPY data): psql would run it".into(),
                            );
                        }
                        b'\'' => {
                            self.state = State::Quote { escapes: false };
                            i += 1;
                        }
                        b'"' => {
                            self.state = State::Ident;
                            i += 1;
                        }
                        b'e' | b'E' if next == Some(b'\'') => {
                            self.state = State::Quote { escapes: true };
                            i += 2;
                        }
                        b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if next == Some(b'\'') => {
                            self.state = State::Quote { escapes: false };
                            i += 2;
                        }
                        b'u' | b'U'
                            if next == Some(b'&')
                                && matches!(line.get(i + 2), Some(b'\'' | b'"')) =>
                        {
                            self.state = if line[i + 2] == b'"' {
                                State::Ident
                            } else {
                                State::Quote { escapes: false }
                            };
                            i += 3;
                        }
                        b'$' => {
                            if let Some(tag) = dollar_tag(line, i) {
                                let len = tag.len();
                                self.state = State::Dollar(tag.to_vec());
                                i += len;
                            } else if next.is_some_and(|n| n.is_ascii_digit()) {
                                // A parameter `$1`.
                                i += 1;
                                while line.get(i).is_some_and(u8::is_ascii_digit) {
                                    i += 1;
                                }
                                if line.get(i).is_some_and(|&n| ident_start(n)) {
                                    return Err(
                                        "a parameter run into letters (psql versions split it differently)".into(),
                                    );
                                }
                            } else {
                                i += 1;
                            }
                        }
                        b'0'..=b'9' => i = self.number(line, i)?,
                        b'.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                            i = self.number(line, i)?;
                        }
                        _ if ident_start(b) => {
                            let start = i;
                            while line.get(i).is_some_and(|&c| ident_cont(c)) {
                                i += 1;
                            }
                            let word = &line[start..i];
                            if first_after_semicolon && word.eq_ignore_ascii_case(b"copy") {
                                // Where the server may run a COPY: only pg_dump's own, where
                                // psql surely starts a statement, switches to data.
                                if at_statement_start && start == 0 && is_dump_copy_line(line) {
                                    self.state = State::CopyData;
                                    return Ok(());
                                }
                                return Err("a COPY statement that pg_dump does not write (only `COPY table (columns) FROM stdin;` alone on its line, between statements, is accepted)".into());
                            }
                            self.identifier(word);
                        }
                        b':' => {
                            i = variable(line, i)?;
                        }
                        b'(' => {
                            self.paren += 1;
                            i += 1;
                        }
                        b')' => {
                            self.paren = self.paren.saturating_sub(1);
                            i += 1;
                        }
                        b';' => {
                            if self.paren == 0 && self.begin == 0 {
                                self.end_statement();
                            } else {
                                self.after_semicolon = true;
                            }
                            i += 1;
                        }
                        _ => i += 1,
                    }
                }
                State::Quote { escapes } => {
                    match b {
                        b'\\' if *escapes => {
                            i += 2;
                            continue;
                        }
                        b'\'' => {
                            if !*escapes {
                                let run =
                                    line[..i].iter().rev().take_while(|c| **c == b'\\').count();
                                if run % 2 == 1 {
                                    return Err("a string literal with a quote after a backslash: psql reads it differently when standard_conforming_strings is off, which the dump could set".into());
                                }
                            }
                            if line.get(i + 1) == Some(&b'\'') {
                                i += 2;
                                continue;
                            }
                            self.state = State::Normal;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                State::Ident => {
                    if b == b'"' {
                        if line.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        self.state = State::Normal;
                    }
                    i += 1;
                }
                State::Dollar(tag) => {
                    if line[i..].starts_with(tag) {
                        i += tag.len();
                        self.state = State::Normal;
                        continue;
                    }
                    i += 1;
                }
                State::Comment(depth) => {
                    if line[i..].starts_with(b"/*") {
                        *depth += 1;
                        i += 2;
                        continue;
                    }
                    if line[i..].starts_with(b"*/") {
                        *depth -= 1;
                        if *depth == 0 {
                            self.state = State::Normal;
                        }
                        i += 2;
                        continue;
                    }
                    i += 1;
                }
                State::CopyData => unreachable!("handled per line above"),
            }
        }
        Ok(())
    }

    /// A numeric literal at `line[i]`; returns where it ends. Digits, `_`, `.` and one exponent
    /// (`1e+10`): a letter right after it is refused (`1begin`: psql 14 reads `1 begin`, 15+
    /// reads `1b egin`).
    fn number(&self, line: &[u8], mut i: usize) -> Result<usize, String> {
        while let Some(&c) = line.get(i) {
            if c.is_ascii_digit() || c == b'_' || c == b'.' {
                i += 1;
            } else if matches!(c, b'e' | b'E') {
                let mut j = i + 1;
                if matches!(line.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                if !line.get(j).is_some_and(u8::is_ascii_digit) {
                    break;
                }
                i = j;
            } else {
                break;
            }
        }
        if line.get(i).is_some_and(|&c| ident_start(c)) {
            return Err("a number run into letters (psql versions split it differently)".into());
        }
        Ok(i)
    }
}

/// At `line[i] == b':'`: `::` (a cast) or `:name` psql leaves alone; a reference to one of
/// psql's own variables (whose names have capitals) or a quoted/tested one is refused.
fn variable(line: &[u8], i: usize) -> Result<usize, String> {
    const WHY: &str = "a psql variable reference: psql would substitute it and read the result \
                       as input";
    match line.get(i + 1) {
        Some(b':') => Ok(i + 2),
        Some(b'\'' | b'"' | b'{') => Err(WHY.into()),
        Some(&c) if variable_char(c) => {
            let n = line[i + 1..]
                .iter()
                .take_while(|&&c| variable_char(c))
                .count();
            if line[i + 1..i + 1 + n].iter().any(u8::is_ascii_uppercase) {
                return Err(WHY.into());
            }
            Ok(i + 1 + n)
        }
        _ => Ok(i + 1),
    }
}

/// Scans a PostgreSQL plain dump; `Ok(Err(refusal))` when psql must not load it. `ascii_only`:
/// the psql that will load it has no `\restrict` (see the module's documentation).
pub fn scan(input: impl BufRead, ascii_only: bool) -> io::Result<Result<(), Refusal>> {
    scan_into(input, ascii_only, io::sink())
}

/// [`scan`], writing what psql is to load into `out`: the dump with pg_dump's own
/// `\restrict KEY` / `\unrestrict KEY` lines left empty (the loader restricts psql with a key
/// of its own, and psql refuses a second `\restrict`; line numbers stay the dump's).
pub(crate) fn scan_into(
    input: impl BufRead,
    ascii_only: bool,
    mut out: impl io::Write,
) -> io::Result<Result<(), Refusal>> {
    let mut input = input;
    let mut scanner = Scanner::new(ascii_only);
    let mut line = Vec::with_capacity(64 * 1024);
    let mut number = 0u64;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            out.flush()?;
            return Ok(Ok(()));
        }
        number += 1;
        let restrict =
            scanner.state == State::Normal && scanner.statement_empty && is_restrict_line(&line);
        if let Err(reason) = scanner.line(&line) {
            return Ok(Err(Refusal {
                line: number,
                reason,
            }));
        }
        if restrict {
            out.write_all(b"\n")?;
        } else {
            out.write_all(&line)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<(), u64> {
        scan(sql.as_bytes(), false).unwrap().map_err(|r| r.line)
    }

    #[test]
    fn pg_dump_output_passes() {
        let dump = "--\n-- PostgreSQL database dump\n--\nSET standard_conforming_strings = on;\n\
            SELECT pg_catalog.set_config('search_path', '', false);\n\
            CREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $_$\nBEGIN\n  RETURN 'a\\b' || E'\\n';\nEND;\n$_$;\n\
            CREATE FUNCTION public.g(integer) RETURNS integer LANGUAGE sql\n    BEGIN ATOMIC\n SELECT ($1 + 1);\n SELECT CASE WHEN $1 > 0 THEN 1 ELSE 2 END AS \"case\";\nEND;\n\
            COMMENT ON TABLE t IS 'it''s';\n\
            CREATE TABLE public.\"Odd\" (copy integer, n numeric DEFAULT 1e+10, a integer[] DEFAULT '{1}'::integer[]);\n\
            COPY public.t (id, body) FROM stdin;\n1\tline with \\\\ and \\t and \\! inside\n\\.\n\
            COPY public.\"Odd\" (copy, \"We\"\"ird\") FROM stdin;\n\\! data\n\\.\n\
            COPY public.empty  FROM stdin;\n\\.\n\
            SELECT 1; /* nested /* \\ */ comment */\n\\restrict abc123\n";
        assert_eq!(check(dump), Ok(()));
    }

    #[test]
    fn meta_commands_are_refused_where_psql_runs_them() {
        assert_eq!(check("SELECT 1;\n\\! id\n"), Err(2));
        assert_eq!(check("SELECT 1; \\! id\n"), Err(1));
        assert_eq!(check("SELECT 'x' \\gexec\n"), Err(1));
        // After the COPY data ends, psql reads commands again.
        assert_eq!(
            check("COPY public.t (a) FROM stdin;\n\\! not run\n\\.\n\\! id\n"),
            Err(4)
        );
        // A COPY whose data would start mid-line, and a string that ends elsewhere when
        // standard_conforming_strings is off.
        assert_eq!(check("COPY public.t (a) FROM stdin; \\! id\n"), Err(1));
        assert_eq!(check("SELECT 'a\\';\n"), Err(1));
        assert_eq!(
            check("SET standard_conforming_strings = off;\nSELECT 'a\\'' \\! id';\n"),
            Err(2)
        );
        // Dollar quotes and E'' strings end where psql says.
        assert_eq!(check("SELECT $a$ $$ \\ $a$ \\! id;\n"), Err(1));
        assert_eq!(check("SELECT E'\\'' || '\\! id';\n"), Ok(()));
        assert_eq!(check("SELECT E'\\'' \\! id';\n"), Err(1));
        assert_eq!(check("SELECT E'\\\\' \\! id;\n"), Err(1));
    }

    /// Issue 19, attack 1: a COPY that is no COPY FROM stdin for psql, its `\.` in a comment.
    #[test]
    fn a_copy_psql_does_not_read_data_for_is_refused() {
        let attack = "CREATE TABLE public.stdin (n int);\n\
                      COPY (SELECT FROM stdin) TO STDOUT;\n/*\n\\.\n*/\n\\! id\n";
        assert_eq!(check(attack), Err(2));
        for other in [
            "COPY public.t (a) FROM stdin WITH (FORMAT csv);\n",
            "copy public.t (a) from stdin;\n",
            "COPY public.t FROM stdin;\n",
            " COPY public.t (a) FROM stdin;\n",
            "/* */ COPY public.t (a) FROM stdin;\n",
            "SELECT 1; COPY public.t (a) FROM stdin;\n",
            "SELECT 1\n;\nCOPY public.t (a) FROM STDIN;\n",
            "COPY public.t (a) TO stdout;\n",
            // Inside a routine body psql does not end the statement at `;`.
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;\nCOPY public.t (a) FROM stdin;\n",
            "SELECT (1;\nCOPY public.t (a) FROM stdin;\n",
        ] {
            assert!(check(other).is_err(), "{other:?} passed");
        }
        // After the routine body ends, a COPY is fine again.
        assert_eq!(
            check(
                "CREATE PROCEDURE p() BEGIN ATOMIC SELECT 1; END;\nCOPY public.t (a) FROM stdin;\n\\! x\n\\.\n"
            ),
            Ok(())
        );
    }

    #[test]
    fn what_psql_versions_or_settings_read_differently_is_refused() {
        for sql in [
            "SELECT 1begin;\n",
            "SELECT $1a;\n",
            "SELECT 0x1F;\n",
            "SELECT 1e'x';\n",
            "SELECT :'DBNAME';\n",
            "SELECT :DBNAME;\n",
            "SELECT :\"USER\";\n",
            "SELECT :{?X};\n",
            "SELECT 1;\0\n",
            "COPY public.t (a) FROM stdin;\nx\0\n\\.\n",
        ] {
            assert!(check(sql).is_err(), "{sql:?} passed");
        }
        assert_eq!(check("SELECT 1::int, a[1:2], 1e5, $1;\n"), Ok(()));
        // Without `\restrict`, non-ASCII outside COPY data is refused; in data it is not.
        let text = "COMMENT ON TABLE t IS 'café';\n";
        assert_eq!(check(text), Ok(()));
        assert!(scan(text.as_bytes(), true).unwrap().is_err());
        let data = "COPY public.t (a) FROM stdin;\ncafé\n\\.\n";
        assert_eq!(scan(data.as_bytes(), true).unwrap(), Ok(()));
    }

    #[test]
    fn pg_dumps_own_restrict_lines_are_left_empty() {
        let dump = "--\n\\restrict abc\nSELECT 1;\nCOPY public.t (a) FROM stdin;\n\\restrict x\n\\.\n\\unrestrict abc\n";
        let mut out = Vec::new();
        assert_eq!(scan_into(dump.as_bytes(), false, &mut out).unwrap(), Ok(()));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "--\n\nSELECT 1;\nCOPY public.t (a) FROM stdin;\n\\restrict x\n\\.\n\n"
        );
    }
}
