//! The check a PostgreSQL dump passes before psql loads it: no psql meta-command (`\! cmd`
//! runs a shell command as the controller's user, `\copy … to` writes files, `\i` reads
//! them). psql 15 has no `\restrict` mode, so the dump is scanned with psql's own rules for
//! where a backslash starts a meta-command: anywhere outside string literals, quoted
//! identifiers, dollar quotes, comments and the data of `COPY … FROM stdin` (which ends at a
//! line `\.`). Any such backslash refuses the whole dump, naming the line.
//!
//! Where psql's reading depends on state the dump itself can change, the scan refuses rather
//! than guess: a standard string literal in which a quote follows an odd run of backslashes
//! ends at different places with `standard_conforming_strings` on or off (and a dump can turn
//! it off), and a `COPY … FROM stdin;` must end its line. pg_dump's own output meets all this
//! (its only meta-commands are `\restrict`/`\unrestrict` of newer versions, which are allowed
//! as whole lines: they only restrict).

use std::io::{self, BufRead};

/// Why a dump is refused: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
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

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn tag_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// At `line[i] == b'$'`, the `$tag$` that starts there, if one does.
fn dollar_tag(line: &[u8], i: usize) -> Option<&[u8]> {
    let mut j = i + 1;
    if j < line.len() && tag_start(line[j]) {
        j += 1;
        while j < line.len() && (tag_start(line[j]) || line[j].is_ascii_digit()) {
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

struct Scanner {
    state: State,
    /// The current statement's first words, lowercased (enough to recognise COPY … FROM stdin).
    words: Vec<String>,
    word: String,
}

const MAX_WORDS: usize = 64;

impl Scanner {
    fn end_word(&mut self) {
        if !self.word.is_empty() {
            if self.words.len() < MAX_WORDS {
                self.words.push(std::mem::take(&mut self.word));
            } else {
                self.word.clear();
            }
        }
    }

    fn is_copy_from_stdin(&self) -> bool {
        self.words.first().is_some_and(|w| w == "copy")
            && self
                .words
                .windows(2)
                .any(|w| w[0] == "from" && w[1] == "stdin")
    }

    /// Scans one line (with its newline, if any).
    fn line(&mut self, line: &[u8]) -> Result<(), String> {
        if self.state == State::CopyData {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if body == b"\\." {
                self.state = State::Normal;
            }
            return Ok(());
        }
        if self.state == State::Normal && self.words.is_empty() && is_restrict_line(line) {
            return Ok(());
        }
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            match &mut self.state {
                State::Normal => {
                    let prev_ident = i > 0 && ident_byte(line[i - 1]);
                    match b {
                        b'-' if line.get(i + 1) == Some(&b'-') => {
                            self.end_word();
                            return Ok(());
                        }
                        b'/' if line.get(i + 1) == Some(&b'*') => {
                            self.end_word();
                            self.state = State::Comment(1);
                            i += 2;
                            continue;
                        }
                        b'\'' => {
                            let escapes = i > 0
                                && matches!(line[i - 1], b'e' | b'E')
                                && (i < 2 || !ident_byte(line[i - 2]));
                            self.end_word();
                            self.state = State::Quote { escapes };
                        }
                        b'"' => {
                            self.end_word();
                            self.state = State::Ident;
                        }
                        b'$' if !prev_ident => {
                            if let Some(tag) = dollar_tag(line, i) {
                                self.end_word();
                                let len = tag.len();
                                self.state = State::Dollar(tag.to_vec());
                                i += len;
                                continue;
                            }
                        }
                        b'\\' => {
                            return Err(
                                "a psql meta-command (a backslash outside quotes, comments and COPY data): psql would run it as the controller's user".into(),
                            );
                        }
                        b';' => {
                            self.end_word();
                            let copy = self.is_copy_from_stdin();
                            self.words.clear();
                            if copy {
                                if !line[i + 1..].trim_ascii().is_empty() {
                                    return Err(
                                        "text after `COPY … FROM stdin;` on its line".into()
                                    );
                                }
                                self.state = State::CopyData;
                                return Ok(());
                            }
                        }
                        _ if ident_byte(b) => {
                            if self.words.len() < MAX_WORDS && self.word.len() < 64 {
                                self.word.push(b.to_ascii_lowercase() as char);
                            }
                            i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    self.end_word();
                }
                State::Quote { escapes } => match b {
                    b'\\' if *escapes => {
                        i += 2;
                        continue;
                    }
                    b'\'' => {
                        if !*escapes {
                            let run = line[..i].iter().rev().take_while(|c| **c == b'\\').count();
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
                },
                State::Ident => {
                    if b == b'"' {
                        if line.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        self.state = State::Normal;
                    }
                }
                State::Dollar(tag) => {
                    if line[i..].starts_with(tag) {
                        i += tag.len();
                        self.state = State::Normal;
                        continue;
                    }
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
                }
                State::CopyData => unreachable!("handled per line above"),
            }
            i += 1;
        }
        Ok(())
    }
}

/// Scans a PostgreSQL plain dump; `Ok(Err(refusal))` when psql must not load it.
pub(crate) fn scan(input: impl BufRead) -> io::Result<Result<(), Refusal>> {
    let mut input = input;
    let mut scanner = Scanner {
        state: State::Normal,
        words: Vec::new(),
        word: String::new(),
    };
    let mut line = Vec::with_capacity(64 * 1024);
    let mut number = 0u64;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(Ok(()));
        }
        number += 1;
        if let Err(reason) = scanner.line(&line) {
            return Ok(Err(Refusal {
                line: number,
                reason,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<(), u64> {
        scan(sql.as_bytes()).unwrap().map_err(|r| r.line)
    }

    #[test]
    fn pg_dump_output_passes() {
        let dump = "--\n-- PostgreSQL database dump\n--\nSET standard_conforming_strings = on;\n\
            SELECT pg_catalog.set_config('search_path', '', false);\n\
            CREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $_$\nBEGIN\n  RETURN 'a\\b' || E'\\n';\nEND;\n$_$;\n\
            COMMENT ON TABLE t IS 'it''s';\n\
            COPY public.t (id, body) FROM stdin;\n1\tline with \\\\ and \\t and \\! inside\n\\.\n\
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
            check("COPY t FROM stdin;\n\\! not run\n\\.\n\\! id\n"),
            Err(4)
        );
        // A COPY whose data would start mid-line, and a string that ends elsewhere when
        // standard_conforming_strings is off.
        assert_eq!(check("COPY t FROM stdin; \\! id\n"), Err(1));
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
}
